import Foundation

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
        let v = UnsafeMutablePointer<Double>.allocate(capacity: max(n * n, 1))
        defer {
            m.deallocate()
            v.deallocate()
        }
        for i in 0..<n {
            for j in 0..<n {
                m[i * n + j] = i <= j ? a[i * n + j] : a[j * n + i]
                v[i * n + j] = i == j ? 1 : 0
            }
        }
        var vec = [Double](repeating: 0, count: n * n)
        switch method {
        case .jacobi:
            sweeps = Self.jacobi(m, v, n: n, maxSweeps: maxSweeps)
            let order = (0..<n).sorted { m[$0 * n + $0] > m[$1 * n + $1] }
            values = order.map { m[$0 * n + $0] }
            for (k, src) in order.enumerated() {
                for i in 0..<n { vec[k * n + i] = v[src * n + i] }
            }
        case .householderQL:
            // m becomes the eigenvector matrix (columns), d the eigenvalues.
            let d = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
            let e = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
            defer {
                d.deallocate()
                e.deallocate()
            }
            if n > 0 {
                Self.tred2(m, d, e, n: n)
                sweeps = Self.tql2(m, d, e, n: n)
            } else {
                sweeps = 0
            }
            let order = (0..<n).sorted { d[$0] > d[$1] }
            values = order.map { d[$0] }
            for (k, src) in order.enumerated() {
                for i in 0..<n { vec[k * n + i] = m[i * n + src] }
            }
        }
        vectors = vec
    }

    /// Householder reduction of the symmetric `v` (row-major, both triangles) to tridiagonal
    /// form: diagonal `d`, subdiagonal `e[1..<n]`; `v` becomes the accumulated orthogonal
    /// transformation. (EISPACK `tred2`, as in JAMA.)
    private static func tred2(_ v: UnsafeMutablePointer<Double>, _ d: UnsafeMutablePointer<Double>, _ e: UnsafeMutablePointer<Double>, n: Int) {
        for j in 0..<n { d[j] = v[(n - 1) * n + j] }
        for i in stride(from: n - 1, to: 0, by: -1) {
            var scale = 0.0
            var h = 0.0
            for k in 0..<i { scale += abs(d[k]) }
            if scale == 0 {
                e[i] = d[i - 1]
                for j in 0..<i {
                    d[j] = v[(i - 1) * n + j]
                    v[i * n + j] = 0
                    v[j * n + i] = 0
                }
            } else {
                for k in 0..<i {
                    d[k] /= scale
                    h += d[k] * d[k]
                }
                var f = d[i - 1]
                var g = h.squareRoot()
                if f > 0 { g = -g }
                e[i] = scale * g
                h -= f * g
                d[i - 1] = f - g
                for j in 0..<i { e[j] = 0 }
                for j in 0..<i {
                    f = d[j]
                    v[j * n + i] = f
                    g = e[j] + v[j * n + j] * f
                    if j + 1 <= i - 1 {
                        for k in (j + 1)...(i - 1) {
                            g += v[k * n + j] * d[k]
                            e[k] += v[k * n + j] * f
                        }
                    }
                    e[j] = g
                }
                f = 0
                for j in 0..<i {
                    e[j] /= h
                    f += e[j] * d[j]
                }
                let hh = f / (h + h)
                for j in 0..<i { e[j] -= hh * d[j] }
                for j in 0..<i {
                    f = d[j]
                    g = e[j]
                    for k in j...(i - 1) { v[k * n + j] -= f * e[k] + g * d[k] }
                    d[j] = v[(i - 1) * n + j]
                    v[i * n + j] = 0
                }
            }
            d[i] = h
        }
        // Accumulate the transformations.
        for i in 0..<(n - 1) {
            v[(n - 1) * n + i] = v[i * n + i]
            v[i * n + i] = 1
            let h = d[i + 1]
            if h != 0 {
                for k in 0...i { d[k] = v[k * n + i + 1] / h }
                for j in 0...i {
                    var g = 0.0
                    for k in 0...i { g += v[k * n + i + 1] * v[k * n + j] }
                    for k in 0...i { v[k * n + j] -= g * d[k] }
                }
            }
            for k in 0...i { v[k * n + i + 1] = 0 }
        }
        for j in 0..<n {
            d[j] = v[(n - 1) * n + j]
            v[(n - 1) * n + j] = 0
        }
        v[(n - 1) * n + n - 1] = 1
        e[0] = 0
    }

    /// Implicit QL on the tridiagonal (`d`, `e`), accumulating rotations into the columns of
    /// `v`. Returns the number of QL iterations. (EISPACK `tql2`, as in JAMA.)
    private static func tql2(_ v: UnsafeMutablePointer<Double>, _ d: UnsafeMutablePointer<Double>, _ e: UnsafeMutablePointer<Double>, n: Int) -> Int {
        for i in 1..<max(n, 1) { e[i - 1] = e[i] }
        e[n - 1] = 0
        var f = 0.0
        var tst1 = 0.0
        let eps = Double.ulpOfOne
        var iterations = 0
        for l in 0..<n {
            tst1 = max(tst1, abs(d[l]) + abs(e[l]))
            var m = l
            while m < n {
                if abs(e[m]) <= eps * tst1 { break }
                m += 1
            }
            if m == n { m = n - 1 }
            if m > l {
                repeat {
                    iterations += 1
                    var g = d[l]
                    var p = (d[l + 1] - g) / (2 * e[l])
                    var r = hypot(p, 1)
                    if p < 0 { r = -r }
                    d[l] = e[l] / (p + r)
                    d[l + 1] = e[l] * (p + r)
                    let dl1 = d[l + 1]
                    var h = g - d[l]
                    if l + 2 < n {
                        for i in (l + 2)..<n { d[i] -= h }
                    }
                    f += h
                    p = d[m]
                    var c = 1.0, c2 = 1.0, c3 = 1.0
                    let el1 = e[l + 1]
                    var s = 0.0, s2 = 0.0
                    for i in stride(from: m - 1, through: l, by: -1) {
                        c3 = c2
                        c2 = c
                        s2 = s
                        g = c * e[i]
                        h = c * p
                        r = hypot(p, e[i])
                        e[i + 1] = s * r
                        s = e[i] / r
                        c = p / r
                        p = c * d[i] - s * g
                        d[i + 1] = h + s * (c * g + s * d[i])
                        for k in 0..<n {
                            let vk = v + k * n
                            h = vk[i + 1]
                            vk[i + 1] = s * vk[i] + c * h
                            vk[i] = c * vk[i] - s * h
                        }
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1
                    e[l] = s * p
                    d[l] = c * p
                } while abs(e[l]) > eps * tst1 && iterations < 30 * n
            }
            d[l] += f
            e[l] = 0
        }
        return iterations
    }

    /// Runs cyclic sweeps of rotations on `m` (symmetric, both triangles kept) and accumulates
    /// them into the rows of `v` (row k = eigenvector k). Returns the number of sweeps.
    private static func jacobi(_ m: UnsafeMutablePointer<Double>, _ v: UnsafeMutablePointer<Double>, n: Int, maxSweeps: Int) -> Int {
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
