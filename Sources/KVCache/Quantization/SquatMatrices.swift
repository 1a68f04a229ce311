/// The matrices of SQuat's sequential key quantization for one KV head: the reference's
/// `generate_At_inv(quant_group_size, Q̂, λ)` (README step 5).
///
/// With `nb = headDim / quantGroupSize` channel blocks of `qgs` channels:
/// `A = I + λ·Q̂ᵀQ̂`, `mats[nb−1] = A`; then for `t = nb−1 … 1`, `c = t·qgs`:
/// `A ← A[:c,:c] − A[c:c+qgs,:c]ᵀ · (A[c:c+qgs,c:c+qgs] + 1e−7·I)⁻¹ · A[c:c+qgs,:c]` and
/// `mats[t−1] = A[:, c−qgs:c]` (its last `qgs` columns, `c × qgs`); `P_inv = A_T⁻¹`.
///
/// Precision: `A` is formed in Double from the Double `Q̂ᵀQ̂` and rounded to Float, exactly the
/// Float matrix the reference starts from (and stores as `Ainv_t_{nb−1}`); the Schur chain and
/// the inverse then run in Double. With λ = 0.001 this reproduces the reference's codes
/// exactly; with λ = 1 `A` has a condition number near 1e5 and the reference's own Float chain
/// carries that noise, so no precision choice matches it bit for bit (README: compare with a
/// mismatch budget). Double is then the better-conditioned choice.
public struct SquatMatrices: Sendable {
    public let headDim: Int
    public let quantGroupSize: Int
    /// `mats[i]`, row-major: `((i+1)·qgs) × qgs` for `i < nb−1`; `mats[nb−1] = A_T`, `D × D`.
    public let mats: [[Double]]
    /// `A_T⁻¹`, `D × D` row-major.
    public let pInv: [Double]

    /// Number of channel blocks.
    public var blocks: Int { headDim / quantGroupSize }

    /// The Schur-complement regularizer of the reference (`tol`).
    public static let schurTolerance = 1e-7

    /// `generate_At_inv` from `Q̂ᵀQ̂` (`headDim × headDim`).
    public init(projectedGram: [Double], headDim D: Int, quantGroupSize qgs: Int, lambda: Double) {
        precondition(qgs > 0 && D % qgs == 0, "quant group size \(qgs) must divide the head dimension \(D)")
        precondition(projectedGram.count == D * D, "Q̂ᵀQ̂ must be \(D)×\(D)")
        headDim = D
        quantGroupSize = qgs
        let nb = D / qgs
        var a = [Double](repeating: 0, count: D * D)
        for i in 0..<D {
            for j in 0..<D {
                let v = (i == j ? 1 : 0) + lambda * projectedGram[i * D + j]
                a[i * D + j] = Double(Float(v))
            }
        }
        var mats = [[Double]](repeating: [], count: nb)
        mats[nb - 1] = a
        var cur = a
        var n = D
        for t in stride(from: nb - 1, through: 1, by: -1) {
            let c = t * qgs
            // O + tol·I and N = cur[c..<c+qgs, 0..<c].
            var o = [Double](repeating: 0, count: qgs * qgs)
            for i in 0..<qgs {
                for j in 0..<qgs { o[i * qgs + j] = cur[(c + i) * n + c + j] }
                o[i * qgs + i] += Self.schurTolerance
            }
            let oInv = DenseMatrix.inverse(o, n: qgs)
            var x = [Double](repeating: 0, count: qgs * c)  // O⁻¹·N
            for i in 0..<qgs {
                for k in 0..<qgs {
                    let w = oInv[i * qgs + k]
                    if w == 0 { continue }
                    for j in 0..<c { x[i * c + j] += w * cur[(c + k) * n + j] }
                }
            }
            var next = [Double](repeating: 0, count: c * c)
            for i in 0..<c {
                for j in 0..<c {
                    var s = 0.0
                    for k in 0..<qgs { s += cur[(c + k) * n + i] * x[k * c + j] }
                    next[i * c + j] = cur[i * n + j] - s
                }
            }
            var m = [Double](repeating: 0, count: c * qgs)
            for i in 0..<c {
                for j in 0..<qgs { m[i * qgs + j] = next[i * c + c - qgs + j] }
            }
            mats[t - 1] = m
            cur = next
            n = c
        }
        self.mats = mats
        pInv = DenseMatrix.inverse(mats[nb - 1], n: D)
    }

    /// Given matrices, e.g. the reference's stored `Ainv_t_i` (row-major, shapes as `mats`) and `P_inv`.
    public init(mats: [[Double]], pInv: [Double], headDim D: Int, quantGroupSize qgs: Int) {
        precondition(qgs > 0 && D % qgs == 0, "quant group size \(qgs) must divide the head dimension \(D)")
        let nb = D / qgs
        precondition(mats.count == nb, "expected \(nb) matrices")
        for i in 0..<(nb - 1) {
            precondition(mats[i].count == (i + 1) * qgs * qgs, "mats[\(i)] must be \((i + 1) * qgs)×\(qgs)")
        }
        precondition(mats[nb - 1].count == D * D && pInv.count == D * D, "A_T and P_inv must be \(D)×\(D)")
        headDim = D
        quantGroupSize = qgs
        self.mats = mats
        self.pInv = pInv
    }

    /// The compensation matrices SQuat applies after each block but the last:
    /// `W_i = mats[i]ᵀ · P_inv[(i+1)qgs:, :(i+1)qgs]ᵀ`, `qgs × (D − (i+1)·qgs)`, row-major, so
    /// that the reference's update `(d·mats[i]ᵀ)·P_inv[(i+1)qgs:, :(i+1)qgs]ᵀ` is `d·W_i`.
    public func compensationMatrices() -> [[Double]] {
        let D = headDim
        let qgs = quantGroupSize
        return (0..<(blocks - 1)).map { i in
            let c = (i + 1) * qgs
            let m = mats[i]
            var w = [Double](repeating: 0, count: qgs * (D - c))
            for a in 0..<qgs {
                for b in 0..<(D - c) {
                    var s = 0.0
                    for k in 0..<c { s += m[k * qgs + a] * pInv[(c + b) * D + k] }
                    w[a * (D - c) + b] = s
                }
            }
            return w
        }
    }
}

/// Small dense Double linear algebra for the SQuat matrices.
enum DenseMatrix {
    /// Inverse of the `n × n` row-major matrix `a` by Gauss–Jordan elimination with partial
    /// pivoting. A zero pivot (a singular matrix) leaves non-finite entries.
    static func inverse(_ a: [Double], n: Int) -> [Double] {
        let w = 2 * n
        var m = [Double](repeating: 0, count: n * w)
        for i in 0..<n {
            for j in 0..<n { m[i * w + j] = a[i * n + j] }
            m[i * w + n + i] = 1
        }
        m.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            for col in 0..<n {
                var piv = col
                for r in (col + 1)..<n where abs(p[r * w + col]) > abs(p[piv * w + col]) { piv = r }
                if piv != col {
                    for j in 0..<w {
                        let t = p[piv * w + j]
                        p[piv * w + j] = p[col * w + j]
                        p[col * w + j] = t
                    }
                }
                let inv = 1 / p[col * w + col]
                for j in 0..<w { p[col * w + j] *= inv }
                for r in 0..<n where r != col {
                    let f = p[r * w + col]
                    if f == 0 { continue }
                    for j in 0..<w { p[r * w + j] -= f * p[col * w + j] }
                }
            }
        }
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n { out[i * n + j] = m[i * w + n + j] }
        }
        return out
    }
}
