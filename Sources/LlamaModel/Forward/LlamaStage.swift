import CKernels
import KVCache

/// How activations meet quantized weights in matrix products.
public enum ActivationPrecision: String, Sendable, CaseIterable {
    /// Float32 activations: matches a float32 reference to ~1e-4 (the accuracy mode).
    case f32
    /// Activations quantized to int8 per block of 32 (as llama.cpp does) for Q4_1/Q8_0 weights:
    /// about twice as fast, logits within ~0.1–0.3 of float32, like llama.cpp's.
    case q8
}

/// The input rows of one forward call of a stage.
public enum StageInput {
    /// Token ids (first stage).
    case tokens([Int32])
    /// Hidden states from the previous stage, rows × hiddenSize.
    case hidden([Float])
}

/// A run of consecutive rows belonging to one sequence: its next `rows` tokens.
public struct StageSegment {
    public let cache: any SequenceKVCache
    public let rows: Int
    public init(cache: any SequenceKVCache, rows: Int) {
        self.cache = cache
        self.rows = rows
    }
}

/// Runs a contiguous range of a LLaMA model's layers over a batch of rows: embedding on the
/// first stage, then each block (RMSNorm, attention through the KV cache, SwiGLU MLP), and on
/// the last stage the final norm and output head. Buffers are allocated once per row capacity.
/// Every row's numbers are independent of the other rows in the batch (batch invariance).
public final class LlamaStage {
    public let weights: LlamaWeights
    public let parallel: Parallel
    public let rope: Rope
    public let shape: AttentionShape
    public let activations: ActivationPrecision
    private var capacity = 0
    private var xq: UnsafeMutablePointer<sq_block_q8a>  // int8 activations, rows × (max width / 32)
    /// The buffer currently quantized in `xq` (to quantize a shared input once).
    private var quantizedInput: UnsafePointer<Float>? = nil
    private var x: UnsafeMutablePointer<Float>  // residual stream, rows × hidden
    private var xb: UnsafeMutablePointer<Float>  // normed input, rows × hidden
    private var q: UnsafeMutablePointer<Float>  // rows × qDim
    private var k: UnsafeMutablePointer<Float>  // rows × kvDim
    private var v: UnsafeMutablePointer<Float>  // rows × kvDim
    private var att: UnsafeMutablePointer<Float>  // rows × qDim
    private var tmp: UnsafeMutablePointer<Float>  // rows × max(hidden, qDim)
    private var h1: UnsafeMutablePointer<Float>  // rows × intermediate
    private var h2: UnsafeMutablePointer<Float>  // rows × intermediate
    /// Repacked copies of the q8-capable matrices (by their data pointer), for `.q8`.
    private let repacked: [UnsafeRawPointer: RepackedMatrix]
    private let unpermute: [Int]?
    /// One head of scratch for `unpermuteHeads`, allocated once (it runs twice per layer).
    private let headScratch: UnsafeMutablePointer<Float>

    public init(weights: LlamaWeights, threads: Int, activations: ActivationPrecision = .f32) {
        self.weights = weights
        self.activations = activations
        xq = .allocate(capacity: 0)
        self.parallel = Parallel(threads: threads)
        let c = weights.config
        self.rope = Rope(headDim: c.headDim, inverseFrequencies: weights.ropeInverseFrequencies)
        self.shape = AttentionShape(kvHeads: c.kvHeadCount, groupSize: c.groupSize, headDim: c.headDim)
        // GGUF stores Q/K rows for interleaved RoPE: row 2i+c of a head is channel c*D/2+i.
        if weights.qkInterleaved {
            let D = c.headDim
            unpermute = (0..<D).map { j in (j % 2) * (D / 2) + j / 2 }
        } else {
            unpermute = nil
        }
        headScratch = .allocate(capacity: c.headDim)
        var packed: [UnsafeRawPointer: RepackedMatrix] = [:]
        if activations == .q8 {
            var matrices = weights.layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.gate, $0.up, $0.down] }
            if let o = weights.output { matrices.append(o) }
            var seen = Set<UnsafeRawPointer>()
            let unique = matrices.filter { seen.insert($0.data).inserted }
            let total = unique.reduce(0) { $0 + WeightArena.footprint(RepackedMatrix.byteCount(of: $1)) }
            let arena = total > 0 ? WeightArena(bytes: total) : nil
            for w in unique {
                packed[w.data] = RepackedMatrix(w, releasingMappedPages: true, arena: arena)
            }
        }
        repacked = packed
        x = .allocate(capacity: 0)
        xb = .allocate(capacity: 0)
        q = .allocate(capacity: 0)
        k = .allocate(capacity: 0)
        v = .allocate(capacity: 0)
        att = .allocate(capacity: 0)
        tmp = .allocate(capacity: 0)
        h1 = .allocate(capacity: 0)
        h2 = .allocate(capacity: 0)
    }

    deinit {
        for p in [x, xb, q, k, v, att, tmp, h1, h2] { p.deallocate() }
        xq.deallocate()
        headScratch.deallocate()
    }

    private func reserve(rows: Int) {
        guard rows > capacity else { return }
        let c = weights.config
        for p in [x, xb, q, k, v, att, tmp, h1, h2] { p.deallocate() }
        x = .allocate(capacity: rows * c.hiddenSize)
        xb = .allocate(capacity: rows * c.hiddenSize)
        q = .allocate(capacity: rows * c.qDim)
        k = .allocate(capacity: rows * c.kvDim)
        v = .allocate(capacity: rows * c.kvDim)
        att = .allocate(capacity: rows * c.qDim)
        tmp = .allocate(capacity: rows * max(c.hiddenSize, c.qDim))
        h1 = .allocate(capacity: rows * c.intermediateSize)
        h2 = .allocate(capacity: rows * c.intermediateSize)
        xq.deallocate()
        xq = .allocate(capacity: rows * max(c.hiddenSize, c.qDim, c.intermediateSize) / 32 + 1)
        capacity = rows
    }

    /// y (rows × w.rows) = x (rows × w.cols) · Wᵀ, output rows split across threads.
    /// `sharedInput`: the input is the same buffer, unchanged, as the previous call's.
    func matmul(
        _ w: WeightMatrix, _ input: UnsafePointer<Float>, rows: Int, _ out: UnsafeMutablePointer<Float>,
        sharedInput: Bool = false
    ) {
        let type = Int32(w.type.rawValue)
        // Repacked copies exist exactly for the matrices the int8 products support, under `.q8`.
        if let packed = repacked[w.data] {
            if !(sharedInput && quantizedInput == input) {
                let blocks = w.cols / 32
                let xq = self.xq
                parallel.forEachChunk(rows) { r in
                    for i in r { sq_quantize_q8(input + i * w.cols, Int64(w.cols), xq + i * blocks) }
                }
                quantizedInput = input
            }
            let xq = self.xq
            // Threads take whole groups of 8 rows.
            parallel.forEachChunk((w.rows + 7) / 8) { g in
                _ = sq_matmul_q8_x8(
                    type, packed.data, Int64(w.cols), xq, Int64(rows), out, Int64(w.rows), Int64(g.lowerBound * 8),
                    Int64(min(g.upperBound * 8, w.rows)))
            }
            return
        }
        quantizedInput = nil
        parallel.forEachChunk(w.rows) { r in
            sq_matmul(
                type, w.data, w.rowBytes, Int64(w.cols), input, Int64(w.cols), Int64(rows), out, Int64(w.rows),
                Int64(r.lowerBound), Int64(r.upperBound))
        }
    }

    /// Un-permutes GGUF's interleaved Q/K head channels into the `halves` order.
    private func unpermuteHeads(_ p: UnsafeMutablePointer<Float>, rows: Int, heads: Int) {
        guard let perm = unpermute else { return }
        let D = shape.headDim
        let buf = headScratch
        for r in 0..<rows {
            for h in 0..<heads {
                let base = p + (r * heads + h) * D
                for j in 0..<D { buf[perm[j]] = base[j] }
                base.update(from: buf, count: D)
            }
        }
    }

    /// Writes the input embedding of each token (hidden floats per row; zeros for an id outside
    /// the vocabulary) to `out`. False when this stage has no embedding.
    private func embed(_ ids: [Int32], into out: UnsafeMutablePointer<Float>) -> Bool {
        guard let emb = weights.tokenEmbedding else { return false }
        let H = weights.config.hiddenSize
        // A tied embedding is read from the output head's repacked copy (the same floats), so
        // that the mapped original's pages stay out of memory.
        let packedEmbedding = repacked[emb.data]
        for (r, id) in ids.enumerated() {
            let t = Int(id)
            if t >= 0 && t < emb.rows {
                if let p = packedEmbedding {
                    _ = sq_dequantize_x8_row(Int32(emb.type.rawValue), p.data, Int64(emb.cols), Int64(t), out + r * H)
                } else {
                    emb.dequantizeRow(t, into: out + r * H)
                }
            } else {
                (out + r * H).initialize(repeating: 0, count: H)
            }
        }
        return true
    }

    /// The input embeddings of `ids` (ids.count × hidden), exactly what `.tokens(ids)` feeds the
    /// first layer; nil on a stage without the embedding.
    public func embedding(_ ids: [Int32]) -> [Float]? {
        guard weights.hasEmbedding else { return nil }
        guard !ids.isEmpty else { return [] }
        var out = [Float](repeating: 0, count: ids.count * weights.config.hiddenSize)
        out.withUnsafeMutableBufferPointer { _ = embed(ids, into: $0.baseAddress!) }
        return out
    }

    /// Runs the stage's layers over the rows of `segments` (in order). Returns the hidden
    /// states (rows × hidden) for a middle stage, or, on the last stage, the logits of the
    /// rows listed in `logitRows` (logitRows.count × vocabulary).
    public func forward(_ input: StageInput, segments: [StageSegment], logitRows: [Int] = []) -> [Float] {
        let c = weights.config
        let rows = segments.reduce(0) { $0 + $1.rows }
        let H = c.hiddenSize
        reserve(rows: rows)
        switch input {
        case .tokens(let ids):
            precondition(ids.count == rows && weights.hasEmbedding, "token input needs the embedding stage")
            guard embed(ids, into: x) else { return [] }
        case .hidden(let h):
            precondition(h.count == rows * H, "hidden input has \(h.count) floats, expected \(rows * H)")
            h.withUnsafeBufferPointer { x.update(from: $0.baseAddress!, count: rows * H) }
        }

        for (li, lw) in weights.layers.enumerated() {
            // Attention block.
            lw.attnNorm.withUnsafeBufferPointer { w in
                for r in 0..<rows { sq_rmsnorm(xb + r * H, x + r * H, w.baseAddress, Int64(H), c.rmsEpsilon) }
            }
            matmul(lw.wq, xb, rows: rows, q)
            matmul(lw.wk, xb, rows: rows, k, sharedInput: true)
            matmul(lw.wv, xb, rows: rows, v, sharedInput: true)
            unpermuteHeads(q, rows: rows, heads: c.headCount)
            unpermuteHeads(k, rows: rows, heads: c.kvHeadCount)
            var row0 = 0
            for seg in segments {
                seg.cache.forward(
                    layer: li, queries: q + row0 * c.qDim, keys: k + row0 * c.kvDim, values: v + row0 * c.kvDim,
                    rows: seg.rows, output: att + row0 * c.qDim, parallel: parallel)
                row0 += seg.rows
            }
            matmul(lw.wo, att, rows: rows, tmp)
            sq_add(x, tmp, Int64(rows * H))
            // MLP block.
            lw.ffnNorm.withUnsafeBufferPointer { w in
                for r in 0..<rows { sq_rmsnorm(xb + r * H, x + r * H, w.baseAddress, Int64(H), c.rmsEpsilon) }
            }
            matmul(lw.gate, xb, rows: rows, h1)
            matmul(lw.up, xb, rows: rows, h2, sharedInput: true)
            sq_swiglu(h1, h2, Int64(rows * c.intermediateSize))
            matmul(lw.down, h1, rows: rows, tmp)
            sq_add(x, tmp, Int64(rows * H))
        }
        for seg in segments { seg.cache.commit(rows: seg.rows) }

        guard let head = weights.output, let norm = weights.outputNorm else {
            return Array(UnsafeBufferPointer(start: x, count: rows * H))
        }
        let n = logitRows.count
        guard n > 0 else { return [] }
        norm.withUnsafeBufferPointer { w in
            for (i, r) in logitRows.enumerated() {
                sq_rmsnorm(xb + i * H, x + r * H, w.baseAddress, Int64(H), c.rmsEpsilon)
            }
        }
        var logits = [Float](repeating: 0, count: n * head.rows)
        logits.withUnsafeMutableBufferPointer { matmul(head, xb, rows: n, $0.baseAddress!) }
        return logits
    }

    /// A new KV cache for one sequence over this stage's layers.
    public func makeCache(_ factory: any KVCacheFactory) -> any SequenceKVCache {
        factory.makeCache(layers: weights.layers.count, shape: shape, rope: rope)
    }
}
