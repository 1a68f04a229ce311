import CKernels

/// Eigen-decomposition of a real symmetric matrix, in Double.
///
/// Two methods, both accurate to about `ε·‖A‖` in the eigenvalues with orthonormal eigenvectors:
/// - `.jacobi`: cyclic Jacobi rotations. Simple and very robust, but about 6·n³ flops per
///   sweep and 8–10 sweeps: ~4 ms for n = 64, ~40 ms for n = 128.
/// - `.householderQL`: Householder reduction to tridiagonal form, then the implicit QL
///   algorithm (EISPACK `tred2`/`tql2`), several times faster; the default.
/// Both are meant for the head-dimension-sized Gram matrices of the query subspace (n ≤ 256).
public struct SymmetricEigendecomposition: Sendable {
    public enum Method: Sendable {
        case jacobi, householderQL
    }

    /// Order of the matrix.
    public let n: Int
    /// Eigenvalues, in descending order.
    public let values: [Double]
    /// Eigenvectors as rows: `vectors[k·n + i]` is component `i` of the eigenvector of `values[k]`
    /// (orthonormal; each vector's sign is arbitrary).
    public let vectors: [Double]
    /// Jacobi sweeps, or QL iterations.
    public let sweeps: Int

    /// Decomposes the symmetric `n × n` row-major matrix `a` (only its upper triangle is read).
    public init(symmetric a: [Double], n: Int, method: Method = .householderQL, maxSweeps: Int = 100) {
        precondition(a.count == n * n, "expected an \(n)×\(n) matrix")
        self.n = n
        let m = UnsafeMutablePointer<Double>.allocate(capacity: max(n * n, 1))
        defer { m.deallocate() }
        for i in 0..<n {
            for j in 0..<n { m[i * n + j] = i <= j ? a[i * n + j] : a[j * n + i] }
        }
        var vec = [Double](repeating: 0, count: n * n)
        switch method {
        case .jacobi:
            // Jacobi accumulates its rotations into the identity (row k = eigenvector k).
            let v = UnsafeMutablePointer<Double>.allocate(capacity: max(n * n, 1))
            defer { v.deallocate() }
            for i in 0..<(n * n) { v[i] = i / n == i % n ? 1 : 0 }
            sweeps = Self.jacobi(m, v, n: n, maxSweeps: maxSweeps)
            let order = (0..<n).sorted { m[$0 * n + $0] > m[$1 * n + $1] }
            values = order.map { m[$0 * n + $0] }
            for (k, src) in order.enumerated() {
                for i in 0..<n { vec[k * n + i] = v[src * n + i] }
            }
        case .householderQL:
            // m (symmetric) becomes the eigenvectors as rows, d the eigenvalues (C kernel
            // sq_symmetric_eigen_f64: EISPACK tred2/tql2 on the transpose of JAMA's V).
            let d = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
            let e = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
            defer {
                d.deallocate()
                e.deallocate()
            }
            sweeps = Int(sq_symmetric_eigen_f64(m, d, e, Int32(n)))
            let order = (0..<n).sorted { d[$0] > d[$1] }
            values = order.map { d[$0] }
            for (k, src) in order.enumerated() {
                for i in 0..<n { vec[k * n + i] = m[src * n + i] }
            }
        }
        vectors = vec
    }

    /// Runs cyclic sweeps of rotations on `m` (symmetric, both triangles kept) and accumulates
    /// them into the rows of `v` (row k = eigenvector k). Returns the number of sweeps.
    private static func jacobi(
        _ m: UnsafeMutablePointer<Double>, _ v: UnsafeMutablePointer<Double>, n: Int, maxSweeps: Int
    ) -> Int {
        var norm2 = 0.0
        for i in 0..<(n * n) { norm2 += m[i] * m[i] }
        guard norm2 > 0, n > 1 else { return 0 }
        // Converged when the off-diagonal part is below ε·‖A‖ (Frobenius).
        let target = norm2 * 1e-32
        var sweep = 0
        while sweep < maxSweeps {
            var off = 0.0
            for p in 0..<n {
                for q in (p + 1)..<n { off += m[p * n + q] * m[p * n + q] }
            }
            if 2 * off <= target { break }
            sweep += 1
            for p in 0..<(n - 1) {
                for q in (p + 1)..<n {
                    let apq = m[p * n + q]
                    if apq == 0 { continue }
                    let app = m[p * n + p]
                    let aqq = m[q * n + q]
                    // Skip rotations that cannot change the diagonal any more (after a few sweeps).
                    if sweep > 3, abs(apq) * 1e18 < abs(app), abs(apq) * 1e18 < abs(aqq) {
                        m[p * n + q] = 0
                        m[q * n + p] = 0
                        continue
                    }
                    // Zero m[p][q]: θ = cot 2φ, t = tan φ (the smaller root), c = cos φ, s = sin φ.
                    let theta = (aqq - app) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot()
                    let s = t * c
                    m[p * n + p] = app - t * apq
                    m[q * n + q] = aqq + t * apq
                    m[p * n + q] = 0
                    m[q * n + p] = 0
                    let rp = m + p * n
                    let rq = m + q * n
                    for k in 0..<n where k != p && k != q {
                        let akp = rp[k]
                        let akq = rq[k]
                        let np = c * akp - s * akq
                        let nq = s * akp + c * akq
                        rp[k] = np
                        rq[k] = nq
                        m[k * n + p] = np
                        m[k * n + q] = nq
                    }
                    let vp = v + p * n
                    let vq = v + q * n
                    for k in 0..<n {
                        let a = vp[k]
                        let b = vq[k]
                        vp[k] = c * a - s * b
                        vq[k] = s * a + c * b
                    }
                }
            }
        }
        return sweep
    }

    /// `Σ_k values[k]·v_k·v_kᵀ` over the first `rank` eigenpairs (all by default): `n × n`, row-major.
    public func reconstruct(rank: Int? = nil) -> [Double] {
        let r = min(rank ?? n, n)
        var out = [Double](repeating: 0, count: n * n)
        for k in 0..<r {
            let w = values[k]
            for i in 0..<n {
                let wi = w * vectors[k * n + i]
                if wi == 0 { continue }
                for j in 0..<n { out[i * n + j] += wi * vectors[k * n + j] }
            }
        }
        return out
    }
}
