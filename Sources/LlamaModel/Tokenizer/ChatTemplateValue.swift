/// A `namespace()` object: the one mutable value in Jinja, shared by reference.
final class TemplateNamespace {
    var values: [String: TemplateValue] = [:]
    var order: [String] = []
    func set(_ k: String, _ v: TemplateValue) {
        if values[k] == nil { order.append(k) }
        values[k] = v
    }
}

/// A runtime value of the template language (Python-like semantics).
enum TemplateValue {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([TemplateValue])
    /// Insertion-ordered string-keyed mapping.
    case dict(keys: [String], values: [String: TemplateValue])
    case namespace(TemplateNamespace)

    static func makeDict(_ pairs: [(String, TemplateValue)]) -> TemplateValue {
        var keys: [String] = []
        var values: [String: TemplateValue] = [:]
        for (k, v) in pairs {
            if values[k] == nil { keys.append(k) }
            values[k] = v
        }
        return .dict(keys: keys, values: values)
    }

    /// Deepest list/dict nesting, counting stops once past `limit`.
    func nestingDepth(limit: Int) -> Int {
        guard limit >= 0 else { return 1 }
        switch self {
        case .list(let l):
            var d = 0
            for v in l {
                d = max(d, v.nestingDepth(limit: limit - 1))
                if d > limit { break }
            }
            return d + 1
        case .dict(let keys, let values):
            var d = 0
            for k in keys {
                d = max(d, (values[k] ?? .none).nestingDepth(limit: limit - 1))
                if d > limit { break }
            }
            return d + 1
        default:
            return 0
        }
    }

    /// Values nest at most this deep (deeper ones could exhaust the stack when printed or freed).
    static let maxNesting = 64

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let k, _): return !k.isEmpty
        case .namespace: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .none: "none"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "float"
        case .string: "string"
        case .list: "list"
        case .dict: "dict"
        case .namespace: "namespace"
        }
    }

    /// `str(value)` as Jinja prints it (`{{ }}`, `~`, `|string`).
    var rendered: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr(topLevel: true)
        }
    }

    /// Python's `repr` (strings quoted) or `str` at top level.
    func pythonRepr(topLevel: Bool = false) -> String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d > 0 ? "inf" : "-inf" }
            if d == d.rounded(), abs(d) < 1e16 { return String(Int(d)) + ".0" }
            return String(d)
        case .string(let s):
            if topLevel { return s }
            let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
            var out = String(quote)
            for c in s.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if Character(c) == quote { out += "\\" + String(quote) } else { out.unicodeScalars.append(c) }
                }
            }
            out.append(quote)
            return out
        case .list(let l): return "[" + l.map { $0.pythonRepr() }.joined(separator: ", ") + "]"
        case .dict(let keys, let values):
            return "{" + keys.map { "'\($0)': " + (values[$0] ?? .none).pythonRepr() }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + ns.order.map { "\($0)=" + (ns.values[$0] ?? .none).pythonRepr() }.joined(separator: ", ") + ">"
        }
    }

    /// JSON as transformers' `tojson` filter writes it (`json.dumps(ensure_ascii=False)`).
    func json(indent: Int?, level: Int = 0) -> String {
        func pad(_ l: Int) -> String { indent.map { "\n" + String(repeating: " ", count: $0 * l) } ?? "" }
        switch self {
        case .undefined, .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? pythonRepr() : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
        case .string(let s):
            var out = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                default:
                    if c.value < 0x20 {
                        out += "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count) + String(c.value, radix: 16)
                    } else {
                        out.unicodeScalars.append(c)
                    }
                }
            }
            return out + "\""
        case .list(let l):
            if l.isEmpty { return "[]" }
            let sep = indent == nil ? ", " : ","
            return "[" + l.map { pad(level + 1) + $0.json(indent: indent, level: level + 1) }.joined(separator: sep) + pad(level) + "]"
        case .dict(let keys, let values):
            if keys.isEmpty { return "{}" }
            let sep = indent == nil ? ", " : ","
            return "{" + keys.map { pad(level + 1) + TemplateValue.string($0).json(indent: nil) + ": " + (values[$0] ?? .none).json(indent: indent, level: level + 1) }.joined(separator: sep) + pad(level) + "}"
        case .namespace(let ns):
            return TemplateValue.makeDict(ns.order.map { ($0, ns.values[$0] ?? .none) }).json(indent: indent, level: level)
        }
    }

    /// Python `==`.
    func equals(_ o: TemplateValue) -> Bool {
        switch (self, o) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)): return Double(a) == b
        case (.bool(let a), .int(let b)), (.int(let b), .bool(let a)): return (a ? 1 : 0) == b
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.list(let a), .list(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.dict(let ka, let va), .dict(let kb, let vb)):
            return Set(ka) == Set(kb) && ka.allSatisfy { (va[$0] ?? .none).equals(vb[$0] ?? .none) }
        case (.namespace(let a), .namespace(let b)): return a === b
        default: return false
        }
    }

    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
}
