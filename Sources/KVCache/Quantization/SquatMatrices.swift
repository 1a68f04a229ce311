import CKernels

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
/// the inverse (Cholesky: `A` is symmetric positive definite) then run in Double. With λ = 0.001 this reproduces the reference's codes
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
            var next = [Double](repeating: 0, count: c * c)
            // Rows as pointers so that the inner loops (contiguous, one element each) vectorise;
            // every element's sum still runs over k in order.
            cur.withUnsafeBufferPointer { cb in
                let cp = cb.baseAddress!
                x.withUnsafeMutableBufferPointer { xb in
                    let xp = xb.baseAddress!
                    for i in 0..<qgs {
                        for k in 0..<qgs {
                            let w = oInv[i * qgs + k]
                            if w == 0 { continue }
                            Self.addScaled(xp + i * c, cp + (c + k) * n, w, count: c)
                        }
                    }
                    next.withUnsafeMutableBufferPointer { nextBuffer in
                        let np = nextBuffer.baseAddress!
                        for i in 0..<c {
                            let acc = np + i * c  // Σ_k cur[c+k][i]·x[k][·], then cur[i][·] − it
                            for k in 0..<qgs { Self.addScaled(acc, xp + k * c, cp[(c + k) * n + i], count: c) }
                            for j in 0..<c { acc[j] = cp[i * n + j] - acc[j] }
                        }
                    }
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
        pInv = DenseMatrix.symmetricPositiveDefiniteInverse(mats[nb - 1], n: D)
    }

    /// `y[j] += w·x[j]` for `j < count`.
    @inline(__always)
    static func addScaled(_ y: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, _ w: Double, count: Int) {
        for j in 0..<count { y[j] += w * x[j] }
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
            let r = D - c
            // pt[k][b] = P_inv[c+b][k], so that each row of w sums over k in order, contiguously.
            var pt = [Double](repeating: 0, count: c * r)
            for b in 0..<r {
                for k in 0..<c { pt[k * r + b] = pInv[(c + b) * D + k] }
            }
            var w = [Double](repeating: 0, count: qgs * r)
            pt.withUnsafeBufferPointer { ptb in
                w.withUnsafeMutableBufferPointer { wb in
                    for a in 0..<qgs {
                        for k in 0..<c {
                            Self.addScaled(wb.baseAddress! + a * r, ptb.baseAddress! + k * r, m[k * qgs + a], count: r)
                        }
                    }
                }
            }
            return w
        }
    }
}

/// Small dense Double linear algebra for the SQuat matrices.
enum DenseMatrix {
    /// Inverse of the `n × n` row-major matrix `a` by Gauss–Jordan elimination with partial
    /// pivoting (C kernel `sq_inverse_f64`). A zero pivot (a singular matrix) leaves non-finite
    /// entries.
    static func inverse(_ a: [Double], n: Int) -> [Double] {
        precondition(a.count == n * n, "expected an \(n)×\(n) matrix")
        guard n > 0 else { return [] }
        var work = [Double](repeating: 0, count: 2 * n * n)
        var out = [Double](repeating: 0, count: n * n)
        a.withUnsafeBufferPointer { a in
            work.withUnsafeMutableBufferPointer { w in
                out.withUnsafeMutableBufferPointer { o in
                    sq_inverse_f64(a.baseAddress!, Int32(n), w.baseAddress!, o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Inverse of the symmetric positive definite `n × n` matrix `a` (such as `I + λ·Q̂ᵀQ̂`) by
    /// Cholesky (C kernel `sq_spd_inverse_f64`); Gauss–Jordan when a pivot is not positive.
    static func symmetricPositiveDefiniteInverse(_ a: [Double], n: Int) -> [Double] {
        precondition(a.count == n * n, "expected an \(n)×\(n) matrix")
        guard n > 0 else { return [] }
        var work = [Double](repeating: 0, count: n * n)
        var out = [Double](repeating: 0, count: n * n)
        let status = a.withUnsafeBufferPointer { a in
            work.withUnsafeMutableBufferPointer { w in
                out.withUnsafeMutableBufferPointer { o in
                    sq_spd_inverse_f64(a.baseAddress!, Int32(n), w.baseAddress!, o.baseAddress!)
                }
            }
        }
        return status == 0 ? out : inverse(a, n: n)
    }
}
