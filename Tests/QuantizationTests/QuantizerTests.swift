import Testing
@testable import KVCache

@Suite struct QuantizerTests {
    @Test func roundsHalfToEven() {
        // mn = 0, mx = 3, 2 bits: scale = 1, so quotients are the values themselves.
        let x: [Float] = [0, 3, 0.5, 1.5, 2.5, 1.4999999, 2.5000002]
        var codes = [UInt8](repeating: 9, count: x.count)
        let r = x.withUnsafeBufferPointer { xp in
            codes.withUnsafeMutableBufferPointer {
                MinMaxQuantizer.quantizeGroup(xp.baseAddress!, count: x.count, stride: 1, bits: 2,
                                              codes: $0.baseAddress!, codeStride: 1)
            }
        }
        #expect(r.scale == 1 && r.min == 0)
        // 0.5 → 0 and 2.5 → 2 (half to even), where rounding half away from zero gives 1 and 3.
        #expect(codes == [0, 3, 0, 2, 2, 1, 3])
    }

    @Test func constantGroupGivesCodeZero() {
        for bits in [2, 4, 8] {
            let x = [Float](repeating: -1.25, count: 32)
            var codes = [UInt8](repeating: 7, count: 32)
            var deq = [Float](repeating: .nan, count: 32)
            let r = x.withUnsafeBufferPointer { xp in
                codes.withUnsafeMutableBufferPointer { cp in
                    deq.withUnsafeMutableBufferPointer { dp in
                        MinMaxQuantizer.quantizeGroup(xp.baseAddress!, count: 32, stride: 1, bits: bits,
                                                      codes: cp.baseAddress!, codeStride: 1,
                                                      dequantized: dp.baseAddress!, dequantizedStride: 1)
                    }
                }
            }
            #expect(r.scale == 0 && r.min == -1.25)
            #expect(codes.allSatisfy { $0 == 0 })
            #expect(deq.allSatisfy { $0 == -1.25 })
        }
    }

    @Test func nanQuotientGivesCodeZero() {
        #expect(MinMaxQuantizer.code(1, min: 1, scale: 0, maxCode: 3) == 0)
        #expect(MinMaxQuantizer.code(.nan, min: 0, scale: 1, maxCode: 3) == 0)
        #expect(MinMaxQuantizer.code(-5, min: 0, scale: 1, maxCode: 3) == 0)
        #expect(MinMaxQuantizer.code(50, min: 0, scale: 1, maxCode: 15) == 15)
    }

    @Test func divideThenRoundMultiplyThenAdd() {
        // Every code must come from (x − mn) / scale (a true division) and every value from q·scale + mn.
        var rng = TestRNG(seed: 7)
        for bits in [2, 4, 8] {
            for _ in 0..<50 {
                let x = rng.floats(32, scale: 3)
                var codes = [UInt8](repeating: 0, count: 32)
                var deq = [Float](repeating: 0, count: 32)
                let r = x.withUnsafeBufferPointer { xp in
                    codes.withUnsafeMutableBufferPointer { cp in
                        deq.withUnsafeMutableBufferPointer { dp in
                            MinMaxQuantizer.quantizeGroup(xp.baseAddress!, count: 32, stride: 1, bits: bits,
                                                          codes: cp.baseAddress!, codeStride: 1,
                                                          dequantized: dp.baseAddress!, dequantizedStride: 1)
                        }
                    }
                }
                let mn = x.min()!, mx = x.max()!
                let top = Float((1 << bits) - 1)
                #expect(r.min == mn && r.scale == (mx - mn) / top)
                for i in 0..<32 {
                    let v = min(max((x[i] - mn) / r.scale, 0), top).rounded(.toNearestOrEven)
                    #expect(codes[i] == UInt8(v))
                    let p = Float(codes[i]) * r.scale
                    #expect(deq[i] == p + mn)
                }
                #expect(codes.contains(0) && codes.contains(UInt8(top)))
            }
        }
    }

    @Test(arguments: [2, 4, 8])
    func keysPerChannelOverTokenGroups(bits: Int) {
        let T = 96, D = 64, stride = 80
        var rng = TestRNG(seed: UInt64(bits))
        let keys = rng.floats(T * stride)
        var deq = [Float](repeating: 0, count: T * D)
        let block = keys.withUnsafeBufferPointer { kp in
            deq.withUnsafeMutableBufferPointer {
                QuantizedKeyBlock(quantizing: kp.baseAddress!, tokens: T, headDim: D, rowStride: stride, bits: bits,
                                  groupSize: 32, dequantizedInto: $0.baseAddress!)
            }
        }
        #expect(block.codes.count == D * T / (32 / bits))
        #expect(block.dequantized() == deq)
        for g in 0..<(T / 32) {
            for d in 0..<D {
                let group = (0..<32).map { keys[(g * 32 + $0) * stride + d] }
                let mn = group.min()!, s = (group.max()! - mn) / Float((1 << bits) - 1)
                #expect(block.scales[g * D + d] == s && block.mins[g * D + d] == mn)
                for j in 0..<32 {
                    let t = g * 32 + j
                    #expect(block.code(token: t, channel: d) == MinMaxQuantizer.code(group[j], min: mn, scale: s, maxCode: Float((1 << bits) - 1)))
                    #expect(block.value(token: t, channel: d) == deq[t * D + d])
                }
            }
        }
    }

    @Test(arguments: [2, 4, 8])
    func valuesPerTokenOverChannelGroups(bits: Int) {
        let T = 5, D = 128
        var rng = TestRNG(seed: 100 + UInt64(bits))
        let values = rng.floats(T * D)
        var deq = [Float](repeating: 0, count: T * D)
        let block = values.withUnsafeBufferPointer { vp in
            deq.withUnsafeMutableBufferPointer {
                QuantizedValueBlock(quantizing: vp.baseAddress!, tokens: T, headDim: D, bits: bits, groupSize: 32,
                                    dequantizedInto: $0.baseAddress!)
            }
        }
        #expect(block.codes.count == T * D / (32 / bits))
        #expect(block.dequantized() == deq)
        for t in 0..<T {
            for g in 0..<(D / 32) {
                let group = Array(values[(t * D + g * 32)..<(t * D + g * 32 + 32)])
                let mn = group.min()!, s = (group.max()! - mn) / Float((1 << bits) - 1)
                #expect(block.scales[t * 4 + g] == s && block.mins[t * 4 + g] == mn)
                for j in 0..<32 {
                    #expect(block.code(token: t, channel: g * 32 + j) == MinMaxQuantizer.code(group[j], min: mn, scale: s, maxCode: Float((1 << bits) - 1)))
                }
            }
        }
    }
}

@Suite struct PackingTests {
    @Test(arguments: [2, 4, 8])
    func keyPackingLayoutAndRoundTrip(bits: Int) {
        let T = 64, D = 8, f = 32 / bits
        var rng = TestRNG(seed: 11)
        let codes = (0..<(T * D)).map { _ in UInt8(rng.next() % UInt64(1 << bits)) }
        let words = CodePacking.packKeys(codes, tokens: T, channels: D, bits: bits)
        #expect(words.count == D * T / f)
        for d in 0..<D {
            for t in 0..<T {
                let w = words[d * (T / f) + t / f]
                #expect(UInt8((w >> UInt32((t % f) * bits)) & UInt32((1 << bits) - 1)) == codes[t * D + d])
            }
        }
        #expect(CodePacking.unpackKeys(words, tokens: T, channels: D, bits: bits) == codes)
    }

    @Test(arguments: [2, 4, 8])
    func valuePackingLayoutAndRoundTrip(bits: Int) {
        let T = 3, D = 64, f = 32 / bits
        var rng = TestRNG(seed: 12)
        let codes = (0..<(T * D)).map { _ in UInt8(rng.next() % UInt64(1 << bits)) }
        let words = CodePacking.packValues(codes, tokens: T, channels: D, bits: bits)
        #expect(words.count == T * D / f)
        for t in 0..<T {
            for c in 0..<D {
                let w = words[t * (D / f) + c / f]
                #expect(UInt8((w >> UInt32((c % f) * bits)) & UInt32((1 << bits) - 1)) == codes[t * D + c])
            }
        }
        #expect(CodePacking.unpackValues(words, tokens: T, channels: D, bits: bits) == codes)
    }

    @Test func topBitsSurviveAsUInt32() {
        // Code 3 in the last 2-bit slot sets the sign bit of the reference's int32 word.
        var codes = [UInt8](repeating: 0, count: 16)
        codes[15] = 3
        let w = CodePacking.packKeys(codes, tokens: 16, channels: 1, bits: 2)
        #expect(w == [0xC000_0000])
        #expect(Int32(bitPattern: w[0]) < 0)
        #expect(CodePacking.unpackKeys(w, tokens: 16, channels: 1, bits: 2) == codes)
    }

    @Test func stridedPackingIntoALargerStore() {
        // A cache appending 32-token blocks into a channel-major store with room for 96 tokens.
        let bits = 4, D = 4, f = 8, capWords = 96 / f
        var rng = TestRNG(seed: 13)
        let all = (0..<(96 * D)).map { _ in UInt8(rng.next() % 16) }
        var store = [UInt32](repeating: 0, count: D * capWords)
        for b in 0..<3 {
            all.withUnsafeBufferPointer { cp in
                store.withUnsafeMutableBufferPointer { sp in
                    CodePacking.packKeys(cp.baseAddress! + b * 32 * D, tokens: 32, channels: D, codeRowStride: D, bits: bits,
                                         into: sp.baseAddress! + b * 32 / f, wordStride: capWords)
                }
            }
        }
        #expect(store == CodePacking.packKeys(all, tokens: 96, channels: D, bits: bits))
    }
}
