import CKernels
import Testing

extension Kernels {
    /// sq_matmul must give, for every (row, token), the bits sq_dot gives: whatever ntok is (tiles
    /// of 1...SQ_TILE tokens), whatever the row range, with padded strides on x and y.
    @Suite("batch invariance") struct BatchInvariance {
        static let tokenCounts = [1, 2, 3, 4, 6, 7, 9]

        @Test("sq_matmul equals sq_dot bit for bit", arguments: QType.all, KernelPath.allCases)
        func matmulMatchesDot(_ t: QType, _ path: KernelPath) {
            var rng = SplitMix64(seed: 0xBA7C ^ UInt64(t.id))
            let n = t.blockSize == 256 ? 512 : (t.isFloat ? 100 : 576)
            let rows = 6, maxTokens = 9
            let xStride = n + 5, yStride = rows + 3
            let w = t.randomRows(rows, n, using: &rng)
            let rowBytes = t.rowBytes(n)
            let x = randomFloats(maxTokens * xStride, using: &rng)
            let sentinel = Float(bitPattern: 0x7FC0_BEEF)

            func matmul(_ ntok: Int, _ ranges: [Range<Int>]) -> [Float] {
                var y = [Float](repeating: sentinel, count: ntok * yStride)
                w.withUnsafeBytes { wp in
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            path.run {
                                for r in ranges {
                                    sq_matmul(t.id, wp.baseAddress, rowBytes, Int64(n), xp.baseAddress, Int64(xStride), Int64(ntok),
                                              yp.baseAddress, Int64(yStride), Int64(r.lowerBound), Int64(r.upperBound))
                                }
                            }
                        }
                    }
                }
                return y
            }

            // Expected: one sq_dot per (row, token), x read in place at its stride.
            var expected = [[Float]](repeating: [], count: maxTokens)
            w.withUnsafeBytes { wp in
                x.withUnsafeBufferPointer { xp in
                    for tok in 0..<maxTokens {
                        expected[tok] = (0..<rows).map { r in
                            path.run { sq_dot(t.id, wp.baseAddress! + r * rowBytes, xp.baseAddress! + tok * xStride, Int64(n)) }
                        }
                    }
                }
            }

            for ntok in Self.tokenCounts {
                let y = matmul(ntok, [0..<rows])
                for tok in 0..<ntok {
                    for r in 0..<rows {
                        let got = y[tok * yStride + r]
                        #expect(got.bitPattern == expected[tok][r].bitPattern,
                                "\(t) \(path) ntok=\(ntok) token \(tok) row \(r): \(got) vs sq_dot \(expected[tok][r])")
                    }
                    for pad in rows..<yStride {
                        #expect(y[tok * yStride + pad].bitPattern == sentinel.bitPattern, "\(t) wrote outside the rows")
                    }
                }
                // The same output from row ranges split as threads would split them.
                for split in [[0..<2, 2..<6], [0..<1, 1..<4, 4..<5, 5..<6], [3..<6, 0..<3]] {
                    let ys = matmul(ntok, split)
                    #expect(bitMismatches(ys, y).isEmpty, "\(t) \(path) ntok=\(ntok) split \(split)")
                }
            }
        }
    }
}
