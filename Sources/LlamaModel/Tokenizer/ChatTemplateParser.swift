/// Expressions of the supported Jinja subset. `offset` fields point into the template source for
/// error messages.
indirect enum TemplateExpr {
    case literal(TemplateValue)
    case name(String, offset: Int)
    case list([TemplateExpr])
    case dict([(TemplateExpr, TemplateExpr)])
    case attribute(TemplateExpr, String, offset: Int)
    case index(TemplateExpr, TemplateExpr, offset: Int)
    case slice(TemplateExpr, TemplateExpr?, TemplateExpr?, offset: Int)
    case call(TemplateExpr, args: [TemplateExpr], kwargs: [(String, TemplateExpr)], offset: Int)
    case filter(TemplateExpr, name: String, args: [TemplateExpr], kwargs: [(String, TemplateExpr)], offset: Int)
    case test(TemplateExpr, name: String, args: [TemplateExpr], negated: Bool, offset: Int)
    case unary(String, TemplateExpr, offset: Int)
    case binary(String, TemplateExpr, TemplateExpr, offset: Int)
    case conditional(TemplateExpr, condition: TemplateExpr, otherwise: TemplateExpr?)
}

/// Statements of the supported Jinja subset.
indirect enum TemplateNode {
    case text(String)
    case output(TemplateExpr)
    case ifChain([(TemplateExpr, [TemplateNode])], otherwise: [TemplateNode])
    case forLoop(targets: [String], iterable: TemplateExpr, filter: TemplateExpr?, body: [TemplateNode], otherwise: [TemplateNode], offset: Int)
    case set(target: [String], value: TemplateExpr, offset: Int)
}

/// Recursive-descent parser following Jinja's operator precedence: `x if c else y`, `or`, `and`,
/// `not`, comparisons and `in`, `+ -`, `~`, `* / // %`, `**`, unary `-`, then primaries with
/// attribute/subscript/call postfixes, filters (`|`) and tests (`is`).
struct ChatTemplateParser {
    typealias Token = ChatTemplateLexer.ExprToken
    let lexer: ChatTemplateLexer
    private var segments: [ChatTemplateLexer.Segment]
    private var index = 0
    private static let maxDepth = 200

    init(template: String) throws(ChatTemplateError) {
        lexer = ChatTemplateLexer(template)
        segments = try lexer.segments()
    }

    mutating func parse() throws(ChatTemplateError) -> [TemplateNode] {
        let (nodes, end) = try parseBlock(until: [])
        if let end {
            throw lexer.error("unexpected '{% \(end.keyword) %}' with no open block", at: end.offset)
        }
        return nodes
    }

    private struct BlockEnd {
        let keyword: String
        let tokens: [Token]
        let offset: Int
    }

    /// Parses nodes until a statement whose keyword is in `terminators` (returned) or the end.
    private mutating func parseBlock(until terminators: Set<String>, depth: Int = 0) throws(ChatTemplateError) -> ([TemplateNode], BlockEnd?) {
        guard depth < Self.maxDepth else { throw lexer.error("blocks nested too deeply", at: segments[min(index, segments.count - 1)].offset) }
        var nodes: [TemplateNode] = []
        while index < segments.count {
            let seg = segments[index]
            index += 1
            switch seg.content {
            case .text(let s):
                nodes.append(.text(s))
            case .tag(.output, let tokens):
                var p = ExprParser(tokens: tokens, lexer: lexer, tagOffset: seg.offset)
                let e = try p.parseExpression()
                try p.expectEnd()
                nodes.append(.output(e))
            case .tag(.statement, let tokens):
                guard case .name(let keyword)? = tokens.first?.kind else {
                    throw lexer.error("a statement tag must start with a keyword", at: seg.offset)
                }
                let rest = Array(tokens.dropFirst())
                if terminators.contains(keyword) {
                    return (nodes, BlockEnd(keyword: keyword, tokens: rest, offset: seg.offset))
                }
                switch keyword {
                case "if":
                    nodes.append(try parseIf(rest, offset: seg.offset, depth: depth))
                case "for":
                    nodes.append(try parseFor(rest, offset: seg.offset, depth: depth))
                case "set":
                    nodes.append(try parseSet(rest, offset: seg.offset))
                case "generation", "endgeneration":
                    // transformers' marker for assistant tokens: renders its body unchanged.
                    continue
                case "elif", "else", "endif", "endfor":
                    throw lexer.error("unexpected '{% \(keyword) %}'", at: seg.offset)
                default:
                    throw lexer.error("unsupported statement '{% \(keyword) %}'", at: seg.offset)
                }
            }
        }
        // End of template: callers with open blocks report "never closed" at the block start.
        return (nodes, nil)
    }

    private mutating func parseIf(_ tokens: [Token], offset: Int, depth: Int) throws(ChatTemplateError) -> TemplateNode {
        var branches: [(TemplateExpr, [TemplateNode])] = []
        var condTokens = tokens
        var condOffset = offset
        while true {
            var p = ExprParser(tokens: condTokens, lexer: lexer, tagOffset: condOffset)
            let cond = try p.parseExpression()
            try p.expectEnd()
            let (body, end) = try parseBlock(until: ["elif", "else", "endif"], depth: depth + 1)
            branches.append((cond, body))
            guard let end else { throw lexer.error("'{% if %}' is never closed", at: offset) }
            switch end.keyword {
            case "elif":
                condTokens = end.tokens
                condOffset = end.offset
            case "else":
                let (otherwise, end2) = try parseBlock(until: ["endif"], depth: depth + 1)
                guard end2 != nil else { throw lexer.error("'{% if %}' is never closed", at: offset) }
                return .ifChain(branches, otherwise: otherwise)
            default:
                return .ifChain(branches, otherwise: [])
            }
        }
    }

    private mutating func parseFor(_ tokens: [Token], offset: Int, depth: Int) throws(ChatTemplateError) -> TemplateNode {
        var p = ExprParser(tokens: tokens, lexer: lexer, tagOffset: offset)
        var targets: [String] = []
        repeat {
            targets.append(try p.expectName())
        } while p.consume(.op(","))
        guard p.consume(.name("in")) else { throw lexer.error("expected 'in' in '{% for %}'", at: p.currentOffset) }
        let iterable = try p.parseExpression(allowConditional: false)
        var filter: TemplateExpr? = nil
        if p.consume(.name("if")) { filter = try p.parseExpression(allowConditional: false) }
        if p.consume(.name("recursive")) { throw lexer.error("recursive loops are not supported", at: offset) }
        try p.expectEnd()
        let (body, end) = try parseBlock(until: ["else", "endfor"], depth: depth + 1)
        guard let end else { throw lexer.error("'{% for %}' is never closed", at: offset) }
        var otherwise: [TemplateNode] = []
        if end.keyword == "else" {
            let (o, end2) = try parseBlock(until: ["endfor"], depth: depth + 1)
            guard end2 != nil else { throw lexer.error("'{% for %}' is never closed", at: offset) }
            otherwise = o
        }
        return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, offset: offset)
    }

    private mutating func parseSet(_ tokens: [Token], offset: Int) throws(ChatTemplateError) -> TemplateNode {
        var p = ExprParser(tokens: tokens, lexer: lexer, tagOffset: offset)
        var target = [try p.expectName()]
        if p.consume(.op(".")) { target.append(try p.expectName()) }
        guard p.consume(.op("=")) else {
            throw lexer.error("only '{% set name = value %}' is supported (block set is not)", at: p.currentOffset)
        }
        let value = try p.parseExpression()
        try p.expectEnd()
        return .set(target: target, value: value, offset: offset)
    }
}

/// Parses one tag's tokens into an expression.
struct ExprParser {
    typealias Token = ChatTemplateLexer.ExprToken
    let tokens: [Token]
    let lexer: ChatTemplateLexer
    let tagOffset: Int
    var i = 0
    var depth = 0
    /// Operator and postfix nodes built so far: chains like `a+a+…` or `x|f|f|…` nest the tree
    /// without recursion in the parser, so their length is capped too.
    var chainNodes = 0
    static let maxChainNodes = 256

    init(tokens: [Token], lexer: ChatTemplateLexer, tagOffset: Int) {
        self.tokens = tokens
        self.lexer = lexer
        self.tagOffset = tagOffset
    }

    var currentOffset: Int { i < tokens.count ? tokens[i].offset : (tokens.last?.offset ?? tagOffset) }

    func peek(_ k: Int = 0) -> ChatTemplateLexer.TokenKind? { i + k < tokens.count ? tokens[i + k].kind : nil }

    mutating func consume(_ k: ChatTemplateLexer.TokenKind) -> Bool {
        if peek() == k { i += 1; return true }
        return false
    }

    mutating func expect(_ k: ChatTemplateLexer.TokenKind, _ what: String) throws(ChatTemplateError) {
        guard consume(k) else { throw lexer.error("expected \(what)", at: currentOffset) }
    }

    mutating func expectName() throws(ChatTemplateError) -> String {
        guard case .name(let n)? = peek() else { throw lexer.error("expected a name", at: currentOffset) }
        i += 1
        return n
    }

    func expectEnd() throws(ChatTemplateError) {
        if i < tokens.count { throw lexer.error("unexpected \(Self.describe(tokens[i].kind))", at: tokens[i].offset) }
    }

    static func describe(_ k: ChatTemplateLexer.TokenKind) -> String {
        switch k {
        case .name(let n): "'\(n)'"
        case .string(let s): "string '\(s)'"
        case .int(let v): "number \(v)"
        case .float(let v): "number \(v)"
        case .op(let o): "'\(o)'"
        }
    }

    mutating func grow(_ offset: Int) throws(ChatTemplateError) {
        chainNodes += 1
        guard chainNodes <= Self.maxChainNodes else { throw lexer.error("expression nested too deeply (more than \(Self.maxChainNodes) operators)", at: offset) }
    }

    mutating func parseExpression(allowConditional: Bool = true) throws(ChatTemplateError) -> TemplateExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth < 100 else { throw lexer.error("expression nested too deeply", at: currentOffset) }
        let value = try parseOr()
        if allowConditional, consume(.name("if")) {
            let cond = try parseOr()
            var otherwise: TemplateExpr? = nil
            if consume(.name("else")) { otherwise = try parseExpression() }
            return .conditional(value, condition: cond, otherwise: otherwise)
        }
        return value
    }

    mutating func parseOr() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseAnd()
        while case .name("or")? = peek() {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary("or", l, try parseAnd(), offset: o)
        }
        return l
    }

    mutating func parseAnd() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseNot()
        while case .name("and")? = peek() {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary("and", l, try parseNot(), offset: o)
        }
        return l
    }

    mutating func parseNot() throws(ChatTemplateError) -> TemplateExpr {
        if case .name("not")? = peek() {
            let o = currentOffset
            i += 1
            depth += 1
            defer { depth -= 1 }
            guard depth < 100 else { throw lexer.error("expression nested too deeply", at: o) }
            return .unary("not", try parseNot(), offset: o)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseAdd()
        while true {
            let o = currentOffset
            if case .op(let op)? = peek(), ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                i += 1
                try grow(o)
                l = .binary(op, l, try parseAdd(), offset: o)
            } else if case .name("in")? = peek() {
                i += 1
                try grow(o)
                l = .binary("in", l, try parseAdd(), offset: o)
            } else if case .name("not")? = peek(), case .name("in")? = peek(1) {
                i += 2
                try grow(o)
                l = .unary("not", .binary("in", l, try parseAdd(), offset: o), offset: o)
            } else {
                return l
            }
        }
    }

    mutating func parseAdd() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseConcat()
        while case .op(let op)? = peek(), op == "+" || op == "-" {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary(op, l, try parseConcat(), offset: o)
        }
        return l
    }

    mutating func parseConcat() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseMul()
        while case .op("~")? = peek() {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary("~", l, try parseMul(), offset: o)
        }
        return l
    }

    mutating func parseMul() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parsePow()
        while case .op(let op)? = peek(), ["*", "/", "//", "%"].contains(op) {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary(op, l, try parsePow(), offset: o)
        }
        return l
    }

    mutating func parsePow() throws(ChatTemplateError) -> TemplateExpr {
        var l = try parseUnary()
        while case .op("**")? = peek() {
            let o = currentOffset
            i += 1
            try grow(o)
            l = .binary("**", l, try parseUnary(), offset: o)
        }
        return l
    }

    mutating func parseUnary() throws(ChatTemplateError) -> TemplateExpr {
        if case .op(let op)? = peek(), op == "-" || op == "+" {
            let o = currentOffset
            i += 1
            depth += 1
            defer { depth -= 1 }
            guard depth < 100 else { throw lexer.error("expression nested too deeply", at: o) }
            let e = try parseUnary()
            return try parsePostfixAndFilters(.unary(op, e, offset: o), postfix: false)
        }
        return try parsePostfixAndFilters(try parsePrimary(), postfix: true)
    }

    mutating func parsePrimary() throws(ChatTemplateError) -> TemplateExpr {
        let o = currentOffset
        guard let t = peek() else {
            let after = i > 0 ? " after \(Self.describe(tokens[i - 1].kind))" : ""
            throw lexer.error("expected an expression\(after)", at: o)
        }
        i += 1
        switch t {
        case .string(var s):
            // Adjacent string literals concatenate.
            while case .string(let s2)? = peek() { s += s2; i += 1 }
            return .literal(.string(s))
        case .int(let v): return .literal(.int(v))
        case .float(let v): return .literal(.double(v))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, offset: o)
            }
        case .op("("):
            let e = try parseExpression()
            if consume(.op(",")) {
                // Tuple: treated as a list.
                var items = [e]
                while peek() != .op(")") {
                    items.append(try parseExpression())
                    if !consume(.op(",")) { break }
                }
                try expect(.op(")"), "')'")
                return .list(items)
            }
            try expect(.op(")"), "')'")
            return e
        case .op("["):
            var items: [TemplateExpr] = []
            while peek() != .op("]") {
                items.append(try parseExpression())
                if !consume(.op(",")) { break }
            }
            try expect(.op("]"), "']'")
            return .list(items)
        case .op("{"):
            var pairs: [(TemplateExpr, TemplateExpr)] = []
            while peek() != .op("}") {
                let k = try parseExpression()
                try expect(.op(":"), "':' in a dict literal")
                pairs.append((k, try parseExpression()))
                if !consume(.op(",")) { break }
            }
            try expect(.op("}"), "'}'")
            return .dict(pairs)
        default:
            throw lexer.error("unexpected \(Self.describe(t))", at: o)
        }
    }

    mutating func parseArguments() throws(ChatTemplateError) -> ([TemplateExpr], [(String, TemplateExpr)]) {
        var args: [TemplateExpr] = []
        var kwargs: [(String, TemplateExpr)] = []
        while peek() != .op(")") {
            if case .name(let k)? = peek(), peek(1) == .op("=") {
                i += 2
                kwargs.append((k, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
            if !consume(.op(",")) { break }
        }
        try expect(.op(")"), "')'")
        return (args, kwargs)
    }

    mutating func parsePostfixAndFilters(_ base: TemplateExpr, postfix: Bool) throws(ChatTemplateError) -> TemplateExpr {
        var e = base
        while true {
            let o = currentOffset
            guard let t = peek() else { return e }
            if case .op(let p) = t, p == "." || p == "[" || p == "(" || p == "|" { try grow(o) }
            if case .name("is") = t { try grow(o) }
            switch t {
            case .op(".") where postfix:
                i += 1
                switch peek() {
                case .name(let n)?:
                    i += 1
                    e = .attribute(e, n, offset: o)
                case .int(let v)?:
                    i += 1
                    e = .index(e, .literal(.int(v)), offset: o)
                default:
                    throw lexer.error("expected an attribute name after '.'", at: currentOffset)
                }
            case .op("[") where postfix:
                i += 1
                var lower: TemplateExpr? = nil
                if peek() != .op(":") { lower = try parseExpression() }
                if consume(.op(":")) {
                    var upper: TemplateExpr? = nil
                    if peek() != .op("]") && peek() != .op(":") { upper = try parseExpression() }
                    if consume(.op(":")) {
                        throw lexer.error("slice steps are not supported", at: currentOffset)
                    }
                    try expect(.op("]"), "']'")
                    e = .slice(e, lower, upper, offset: o)
                } else {
                    try expect(.op("]"), "']'")
                    guard let lower else { throw lexer.error("empty subscript", at: o) }
                    e = .index(e, lower, offset: o)
                }
            case .op("("):
                i += 1
                let (args, kwargs) = try parseArguments()
                e = .call(e, args: args, kwargs: kwargs, offset: o)
            case .op("|"):
                i += 1
                let name = try expectName()
                var args: [TemplateExpr] = []
                var kwargs: [(String, TemplateExpr)] = []
                if consume(.op("(")) { (args, kwargs) = try parseArguments() }
                e = .filter(e, name: name, args: args, kwargs: kwargs, offset: o)
            case .name("is"):
                i += 1
                let negated = consume(.name("not"))
                var name = try expectName()
                if name == "none" || name == "None" { name = "none" }
                var args: [TemplateExpr] = []
                if consume(.op("(")) {
                    (args, _) = try parseArguments()
                } else if let next = peek(), Self.startsTestArgument(next) {
                    // `is divisibleby 3`, `is sameas x`, `is equalto "a"`.
                    args = [try parsePrimary()]
                }
                e = .test(e, name: name, args: args, negated: negated, offset: o)
            default:
                return e
            }
        }
    }

    static func startsTestArgument(_ k: ChatTemplateLexer.TokenKind) -> Bool {
        switch k {
        case .string, .int, .float: return true
        default: return false
        }
    }
}
