/// Turns a stream of token ids into text, one token at a time, never emitting part of a
/// character: bytes of an incomplete UTF-8 sequence are held back until the rest arrives.
/// Invalid bytes become U+FFFD as soon as they are known to be invalid.
///
/// ```swift
/// var decoder = StreamingDecoder(tokenizer: tok)
/// for id in generated { print(decoder.append(id), terminator: "") }
/// print(decoder.flush())
/// ```
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    /// Whether control and unknown tokens are left out.
    public let skipSpecialTokens: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Bytes received but not yet returned (an incomplete character).
    public var pendingByteCount: Int { pending.count }

    /// Adds one token and returns the text that is now complete (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        appendBytes(tokenizer.pieceBytes(id, special: !skipSpecialTokens))
    }

    /// Adds raw bytes and returns the text that is now complete.
    public mutating func appendBytes(_ bytes: [UInt8]) -> String {
        pending.append(contentsOf: bytes)
        let keep = Self.incompleteSuffixLength(pending)
        let ready = pending.count - keep
        guard ready > 0 else { return "" }
        let text = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        return text
    }

    /// Returns whatever is held back, invalid bytes replaced by U+FFFD, and resets.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the trailing bytes that are a valid but unfinished UTF-8 sequence (0 if none).
    public static func incompleteSuffixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        // Find the last lead byte among the final 3 bytes.
        var i = n - 1
        while i >= 0, i >= n - 3 {
            let c = b[i]
            if c & 0xC0 != 0x80 {
                // Lead (or ASCII) byte at i.
                let need: Int
                switch c {
                case 0xC2...0xDF: need = 2
                case 0xE0...0xEF: need = 3
                case 0xF0...0xF4: need = 4
                default: return 0  // ASCII or invalid lead: nothing to hold
                }
                let have = n - i
                guard have < need else { return 0 }
                // The second byte (if present) must be in the range allowed after this lead.
                if have >= 2 {
                    let s = b[i + 1]
                    let ok: Bool
                    switch c {
                    case 0xE0: ok = (0xA0...0xBF).contains(s)
                    case 0xED: ok = (0x80...0x9F).contains(s)
                    case 0xF0: ok = (0x90...0xBF).contains(s)
                    case 0xF4: ok = (0x80...0x8F).contains(s)
                    default: ok = (0x80...0xBF).contains(s)
                    }
                    if !ok { return 0 }
                }
                return have
            }
            i -= 1
        }
        return 0
    }
}
