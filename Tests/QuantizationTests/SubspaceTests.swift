import CKernels
import Foundation
import Testing

@testable import KVCache

@Suite struct JacobiEigenTests {
    static func randomSymmetric(_ n: Int, seed: UInt64) -> [Double] {
        var rng = TestRNG(seed: seed)
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                let v = rng.normal()
                a[i * n + j] = v
                a[j * n + i] = v
            }
        }
        return a
    }

    @Test(arguments: [1, 2, 3, 7, 32, 64, 128], [SymmetricEigendecomposition.Method.jacobi, .householderQL])
    func reconstructsRandomSymmetricMatrices(n: Int, method: SymmetricEigendecomposition.Method) {
        let a = Self.randomSymmetric(n, seed: UInt64(n))
        let eig = SymmetricEigendecomposition(symmetric: a, n: n, method: method)
        let norm = a.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let back = eig.reconstruct()
        let err = zip(back, a).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        #expect(err / norm < 1e-13, "reconstruction error \(err / norm)")
        // Orthonormal eigenvectors, eigenvalues descending.
        var worst = 0.0
        for p in 0..<n {
            for q in 0..<n {
                let dot = (0..<n).reduce(0.0) { $0 + eig.vectors[p * n + $1] * eig.vectors[q * n + $1] }
                worst = max(worst, abs(dot - (p == q ? 1 : 0)))
            }
        }
        #expect(worst < 1e-13)
        #expect(zip(eig.values, eig.values.dropFirst()).allSatisfy { $0 >= $1 })
        if method == .jacobi { #expect(eig.sweeps < 20) } else { #expect(eig.sweeps <= 30 * n) }
        // Trace is preserved.
        let trace = (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] }
        #expect(abs(eig.values.reduce(0, +) - trace) < 1e-12 * max(1, norm))
    }

    @Test(arguments: [SymmetricEigendecomposition.Method.jacobi, .householderQL])
    func gramMatrixWithWideDynamicRangeAndRepeatedEigenvalues(method: SymmetricEigendecomposition.Method) {
        // Eigenvalues 1e6, 1e6, 1, 1e-4, 0 … in a random orthonormal basis.
        let n = 24
        let q = orthonormalBasis(n, seed: 5)
        var lambdas = [Double](repeating: 0, count: n)
        lambdas[0] = 1e6
        lambdas[1] = 1e6
        lambdas[2] = 1
        lambdas[3] = 1e-4
        var a = [Double](repeating: 0, count: n * n)
        for k in 0..<n {
            for i in 0..<n {
                for j in 0..<n { a[i * n + j] += lambdas[k] * q[k][i] * q[k][j] }
            }
        }
        let eig = SymmetricEigendecomposition(symmetric: a, n: n, method: method)
        for k in 0..<n { #expect(abs(eig.values[k] - lambdas[k]) < 1e-8, "λ\(k) = \(eig.values[k])") }
        // The top-2 eigenspace (a repeated eigenvalue) is recovered as a subspace.
        let p2 = eig.reconstruct(rank: 2)
        var want = [Double](repeating: 0, count: n * n)
        for k in 0..<2 { for i in 0..<n { for j in 0..<n { want[i * n + j] += 1e6 * q[k][i] * q[k][j] } } }
        #expect(maxAbsDiff(p2, want) < 1e-8)
    }

    @Test(arguments: [SymmetricEigendecomposition.Method.jacobi, .householderQL])
    func diagonalAndTinyInputs(method: SymmetricEigendecomposition.Method) {
        let eig = SymmetricEigendecomposition(symmetric: [2, 0, 0, 0, -1, 0, 0, 0, 5], n: 3, method: method)
        #expect(eig.values == [5, 2, -1])
        #expect(SymmetricEigendecomposition(symmetric: [4], n: 1, method: method).values == [4])
        #expect(SymmetricEigendecomposition(symmetric: [0, 0, 0, 0], n: 2, method: method).values == [0, 0])
    }

    @Test func methodsAgree() {
        for n in [16, 64, 128] {
            let a = Self.randomSymmetric(n, seed: 99)
            let j = SymmetricEigendecomposition(symmetric: a, n: n, method: .jacobi)
            let q = SymmetricEigendecomposition(symmetric: a, n: n, method: .householderQL)
            #expect(maxAbsDiff(j.values, q.values) < 1e-12 * abs(j.values[0]))
        }
    }
}

/// `count` (default `n`) orthonormal random vectors of length `n` (Gram–Schmidt twice).
func orthonormalBasis(_ n: Int, seed: UInt64, count: Int? = nil) -> [[Double]] {
    var rng = TestRNG(seed: seed)
    var rows: [[Double]] = []
    for _ in 0..<(count ?? n) {
        var v = (0..<n).map { _ in rng.normal() }
        for _ in 0..<2 {
            for r in rows {
                let d = zip(v, r).reduce(0) { $0 + $1.0 * $1.1 }
                for i in 0..<n { v[i] -= d * r[i] }
            }
        }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        rows.append(v.map { $0 / norm })
    }
    return rows
}

@Suite struct QuerySubspaceTests {
    @Test(arguments: [(64, 1, 32), (64, 2, 32), (128, 4, 96), (64, 3, 160)])
    func knownSingularValues(headDim D: Int, groups g: Int, tokens T: Int) {
        // M = U·diag(s)·Vᵀ with known s (rank ≤ min(g·T, D)).
        let rows = g * T
        let rank = min(rows, D)
        let s = (0..<rank).map { 50 * Foundation.pow(0.9, Double($0)) + 0.01 }
        let u = orthonormalBasis(rows, seed: 1, count: rank)  // left singular vectors
        let v = orthonormalBasis(D, seed: 2)
        var m = [Float](repeating: 0, count: rows * D)
        for r in 0..<rows {
            for j in 0..<D {
                var x = 0.0
                for k in 0..<rank { x += u[k][r] * s[k] * v[k][j] }
                m[r * D + j] = Float(x)
            }
        }
        let sub = m.withUnsafeBufferPointer {
            QuerySubspace(
                queries: $0.baseAddress!, heads: g, tokens: T, headStride: T * D, tokenStride: D,
                headDim: D, subspaceDim: 20)
        }
        #expect(sub.singularValues.count == rank)
        #expect(sub.subspaceDim == min(20, rows))
        // Float rounding of M limits the accuracy to about 1e-7 of s_max.
        for k in 0..<rank { #expect(abs(sub.singularValues[k] - s[k]) < 2e-6 * s[0], "σ\(k)") }
        // Q̂ᵀQ̂ = Σ_{k<sd} s_k² v_k v_kᵀ.
        var p = [Double](repeating: 0, count: D * D)
        for k in 0..<sub.subspaceDim {
            for i in 0..<D { for j in 0..<D { p[i * D + j] += s[k] * s[k] * v[k][i] * v[k][j] } }
        }
        #expect(maxAbsDiff(sub.projectedGram, p) < 1e-5 * s[0] * s[0])
    }

    @Test func rowOrderDoesNotMatter() {
        // Token-major cache layout [T, kv·g·D] against the reference's head-major stacking.
        let kv = 2
        let g = 3
        let T = 64
        let D = 64
        var rng = TestRNG(seed: 21)
        let headMajor = rng.floats(kv * g * T * D)  // [kv·g, T, D]
        var tokenMajor = [Float](repeating: 0, count: T * kv * g * D)
        for h in 0..<(kv * g) {
            for t in 0..<T {
                for d in 0..<D { tokenMajor[t * kv * g * D + h * D + d] = headMajor[(h * T + t) * D + d] }
            }
        }
        let shape = AttentionShape(kvHeads: kv, groupSize: g, headDim: D)
        let params = QuantizationParameters(kBits: 2, vBits: 2, subspaceDim: 20, lambda: 0.001, quantGroupSize: 16)
        let layer = tokenMajor.withUnsafeBufferPointer {
            SquatLayerState(
                queries: $0.baseAddress!, tokens: T, shape: shape, params: params, parallel: Parallel(threads: 2))
        }
        for h in 0..<kv {
            let sub = headMajor.withUnsafeBufferPointer {
                QuerySubspace(
                    queries: $0.baseAddress! + h * g * T * D, heads: g, tokens: T, headStride: T * D,
                    tokenStride: D, headDim: D, subspaceDim: 20)
            }
            let state = SquatHeadState(subspace: sub, params: params)
            for (a, b) in zip(layer.heads[h].compensation, state.compensation) {
                let scale = b.reduce(0) { max($0, abs(Double($1))) }
                #expect(maxAbsDiff(a, b) <= 1e-5 * scale)
            }
        }
    }
}

/// `sq_gram_f64`: AVX2 and scalar paths give the same bits, and match a plain Double sum.
@Suite(.serialized) struct GramKernelTests {
    @Test(arguments: [(64, 37), (128, 9), (22, 5), (64, 1)])
    func scalarAndAVX2Agree(headDim D: Int, rows: Int) {
        var rng = TestRNG(seed: UInt64(D * rows))
        let stride = D + 3
        let x = rng.floats(rows * stride, scale: 10)
        func run(scalar: Bool) -> [Double] {
            var g = [Double](repeating: 0, count: D * D)
            let prev = sq_force_scalar(scalar ? 1 : 0)
            defer { _ = sq_force_scalar(prev) }
            x.withUnsafeBufferPointer { xp in
                g.withUnsafeMutableBufferPointer {
                    sq_gram_f64(xp.baseAddress!, Int64(rows), Int64(stride), Int32(D), $0.baseAddress!)
                }
            }
            return g
        }
        let fast = run(scalar: false)
        let slow = run(scalar: true)
        #expect(fast == slow)
        var worst = 0.0
        var scale = 0.0
        for i in 0..<D {
            for j in i..<D {
                let want = (0..<rows).reduce(0.0) { $0 + Double(x[$1 * stride + i]) * Double(x[$1 * stride + j]) }
                worst = max(worst, abs(fast[i * D + j] - want))
                scale = max(scale, abs(want))
            }
            for j in 0..<i { #expect(fast[i * D + j] == 0) }  // below the diagonal: untouched
        }
        #expect(worst <= 1e-13 * scale)
    }
}

/// `sq_symmetric_eigen_f64` and `sq_inverse_f64` (the SQuat prefill's eigen-decomposition and
/// inverses): the AVX2 and plain builds give the same bits, and the results are right.
@Suite(.serialized) struct DenseKernelTests {
    static func withPath<T>(scalar: Bool, _ body: () -> T) -> T {
        let prev = sq_force_scalar(scalar ? 1 : 0)
        defer { _ = sq_force_scalar(prev) }
        return body()
    }

    /// Eigenvalues (unsorted), eigenvectors as rows, QL iterations.
    static func eigen(_ a: [Double], n: Int, scalar: Bool) -> (d: [Double], v: [Double], iterations: Int32) {
        var v = a
        var d = [Double](repeating: .nan, count: n)
        var e = [Double](repeating: .nan, count: n)
        let it = withPath(scalar: scalar) { sq_symmetric_eigen_f64(&v, &d, &e, Int32(n)) }
        return (d, v, it)
    }

    /// Random symmetric matrices, dense, and reducible: block-diagonal with a zero coupling and
    /// a zero row/column in the middle, so that tred2's zero-scale branch and tql2's split at a
    /// negligible subdiagonal run on non-trivial eigenvectors.
    static func testMatrix(_ n: Int, reducible: Bool) -> [Double] {
        var a = JacobiEigenTests.randomSymmetric(n, seed: UInt64(900 + n + (reducible ? 1000 : 0)))
        guard reducible else { return a }
        let split = n / 2
        for i in 0..<n {
            for j in 0..<n where (i < split) != (j < split) || i == split / 2 || j == split / 2 {
                a[i * n + j] = 0
            }
        }
        return a
    }

    @Test(arguments: [1, 2, 5, 31, 64, 100], [false, true])
    func eigenPathsAgreeAndDecompose(n: Int, reducible: Bool) {
        let a = Self.testMatrix(n, reducible: reducible)
        let fast = Self.eigen(a, n: n, scalar: false)
        let slow = Self.eigen(a, n: n, scalar: true)
        #expect(fast.d.map(\.bitPattern) == slow.d.map(\.bitPattern))
        #expect(fast.v.map(\.bitPattern) == slow.v.map(\.bitPattern))
        #expect(fast.iterations == slow.iterations)
        // A·v_k = d_k·v_k and V·Vᵀ = I.
        let norm = a.reduce(0) { max($0, abs($1)) } * Double(n)
        var worstResidual = 0.0
        var worstOrtho = 0.0
        for k in 0..<n {
            for i in 0..<n {
                let av = (0..<n).reduce(0.0) { $0 + a[i * n + $1] * fast.v[k * n + $1] }
                worstResidual = max(worstResidual, abs(av - fast.d[k] * fast.v[k * n + i]))
            }
            for l in 0..<n {
                let dot = (0..<n).reduce(0.0) { $0 + fast.v[k * n + $1] * fast.v[l * n + $1] }
                worstOrtho = max(worstOrtho, abs(dot - (k == l ? 1 : 0)))
            }
        }
        #expect(worstResidual <= 1e-12 * norm, "n=\(n): residual \(worstResidual)")
        #expect(worstOrtho <= 1e-12, "n=\(n): orthogonality \(worstOrtho)")
    }

    @Test func eigenOfZeroAndDiagonalMatrices() {
        let zero = Self.eigen([Double](repeating: 0, count: 16), n: 4, scalar: false)
        #expect(zero.d == [0, 0, 0, 0])
        let diag = Self.eigen([3, 0, 0, 0, -2, 0, 0, 0, 7], n: 3, scalar: false)
        #expect(diag.d.sorted() == [-2, 3, 7])
    }

    /// A general matrix (pivoting needed) and SQuat's `I + λ·Q̂ᵀQ̂` shape: A·A⁻¹ = I, both paths the same bits.
    @Test(arguments: [1, 3, 32, 64, 77])
    func inversePathsAgreeAndInvert(n: Int) {
        var rng = TestRNG(seed: UInt64(40 + n))
        let general = (0..<(n * n)).map { _ in rng.normal() }
        let low = (0..<(n * 20)).map { _ in rng.normal() * 30 }  // 20 × n rows of "queries"
        var spd = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                spd[i * n + j] =
                    (i == j ? 1 : 0) + 0.001 * (0..<20).reduce(0.0) { $0 + low[$1 * n + i] * low[$1 * n + j] }
            }
        }
        for a in [general, spd] {
            func run(scalar: Bool) -> [Double] {
                var work = [Double](repeating: .nan, count: 2 * n * n)
                var out = [Double](repeating: .nan, count: n * n)
                Self.withPath(scalar: scalar) { sq_inverse_f64(a, Int32(n), &work, &out) }
                return out
            }
            let fast = run(scalar: false)
            let slow = run(scalar: true)
            #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
            var worst = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    let p = (0..<n).reduce(0.0) { $0 + a[i * n + $1] * fast[$1 * n + j] }
                    worst = max(worst, abs(p - (i == j ? 1 : 0)))
                }
            }
            #expect(worst <= 1e-9, "n=\(n): max |A·A⁻¹ − I| = \(worst)")
        }
    }

    /// The Cholesky inverse of SQuat's `I + λ·Q̂ᵀQ̂` (λ 0.001 and 1, condition up to ~1e5): both
    /// paths the same bits, A·A⁻¹ = I, symmetric, and within rounding of Gauss–Jordan's; a
    /// matrix that is not positive definite is refused with the output untouched.
    @Test(arguments: [1, 2, 5, 32, 64, 77, 128], [0.001, 1.0])
    func choleskyInverseOfSquatMatrices(n: Int, lambda: Double) {
        var rng = TestRNG(seed: UInt64(70 + n))
        let rows = 3 * n / 2 + 1
        var q = [Double](repeating: 0, count: rows * n)
        for k in q.indices { q[k] = rng.normal() * (1 + Double(k % n) * 0.3) }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                var gram = 0.0
                for r in 0..<rows { gram += q[r * n + i] * q[r * n + j] }
                a[i * n + j] = (i == j ? 1 : 0) + lambda * gram
            }
        }
        func run(_ m: [Double], scalar: Bool) -> (status: Int32, out: [Double]) {
            var work = [Double](repeating: .nan, count: n * n)
            var out = [Double](repeating: .nan, count: n * n)
            let status = Self.withPath(scalar: scalar) { sq_spd_inverse_f64(m, Int32(n), &work, &out) }
            return (status, out)
        }
        let fast = run(a, scalar: false)
        let slow = run(a, scalar: true)
        #expect(fast.status == 0 && slow.status == 0)
        #expect(fast.out.map(\.bitPattern) == slow.out.map(\.bitPattern))
        var gaussJordan = [Double](repeating: .nan, count: n * n)
        var work = [Double](repeating: .nan, count: 2 * n * n)
        sq_inverse_f64(a, Int32(n), &work, &gaussJordan)
        var residual = 0.0
        var fromGJ = 0.0
        var asymmetry = 0.0
        let largest = gaussJordan.map(abs).max() ?? 0
        for i in 0..<n {
            for j in 0..<n {
                var p = 0.0
                for k in 0..<n { p += a[i * n + k] * fast.out[k * n + j] }
                residual = max(residual, abs(p - (i == j ? 1 : 0)))
                fromGJ = max(fromGJ, abs(fast.out[i * n + j] - gaussJordan[i * n + j]))
                asymmetry = max(asymmetry, abs(fast.out[i * n + j] - fast.out[j * n + i]))
            }
        }
        #expect(residual <= 1e-9, "n=\(n) λ=\(lambda): max |A·A⁻¹ − I| = \(residual)")
        #expect(fromGJ <= 1e-10 * largest, "n=\(n) λ=\(lambda): max |Cholesky − Gauss–Jordan| = \(fromGJ)")
        #expect(asymmetry == 0)
        // Indefinite: the last diagonal entry made negative enough.
        if n >= 2 {
            var bad = a
            bad[n * n - 1] = -abs(bad[n * n - 1]) - 1
            let refused = run(bad, scalar: false)
            #expect(refused.status == 1)
            #expect(refused.out.allSatisfy { $0.isNaN })
        }
    }
}
