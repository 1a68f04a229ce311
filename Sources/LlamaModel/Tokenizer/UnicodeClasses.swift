/// Unicode character classes used by the pre-tokenizers, with the same meaning as in
/// llama.cpp's `unicode_cpt_flags`: `\p{L}`, `\p{N}`, `\p{P}` by general category and `\s` as the
/// Unicode White_Space set.
struct CodepointClass: OptionSet, Sendable {
    let rawValue: UInt8
    static let letter = CodepointClass(rawValue: 1)
    static let number = CodepointClass(rawValue: 2)
    static let whitespace = CodepointClass(rawValue: 4)
    static let punctuation = CodepointClass(rawValue: 8)

    /// The classes of a code point (ASCII from a table, the rest from the standard library's
    /// Unicode data).
    @inline(__always)
    static func of(_ cp: UInt32) -> CodepointClass {
        if cp < 128 { return asciiTable[Int(cp)] }
        return nonASCII(cp)
    }

    private static let asciiTable: [CodepointClass] = (0..<128).map { nonASCII(UInt32($0)) }

    private static func nonASCII(_ cp: UInt32) -> CodepointClass {
        var c: CodepointClass = []
        if isWhitespace(cp) { c.insert(.whitespace) }
        guard let scalar = Unicode.Scalar(cp) else { return c }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            c.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            c.insert(.punctuation)
        default:
            break
        }
        return c
    }

    /// llama.cpp's `unicode_set_whitespace` (the Unicode White_Space property).
    static func isWhitespace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}

/// UTF-8 helpers shared by the tokenizer and the streaming decoder.
enum UTF8Util {
    /// Length of the UTF-8 sequence introduced by `lead`, as llama.cpp's `unicode_len_utf8`
    /// (1 for continuation or invalid bytes).
    @inline(__always)
    static func sequenceLength(lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// Append the UTF-8 bytes of a scalar value.
    @inline(__always)
    static func append(_ cp: UInt32, to out: inout [UInt8]) {
        switch cp {
        case 0..<0x80:
            out.append(UInt8(cp))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (cp >> 6)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (cp >> 12)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        default:
            out.append(UInt8(0xF0 | ((cp >> 18) & 0x07)))
            out.append(UInt8(0x80 | ((cp >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        }
    }
}
