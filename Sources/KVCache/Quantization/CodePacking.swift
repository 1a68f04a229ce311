/// Packing of 2/4/8-bit codes into 32-bit words, exactly as the reference (`pack_tensor` /
/// the Triton `_pack_along_last_dim`): with `f = 32 / bits` codes per word, code `j` of a word
/// sits at bits `j·bits ..< (j+1)·bits`, the first code in the lowest bits.
///
/// - Keys are packed along tokens, per channel: word `w` of channel `d` holds tokens `w·f + j`.
/// - Values are packed along channels, per token: word `w` of token `t` holds channels `w·f + j`.
///
/// The reference stores words as `int32`; ours are the same bits as `UInt32`
/// (`UInt32(bitPattern:)` converts).
public enum CodePacking {
    /// Codes per 32-bit word: 16, 8 or 4.
    @inlinable public static func codesPerWord(bits: Int) -> Int { 32 / bits }

    /// Packs token-major key codes (`codes[t·codeRowStride + d]`, `tokens` a multiple of
    /// `32/bits`) into channel-major words: word `w` of channel `d` at `words[d·wordStride + w]`.
    public static func packKeys(
        _ codes: UnsafePointer<UInt8>, tokens: Int, channels: Int, codeRowStride: Int, bits: Int,
        into words: UnsafeMutablePointer<UInt32>, wordStride: Int
    ) {
        let f = codesPerWord(bits: bits)
        precondition(tokens % f == 0, "key tokens (\(tokens)) must be a multiple of \(f) to pack \(bits)-bit codes")
        for d in 0..<channels {
            for w in 0..<(tokens / f) {
                var word: UInt32 = 0
                for j in 0..<f {
                    word |= UInt32(codes[(w * f + j) * codeRowStride + d]) << UInt32(j * bits)
                }
                words[d * wordStride + w] = word
            }
        }
    }

    /// Inverse of `packKeys`.
    public static func unpackKeys(
        _ words: UnsafePointer<UInt32>, tokens: Int, channels: Int, wordStride: Int, bits: Int,
        into codes: UnsafeMutablePointer<UInt8>, codeRowStride: Int
    ) {
        let f = codesPerWord(bits: bits)
        precondition(tokens % f == 0, "key tokens (\(tokens)) must be a multiple of \(f) to unpack \(bits)-bit codes")
        let mask = UInt32((1 << bits) - 1)
        for d in 0..<channels {
            for w in 0..<(tokens / f) {
                let word = words[d * wordStride + w]
                for j in 0..<f {
                    codes[(w * f + j) * codeRowStride + d] = UInt8((word >> UInt32(j * bits)) & mask)
                }
            }
        }
    }

    /// Packs token-major value codes (`codes[t·codeRowStride + c]`, `channels` a multiple of
    /// `32/bits`) into token-major words: word `w` of token `t` at `words[t·wordStride + w]`.
    public static func packValues(
        _ codes: UnsafePointer<UInt8>, tokens: Int, channels: Int, codeRowStride: Int, bits: Int,
        into words: UnsafeMutablePointer<UInt32>, wordStride: Int
    ) {
        let f = codesPerWord(bits: bits)
        precondition(channels % f == 0, "value channels (\(channels)) must be a multiple of \(f) to pack \(bits)-bit codes")
        for t in 0..<tokens {
            let row = codes + t * codeRowStride
            for w in 0..<(channels / f) {
                var word: UInt32 = 0
                for j in 0..<f { word |= UInt32(row[w * f + j]) << UInt32(j * bits) }
                words[t * wordStride + w] = word
            }
        }
    }

    /// Inverse of `packValues`.
    public static func unpackValues(
        _ words: UnsafePointer<UInt32>, tokens: Int, channels: Int, wordStride: Int, bits: Int,
        into codes: UnsafeMutablePointer<UInt8>, codeRowStride: Int
    ) {
        let f = codesPerWord(bits: bits)
        precondition(channels % f == 0, "value channels (\(channels)) must be a multiple of \(f) to unpack \(bits)-bit codes")
        let mask = UInt32((1 << bits) - 1)
        for t in 0..<tokens {
            let row = codes + t * codeRowStride
            for w in 0..<(channels / f) {
                let word = words[t * wordStride + w]
                for j in 0..<f { row[w * f + j] = UInt8((word >> UInt32(j * bits)) & mask) }
            }
        }
    }

    // MARK: Array conveniences (dense layouts)

    /// `packKeys` on a dense `tokens × channels` code array; returns `channels × tokens/f` words.
    public static func packKeys(_ codes: [UInt8], tokens: Int, channels: Int, bits: Int) -> [UInt32] {
        precondition(codes.count == tokens * channels, "expected \(tokens)×\(channels) codes")
        let n = channels * (tokens / codesPerWord(bits: bits))
        guard n > 0 else { return [] }
        return [UInt32](unsafeUninitializedCapacity: n) { out, count in
            codes.withUnsafeBufferPointer {
                packKeys($0.baseAddress!, tokens: tokens, channels: channels, codeRowStride: channels, bits: bits,
                         into: out.baseAddress!, wordStride: tokens / codesPerWord(bits: bits))
            }
            count = n
        }
    }

    /// `unpackKeys` into a dense `tokens × channels` code array.
    public static func unpackKeys(_ words: [UInt32], tokens: Int, channels: Int, bits: Int) -> [UInt8] {
        let wpc = tokens / codesPerWord(bits: bits)
        precondition(words.count == channels * wpc, "expected \(channels)×\(wpc) words")
        guard tokens * channels > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: tokens * channels) { out, count in
            words.withUnsafeBufferPointer {
                unpackKeys($0.baseAddress!, tokens: tokens, channels: channels, wordStride: wpc, bits: bits,
                           into: out.baseAddress!, codeRowStride: channels)
            }
            count = tokens * channels
        }
    }

    /// `packValues` on a dense `tokens × channels` code array; returns `tokens × channels/f` words.
    public static func packValues(_ codes: [UInt8], tokens: Int, channels: Int, bits: Int) -> [UInt32] {
        precondition(codes.count == tokens * channels, "expected \(tokens)×\(channels) codes")
        let wpt = channels / codesPerWord(bits: bits)
        guard tokens * wpt > 0 else { return [] }
        return [UInt32](unsafeUninitializedCapacity: tokens * wpt) { out, count in
            codes.withUnsafeBufferPointer {
                packValues($0.baseAddress!, tokens: tokens, channels: channels, codeRowStride: channels, bits: bits,
                           into: out.baseAddress!, wordStride: wpt)
            }
            count = tokens * wpt
        }
    }

    /// `unpackValues` into a dense `tokens × channels` code array.
    public static func unpackValues(_ words: [UInt32], tokens: Int, channels: Int, bits: Int) -> [UInt8] {
        let wpt = channels / codesPerWord(bits: bits)
        precondition(words.count == tokens * wpt, "expected \(tokens)×\(wpt) words")
        guard tokens * channels > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: tokens * channels) { out, count in
            words.withUnsafeBufferPointer {
                unpackValues($0.baseAddress!, tokens: tokens, channels: channels, wordStride: wpt, bits: bits,
                             into: out.baseAddress!, codeRowStride: channels)
            }
            count = tokens * channels
        }
    }
}
