/// A parsed JSON value. Integer literals that fit in `Int` stay exact (`integer`); every other
/// number is a `number`. Objects keep their keys in document order.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The value as an `Int`: an integer literal, or a number with an integral value in range.
    public var intValue: Int? {
        switch self {
        case .integer(let i): return i
        case .number(let d):
            guard d.isFinite, d.rounded() == d, d >= -9.0e15, d <= 9.0e15 else { return nil }
            return Int(d)
        default: return nil
        }
    }
    /// The value as a `Double`, if it is a number.
    public var doubleValue: Double? {
        switch self {
        case .integer(let i): Double(i)
        case .number(let d): d
        default: nil
        }
    }
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }
    public var isNull: Bool { self == .null }

    /// A short description for error messages (long values are cut).
    public var brief: String {
        let s: String
        switch self {
        case .null: s = "null"
        case .bool(let b): s = b ? "true" : "false"
        case .integer(let i): s = String(i)
        case .number(let d): s = String(d)
        case .string(let t): s = "\"\(t)\""
        case .array(let a): s = "[" + a.map(\.brief).joined(separator: ", ") + "]"
        case .object(let o): s = "{" + o.keys.map { "\"\($0)\": …" }.joined(separator: ", ") + "}"
        }
        return s.count > 80 ? String(s.prefix(77)) + "…" : s
    }
}

/// A JSON object: its keys in document order and the values by key.
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: JSONValue] = [:]

    public init() {}

    public subscript(key: String) -> JSONValue? { values[key] }

    /// Sets `key`; a key seen before keeps its first position.
    mutating func set(_ key: String, _ value: JSONValue) {
        if values.updateValue(value, forKey: key) == nil { keys.append(key) }
    }
}

/// Why a JSON text could not be parsed, and at which byte.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let message: String
    public var description: String { "\(message) at byte \(offset)" }
}

/// A strict RFC 8259 parser over bytes that never traps: nesting is limited, numbers are
/// range-checked, and every malformed input is a `JSONParseError`.
public struct JSONParser {
    /// What to do when an object repeats a key.
    public enum DuplicateKeys: Sendable {
        /// The later value wins (what Python's `json` does).
        case lastWins
        /// Parsing fails, naming the key.
        case reject
    }

    public static let maxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var i = 0
    private let duplicates: DuplicateKeys

    private init(_ bytes: UnsafeRawBufferPointer, duplicates: DuplicateKeys) {
        self.bytes = bytes
        self.duplicates = duplicates
    }

    /// Parses one JSON value that may be surrounded by whitespace (and nothing else).
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, duplicateKeys: DuplicateKeys = .lastWins
    ) throws(JSONParseError) -> JSONValue {
        var p = JSONParser(bytes, duplicates: duplicateKeys)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.i == bytes.count else { throw p.error("unexpected \(p.describeByte()) after the JSON value") }
        return v
    }

    /// Parses a JSON text given as bytes.
    public static func parse(_ bytes: [UInt8], duplicateKeys: DuplicateKeys = .lastWins) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBytes { buf in
            do throws(JSONParseError) {
                return .success(try parse(buf, duplicateKeys: duplicateKeys))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private func error(_ message: String) -> JSONParseError { JSONParseError(offset: i, message: message) }

    private func describeByte() -> String {
        guard i < bytes.count else { return "end of text" }
        let b = bytes[i]
        return b >= 0x20 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
    }

    private mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ literal: StaticString, _ v: JSONValue) throws(JSONParseError) -> JSONValue {
        let n = literal.utf8CodeUnitCount
        guard bytes.count - i >= n else { throw error("truncated literal") }
        let p = literal.utf8Start
        for k in 0..<n where bytes[i + k] != p[k] { throw error("invalid literal") }
        i += n
        return v
    }

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) levels") }
        guard i < bytes.count else { throw error("unexpected end of text, expected a value") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected \(describeByte()), expected a value")
        }
    }

    private mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
        i += 1  // {
        var obj = JSONObject()
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(obj)
        }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                throw error("unexpected \(describeByte()), expected a string key")
            }
            let keyOffset = i
            let key = try string()
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else {
                throw error("unexpected \(describeByte()), expected ':'")
            }
            i += 1
            skipWhitespace()
            let v = try value(depth: depth + 1)
            if duplicates == .reject, obj[key] != nil {
                throw JSONParseError(offset: keyOffset, message: "duplicate key \"\(key)\"")
            }
            obj.set(key, v)
            skipWhitespace()
            guard i < bytes.count else { throw error("unexpected end of text, expected ',' or '}'") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "}") else { throw error("unexpected \(describeByte()), expected ',' or '}'") }
            i += 1
            return .object(obj)
        }
    }

    private mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
        i += 1  // [
        var out: [JSONValue] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(out)
        }
        while true {
            skipWhitespace()
            out.append(try value(depth: depth + 1))
            skipWhitespace()
            guard i < bytes.count else { throw error("unexpected end of text, expected ',' or ']'") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "]") else { throw error("unexpected \(describeByte()), expected ',' or ']'") }
            i += 1
            return .array(out)
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - i >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    private mutating func string() throws(JSONParseError) -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw error("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return String(decoding: out, as: UTF8.self)
            }
            guard c >= 0x20 else { throw error("unescaped control character in string") }
            guard c == UInt8(ascii: "\\") else {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < bytes.count else { throw error("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00, bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"),
                    bytes[i + 1] == UInt8(ascii: "u")
                {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                // Lone surrogates become U+FFFD.
                let u: Unicode.Scalar = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: String(Character(u)).utf8)
            default:
                i -= 1
                throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
        }
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = i
        func digit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= UInt8(ascii: "0") && bytes[k] <= UInt8(ascii: "9") }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard digit(i) else { throw error("invalid number") }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if digit(i) { throw error("leading zero in number") }
        } else {
            while digit(i) { i += 1 }
        }
        var integral = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard digit(i) else { throw error("invalid number: no digits after '.'") }
            while digit(i) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digit(i) else { throw error("invalid number: no digits in exponent") }
            while digit(i) { i += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        if integral, let v = Int(text) { return .integer(v) }
        guard let d = Double(text) else { throw JSONParseError(offset: start, message: "invalid number '\(text)'") }
        return .number(d)
    }
}
