/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable, Hashable {
    /// "system", "user", "assistant", or whatever roles the template knows.
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A template that failed to parse or render: what went wrong and where (1-based line and
/// column in the template source; 0 when no position applies).
public struct ChatTemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public let line: Int
    public let column: Int
    public init(message: String, line: Int, column: Int) {
        self.message = message
        self.line = line
        self.column = column
    }
    public var description: String {
        line > 0 ? "chat template, line \(line), column \(column): \(message)" : "chat template: \(message)"
    }
}

/// A Jinja chat template (the subset chat templates use), rendered the way transformers and
/// llama.cpp's Jinja path do: `trim_blocks` and `lstrip_blocks` on, the final newline of the
/// template dropped.
///
/// Supported: `{% for %}` (with `loop.*`, `else`, inline `if`), `{% if/elif/else %}`,
/// `{% set %}` (also `ns.attr` on a `namespace()`), `{{ }}` with literals, `+ - * / // % **`,
/// `~`, comparisons, `and/or/not`, `in`, `is` tests, attribute/subscript/slice access, filters
/// (`trim`, `length`, `upper`, `lower`, `default`, `tojson`, `join`, `first`, `last`, …),
/// string/dict methods (`strip`, `split`, `startswith`, `items`, `get`, …), whitespace control
/// and `raise_exception`. Anything else is a `ChatTemplateError` naming its position.
public struct ChatTemplate: Sendable {
    public let source: String

    /// Parses the template, reporting syntax errors and unsupported constructs.
    public init(_ source: String) throws(ChatTemplateError) {
        self.source = source
        var parser = try ChatTemplateParser(template: source)
        _ = try parser.parse()
    }

    /// Renders the conversation.
    ///
    /// - Parameters:
    ///   - addGenerationPrompt: end with the header of an assistant turn.
    ///   - bosToken, eosToken: the texts of the model's BOS/EOS tokens (`bos_token`, `eos_token`).
    ///   - variables: extra string variables for the template.
    public func render(
        messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String = "", eosToken: String = "",
        variables: [String: String] = [:]
    ) throws(ChatTemplateError) -> String {
        var parser = try ChatTemplateParser(template: source)
        let nodes = try parser.parse()
        var globals: [String: TemplateValue] = [:]
        for (k, v) in variables { globals[k] = .string(v) }
        globals["messages"] = .list(messages.map { TemplateValue.makeDict([("role", .string($0.role)), ("content", .string($0.content))]) })
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        globals["bos_token"] = .string(bosToken)
        globals["eos_token"] = .string(eosToken)
        var interpreter = ChatTemplateInterpreter(lexer: parser.lexer, globals: globals)
        try interpreter.run(nodes)
        return interpreter.output
    }
}

extension Tokenizer {
    /// Renders the model's own chat template (`tokenizer.chat_template`) for a conversation,
    /// with `bos_token`/`eos_token` set to the texts of the model's BOS/EOS tokens.
    ///
    /// - Throws: `ChatTemplateError` if the model has no template, or it fails to parse or render
    ///   (including `raise_exception` from the template).
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws(ChatTemplateError) -> String {
        guard let source = chatTemplate else {
            throw ChatTemplateError(message: "the model has no chat template", line: 0, column: 0)
        }
        let template = try ChatTemplate(source)
        return try template.render(
            messages: messages, addGenerationPrompt: addGenerationPrompt,
            bosToken: bosToken.flatMap(tokenText) ?? "", eosToken: eosToken.flatMap(tokenText) ?? "")
    }
}
