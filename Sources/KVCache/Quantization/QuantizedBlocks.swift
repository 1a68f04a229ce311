/// Quantized keys of one KV head for `tokens` consecutive tokens (a multiple of `groupSize`,
/// the first token starting a token group): per-channel asymmetric codes over token groups.
///
/// Layouts (all dense, row-major):
/// - `codes`: **packed**, channel-major, `headDim` rows of `wordsPerChannel = tokens / (32/bits)`
///   words; word `w` of channel `d` (`codes[d·wordsPerChannel + w]`) holds the code of token
///   `w·f + j` at bits `j·bits` (`f = 32/bits`): the reference's `*_key_codes_packed_ref` layout.
/// - `scales`, `mins`: per (token group, channel): `scales[g·headDim + d]`,
///   `g = token / groupSize` (the reference's `[T/32, D]`).
///
/// The value of token `t`, channel `d` is `code·scales[g·headDim + d] + mins[g·headDim + d]`.
public struct QuantizedKeyBlock: Sendable, Equatable {
    public let tokens: Int
    public let headDim: Int
    public let bits: Int
    public let groupSize: Int
    public var codes: [UInt32]
    public var scales: [Float]
    public var mins: [Float]

    public init(tokens: Int, headDim: Int, bits: Int, groupSize: Int, codes: [UInt32], scales: [Float], mins: [Float]) {
        precondition(tokens % groupSize == 0 && tokens % (32 / bits) == 0, "bad key block shape")
        precondition(codes.count == headDim * tokens / (32 / bits), "key block: wrong number of code words")
        precondition(scales.count == tokens / groupSize * headDim && mins.count == scales.count, "key block: wrong number of scales")
        self.tokens = tokens
        self.headDim = headDim
        self.bits = bits
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.mins = mins
    }

    /// KIVI: quantizes keys per channel over token groups (row `t` at `keys + t·rowStride`;
    /// `rowStride` defaults to `headDim`). If `dequantizedInto` is given, also writes the
    /// dequantized keys there (dense `tokens × headDim`) in the same pass.
    public init(
        quantizing keys: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int? = nil, bits: Int, groupSize: Int,
        dequantizedInto: UnsafeMutablePointer<Float>? = nil
    ) {
        self = Self.quantize(keys, tokens: tokens, headDim: headDim, rowStride: rowStride ?? headDim,
                             bits: bits, groupSize: groupSize, dequantized: dequantizedInto)
    }

    static func quantize(
        _ keys: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int, bits: Int, groupSize: Int,
        dequantized: UnsafeMutablePointer<Float>?
    ) -> QuantizedKeyBlock {
        let n = tokens * headDim
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
        defer { codes.deallocate() }
        let groups = tokens / groupSize
        var scales = [Float](repeating: 0, count: groups * headDim)
        var mins = [Float](repeating: 0, count: groups * headDim)
        scales.withUnsafeMutableBufferPointer { s in
            mins.withUnsafeMutableBufferPointer { m in
                if n > 0 {
                    MinMaxQuantizer.quantizeKeysPerChannel(
                        keys, tokens: tokens, headDim: headDim, rowStride: rowStride, bits: bits, groupSize: groupSize,
                        codes: codes, codeRowStride: headDim, scales: s.baseAddress!, mins: m.baseAddress!,
                        dequantized: dequantized, dequantizedRowStride: headDim)
                }
            }
        }
        return QuantizedKeyBlock(
            tokens: tokens, headDim: headDim, bits: bits, groupSize: groupSize,
            codes: Self.pack(codes, tokens: tokens, headDim: headDim, bits: bits), scales: scales, mins: mins)
    }

    static func pack(_ codes: UnsafePointer<UInt8>, tokens: Int, headDim: Int, bits: Int) -> [UInt32] {
        let wpc = tokens / (32 / bits)
        let n = headDim * wpc
        guard n > 0 else { return [] }
        return [UInt32](unsafeUninitializedCapacity: n) { out, count in
            CodePacking.packKeys(codes, tokens: tokens, channels: headDim, codeRowStride: headDim, bits: bits,
                                 into: out.baseAddress!, wordStride: wpc)
            count = n
        }
    }

    /// Words per channel in `codes`: `tokens / (32/bits)`.
    public var wordsPerChannel: Int { tokens / (32 / bits) }

    /// The code of token `t`, channel `d`.
    public func code(token t: Int, channel d: Int) -> UInt8 {
        let f = 32 / bits
        let word = codes[d * wordsPerChannel + t / f]
        return UInt8((word >> UInt32((t % f) * bits)) & UInt32((1 << bits) - 1))
    }

    /// The dequantized key of token `t`, channel `d`.
    public func value(token t: Int, channel d: Int) -> Float {
        let i = (t / groupSize) * headDim + d
        return MinMaxQuantizer.dequantize(code(token: t, channel: d), scale: scales[i], min: mins[i])
    }

    /// All codes, unpacked, token-major (`tokens × headDim`).
    public func unpackedCodes() -> [UInt8] {
        CodePacking.unpackKeys(codes, tokens: tokens, channels: headDim, bits: bits)
    }

    /// Writes the dequantized keys, token-major: row `t` at `out + t·rowStride`.
    public func dequantize(into out: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let stride = rowStride ?? headDim
        let c = unpackedCodes()
        for t in 0..<tokens {
            let g = t / groupSize
            for d in 0..<headDim {
                out[t * stride + d] = MinMaxQuantizer.dequantize(
                    c[t * headDim + d], scale: scales[g * headDim + d], min: mins[g * headDim + d])
            }
        }
    }

    /// The dequantized keys, dense `tokens × headDim`.
    public func dequantized() -> [Float] {
        let n = tokens * headDim
        guard n > 0 else { return [] }
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            dequantize(into: out.baseAddress!)
            count = n
        }
    }

    /// Bytes of codes, scales and mins.
    public var byteCount: Int { codes.count * 4 + (scales.count + mins.count) * 4 }
}

/// Quantized values of one KV head for `tokens` tokens: per-token asymmetric codes over groups
/// of `groupSize` channels. Any token count works (values need no token groups), so a cache can
/// quantize one token at a time.
///
/// Layouts (dense, row-major):
/// - `codes`: **packed**, token-major, `tokens` rows of `wordsPerToken = headDim / (32/bits)`
///   words; word `w` of token `t` (`codes[t·wordsPerToken + w]`) holds channel `w·f + j` at
///   bits `j·bits`: the reference's `value_codes_packed_ref` layout.
/// - `scales`, `mins`: per (token, channel group): `scales[t·(headDim/groupSize) + g]`,
///   `g = channel / groupSize` (the reference's `[T, D/32]`).
public struct QuantizedValueBlock: Sendable, Equatable {
    public let tokens: Int
    public let headDim: Int
    public let bits: Int
    public let groupSize: Int
    public var codes: [UInt32]
    public var scales: [Float]
    public var mins: [Float]

    public init(tokens: Int, headDim: Int, bits: Int, groupSize: Int, codes: [UInt32], scales: [Float], mins: [Float]) {
        precondition(headDim % groupSize == 0 && headDim % (32 / bits) == 0, "bad value block shape")
        precondition(codes.count == tokens * headDim / (32 / bits), "value block: wrong number of code words")
        precondition(scales.count == tokens * (headDim / groupSize) && mins.count == scales.count, "value block: wrong number of scales")
        self.tokens = tokens
        self.headDim = headDim
        self.bits = bits
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.mins = mins
    }

    /// KIVI: quantizes values per token over channel groups (row `t` at `values + t·rowStride`;
    /// `rowStride` defaults to `headDim`). If `dequantizedInto` is given, also writes the
    /// dequantized values there (dense `tokens × headDim`) in the same pass.
    public init(
        quantizing values: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int? = nil, bits: Int, groupSize: Int,
        dequantizedInto: UnsafeMutablePointer<Float>? = nil
    ) {
        self = Self.quantize(values, tokens: tokens, headDim: headDim, rowStride: rowStride ?? headDim,
                             bits: bits, groupSize: groupSize, dequantized: dequantizedInto)
    }

    static func quantize(
        _ values: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int, bits: Int, groupSize: Int,
        dequantized: UnsafeMutablePointer<Float>?
    ) -> QuantizedValueBlock {
        let n = tokens * headDim
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
        defer { codes.deallocate() }
        let groups = headDim / groupSize
        var scales = [Float](repeating: 0, count: tokens * groups)
        var mins = [Float](repeating: 0, count: tokens * groups)
        scales.withUnsafeMutableBufferPointer { s in
            mins.withUnsafeMutableBufferPointer { m in
                if n > 0 {
                    MinMaxQuantizer.quantizeValuesPerToken(
                        values, tokens: tokens, headDim: headDim, rowStride: rowStride, bits: bits, groupSize: groupSize,
                        codes: codes, codeRowStride: headDim, scales: s.baseAddress!, mins: m.baseAddress!,
                        dequantized: dequantized, dequantizedRowStride: headDim)
                }
            }
        }
        let wpt = headDim / (32 / bits)
        let words: [UInt32] = n == 0 ? [] : [UInt32](unsafeUninitializedCapacity: tokens * wpt) { out, count in
            CodePacking.packValues(codes, tokens: tokens, channels: headDim, codeRowStride: headDim, bits: bits,
                                   into: out.baseAddress!, wordStride: wpt)
            count = tokens * wpt
        }
        return QuantizedValueBlock(tokens: tokens, headDim: headDim, bits: bits, groupSize: groupSize,
                                   codes: words, scales: scales, mins: mins)
    }

    /// Words per token in `codes`: `headDim / (32/bits)`.
    public var wordsPerToken: Int { headDim / (32 / bits) }

    /// The code of token `t`, channel `d`.
    public func code(token t: Int, channel d: Int) -> UInt8 {
        let f = 32 / bits
        let word = codes[t * wordsPerToken + d / f]
        return UInt8((word >> UInt32((d % f) * bits)) & UInt32((1 << bits) - 1))
    }

    /// The dequantized value of token `t`, channel `d`.
    public func value(token t: Int, channel d: Int) -> Float {
        let i = t * (headDim / groupSize) + d / groupSize
        return MinMaxQuantizer.dequantize(code(token: t, channel: d), scale: scales[i], min: mins[i])
    }

    /// All codes, unpacked, token-major (`tokens × headDim`).
    public func unpackedCodes() -> [UInt8] {
        CodePacking.unpackValues(codes, tokens: tokens, channels: headDim, bits: bits)
    }

    /// Writes the dequantized values, token-major: row `t` at `out + t·rowStride`.
    public func dequantize(into out: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let stride = rowStride ?? headDim
        let c = unpackedCodes()
        let groups = headDim / groupSize
        for t in 0..<tokens {
            for d in 0..<headDim {
                let i = t * groups + d / groupSize
                out[t * stride + d] = MinMaxQuantizer.dequantize(c[t * headDim + d], scale: scales[i], min: mins[i])
            }
        }
    }

    /// The dequantized values, dense `tokens × headDim`.
    public func dequantized() -> [Float] {
        let n = tokens * headDim
        guard n > 0 else { return [] }
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            dequantize(into: out.baseAddress!)
            count = n
        }
    }

    /// Bytes of codes, scales and mins.
    public var byteCount: Int { codes.count * 4 + (scales.count + mins.count) * 4 }
}
