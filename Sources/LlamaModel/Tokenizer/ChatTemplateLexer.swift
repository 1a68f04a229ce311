/// Splits a Jinja template into literal text and tags, applying Jinja's whitespace rules as
/// Hugging Face transformers configures them for chat templates (`trim_blocks`,
/// `lstrip_blocks`, no trailing newline kept) plus `-`/`+` whitespace control on tags.
struct ChatTemplateLexer {
    enum SegmentKind { case output, statement }

    struct Segment {
        enum Content {
            case text(String)
            case tag(SegmentKind, [ExprToken])
        }
        let content: Content
        let offset: Int
    }

    enum TokenKind: Equatable {
        case name(String)
        case string(String)
        case int(Int)
        case float(Double)
        case op(String)
    }

    struct ExprToken {
        let kind: TokenKind
        let offset: Int
    }

    let source: [Unicode.Scalar]

    init(_ template: String) {
        // Jinja turns "\r\n" and "\r" in template text into "\n".
        var s: [Unicode.Scalar] = []
        s.reserveCapacity(template.unicodeScalars.count)
        var previousCR = false
        for c in template.unicodeScalars {
            if c == "\r" {
                s.append("\n")
                previousCR = true
                continue
            }
            if c == "\n", previousCR {
                previousCR = false
                continue
            }
            previousCR = false
            s.append(c)
        }
        // keep_trailing_newline = False: drop one trailing newline.
        if s.last == "\n" { s.removeLast() }
        source = s
    }

    /// Line and column (1-based) of a scalar offset, for error messages.
    func position(of offset: Int) -> (line: Int, column: Int) {
        var line = 1, col = 1
        for i in 0..<min(offset, source.count) {
            if source[i] == "\n" { line += 1; col = 1 } else { col += 1 }
        }
        return (line, col)
    }

    func error(_ message: String, at offset: Int) -> ChatTemplateError {
        let p = position(of: offset)
        return ChatTemplateError(message: message, line: p.line, column: p.column)
    }

    func segments() throws(ChatTemplateError) -> [Segment] {
        var out: [Segment] = []
        let n = source.count
        var pos = 0
        var lineStarting = true
        while pos < n {
            // Next tag opening.
            var t = pos
            var kind: Character? = nil
            while t + 1 < n {
                if source[t] == "{" {
                    let c = source[t + 1]
                    if c == "{" || c == "%" || c == "#" { kind = Character(c); break }
                }
                t += 1
            }
            guard let k = kind else {
                out.append(Segment(content: .text(String(String.UnicodeScalarView(source[pos..<n]))), offset: pos))
                break
            }
            var text = Array(source[pos..<t])
            let modifier: Unicode.Scalar? = t + 2 < n ? source[t + 2] : nil
            if modifier == "-" {
                while let last = text.last, Self.isSpace(last) { text.removeLast() }
            } else if modifier != "+", k != "{" {
                // lstrip_blocks: spaces/tabs from the start of the line up to a block/comment tag.
                let lineStart = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                if lineStart > 0 || lineStarting,
                    text[lineStart...].allSatisfy({ $0 == " " || $0 == "\t" })
                {
                    text.removeSubrange(lineStart...)
                }
            }
            if !text.isEmpty {
                out.append(Segment(content: .text(String(String.UnicodeScalarView(text))), offset: pos))
            }
            let innerStart = t + 2 + (modifier == "-" || modifier == "+" ? 1 : 0)
            var end: Int
            var stripAfter = false
            if k == "#" {
                // Comment: find "#}".
                var c = innerStart
                while c + 1 < n, !(source[c] == "#" && source[c + 1] == "}") { c += 1 }
                guard c + 1 < n else { throw error("unclosed comment", at: t) }
                stripAfter = c > innerStart && source[c - 1] == "-"
                end = c + 2
            } else {
                let close: Unicode.Scalar = k == "{" ? "}" : "%"
                let (tokens, closeAt) = try tokenize(from: innerStart, close: close, tagStart: t)
                stripAfter = closeAt > innerStart && source[closeAt - 1] == "-" && !(tokens.last.map { $0.offset == closeAt - 1 } ?? false)
                end = closeAt + 2
                out.append(Segment(content: .tag(k == "{" ? .output : .statement, tokens), offset: t))
            }
            lineStarting = false
            if stripAfter {
                while end < n, Self.isSpace(source[end]) { end += 1 }
            } else if k != "{" {
                // trim_blocks: the first newline after a block or comment tag.
                if end < n, source[end] == "\n" {
                    end += 1
                    lineStarting = true
                }
            }
            pos = end
        }
        return out
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0B}" || c == "\u{0C}"
    }

    /// Tokenizes a tag's expression up to its closing `}}` or `%}` (an optional `-` before it is
    /// whitespace control). Returns the tokens and the offset of the closing pair.
    private func tokenize(from start: Int, close: Unicode.Scalar, tagStart: Int) throws(ChatTemplateError) -> ([ExprToken], Int) {
        var tokens: [ExprToken] = []
        let n = source.count
        var i = start
        while true {
            while i < n, Self.isSpace(source[i]) { i += 1 }
            guard i < n else { throw error("unclosed tag (missing '\(close)}')", at: tagStart) }
            let c = source[i]
            // Closing: "-}}" / "}}" (or "%}").
            if c == "-", i + 2 < n, source[i + 1] == close, source[i + 2] == "}" { return (tokens, i + 1) }
            if c == close, i + 1 < n, source[i + 1] == "}" { return (tokens, i) }
            if c == "'" || c == "\"" {
                let quote = c
                var s = String.UnicodeScalarView()
                var j = i + 1
                var closed = false
                while j < n {
                    let d = source[j]
                    if d == quote { closed = true; break }
                    if d == "\\", j + 1 < n {
                        j += 1
                        switch source[j] {
                        case "n": s.append("\n")
                        case "t": s.append("\t")
                        case "r": s.append("\r")
                        case "\\": s.append("\\")
                        case "'": s.append("'")
                        case "\"": s.append("\"")
                        default:
                            s.append("\\")
                            s.append(source[j])
                        }
                    } else {
                        s.append(d)
                    }
                    j += 1
                }
                guard closed else { throw error("unterminated string literal", at: i) }
                tokens.append(ExprToken(kind: .string(String(s)), offset: i))
                i = j + 1
                continue
            }
            if c.properties.numericType != nil, c.isASCII, ("0"..."9").contains(c) {
                var j = i
                while j < n, ("0"..."9").contains(source[j]) || source[j] == "_" { j += 1 }
                var isFloat = false
                if j + 1 < n, source[j] == ".", ("0"..."9").contains(source[j + 1]) {
                    isFloat = true
                    j += 1
                    while j < n, ("0"..."9").contains(source[j]) { j += 1 }
                }
                let text = String(String.UnicodeScalarView(source[i..<j])).replacingOccurrencesOfUnderscore()
                if isFloat {
                    guard let v = Double(text) else { throw error("bad number '\(text)'", at: i) }
                    tokens.append(ExprToken(kind: .float(v), offset: i))
                } else {
                    guard let v = Int(text) else { throw error("integer '\(text)' is too large", at: i) }
                    tokens.append(ExprToken(kind: .int(v), offset: i))
                }
                i = j
                continue
            }
            if c == "_" || c.properties.isAlphabetic {
                var j = i
                while j < n, source[j] == "_" || source[j].properties.isAlphabetic || ("0"..."9").contains(source[j]) { j += 1 }
                tokens.append(ExprToken(kind: .name(String(String.UnicodeScalarView(source[i..<j]))), offset: i))
                i = j
                continue
            }
            // Operators, longest first.
            let two = i + 1 < n ? String(String.UnicodeScalarView([c, source[i + 1]])) : ""
            if ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                tokens.append(ExprToken(kind: .op(two), offset: i))
                i += 2
                continue
            }
            if "+-*/%~<>=()[]{},.:|".unicodeScalars.contains(c) {
                tokens.append(ExprToken(kind: .op(String(c)), offset: i))
                i += 1
                continue
            }
            throw error("unexpected character '\(c.escaped(asASCII: false))' in tag", at: i)
        }
    }
}

extension String {
    fileprivate func replacingOccurrencesOfUnderscore() -> String { String(filter { $0 != "_" }) }
}
