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

        @Test("matmul_q8: every (row, token) the same bits whatever the token count and row split",
              arguments: [QType.q4_1, QType.q8_0], KernelPath.allCases)
        func batchInvariance(_ t: QType, _ path: KernelPath) {
            var rng = SplitMix64(seed: 91 ^ UInt64(t.id))
            let n = 608, rows = 11, maxTokens = 9, yStride = rows + 2
            let w = t.randomRows(rows, n, using: &rng)
            let xq = quantize(randomFloats(maxTokens * n, using: &rng))
            func run(_ ntok: Int, first: Int, _ ranges: [Range<Int>]) -> [Float] {
                var y = [Float](repeating: .nan, count: ntok * yStride)
                w.withUnsafeBytes { wp in
                    xq.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            path.run {
                                for r in ranges {
                                    _ = sq_matmul_q8(t.id, wp.baseAddress, t.rowBytes(n), Int64(n), xp.baseAddress! + first * (n / 32),
                                                     Int64(ntok), yp.baseAddress, Int64(yStride), Int64(r.lowerBound), Int64(r.upperBound))
                                }
                            }
                        }
                    }
                }
                return y
            }
            // Expected: each token alone, one row at a time.
            let expected = (0..<maxTokens).map { tok in run(1, first: tok, (0..<rows).map { $0..<($0 + 1) }) }
            for ntok in 1...maxTokens {
                for split in [[0..<rows], [0..<3, 3..<rows], [0..<5, 5..<6, 6..<rows], [7..<rows, 0..<7]] {
                    let y = run(ntok, first: 0, split)
                    for tok in 0..<ntok {
                        for r in 0..<rows {
                            #expect(y[tok * yStride + r].bitPattern == expected[tok][r].bitPattern,
                                    "\(t) \(path) ntok=\(ntok) split \(split) token \(tok) row \(r)")
                        }
                        #expect(y[tok * yStride + rows].isNaN, "wrote outside the rows")
                    }
                }
            }
        }

        @Test("matmul_q8 vs the double reference of the same quantized inputs; paths agree; batch-invariant",
              arguments: [QType.q4_1, QType.q8_0])
        func matmul(_ t: QType) {
            var rng = SplitMix64(seed: 77 ^ UInt64(t.id))
            let n = 576, rows = 5, ntok = 7
            let w = t.randomRows(rows, n, using: &rng)
            let x = randomFloats(ntok * n, using: &rng)
            let xq = quantize(x)
            // Dequantized activations, for the reference.
            var xd = [Float](repeating: 0, count: x.count)
            for (b, blk) in xq.enumerated() {
                let codes = withUnsafeBytes(of: blk.qs) { Array($0.bindMemory(to: Int8.self)) }
                for j in 0..<32 { xd[b * 32 + j] = blk.d * Float(codes[j]) }
            }
            func run(_ path: KernelPath, tokens: Int) -> [Float] {
                var y = [Float](repeating: .nan, count: tokens * rows)
                w.withUnsafeBytes { wp in
                    xq.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            path.run {
                                #expect(sq_matmul_q8(t.id, wp.baseAddress, t.rowBytes(n), Int64(n), xp.baseAddress, Int64(tokens),
                                                     yp.baseAddress, Int64(rows), 0, Int64(rows)) == 0)
                            }
                        }
                    }
                }
                return y
            }
            let fast = run(.avx2, tokens: ntok)
            let slow = run(.scalar, tokens: ntok)
            #expect(fast == slow)
            #expect(Array(run(.avx2, tokens: 1)) == Array(fast.prefix(rows)))
            for tok in 0..<ntok {
                for r in 0..<rows {
                    let ref = w.withUnsafeBytes { wp in
                        xd.withUnsafeBufferPointer { sq_dot_ref(t.id, wp.baseAddress! + r * t.rowBytes(n), $0.baseAddress! + tok * n, Int64(n)) }
                    }
                    #expect(abs(Double(fast[tok * rows + r]) - ref) <= 1e-4 * max(1, abs(ref)), "row \(r) token \(tok)")
                }
            }
            var y = [Float](repeating: 0, count: rows)
            #expect(sq_matmul_q8(t.id == QType.q4_1.id ? QType.q4_0.id : QType.q5_0.id, nil, 0, Int64(n), nil, 1, &y, 1, 0, 1) == -1)
        }
    }
}
