import Foundation

/// Evaluates a parsed template: scopes, loops, filters, tests, and the Python string and dict
/// methods chat templates use. Limits on loop iterations and output size keep hostile templates
/// from running away.
struct ChatTemplateInterpreter {
    let lexer: ChatTemplateLexer
    private var scopes: [[String: TemplateValue]]
    private(set) var output = ""
    private var iterations = 0
    static let maxIterations = 1_000_000
    static let maxOutputBytes = 64 << 20

    init(lexer: ChatTemplateLexer, globals: [String: TemplateValue]) {
        self.lexer = lexer
        scopes = [globals]
    }

    private func fail(_ message: String, _ offset: Int) -> ChatTemplateError { lexer.error(message, at: offset) }

    // MARK: Statements

    mutating func run(_ nodes: [TemplateNode]) throws(ChatTemplateError) {
        for node in nodes {
            switch node {
            case .text(let s):
                try emit(s, at: 0)
            case .output(let e):
                try emit(try eval(e).rendered, at: 0)
            case .ifChain(let branches, let otherwise):
                var done = false
                for (cond, body) in branches where try eval(cond).truthy {
                    try run(body)
                    done = true
                    break
                }
                if !done { try run(otherwise) }
            case .forLoop(let targets, let iterable, let filter, let body, let otherwise, let offset):
                try runFor(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, offset: offset)
            case .set(let target, let valueExpr, let offset):
                let value = try eval(valueExpr)
                if target.count == 1 {
                    scopes[scopes.count - 1][target[0]] = value
                } else {
                    guard case .namespace(let ns) = lookup(target[0]) else {
                        throw fail("'\(target[0])' is not a namespace, cannot set '\(target[0]).\(target[1])'", offset)
                    }
                    ns.set(target[1], value)
                }
            }
        }
    }

    private mutating func emit(_ s: String, at offset: Int) throws(ChatTemplateError) {
        output += s
        if output.utf8.count > Self.maxOutputBytes { throw fail("output exceeds \(Self.maxOutputBytes) bytes", offset) }
    }

    private mutating func runFor(
        targets: [String], iterable: TemplateExpr, filter: TemplateExpr?, body: [TemplateNode], otherwise: [TemplateNode], offset: Int
    ) throws(ChatTemplateError) {
        let seq = try eval(iterable)
        var items: [TemplateValue]
        switch seq {
        case .list(let l): items = l
        case .dict(let keys, _): items = keys.map { .string($0) }
        case .string(let s): items = s.map { .string(String($0)) }
        case .undefined: items = []
        default: throw fail("cannot loop over a \(seq.typeName)", offset)
        }
        scopes.append([:])
        defer { scopes.removeLast() }
        func bind(_ item: TemplateValue, _ interp: inout ChatTemplateInterpreter) throws(ChatTemplateError) {
            if targets.count == 1 {
                interp.scopes[interp.scopes.count - 1][targets[0]] = item
            } else {
                guard case .list(let parts) = item, parts.count == targets.count else {
                    throw interp.fail("cannot unpack \(item.typeName) into \(targets.count) loop variables", offset)
                }
                for (t, v) in zip(targets, parts) { interp.scopes[interp.scopes.count - 1][t] = v }
            }
        }
        if let filter {
            var kept: [TemplateValue] = []
            for item in items {
                try bind(item, &self)
                if try eval(filter).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            try run(otherwise)
            return
        }
        let n = items.count
        for (i, item) in items.enumerated() {
            iterations += 1
            guard iterations <= Self.maxIterations else { throw fail("more than \(Self.maxIterations) loop iterations", offset) }
            try bind(item, &self)
            scopes[scopes.count - 1]["loop"] = TemplateValue.makeDict([
                ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(n - i)), ("revindex0", .int(n - i - 1)),
                ("first", .bool(i == 0)), ("last", .bool(i == n - 1)), ("length", .int(n)),
                ("previtem", i > 0 ? items[i - 1] : .undefined), ("nextitem", i + 1 < n ? items[i + 1] : .undefined),
            ])
            try run(body)
        }
    }

    private func lookup(_ name: String) -> TemplateValue {
        for scope in scopes.reversed() {
            if let v = scope[name] { return v }
        }
        return .undefined
    }

    // MARK: Expressions

    mutating func eval(_ e: TemplateExpr) throws(ChatTemplateError) -> TemplateValue {
        switch e {
        case .literal(let v):
            return v
        case .name(let n, _):
            return lookup(n)
        case .list(let items):
            var out: [TemplateValue] = []
            for item in items { out.append(try eval(item)) }
            return try checkedNesting(.list(out))
        case .dict(let pairs):
            var out: [(String, TemplateValue)] = []
            for (k, v) in pairs {
                guard case .string(let key) = try eval(k) else { throw fail("dict keys must be strings", 0) }
                out.append((key, try eval(v)))
            }
            return try checkedNesting(TemplateValue.makeDict(out))
        case .attribute(let base, let name, let offset):
            return try attribute(try eval(base), name, offset)
        case .index(let base, let index, let offset):
            return try indexValue(try eval(base), try eval(index), offset)
        case .slice(let base, let lo, let hi, let offset):
            let b = try eval(base)
            let l = try lo.map { (e) throws(ChatTemplateError) in try eval(e) }
            let h = try hi.map { (e) throws(ChatTemplateError) in try eval(e) }
            return try slice(b, l, h, offset)
        case .call(let callee, let args, let kwargs, let offset):
            return try call(callee, args, kwargs, offset)
        case .filter(let base, let name, let args, let kwargs, let offset):
            let v = try eval(base)
            var a: [TemplateValue] = []
            for x in args { a.append(try eval(x)) }
            var k: [String: TemplateValue] = [:]
            for (n, x) in kwargs { k[n] = try eval(x) }
            return try applyFilter(name, v, a, k, offset)
        case .test(let base, let name, let args, let negated, let offset):
            let v = try eval(base)
            var a: [TemplateValue] = []
            for x in args { a.append(try eval(x)) }
            let r = try applyTest(name, v, a, offset)
            return .bool(negated ? !r : r)
        case .unary(let op, let x, let offset):
            let v = try eval(x)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                switch v {
                case .int(let i): return .int(0 &- i)
                case .double(let d): return .double(-d)
                default: throw fail("cannot negate a \(v.typeName)", offset)
                }
            default:
                guard v.number != nil else { throw fail("unary '+' needs a number, got \(v.typeName)", offset) }
                return v
            }
        case .binary(let op, let l, let r, let offset):
            if op == "and" {
                let a = try eval(l)
                return a.truthy ? try eval(r) : a
            }
            if op == "or" {
                let a = try eval(l)
                return a.truthy ? a : try eval(r)
            }
            return try binary(op, try eval(l), try eval(r), offset)
        case .conditional(let value, let condition, let otherwise):
            if try eval(condition).truthy { return try eval(value) }
            return try otherwise.map { (e) throws(ChatTemplateError) in try eval(e) } ?? .undefined
        }
    }

    /// Strings and lists may not grow past the output limit (doubling in a loop would).
    private func checkedSize(_ v: TemplateValue, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch v {
        case .string(let s) where s.utf8.count > Self.maxOutputBytes:
            throw fail("string longer than \(Self.maxOutputBytes) bytes", offset)
        case .list(let l) where l.count > 1_000_000:
            throw fail("list longer than 1000000 items", offset)
        default:
            return v
        }
    }

    private func checkedNesting(_ v: TemplateValue) throws(ChatTemplateError) -> TemplateValue {
        guard v.nestingDepth(limit: TemplateValue.maxNesting) <= TemplateValue.maxNesting else {
            throw fail("values nested more than \(TemplateValue.maxNesting) deep", 0)
        }
        return v
    }

    private func attribute(_ v: TemplateValue, _ name: String, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch v {
        case .dict(_, let values): return values[name] ?? .undefined
        case .namespace(let ns): return ns.values[name] ?? .undefined
        case .undefined: return .undefined
        default: return .undefined
        }
    }

    private func indexValue(_ v: TemplateValue, _ index: TemplateValue, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch (v, index) {
        case (.list(let l), .int(let i)):
            let j = i < 0 ? l.count + i : i
            return j >= 0 && j < l.count ? l[j] : .undefined
        case (.string(let s), .int(let i)):
            let chars = Array(s)
            let j = i < 0 ? chars.count + i : i
            return j >= 0 && j < chars.count ? .string(String(chars[j])) : .undefined
        case (.dict(_, let values), .string(let k)):
            return values[k] ?? .undefined
        case (.namespace(let ns), .string(let k)):
            return ns.values[k] ?? .undefined
        case (.undefined, _):
            return .undefined
        default:
            throw fail("cannot index a \(v.typeName) with a \(index.typeName)", offset)
        }
    }

    private func slice(_ v: TemplateValue, _ lo: TemplateValue?, _ hi: TemplateValue?, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        func bound(_ b: TemplateValue?, _ count: Int, _ dflt: Int) throws(ChatTemplateError) -> Int {
            guard let b, !(b.isUndefined), !(b.equals(.none)) else { return dflt }
            guard case .int(var i) = b else { throw fail("slice bounds must be integers", offset) }
            if i < 0 { i += count }
            return min(max(i, 0), count)
        }
        switch v {
        case .list(let l):
            let a = try bound(lo, l.count, 0), b = try bound(hi, l.count, l.count)
            return .list(a < b ? Array(l[a..<b]) : [])
        case .string(let s):
            let chars = Array(s)
            let a = try bound(lo, chars.count, 0), b = try bound(hi, chars.count, chars.count)
            return .string(a < b ? String(chars[a..<b]) : "")
        case .undefined:
            return .undefined
        default:
            throw fail("cannot slice a \(v.typeName)", offset)
        }
    }

    private func binary(_ op: String, _ a: TemplateValue, _ b: TemplateValue, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch op {
        case "==": return .bool(a.equals(b))
        case "!=": return .bool(!a.equals(b))
        case "~": return try checkedSize(.string(a.rendered + b.rendered), offset)
        case "in":
            switch b {
            case .string(let s):
                guard case .string(let x) = a else { throw fail("'in <string>' needs a string on the left, got \(a.typeName)", offset) }
                return .bool(x.isEmpty || s.contains(x))
            case .list(let l): return .bool(l.contains { $0.equals(a) })
            case .dict(_, let values):
                guard case .string(let k) = a else { return .bool(false) }
                return .bool(values[k] != nil)
            case .namespace(let ns):
                guard case .string(let k) = a else { return .bool(false) }
                return .bool(ns.values[k] != nil)
            case .undefined: return .bool(false)
            default: throw fail("cannot test membership in a \(b.typeName)", offset)
            }
        case "<", ">", "<=", ">=":
            let c: Int
            if let x = a.number, let y = b.number, !(a.isString || b.isString) {
                c = x < y ? -1 : (x > y ? 1 : 0)
            } else if case .string(let x) = a, case .string(let y) = b {
                c = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x.unicodeScalars.elementsEqual(y.unicodeScalars) ? 0 : 1)
            } else {
                throw fail("cannot compare \(a.typeName) with \(b.typeName)", offset)
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)): return try checkedSize(.string(x + y), offset)
            case (.list(let x), .list(let y)): return try checkedSize(.list(x + y), offset)
            case (.int(let x), .int(let y)):
                let (r, o) = x.addingReportingOverflow(y)
                return o ? .double(Double(x) + Double(y)) : .int(r)
            default:
                if let x = a.number, let y = b.number, !(a.isString || b.isString) { return .double(x + y) }
                throw fail("cannot add \(a.typeName) and \(b.typeName)", offset)
            }
        case "*":
            if case .string(let s) = a, case .int(let n) = b { return .string(n > 0 && n * max(s.utf8.count, 1) <= Self.maxOutputBytes ? String(repeating: s, count: n) : "") }
            if case .int(let x) = a, case .int(let y) = b {
                let (r, o) = x.multipliedReportingOverflow(by: y)
                return o ? .double(Double(x) * Double(y)) : .int(r)
            }
            fallthrough
        case "-", "/", "//", "%", "**":
            guard let x = a.number, let y = b.number, !(a.isString || b.isString) else {
                throw fail("operator '\(op)' needs numbers, got \(a.typeName) and \(b.typeName)", offset)
            }
            if case .int(let i) = a, case .int(let j) = b {
                switch op {
                case "-":
                    let (r, o) = i.subtractingReportingOverflow(j)
                    return o ? .double(x - y) : .int(r)
                case "//", "%":
                    guard j != 0 else { throw fail("division by zero", offset) }
                    if i == Int.min && j == -1 { return op == "%" ? .int(0) : .double(-Double(Int.min)) }
                    var q = i / j, r = i % j
                    if r != 0 && ((r < 0) != (j < 0)) { q -= 1; r += j }
                    return op == "//" ? .int(q) : .int(r)
                case "**":
                    if j >= 0, j < 64 {
                        var r = 1, ok = true
                        for _ in 0..<j {
                            let (m, o) = r.multipliedReportingOverflow(by: i)
                            if o { ok = false; break }
                            r = m
                        }
                        if ok { return .int(r) }
                    }
                default: break
                }
            }
            switch op {
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/":
                guard y != 0 else { throw fail("division by zero", offset) }
                return .double(x / y)
            case "//":
                guard y != 0 else { throw fail("division by zero", offset) }
                return .double((x / y).rounded(.down))
            case "%":
                guard y != 0 else { throw fail("division by zero", offset) }
                let r = x.truncatingRemainder(dividingBy: y)
                return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            default:
                return .double(Foundation.pow(x, y))
            }
        default:
            throw fail("unknown operator '\(op)'", offset)
        }
    }

    // MARK: Calls

    private mutating func call(_ callee: TemplateExpr, _ argExprs: [TemplateExpr], _ kwargExprs: [(String, TemplateExpr)], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
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

    private func callMethod(_ v: TemplateValue, _ method: String, _ args: [TemplateValue], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
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

    private func applyFilter(_ name: String, _ v: TemplateValue, _ args: [TemplateValue], _ kwargs: [String: TemplateValue], _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
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

    private func applyTest(_ name: String, _ v: TemplateValue, _ args: [TemplateValue], _ offset: Int) throws(ChatTemplateError) -> Bool {
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

extension TemplateValue {
    var isString: Bool { if case .string = self { return true } else { return false } }
}

extension String {
    fileprivate func pyStrip() -> String {
        ChatTemplateInterpreter.strip(self, chars: nil, leading: true, trailing: true)
    }
}
