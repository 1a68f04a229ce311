import CKernels
import Testing

extension Kernels {
    /// Int8 activations: quantization round trip, integer dot products against a double
    /// reference over the same quantized inputs, AVX2 = scalar, and batch invariance.
    @Suite("int8 activations") struct ActivationQ8 {
        func quantize(_ x: [Float]) -> [sq_block_q8a] {
            var out = [sq_block_q8a](repeating: sq_block_q8a(), count: x.count / 32)
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { sq_quantize_q8(xp.baseAddress, Int64(x.count), $0.baseAddress) } }
            return out
        }

        @Test("quantize: |x − d·q| ≤ d/2 and s = d·Σq")
        func roundTrip() {
            var rng = SplitMix64(seed: 5)
            let x = randomFloats(32 * 8, using: &rng) + [Float](repeating: 0, count: 32)
            let q = quantize(x)
            for (b, blk) in q.enumerated() {
                let codes = withUnsafeBytes(of: blk.qs) { Array($0.bindMemory(to: Int8.self)) }
                #expect(codes.allSatisfy { $0 >= -127 })
                for j in 0..<32 {
                    #expect(abs(x[b * 32 + j] - blk.d * Float(codes[j])) <= blk.d / 2 * 1.0001)
                }
                #expect(abs(blk.s - blk.d * Float(codes.reduce(0) { $0 + Int($1) })) <= 1e-4 * max(1, abs(blk.s)))
            }
            #expect(q.last?.d == 0)
        }

        @Test("quantize: AVX2 and scalar give the same blocks")
        func quantizePaths() {
            var rng = SplitMix64(seed: 6)
            var x = randomFloats(32 * 40, using: &rng)
            for i in 0..<32 { x[5 * 32 + i] = 0 }  // an all-zero block
            for i in 0..<32 { x[7 * 32 + i] = Float(i % 3) - 1 }  // exact halves after scaling
            x[9 * 32] = 1e-30
            let fast = KernelPath.avx2.run { quantize(x) }
            let slow = KernelPath.scalar.run { quantize(x) }
            for (a, b) in zip(fast, slow) {
                #expect(a.d.bitPattern == b.d.bitPattern && a.s.bitPattern == b.s.bitPattern)
                #expect(withUnsafeBytes(of: a.qs) { Array($0) } == withUnsafeBytes(of: b.qs) { Array($0) })
            }
        }

        /// Weights in the plain GGML layout and repacked eight rows at a time.
        struct Weights {
            let type: QType
            let n: Int
            let rows: Int
            let plain: [UInt8]
            let packed: [UInt8]
            init(_ type: QType, rows: Int, n: Int, plain: [UInt8]) {
                self.type = type
                self.n = n
                self.rows = rows
                self.plain = plain
                var packed = [UInt8](repeating: 0xAA, count: sq_repack_x8_bytes(type.id, Int64(rows), Int64(n)))
                let rc = plain.withUnsafeBytes { wp in
                    packed.withUnsafeMutableBytes {
                        sq_repack_x8(type.id, wp.baseAddress, type.rowBytes(n), Int64(rows), Int64(n), $0.baseAddress)
                    }
                }
                precondition(rc == 0 && !packed.isEmpty)
                self.packed = packed
            }

            /// y for `ntok` tokens starting at token `first` of xq, computed over `ranges` of rows
            /// (plain or repacked layout), yStride = rows + 2; unwritten entries stay NaN.
            func run(_ xq: [sq_block_q8a], first: Int = 0, ntok: Int, ranges: [Range<Int>], repacked: Bool,
                     _ path: KernelPath) -> [Float] {
                let yStride = rows + 2
                var y = [Float](repeating: .nan, count: ntok * yStride)
                xq.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        path.run {
                            for r in ranges {
                                let x = xp.baseAddress! + first * (n / 32)
                                let rc = repacked
                                    ? packed.withUnsafeBytes {
                                        sq_matmul_q8_x8(type.id, $0.baseAddress, Int64(n), x, Int64(ntok), yp.baseAddress,
                                                        Int64(yStride), Int64(r.lowerBound), Int64(r.upperBound))
                                    }
                                    : plain.withUnsafeBytes {
                                        sq_matmul_q8(type.id, $0.baseAddress, type.rowBytes(n), Int64(n), x, Int64(ntok),
                                                     yp.baseAddress, Int64(yStride), Int64(r.lowerBound), Int64(r.upperBound))
                                    }
                                precondition(rc == 0)
                            }
                        }
                    }
                }
                return y
            }
        }

        @Test("matmul_q8: every (row, token) the same bits whatever the layout, path, token count and row split",
              arguments: [QType.q4_1, QType.q8_0], KernelPath.allCases)
        func batchInvariance(_ t: QType, _ path: KernelPath) {
            var rng = SplitMix64(seed: 91 ^ UInt64(t.id))
            let n = 608, rows = 19, maxTokens = 9
            let w = Weights(t, rows: rows, n: n, plain: t.randomRows(rows, n, using: &rng))
            let xq = quantize(randomFloats(maxTokens * n, using: &rng))
            // Expected: the plain layout, scalar, each token alone, one row at a time.
            let expected = (0..<maxTokens).map { tok in
                w.run(xq, first: tok, ntok: 1, ranges: (0..<rows).map { $0..<($0 + 1) }, repacked: false, .scalar)
            }
            for repacked in [false, true] {
                for ntok in 1...maxTokens {
                    for split in [[0..<rows], [0..<3, 3..<rows], [0..<5, 5..<6, 6..<16, 16..<rows], [8..<rows, 0..<8]] {
                        let y = w.run(xq, ntok: ntok, ranges: split, repacked: repacked, path)
                        for tok in 0..<ntok {
                            for r in 0..<rows {
                                #expect(y[tok * (rows + 2) + r].bitPattern == expected[tok][r].bitPattern,
                                        "\(t) \(path) repacked \(repacked) ntok=\(ntok) split \(split) token \(tok) row \(r)")
                            }
                            #expect(y[tok * (rows + 2) + rows].isNaN, "wrote outside the rows")
                        }
                    }
                }
            }
        }

        /// Activations dequantized back to floats (what the integer products compute with).
        func dequantized(_ xq: [sq_block_q8a]) -> [Float] {
            var xd = [Float](repeating: 0, count: xq.count * 32)
            for (b, blk) in xq.enumerated() {
                let codes = withUnsafeBytes(of: blk.qs) { Array($0.bindMemory(to: Int8.self)) }
                for j in 0..<32 { xd[b * 32 + j] = blk.d * Float(codes[j]) }
            }
            return xd
        }

        func expectNearReference(_ w: Weights, _ xq: [sq_block_q8a], _ y: [Float], ntok: Int, tolerance: Double) {
            let xd = dequantized(xq)
            for tok in 0..<ntok {
                for r in 0..<w.rows {
                    let ref = w.plain.withUnsafeBytes { wp in
                        xd.withUnsafeBufferPointer {
                            sq_dot_ref(w.type.id, wp.baseAddress! + r * w.type.rowBytes(w.n), $0.baseAddress! + tok * w.n, Int64(w.n))
                        }
                    }
                    #expect(abs(Double(y[tok * (w.rows + 2) + r]) - ref) <= tolerance * max(1, abs(ref)), "\(w.type) row \(r) token \(tok)")
                }
            }
        }

        @Test("matmul_q8 vs the double reference of the same quantized inputs; layouts and paths agree",
              arguments: [QType.q4_1, QType.q8_0])
        func matmul(_ t: QType) {
            var rng = SplitMix64(seed: 77 ^ UInt64(t.id))
            let n = 576, rows = 13, ntok = 7
            let w = Weights(t, rows: rows, n: n, plain: t.randomRows(rows, n, using: &rng))
            let xq = quantize(randomFloats(ntok * n, using: &rng))
            let fast = w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: true, .avx2)
            #expect(fast.map(\.bitPattern) == w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: true, .scalar).map(\.bitPattern))
            #expect(fast.map(\.bitPattern) == w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: false, .avx2).map(\.bitPattern))
            expectNearReference(w, xq, fast, ntok: ntok, tolerance: 1e-4)
            var y = [Float](repeating: 0, count: rows)
            #expect(sq_matmul_q8(t.id == QType.q4_1.id ? QType.q4_0.id : QType.q5_0.id, nil, 0, Int64(n), nil, 1, &y, 1, 0, 1) == -1)
            #expect(sq_repack_x8_bytes(QType.q4_0.id, 8, Int64(n)) == 0)
            #expect(sq_repack_x8_bytes(t.id, 8, 48) == 0, "n must be a multiple of 32")
        }

        @Test("a repacked row dequantizes to the plain row's floats", arguments: [QType.q4_1, QType.q8_0])
        func dequantizeRepackedRow(_ t: QType) {
            var rng = SplitMix64(seed: 13 ^ UInt64(t.id))
            let n = 96, rows = 11
            let w = Weights(t, rows: rows, n: n, plain: t.randomRows(rows, n, using: &rng))
            for r in 0..<rows {
                var plain = [Float](repeating: .nan, count: n), packed = plain
                w.plain.withUnsafeBytes { _ = sq_dequantize(t.id, $0.baseAddress! + r * t.rowBytes(n), &plain, Int64(n)) }
                w.packed.withUnsafeBytes { #expect(sq_dequantize_x8_row(t.id, $0.baseAddress, Int64(n), Int64(r), &packed) == 0) }
                #expect(plain.map(\.bitPattern) == packed.map(\.bitPattern), "row \(r)")
            }
            var out = [Float](repeating: 0, count: n)
            #expect(sq_dequantize_x8_row(QType.q4_0.id, w.packed, Int64(n), 0, &out) == -1)
        }

        /// The extremes of both operands: 4-bit codes of 15 (or int8 -128 / 127) against
        /// activations of ±127, where 16-bit partial sums would overflow if grouped wrongly.
        @Test("matmul_q8 with extreme codes: exact integer sums on every path", arguments: [QType.q4_1, QType.q8_0])
        func extremes(_ t: QType) {
            let n = 96, rows = 9, ntok = 3
            var plain = [UInt8](repeating: 0, count: rows * t.rowBytes(n))
            for r in 0..<rows {
                for b in 0..<(n / 32) {
                    let base = r * t.rowBytes(n) + b * t.blockBytes
                    plain.storeLE(UInt16(sq_f32_to_f16(0.5 + Float(r) / 8)), at: base)
                    if t.id == QType.q4_1.id {
                        plain.storeLE(UInt16(sq_f32_to_f16(-0.25)), at: base + 2)
                        for j in 0..<16 { plain[base + 4 + j] = r % 2 == 0 ? 0xFF : (j % 2 == 0 ? 0xF0 : 0x0F) }
                    } else {
                        for j in 0..<32 { plain[base + 2 + j] = r % 3 == 0 ? 0x80 : r % 3 == 1 ? 0x7F : (j % 2 == 0 ? 0x80 : 0x7F) }
                    }
                }
            }
            let w = Weights(t, rows: rows, n: n, plain: plain)
            // Token 0: all +127, token 1: all −127, token 2: alternating.
            var x = [Float](repeating: 1, count: n) + [Float](repeating: -1, count: n)
            x += (0..<n).map { $0 % 2 == 0 ? 1 : -1 }
            let xq = quantize(x)
            let y = w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: true, .avx2)
            #expect(y.map(\.bitPattern) == w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: true, .scalar).map(\.bitPattern))
            #expect(y.map(\.bitPattern) == w.run(xq, ntok: ntok, ranges: [0..<rows], repacked: false, .scalar).map(\.bitPattern))
            expectNearReference(w, xq, y, ntok: ntok, tolerance: 1e-6)
        }
    }
}
