import CKernels
import Foundation
import Testing

extension Kernels {
    /// `sq_attend_partial_f16/f32`: the AVX2 kernels (four keys per hadd tree, value slices shared
    /// by the query heads) and their scalar twins give the same bits; both are close to a double
    /// evaluation of the same partial softmax.
    @Suite("attention partials") struct AttentionPartials {
        static let shapes: [(g: Int, D: Int, T: Int)] = [
            (3, 64, 512), (3, 64, 37), (1, 64, 5), (2, 64, 4), (4, 64, 9), (7, 128, 130), (3, 40, 11), (3, 64, 1),
        ]

        func run(_ path: KernelPath, f16: Bool, g: Int, D: Int, T: Int, q: [Float], k: [Float], v: [Float]) -> (out: [Float], ml: [Float]) {
            var out = [Float](repeating: .nan, count: g * D)
            var ml = [Float](repeating: .nan, count: 2 * g)
            var scores = [Float](repeating: 0, count: g * T)
            let kh = k.map { sq_f32_to_f16($0) }, vh = v.map { sq_f32_to_f16($0) }
            path.run {
                if f16 {
                    sq_attend_partial_f16(q, Int32(g), Int32(D), kh, vh, Int64(D), Int64(T), 0.125, &out, &ml, &scores)
                } else {
                    sq_attend_partial_f32(q, Int32(g), Int32(D), k, v, Int64(D), Int64(T), 0.125, &out, &ml, &scores)
                }
            }
            return (out, ml)
        }

        @Test("AVX2 = scalar, bit for bit; close to a double reference", arguments: [false, true])
        func pathsAgree(f16: Bool) {
            var rng = SplitMix64(seed: f16 ? 17 : 18)
            for s in Self.shapes {
                let q = randomFloats(s.g * s.D, using: &rng).map { $0 * 4 }
                var k = randomFloats(s.T * s.D, using: &rng)
                var v = randomFloats(s.T * s.D, using: &rng)
                if f16 {  // the reference sees the keys and values the kernel reads
                    k = k.map { sq_f16_to_f32(sq_f32_to_f16($0)) }
                    v = v.map { sq_f16_to_f32(sq_f32_to_f16($0)) }
                }
                let fast = run(.avx2, f16: f16, g: s.g, D: s.D, T: s.T, q: q, k: k, v: v)
                let slow = run(.scalar, f16: f16, g: s.g, D: s.D, T: s.T, q: q, k: k, v: v)
                #expect(bitMismatches(fast.out, slow.out).isEmpty, "out g=\(s.g) D=\(s.D) T=\(s.T)")
                #expect(bitMismatches(fast.ml, slow.ml).isEmpty, "max/sum g=\(s.g) D=\(s.D) T=\(s.T)")
                for j in 0..<s.g {
                    let sc = (0..<s.T).map { t in
                        (0..<s.D).reduce(0.0) { $0 + Double(q[j * s.D + $1]) * Double(k[t * s.D + $1]) } * 0.125
                    }
                    let m = sc.max()!
                    let p = sc.map { exp($0 - m) }
                    #expect(abs(Double(fast.ml[2 * j]) - m) < 1e-4)
                    let l = p.reduce(0, +)
                    #expect(abs(Double(fast.ml[2 * j + 1]) - l) < 1e-4 * l)
                    for i in 0..<s.D {
                        let o = (0..<s.T).reduce(0.0) { $0 + p[$1] * Double(v[$1 * s.D + i]) }
                        #expect(abs(Double(fast.out[j * s.D + i]) - o) < 1e-4 * l, "g=\(s.g) D=\(s.D) T=\(s.T) head \(j) channel \(i)")
                    }
                }
            }
        }
    }
}

