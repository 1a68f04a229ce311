import CKernels
import Foundation
import Testing

extension Kernels {
    /// The quantized caches' full-precision window (the newest keys and values, f32): scores and
    /// value accumulation, AVX2 against scalar bit for bit and against a Double evaluation.
    @Suite("residual window kernels") struct ResidualWindow {
        struct Shape: Sendable, CustomStringConvertible {
            var g: Int
            var D: Int
            var n: Int
            var description: String { "g\(g) D\(D) n\(n)" }
        }

        static let shapes = [
            Shape(g: 3, D: 64, n: 33), Shape(g: 1, D: 64, n: 1), Shape(g: 4, D: 128, n: 32), Shape(g: 2, D: 72, n: 17),
            Shape(g: 5, D: 8, n: 40), Shape(g: 3, D: 256, n: 9), Shape(g: 2, D: 64, n: 0),
        ]

        static func random(_ count: Int, _ rng: inout SplitMix64) -> [Float] {
            (0..<count).map { _ in Float(rng.nextDouble() * 2 - 1) }
        }

        /// The AVX2 result of `run`, expecting the scalar path to give the same bits.
        static func samePaths(_ s: Shape, _ run: (KernelPath) -> [Float]) -> [Float] {
            let fast = run(.avx2)
            let slow = run(.scalar)
            #expect(bitMismatches(fast, slow).isEmpty, "\(s): \(bitMismatches(fast, slow))")
            return fast
        }

        @Test("values: AVX2 = scalar bit for bit, close to Double", arguments: shapes)
        func valuesAgree(_ s: Shape) {
            var rng = SplitMix64(seed: UInt64(s.g * 1000 + s.D + s.n))
            // Rows of p are `stride` apart, wider than the tokens, as the caches call it.
            let stride = s.n + 5
            let p = Self.random(s.g * stride, &rng).map { abs($0) }
            let values = Self.random(s.n * s.D, &rng)
            let start = Self.random(s.g * s.D, &rng)
            func run(_ path: KernelPath) -> [Float] {
                var out = start
                path.run {
                    sq_accumulate_f32_values(p, Int64(stride), Int32(s.g), Int32(s.D), values, Int64(s.n), &out)
                }
                return out
            }
            let fast = Self.samePaths(s, run)
            for j in 0..<s.g {
                for i in 0..<s.D {
                    let ref = (0..<s.n).reduce(Double(start[j * s.D + i])) {
                        $0 + Double(p[j * stride + $1]) * Double(values[$1 * s.D + i])
                    }
                    #expect(
                        abs(Double(fast[j * s.D + i]) - ref) < 1e-5 * Double(s.n + 1), "\(s) head \(j) channel \(i)")
                }
            }
        }

        @Test("scores: AVX2 = scalar bit for bit, close to Double", arguments: shapes)
        func scoresAgree(_ s: Shape) {
            var rng = SplitMix64(seed: UInt64(7 + s.g * 1000 + s.D + s.n))
            let q = Self.random(s.g * s.D, &rng)
            let keys = Self.random(s.n * s.D, &rng)
            // Rows of scores are `stride` apart; what lies between them must stay untouched.
            let stride = s.n + 3
            func run(_ path: KernelPath) -> [Float] {
                var scores = [Float](repeating: -7, count: s.g * stride)
                path.run {
                    sq_scores_f32_keys(q, Int32(s.g), Int32(s.D), keys, Int64(s.n), 0.125, &scores, Int64(stride))
                }
                return scores
            }
            let fast = Self.samePaths(s, run)
            for j in 0..<s.g {
                for t in 0..<s.n {
                    let ref =
                        (0..<s.D).reduce(0.0) { $0 + Double(q[j * s.D + $1]) * Double(keys[t * s.D + $1]) } * 0.125
                    #expect(abs(Double(fast[j * stride + t]) - ref) < 1e-5, "\(s) head \(j) token \(t)")
                }
                #expect(
                    fast[(j * stride + s.n)..<((j + 1) * stride)].allSatisfy { $0 == -7 }, "\(s) head \(j): gap written"
                )
            }
        }
    }
}
