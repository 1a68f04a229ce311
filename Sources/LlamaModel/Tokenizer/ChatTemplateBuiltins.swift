import Foundation

/// The built-in functions, methods, filters and tests of the chat-template interpreter, and the
/// Python string helpers they use.
extension ChatTemplateInterpreter {
    // MARK: Calls

    mutating func call(_ callee: TemplateExpr, _ argExprs: [TemplateExpr], _ kwargExprs: [(String, TemplateExpr)], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        var args: [TemplateValue] = []
        for a in argExprs { args.append(try eval(a)) }
        var kwargs: [(String, TemplateValue)] = []
        for (k, a) in kwargExprs { kwargs.append((k, try eval(a))) }

        if case .attribute(let baseExpr, let method, _) = callee {
            return try callMethod(try eval(baseExpr), method, args, offset)
        }
        guard case .name(let name, let nameOffset) = callee, lookup(name).isUndefined else {
            throw fail("this value cannot be called", offset)
        }
        let offset = nameOffset
        switch name {
        case "raise_exception":
            throw fail("template raised an exception: \(args.first?.rendered ?? "")", offset)
        case "range":
            var ints: [Int] = []
            for a in args {
                guard case .int(let i) = a else { throw fail("range() needs integers", offset) }
                ints.append(i)
            }
            let (start, stop, step): (Int, Int, Int)
            switch ints.count {
            case 1: (start, stop, step) = (0, ints[0], 1)
            case 2: (start, stop, step) = (ints[0], ints[1], 1)
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw fail("range() takes 1 to 3 arguments", offset)
            }
            guard step != 0 else { throw fail("range() step must not be zero", offset) }
            var out: [TemplateValue] = []
            var i = start
            while step > 0 ? i < stop : i > stop {
                out.append(.int(i))
                guard out.count <= 100_000 else { throw fail("range() longer than 100000", offset) }
                let (n, o) = i.addingReportingOverflow(step)
                if o { break }
                i = n
            }
            return .list(out)
        case "namespace":
            let ns = TemplateNamespace()
            for (k, v) in kwargs { ns.set(k, v) }
            if case .dict(let keys, let values)? = args.first { for k in keys { ns.set(k, values[k] ?? .none) } }
            for v in ns.values.values { _ = try checkedNesting(.list([v])) }
            return .namespace(ns)
        case "dict":
            return TemplateValue.makeDict(kwargs)
        default:
            throw fail("unknown function '\(name)'", offset)
        }
    }

    func callMethod(_ v: TemplateValue, _ method: String, _ args: [TemplateValue], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        func stringArg(_ i: Int) throws(ChatTemplateError) -> String? {
            guard i < args.count else { return nil }
            if case .none = args[i] { return nil }
            guard case .string(let s) = args[i] else { throw fail("\(method)() needs a string argument", offset) }
            return s
        }
        switch v {
        case .string(let s):
            switch method {
            case "strip", "lstrip", "rstrip":
                let chars = try stringArg(0).map { Set($0.unicodeScalars) }
                return .string(Self.strip(s, chars: chars, leading: method != "rstrip", trailing: method != "lstrip"))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(Self.title(s))
            case "capitalize": return .string(Self.capitalize(s))
            case "startswith", "endswith":
                guard let p = try stringArg(0) else { throw fail("\(method)() needs an argument", offset) }
                let a = Array(s.unicodeScalars), b = Array(p.unicodeScalars)
                return .bool(method == "startswith" ? a.starts(with: b) : a.reversed().starts(with: b.reversed()))
            case "split":
                let sep = try stringArg(0)
                var maxSplit = -1
                if args.count > 1, case .int(let m) = args[1] { maxSplit = m }
                return .list(Self.split(s, sep, maxSplit).map { .string($0) })
            case "replace":
                guard let a = try stringArg(0), let b = try stringArg(1) else { throw fail("replace() needs two strings", offset) }
                return .string(Self.replace(s, a, b))
            case "join":
                guard case .list(let l)? = args.first else { throw fail("join() needs a list", offset) }
                return .string(l.map(\.rendered).joined(separator: s))
            default: break
            }
        case .dict(let keys, let values):
            switch method {
            case "items": return try checkedNesting(.list(keys.map { .list([.string($0), values[$0] ?? .none]) }))
            case "keys": return .list(keys.map { .string($0) })
            case "values": return .list(keys.map { values[$0] ?? .none })
            case "get":
                guard let k = try stringArg(0) else { throw fail("get() needs a key", offset) }
                return values[k] ?? (args.count > 1 ? args[1] : .none)
            default: break
            }
        default: break
        }
        throw fail("unknown method '\(method)' on a \(v.typeName)", offset)
    }

    // MARK: Filters and tests

    func applyFilter(_ name: String, _ v: TemplateValue, _ args: [TemplateValue], _ kwargs: [String: TemplateValue], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch name {
        case "trim":
            return .string(Self.strip(v.rendered, chars: nil, leading: true, trailing: true))
        case "upper": return .string(v.rendered.uppercased())
        case "lower": return .string(v.rendered.lowercased())
        case "capitalize": return .string(Self.capitalize(v.rendered))
        case "title": return .string(Self.title(v.rendered))
        case "string": return .string(v.rendered)
        case "safe": return v
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .list(let l): return .int(l.count)
            case .dict(let k, _): return .int(k.count)
            case .undefined: return .int(0)
            default: throw fail("'\(name)' needs a string, list or dict, got \(v.typeName)", offset)
            }
        case "default", "d":
            let fallback = args.first ?? kwargs["default_value"] ?? .string("")
            var boolean = false
            if args.count > 1 { boolean = args[1].truthy } else if let b = kwargs["boolean"] { boolean = b.truthy }
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "first", "last":
            switch v {
            case .list(let l): return (name == "first" ? l.first : l.last) ?? .undefined
            case .string(let s): return (name == "first" ? s.first : s.last).map { .string(String($0)) } ?? .undefined
            default: throw fail("'\(name)' needs a list or string", offset)
            }
        case "join":
            let sep = args.first?.rendered ?? kwargs["d"]?.rendered ?? ""
            guard case .list(let l) = v else { throw fail("'join' needs a list", offset) }
            return try checkedSize(.string(l.map(\.rendered).joined(separator: sep)), offset)
        case "replace":
            guard args.count >= 2 else { throw fail("'replace' needs two arguments", offset) }
            return try checkedSize(.string(Self.replace(v.rendered, args[0].rendered, args[1].rendered)), offset)
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return d.isFinite && abs(d) < 9e18 ? .int(Int(d)) : .int(0)
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return .int(Int(s.pyStrip()) ?? 0)
            default: return .int(0)
            }
        case "float":
            return .double(v.number ?? (Double(v.rendered.pyStrip()) ?? 0))
        case "abs":
            switch v {
            case .int(let i): return i == Int.min ? .double(-Double(i)) : .int(abs(i))
            case .double(let d): return .double(abs(d))
            default: throw fail("'abs' needs a number", offset)
            }
        case "list":
            switch v {
            case .list: return v
            case .string(let s): return .list(s.map { .string(String($0)) })
            case .dict(let k, _): return .list(k.map { .string($0) })
            default: throw fail("'list' cannot convert a \(v.typeName)", offset)
            }
        case "reverse":
            switch v {
            case .list(let l): return .list(l.reversed())
            case .string(let s): return .string(String(s.reversed()))
            default: throw fail("'reverse' needs a list or string", offset)
            }
        case "items":
            guard case .dict(let keys, let values) = v else { throw fail("'items' needs a dict", offset) }
            return try checkedNesting(.list(keys.map { .list([.string($0), values[$0] ?? .none]) }))
        case "tojson":
            var indent: Int? = nil
            if case .int(let i)? = kwargs["indent"] ?? args.first { indent = max(0, min(i, 16)) }
            return .string(v.json(indent: indent))
        default:
            throw fail("unknown filter '\(name)'", offset)
        }
    }

    func applyTest(_ name: String, _ v: TemplateValue, _ args: [TemplateValue], _ offset: Int) throws(ChatTemplateError) -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "string": return v.isString
        case "number": if case .int = v { return true } else if case .double = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "sequence", "iterable":
            switch v {
            case .list, .string, .dict: return true
            default: return false
            }
        case "odd", "even":
            guard case .int(let i) = v else { throw fail("'\(name)' needs an integer", offset) }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard case .int(let i) = v, case .int(let d)? = args.first, d != 0 else { throw fail("'divisibleby' needs integers", offset) }
            return i % d == 0
        case "equalto", "eq", "sameas":
            guard let o = args.first else { throw fail("'\(name)' needs an argument", offset) }
            return v.equals(o)
        case "lower": return v.isString && v.rendered == v.rendered.lowercased()
        case "upper": return v.isString && v.rendered == v.rendered.uppercased()
        default:
            throw fail("unknown test '\(name)'", offset)
        }
    }

    // MARK: Python string helpers

    static let pythonWhitespace: Set<Unicode.Scalar> = [" ", "\t", "\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{1F}", "\u{85}", "\u{A0}", "\u{1680}", "\u{2000}", "\u{2001}", "\u{2002}", "\u{2003}", "\u{2004}", "\u{2005}", "\u{2006}", "\u{2007}", "\u{2008}", "\u{2009}", "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}"]

    static func strip(_ s: String, chars: Set<Unicode.Scalar>?, leading: Bool, trailing: Bool) -> String {
        let set = chars ?? pythonWhitespace
        var u = Array(s.unicodeScalars)[...]
        if leading { while let f = u.first, set.contains(f) { u = u.dropFirst() } }
        if trailing { while let l = u.last, set.contains(l) { u = u.dropLast() } }
        return String(String.UnicodeScalarView(u))
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return String(f).uppercased() + s.dropFirst().lowercased()
    }

    static func title(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for c in s {
            let cased = c.isLetter
            out += cased ? (previousCased ? String(c).lowercased() : String(c).uppercased()) : String(c)
            previousCased = cased
        }
        return out
    }

    static func replace(_ s: String, _ a: String, _ b: String) -> String {
        if a.isEmpty { return s }
        return String(decoding: Tokenizer.replacing(Array(s.utf8), Array(a.utf8), with: Array(b.utf8)), as: UTF8.self)
    }

    static func split(_ s: String, _ sep: String?, _ maxSplit: Int) -> [String] {
        guard let sep, !sep.isEmpty else {
            // Whitespace split, dropping empties.
            var out: [String] = []
            var cur = String.UnicodeScalarView()
            var splits = 0
            var scalars = Array(s.unicodeScalars)[...]
            while let c = scalars.first {
                scalars = scalars.dropFirst()
                if pythonWhitespace.contains(c) {
                    if !cur.isEmpty {
                        out.append(String(cur))
                        cur = String.UnicodeScalarView()
                        splits += 1
                        if maxSplit >= 0, splits >= maxSplit {
                            while let f = scalars.first, pythonWhitespace.contains(f) { scalars = scalars.dropFirst() }
                            if !scalars.isEmpty { out.append(String(String.UnicodeScalarView(scalars))) }
                            return out
                        }
                    }
                } else {
                    cur.append(c)
                }
            }
            if !cur.isEmpty { out.append(String(cur)) }
            return out
        }
        var out: [String] = []
        let bytes = Array(s.utf8), p = Array(sep.utf8)
        var start = 0, from = 0
        while maxSplit < 0 || out.count < maxSplit, let m = Tokenizer.find(p, in: bytes, from: from, to: bytes.count) {
            out.append(String(decoding: bytes[start..<m], as: UTF8.self))
            start = m + p.count
            from = start
        }
        out.append(String(decoding: bytes[start...], as: UTF8.self))
        return out
    }
}

extension String {
    fileprivate func pyStrip() -> String {
        ChatTemplateInterpreter.strip(self, chars: nil, leading: true, trailing: true)
    }
}
