import CKernels
import Foundation
import Testing

extension Kernels {
    /// The sampler's kernels: `sq_argmax` against the scan it replaced (lowest id on ties, NaN
    /// never wins, a NaN at 0 keeps 0), and `sq_sum_exp` against `sq_exp_sum`'s sum.
    @Suite("argmax and sum of exps") struct SamplingKernels {
        /// The sampler's former argmax: best moves to i only when x[i] > x[best].
        static func scan(_ x: [Float]) -> Int {
            var best = 0
            for i in x.indices where x[i] > x[best] { best = i }
            return best
        }

        /// Random rows of many lengths, with few distinct values (ties), NaNs, infinities and
        /// signed zeros planted at random places, including index 0 and the tails.
        static func rows() -> [[Float]] {
            var rng = SplitMix64(seed: 41)
            var rows: [[Float]] = []
            let lengths = Array(1...40) + [63, 64, 65, 127, 1000, 49152]
            let specials: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, .greatestFiniteMagnitude]
            for n in lengths {
                for variant in 0..<8 {
                    var x: [Float]
                    if variant % 2 == 0 {
                        x = (0..<n).map { _ in Float.random(in: -30..<30, using: &rng) }
                    } else {
                        x = (0..<n).map { _ in Float(Int.random(in: -3...3, using: &rng)) }
                    }
                    if variant >= 4 {
                        for _ in 0..<max(1, n / 50) {
                            x[Int.random(in: 0..<n, using: &rng)] = specials.randomElement(using: &rng)!
                        }
                    }
                    if variant == 6 { x[0] = .nan }
                    if variant == 7 { x[n - 1] = .infinity }
                    rows.append(x)
                }
            }
            rows.append([Float](repeating: -.infinity, count: 100))
            rows.append([Float](repeating: .nan, count: 100))
            rows.append([-0.0] + [Float](repeating: 0, count: 30))
            return rows
        }

        @Test("sq_argmax = the scan, on both paths")
        func argmaxMatchesScan() {
            for path in KernelPath.allCases {
                for x in Self.rows() {
                    let got = path.run { x.withUnsafeBufferPointer { Int(sq_argmax($0.baseAddress, Int64($0.count))) } }
                    #expect(got == Self.scan(x), "\(path), n=\(x.count), x[0]=\(x[0])")
                }
            }
            #expect(sq_argmax(nil, 0) == 0)
        }

        @Test("sq_sum_exp = sq_exp_sum's sum bit for bit and leaves its input alone, on both paths")
        func sumOfExpsMatches() {
            var rng = SplitMix64(seed: 7)
            for path in KernelPath.allCases {
                for n in [1, 7, 8, 9, 31, 1000, 49152] {
                    let x = (0..<n).map { _ in Float.random(in: -40..<10, using: &rng) }
                    let m = x.max()!
                    var stored = x
                    let (a, b) = path.run {
                        (
                            x.withUnsafeBufferPointer { sq_sum_exp($0.baseAddress, Int64(n), m) },
                            stored.withUnsafeMutableBufferPointer { sq_exp_sum($0.baseAddress, Int64(n), m) }
                        )
                    }
                    #expect(a.bitPattern == b.bitPattern, "\(path) n=\(n): \(a) against \(b)")
                    let exact = x.reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) }
                    #expect(abs(Double(a) - exact) <= 1e-5 * exact, "\(path) n=\(n)")
                }
            }
        }
    }
}
