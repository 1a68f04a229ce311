/// SQuat's per-KV-head state, computed once at prefill and reused for every later key block
/// (including the blocks flushed during decode): the compensation matrices `W_i` derived from
/// the head's `mats`/`P_inv` (see `SquatMatrices.compensationMatrices`), stored as Float.
///
/// A value type: a cache keeps one per (sequence, layer, KV head), e.g. in a `SquatLayerState`.
public struct SquatHeadState: Sendable {
    public let headDim: Int
    public let quantGroupSize: Int
    /// `W_i`, `i < nb−1`: `qgs × (headDim − (i+1)·qgs)`, row-major. Empty when `qgs == headDim`
    /// (a single block: SQuat is then KIVI on pre-RoPE keys).
    public let compensation: [[Float]]

    /// From the head's matrices (computed by `generate_At_inv` or given).
    public init(matrices: SquatMatrices) {
        headDim = matrices.headDim
        quantGroupSize = matrices.quantGroupSize
        compensation = matrices.compensationMatrices().map { $0.map { Float($0) } }
    }

    /// From the head's query subspace: `generate_At_inv` with `params.quantGroupSize` and `params.lambda`.
    public init(subspace: QuerySubspace, params: QuantizationParameters) {
        self.init(
            matrices: SquatMatrices(
                projectedGram: subspace.projectedGram, headDim: subspace.headDim,
                quantGroupSize: params.quantGroupSize, lambda: params.lambda))
    }

    /// From stored compensation matrices (a cache layer shipped from another stage).
    init(headDim: Int, quantGroupSize: Int, compensation: [[Float]]) {
        self.headDim = headDim
        self.quantGroupSize = quantGroupSize
        self.compensation = compensation
    }

    /// Number of channel blocks, `headDim / quantGroupSize`.
    public var blocks: Int { headDim / quantGroupSize }

    /// Bytes held.
    public var byteCount: Int { compensation.reduce(0) { $0 + $1.count * 4 } }
}

/// SQuat state of one sequence in one layer: one `SquatHeadState` per KV head.
public struct SquatLayerState: Sendable {
    public let heads: [SquatHeadState]

    public init(heads: [SquatHeadState]) { self.heads = heads }

    /// Builds every KV head's state from the prompt's queries, token-major as a cache sees
    /// them: row `t` (`shape.qDim` Floats) at `queries + t·shape.qDim`, query head
    /// `h = kvHead·g + j` at offset `h·headDim` in the row. Pass post-RoPE queries when
    /// `params.subspaceRope == .post` (the reference), pre-RoPE ones otherwise. `tokens` is the
    /// whole prompt (any length ≥ 1). Heads run in parallel on `parallel`.
    public init(
        queries: UnsafePointer<Float>, tokens: Int, shape: AttentionShape, params: QuantizationParameters,
        parallel: Parallel = Parallel(threads: 1)
    ) {
        let out = UnsafeMutablePointer<SquatHeadState?>.allocate(capacity: shape.kvHeads)
        out.initialize(repeating: nil, count: shape.kvHeads)
        defer {
            out.deinitialize(count: shape.kvHeads)
            out.deallocate()
        }
        let D = shape.headDim
        let g = shape.groupSize
        parallel.forEach(shape.kvHeads) { h in
            let subspace = QuerySubspace(
                queries: queries + h * g * D, heads: g, tokens: tokens, headStride: D, tokenStride: shape.qDim,
                headDim: D, subspaceDim: params.subspaceDim)
            out[h] = SquatHeadState(subspace: subspace, params: params)
        }
        heads = (0..<shape.kvHeads).map { out[$0]! }
    }

    /// Bytes held.
    public var byteCount: Int { heads.reduce(0) { $0 + $1.byteCount } }
}
