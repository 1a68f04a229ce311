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

    func fail(_ message: String, _ offset: Int) -> ChatTemplateError { lexer.error(message, at: offset) }

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

    func lookup(_ name: String) -> TemplateValue {
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
    func checkedSize(_ v: TemplateValue, _ offset: Int) throws(ChatTemplateError) -> TemplateValue {
        switch v {
        case .string(let s) where s.utf8.count > Self.maxOutputBytes:
            throw fail("string longer than \(Self.maxOutputBytes) bytes", offset)
        case .list(let l) where l.count > 1_000_000:
            throw fail("list longer than 1000000 items", offset)
        default:
            return v
        }
    }

    func checkedNesting(_ v: TemplateValue) throws(ChatTemplateError) -> TemplateValue {
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
}

extension TemplateValue {
    var isString: Bool { if case .string = self { return true } else { return false } }
}
