import CKernels
import Foundation
import Testing

extension Kernels {
    /// `sq_attend_combine`, which merges the per-chunk partial attention outputs of a row (each
    /// chunk's output normalised by its own softmax, with its max and exp-sum): the FMA build and
    /// the plain one give the same bits, and both equal the softmax over all chunks at once.
    @Suite("attention partials combine") struct AttendCombine {
        @Test("AVX2 = scalar bit for bit, equal to one softmax over every chunk")
        func combine() {
            var rng = SplitMix64(seed: 77)
            for (g, D, chunks) in [(3, 64, 16), (1, 64, 1), (4, 128, 5), (2, 48, 17)] {
                // Each chunk: raw outputs sum_t e^(s_t - m) v_t over its keys, its max m and exp-sum l.
                let keys = 6
                var outs: [Float] = []
                var mls: [Float] = []
                var scores: [[Double]] = Array(repeating: [], count: g)  // per head, every key
                var values: [[Double]] = []  // per key, D channels
                for _ in 0..<chunks {
                    let v = (0..<keys).map { _ in randomFloats(D, using: &rng).map(Double.init) }
                    values += v
                    for j in 0..<g {
                        let s = (0..<keys).map { _ in Double(Float.random(in: -8..<8, using: &rng)) }
                        scores[j] += s
                        let m = s.max()!
                        let e = s.map { Foundation.exp($0 - m) }
                        mls += [Float(m), Float(e.reduce(0, +))]
                        outs += (0..<D).map { i in Float((0..<keys).reduce(0.0) { $0 + e[$1] * v[$1][i] }) }
                    }
                }
                func run(_ path: KernelPath) -> [Float] {
                    var out = [Float](repeating: .nan, count: g * D)
                    path.run { sq_attend_combine(Int32(g), Int32(D), Int32(chunks), outs, mls, &out) }
                    return out
                }
                let fast = run(.avx2)
                let slow = run(.scalar)
                #expect(bitMismatches(fast, slow).isEmpty, "g=\(g) D=\(D) chunks=\(chunks)")
                var worst = 0.0
                for j in 0..<g {
                    let m = scores[j].max()!
                    let e = scores[j].map { Foundation.exp($0 - m) }
                    let l = e.reduce(0, +)
                    for i in 0..<D {
                        let ref = e.indices.reduce(0.0) { $0 + e[$1] * values[$1][i] } / l
                        worst = max(worst, abs(Double(fast[j * D + i]) - ref))
                    }
                }
                #expect(worst < 1e-5, "g=\(g) D=\(D) chunks=\(chunks): worst |error| \(worst)")
            }
        }
    }
}
