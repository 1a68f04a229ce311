import CKernels

/// Accumulates `MᵀM` (in Double) for the rows of a query matrix `M`, in any order and in any
/// number of calls: the Gram matrix does not depend on row order, so rows can be added straight
/// from a token-major cache layout although the reference stacks them head-major.
public struct GramAccumulator: Sendable {
    public let headDim: Int
    /// Rows added so far.
    public private(set) var rows = 0
    /// Upper triangle of `MᵀM`, `headDim × headDim` row-major (the lower triangle stays 0
    /// until `gram` mirrors it).
    private var upper: [Double]

    public init(headDim: Int) {
        self.headDim = headDim
        upper = [Double](repeating: 0, count: headDim * headDim)
    }

    /// Adds `count` rows of `headDim` Floats, row `r` at `x + r·rowStride` (C kernel
    /// `sq_gram_f64`: AVX2/FMA when available, the same bits either way).
    public mutating func add(_ x: UnsafePointer<Float>, count: Int, rowStride: Int) {
        let D = headDim
        guard count > 0, D > 0 else { return }
        upper.withUnsafeMutableBufferPointer { g in
            // Products of two Floats are exact in Double; only the sums round.
            sq_gram_f64(x, Int64(count), Int64(rowStride), Int32(D), g.baseAddress!)
        }
        rows += count
    }

    /// `MᵀM`, symmetric, `headDim × headDim` row-major.
    public var gram: [Double] {
        var out = upper
        let D = headDim
        for i in 0..<D {
            for j in 0..<i { out[i * D + j] = upper[j * D + i] }
        }
        return out
    }
}

/// The SQuat query subspace of one KV head (README step 4).
///
/// The reference takes `M` = the post-RoPE prompt queries of the KV head's `g` query heads
/// stacked (`g·T × D`), runs `svd(M)` and keeps `Q̂ = diag(S[:sd])·Vh[:sd]` with
/// `sd = min(subspaceDim, g·T)`. The rows of `Q̂` have arbitrary signs; everything downstream
/// uses only `Q̂ᵀQ̂ = Σ_{i<sd} s_i²·v_i·v_iᵀ`, which is what this type computes, from the
/// eigen-decomposition of `MᵀM` (Double accumulation; Householder + QL by default, cyclic
/// Jacobi on request: both agree to ~1e-15 and match the reference to ~1e-6).
public struct QuerySubspace: Sendable {
    public let headDim: Int
    /// Rows of `M` (`g·T`).
    public let rows: Int
    /// `sd = min(subspaceDim, rows)`.
    public let subspaceDim: Int
    /// The `min(rows, headDim)` singular values of `M`, descending.
    public let singularValues: [Double]
    /// `Q̂ᵀQ̂`, `headDim × headDim` row-major.
    public let projectedGram: [Double]
    /// Jacobi sweeps or QL iterations of the eigen-solver.
    public let solverIterations: Int
    /// `MᵀM`, `headDim × headDim` row-major.
    public let gram: [Double]

    /// From an accumulated `MᵀM`.
    public init(
        gram accumulator: GramAccumulator, subspaceDim: Int, method: SymmetricEigendecomposition.Method = .householderQL
    ) {
        self.init(
            gram: accumulator.gram, rows: accumulator.rows, headDim: accumulator.headDim, subspaceDim: subspaceDim,
            method: method)
    }

    /// From `MᵀM` (`headDim × headDim`, symmetric) of a matrix with `rows` rows.
    public init(
        gram: [Double], rows: Int, headDim: Int, subspaceDim: Int,
        method: SymmetricEigendecomposition.Method = .householderQL
    ) {
        precondition(subspaceDim > 0, "subspace dimension must be positive")
        self.headDim = headDim
        self.rows = rows
        self.gram = gram
        let sd = min(subspaceDim, rows)
        self.subspaceDim = sd
        let eig = SymmetricEigendecomposition(symmetric: gram, n: headDim, method: method)
        solverIterations = eig.sweeps
        singularValues = eig.values.prefix(min(rows, headDim)).map { $0 > 0 ? $0.squareRoot() : 0 }
        // Σ s_i² v_i v_iᵀ with s_i² = max(λ_i, 0).
        var p = [Double](repeating: 0, count: headDim * headDim)
        eig.vectors.withUnsafeBufferPointer { vb in
            p.withUnsafeMutableBufferPointer { pb in
                for k in 0..<min(sd, headDim) {
                    let w = max(eig.values[k], 0)
                    let v = vb.baseAddress! + k * headDim
                    for i in 0..<headDim {
                        SquatMatrices.addScaled(pb.baseAddress! + i * headDim, v, w * v[i], count: headDim)
                    }
                }
            }
        }
        projectedGram = p
    }

    /// From `heads × tokens` query rows of `headDim` Floats: row (head `h`, token `t`) at
    /// `queries + h·headStride + t·tokenStride`. For the reference layout `[g, T, D]` use
    /// `headStride = T·D, tokenStride = D`; for a token-major cache row `[T, kvHeads·g·D]`
    /// starting at the KV head's first query head use `headStride = D, tokenStride = qDim`.
    public init(
        queries: UnsafePointer<Float>, heads: Int, tokens: Int, headStride: Int, tokenStride: Int,
        headDim: Int, subspaceDim: Int, method: SymmetricEigendecomposition.Method = .householderQL
    ) {
        var acc = GramAccumulator(headDim: headDim)
        for h in 0..<heads {
            acc.add(queries + h * headStride, count: tokens, rowStride: tokenStride)
        }
        self.init(gram: acc, subspaceDim: subspaceDim, method: method)
    }
}
