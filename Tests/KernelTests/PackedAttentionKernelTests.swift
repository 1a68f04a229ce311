import CKernels
import Foundation
import Testing

extension Kernels {
    /// `sq_scores_packed_keys` and `sq_accumulate_packed_values`, the attention kernels that read
    /// 2/4/8-bit codes: the AVX2 kernels and their scalar twins give the same bits, both are close
    /// to a double evaluation over the dequantized (and rotated) keys and values, and a token's
    /// score does not depend on where a call starts or ends.
    @Suite("packed attention") struct PackedAttention {
        struct Shape: CustomStringConvertible, Sendable {
            let g: Int, D: Int, bits: Int, keyGroup: Int, valueGroup: Int, n: Int, first: Int, rope: Bool,
                f32Scales: Bool
            var description: String {
                "g=\(g) D=\(D) \(bits)-bit groups \(keyGroup)/\(valueGroup) n=\(n) from \(first) rope=\(rope) f32=\(f32Scales)"
            }
        }
        static let shapes: [Shape] = [
            Shape(g: 3, D: 64, bits: 2, keyGroup: 32, valueGroup: 32, n: 512, first: 0, rope: true, f32Scales: false),
            Shape(g: 3, D: 64, bits: 4, keyGroup: 32, valueGroup: 32, n: 77, first: 544, rope: true, f32Scales: true),
            Shape(g: 3, D: 64, bits: 8, keyGroup: 32, valueGroup: 32, n: 40, first: 7, rope: false, f32Scales: false),
            Shape(g: 1, D: 64, bits: 2, keyGroup: 16, valueGroup: 16, n: 3, first: 45, rope: true, f32Scales: false),
            Shape(
                g: 4, D: 128, bits: 2, keyGroup: 32, valueGroup: 64, n: 130, first: 1000, rope: true, f32Scales: false),
            Shape(g: 5, D: 128, bits: 4, keyGroup: 32, valueGroup: 8, n: 65, first: 31, rope: false, f32Scales: true),
            Shape(g: 2, D: 96, bits: 2, keyGroup: 32, valueGroup: 32, n: 33, first: 64, rope: true, f32Scales: false),
            Shape(g: 3, D: 48, bits: 4, keyGroup: 32, valueGroup: 16, n: 9, first: 3, rope: true, f32Scales: false),
            // Keys before RoPE with 8-bit codes (a channel pair in two bytes), a 64-token key group,
            // and a key group that is a multiple of 8 but not of 16.
            Shape(g: 2, D: 64, bits: 8, keyGroup: 32, valueGroup: 32, n: 50, first: 5, rope: true, f32Scales: false),
            Shape(g: 3, D: 64, bits: 2, keyGroup: 64, valueGroup: 32, n: 200, first: 10, rope: true, f32Scales: false),
            Shape(g: 6, D: 64, bits: 4, keyGroup: 24, valueGroup: 32, n: 100, first: 13, rope: true, f32Scales: true),
            // KIVI's default: 2-bit keys after RoPE, f16 scales (the query-folded scales path).
            Shape(g: 3, D: 64, bits: 2, keyGroup: 32, valueGroup: 32, n: 100, first: 20, rope: false, f32Scales: false),
        ]

        /// Random packed cache contents of one KV head for `s`, with the dequantized values the
        /// kernels should see (scales and minimums rounded to f16 unless stored as f32).
        struct Data {
            var q: [Float] = []
            var keyCodes: [UInt8] = [], valueCodes: [UInt8] = []
            var ks: [Float] = [], km: [Float] = [], vs: [Float] = [], vm: [Float] = []
            var keys: [[Double]] = [], values: [[Double]] = []  // per token, pre-RoPE keys
            var cos: [Float] = [], sin: [Float] = []
        }

        static func make(_ s: Shape, seed: UInt64) -> Data {
            var rng = SplitMix64(seed: seed)
            var d = Data()
            let levels = 1 << s.bits
            let stored: (Float) -> Float = { s.f32Scales ? $0 : sq_f16_to_f32(sq_f32_to_f16($0)) }
            d.q = randomFloats(s.g * s.D, using: &rng)
            let groups = (s.first + s.n) / s.keyGroup + 1
            d.ks = (0..<(groups * s.D)).map { _ in stored(Float.random(in: 0.01..<0.3, using: &rng)) }
            d.km = (0..<(groups * s.D)).map { _ in stored(Float.random(in: -1..<0.5, using: &rng)) }
            let ng = s.D / s.valueGroup
            d.vs = (0..<(s.n * ng)).map { _ in stored(Float.random(in: 0.01..<0.3, using: &rng)) }
            d.vm = (0..<(s.n * ng)).map { _ in stored(Float.random(in: -1..<0.5, using: &rng)) }
            var packed = [UInt8](repeating: 0, count: s.D * s.bits / 8)
            for t in 0..<s.n {
                let kc = (0..<s.D).map { _ in UInt8(truncatingIfNeeded: Int.random(in: 0..<levels, using: &rng)) }
                let vc = (0..<s.D).map { _ in UInt8(truncatingIfNeeded: Int.random(in: 0..<levels, using: &rng)) }
                sq_pack_codes(kc, Int32(s.D), Int32(s.bits), &packed)
                d.keyCodes += packed
                sq_pack_codes(vc, Int32(s.D), Int32(s.bits), &packed)
                d.valueCodes += packed
                let gk = (s.first + t) / s.keyGroup
                d.keys.append(
                    (0..<s.D).map { Double(kc[$0]) * Double(d.ks[gk * s.D + $0]) + Double(d.km[gk * s.D + $0]) })
                d.values.append(
                    (0..<s.D).map {
                        let gv = t * ng + $0 / s.valueGroup
                        return Double(vc[$0]) * Double(d.vs[gv]) + Double(d.vm[gv])
                    })
            }
            let half = s.D / 2
            for p in 0..<(s.first + s.n) {
                for i in 0..<half {
                    let angle = Double(p) * pow(10000.0, -2.0 * Double(i) / Double(s.D))
                    d.cos.append(Float(Foundation.cos(angle)))
                    d.sin.append(Float(Foundation.sin(angle)))
                }
            }
            return d
        }

        /// Scales or minimums as the cache stores them: f32 or f16 bytes.
        static func scaleBytes(_ x: [Float], f32: Bool) -> [UInt8] {
            f32 ? x.withUnsafeBytes { Array($0) } : x.map { sq_f32_to_f16($0) }.withUnsafeBytes { Array($0) }
        }

        /// Scores of tokens [t0, t1) in one call; with `groupRows`, the table's first rows are
        /// passed in (as the cache does) instead of built by the call.
        static func scores(
            _ s: Shape, _ d: Data, _ path: KernelPath, _ t0: Int, _ t1: Int, groupRows: Bool = false
        ) -> [Float] {
            let n = t1 - t0
            var out = [Float](repeating: .nan, count: s.g * n)
            let pb = s.D * s.bits / 8
            let ks = scaleBytes(d.ks, f32: s.f32Scales)
            let km = scaleBytes(d.km, f32: s.f32Scales)
            var rows = [Float](repeating: .nan, count: s.keyGroup * s.D)
            sq_rope_group_rows(
                d.cos, d.sin, Int32(s.D), Int32(s.keyGroup), Int64(min(s.keyGroup, s.first + s.n)), &rows)
            path.run {
                d.keyCodes.withUnsafeBufferPointer { codes in
                    d.cos.withUnsafeBufferPointer { c in
                        d.sin.withUnsafeBufferPointer { sn in
                            rows.withUnsafeBufferPointer { r in
                                sq_scores_packed_keys(
                                    d.q, Int32(s.g), Int32(s.D), codes.baseAddress! + t0 * pb, Int32(s.bits), ks, km,
                                    s.f32Scales ? 1 : 0, Int32(s.keyGroup), Int64(s.first + t0),
                                    s.rope ? c.baseAddress : nil, s.rope ? sn.baseAddress : nil,
                                    s.rope && groupRows ? r.baseAddress : nil, Int64(n), 0.125, &out, Int64(n))
                            }
                        }
                    }
                }
            }
            return out
        }

        static func values(_ s: Shape, _ d: Data, _ path: KernelPath, p: [Float]) -> [Float] {
            var out = [Float](repeating: 0.5, count: s.g * s.D)
            let vs = scaleBytes(d.vs, f32: s.f32Scales)
            let vm = scaleBytes(d.vm, f32: s.f32Scales)
            path.run {
                sq_accumulate_packed_values(
                    p, Int64(s.n), Int32(s.g), Int32(s.D), d.valueCodes, Int32(s.bits), vs, vm, s.f32Scales ? 1 : 0,
                    Int32(s.valueGroup), Int64(s.n), &out)
            }
            return out
        }

        @Test("scores: AVX2 = scalar bit for bit, close to double, independent of the call's range")
        func scoresAgree() {
            for (i, s) in Self.shapes.enumerated() {
                let d = Self.make(s, seed: UInt64(100 + i))
                let fast = Self.scores(s, d, .avx2, 0, s.n)
                let slow = Self.scores(s, d, .scalar, 0, s.n)
                #expect(bitMismatches(fast, slow).isEmpty, "\(s)")
                #expect(bitMismatches(fast, Self.scores(s, d, .avx2, 0, s.n, groupRows: true)).isEmpty, "rows: \(s)")
                // The same tokens scored in two calls split mid-group give the same bits.
                let cut = s.n / 2 + 1
                let first = Self.scores(s, d, .avx2, 0, cut)
                let second = Self.scores(s, d, .avx2, cut, s.n)
                let rest = s.n - cut
                var split: [Float] = []
                for j in 0..<s.g {
                    split += first[(j * cut)..<((j + 1) * cut)]
                    split += second[(j * rest)..<((j + 1) * rest)]
                }
                #expect(bitMismatches(fast, split).isEmpty, "split at \(cut): \(s)")
                let half = s.D / 2
                var worst = 0.0
                for t in 0..<s.n {
                    var k = d.keys[t]
                    if s.rope {
                        let p = s.first + t
                        for i in 0..<half {
                            let c = Double(d.cos[p * half + i])
                            let sn = Double(d.sin[p * half + i])
                            let a = k[i]
                            let b = k[i + half]
                            k[i] = a * c - b * sn
                            k[i + half] = a * sn + b * c
                        }
                    }
                    for j in 0..<s.g {
                        let ref = (0..<s.D).reduce(0.0) { $0 + Double(d.q[j * s.D + $1]) * k[$1] } * 0.125
                        let scale = (0..<s.D).reduce(0.0) { $0 + abs(Double(d.q[j * s.D + $1]) * k[$1]) } * 0.125
                        worst = max(worst, abs(Double(fast[j * s.n + t]) - ref) / max(scale, 1e-6))
                    }
                }
                #expect(worst < 2e-5, "\(s): worst relative error \(worst)")
            }
        }

        @Test("several rows against the same keys: each row's scores are the one-row call's bits")
        func rowsAgree() {
            for (i, s) in Self.shapes.enumerated() {
                let d = Self.make(s, seed: UInt64(400 + i))
                let pb = s.D * s.bits / 8
                let ks = Self.scaleBytes(d.ks, f32: s.f32Scales)
                let km = Self.scaleBytes(d.km, f32: s.f32Scales)
                var rng = SplitMix64(seed: UInt64(500 + i))
                let rows = 5
                let q = randomFloats(rows * s.g * s.D, using: &rng)
                // Rows that end anywhere in the call, one that sees nothing, one that sees it all.
                let ends = [Int64(s.n), 0, Int64(s.n / 3 + 1), Int64(max(1, s.n - 9)), 1]
                var table = [Float](repeating: 0, count: s.keyGroup * s.D)
                sq_rope_group_rows(
                    d.cos, d.sin, Int32(s.D), Int32(s.keyGroup), Int64(min(s.keyGroup, s.first + s.n)), &table)
                for path in [KernelPath.avx2, .scalar] {
                    var together = [Float](repeating: -7, count: rows * s.g * s.n)
                    var apart = together
                    path.run {
                        d.cos.withUnsafeBufferPointer { c in
                            d.sin.withUnsafeBufferPointer { sn in
                                table.withUnsafeBufferPointer { tb in
                                    let cp = s.rope ? c.baseAddress : nil
                                    let sp = s.rope ? sn.baseAddress : nil
                                    let rp = s.rope ? tb.baseAddress : nil
                                    sq_scores_packed_keys_rows(
                                        q, Int64(s.g * s.D), Int32(rows), ends, Int32(s.g), Int32(s.D), d.keyCodes,
                                        Int32(s.bits), ks, km, s.f32Scales ? 1 : 0, Int32(s.keyGroup), Int64(s.first),
                                        cp,
                                        sp, rp, 0.125, &together, Int64(s.g * s.n), Int64(s.n))
                                    for r in 0..<rows {
                                        q.withUnsafeBufferPointer { qp in
                                            apart.withUnsafeMutableBufferPointer { ap in
                                                sq_scores_packed_keys(
                                                    qp.baseAddress! + r * s.g * s.D, Int32(s.g), Int32(s.D), d.keyCodes,
                                                    Int32(s.bits), ks, km, s.f32Scales ? 1 : 0, Int32(s.keyGroup),
                                                    Int64(s.first), cp, sp, rp, ends[r], 0.125,
                                                    ap.baseAddress! + r * s.g * s.n, Int64(s.n))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    #expect(bitMismatches(together, apart).isEmpty, "\(path): \(s)")
                    #expect(together.filter { $0 == -7 }.count == apart.filter { $0 == -7 }.count, "\(path): \(s)")
                }
            }
        }

        @Test("values: AVX2 = scalar bit for bit, close to double")
        func valuesAgree() {
            for (i, s) in Self.shapes.enumerated() {
                let d = Self.make(s, seed: UInt64(200 + i))
                var rng = SplitMix64(seed: UInt64(300 + i))
                let p = (0..<(s.g * s.n)).map { _ in Float.random(in: 0..<1, using: &rng) }
                let fast = Self.values(s, d, .avx2, p: p)
                let slow = Self.values(s, d, .scalar, p: p)
                #expect(bitMismatches(fast, slow).isEmpty, "\(s)")
                var worst = 0.0
                for j in 0..<s.g {
                    for c in 0..<s.D {
                        let ref = 0.5 + (0..<s.n).reduce(0.0) { $0 + Double(p[j * s.n + $1]) * d.values[$1][c] }
                        let scale = 0.5 + (0..<s.n).reduce(0.0) { $0 + abs(Double(p[j * s.n + $1]) * d.values[$1][c]) }
                        worst = max(worst, abs(Double(fast[j * s.D + c]) - ref) / scale)
                    }
                }
                #expect(worst < 2e-5, "\(s): worst relative error \(worst)")
            }
        }
    }
}
