import Wire

/// A `POST /v1/completions` or `/v1/chat/completions` body, checked field by field: a bad field
/// is refused with a message that names it.
struct GenerationRequest: Sendable {
    enum Kind: String, Sendable {
        case completion = "completions"
        case chat = "chat_completions"
    }

    var kind: Kind
    var model: String
    var prompt: Prompt
    /// 0: the coordinator's default.
    var maxTokens: UInt32 = 0
    var sampler: SamplerParams
    var stop: [String] = []
    var stream = false
    /// `stream_options.include_usage`: a last chunk with `usage` and no choices.
    var includeUsage = false

    /// Parses and checks `body`; `model` must be the one served (`servedModel`).
    static func parse(_ body: JSONValue, kind: Kind, servedModel: String) throws(APIError) -> GenerationRequest {
        guard case .object(let fields) = body else {
            throw APIError.badRequest("the request body must be a JSON object, not \(body.kindName)")
        }
        let f = Fields(fields)
        guard let model = try f.string("model") else {
            throw APIError.badRequest(
                "you must provide a model parameter ('model')", param: "model", code: "missing_field")
        }
        guard model == servedModel else {
            throw APIError.notFound(
                "the model '\(model)' does not exist; this server serves '\(servedModel)' (GET /v1/models)",
                code: "model_not_found", param: "model")
        }
        let prompt: Prompt
        switch kind {
        case .completion: prompt = try completionPrompt(f)
        case .chat: prompt = try chatPrompt(f)
        }
        var sampler = SamplerParams(temperature: 1, topP: 1)
        if let t = try f.number("temperature") {
            guard (0...2).contains(t) else {
                throw APIError.badField("temperature", "must be between 0 and 2, got \(t)")
            }
            sampler.temperature = Float(t)
        }
        if let p = try f.number("top_p") {
            guard p > 0, p <= 1 else { throw APIError.badField("top_p", "must be in (0, 1], got \(p)") }
            sampler.topP = Float(p)
        }
        if let k = try f.integer("top_k") {
            guard k >= 0, k <= Int(UInt32.max) else { throw APIError.badField("top_k", "must be ≥ 0, got \(k)") }
            sampler.topK = UInt32(k)
        }
        if let m = try f.number("min_p") {
            guard (0...1).contains(m) else { throw APIError.badField("min_p", "must be between 0 and 1, got \(m)") }
            sampler.minP = Float(m)
        }
        if let r = try f.number("repetition_penalty") {
            guard r > 0, r <= 10 else { throw APIError.badField("repetition_penalty", "must be in (0, 10], got \(r)") }
            sampler.repetitionPenalty = Float(r)
        }
        for name in ["frequency_penalty", "presence_penalty"] {
            if let v = try f.number(name), v != 0 {
                throw APIError.badField(name, "only 0 is supported (use 'repetition_penalty'), got \(v)")
            }
        }
        if let s = try f.integer("seed") {
            sampler.seed = UInt64(bitPattern: Int64(s))
        } else {
            // OpenAI's unseeded requests differ from run to run; the engine's default seed is 0.
            sampler.seed = UInt64.random(in: 0...UInt64.max)
        }
        var request = GenerationRequest(kind: kind, model: model, prompt: prompt, sampler: sampler)
        let maxName = kind == .chat && fields["max_completion_tokens"] != nil ? "max_completion_tokens" : "max_tokens"
        if let m = try f.integer(maxName) {
            guard m >= 1, m <= Int(UInt32.max) else { throw APIError.badField(maxName, "must be ≥ 1, got \(m)") }
            request.maxTokens = UInt32(m)
        }
        request.stop = try stops(f)
        if let n = try f.integer("n"), n != 1 { throw APIError.badField("n", "only n = 1 is supported, got \(n)") }
        if let b = try f.integer("best_of"), b != 1 {
            throw APIError.badField("best_of", "only best_of = 1 is supported, got \(b)")
        }
        if try f.bool("echo") == true { throw APIError.badField("echo", "echo is not supported") }
        request.stream = try f.bool("stream") ?? false
        if let options = fields["stream_options"], options != .null {
            guard case .object(let o) = options else {
                throw APIError.badField("stream_options", "must be an object, not \(options.kindName)")
            }
            request.includeUsage = try Fields(o, prefix: "stream_options.").bool("include_usage") ?? false
        }
        return request
    }

    private static func completionPrompt(_ f: Fields) throws(APIError) -> Prompt {
        guard let value = f.fields["prompt"], value != .null else {
            throw APIError.badRequest("'prompt' is required", param: "prompt", code: "missing_field")
        }
        switch value {
        case .string(let s):
            return .text(s)
        case .array(let items):
            if items.isEmpty { throw APIError.badField("prompt", "must not be an empty list") }
            if case .string(let s) = items[0] {
                guard items.count == 1 else {
                    throw APIError.badField("prompt", "only one prompt per request is supported")
                }
                return .text(s)
            }
            if case .array(let inner) = items[0] {
                guard items.count == 1 else {
                    throw APIError.badField("prompt", "only one prompt per request is supported")
                }
                return .tokens(try tokenIDs(inner))
            }
            return .tokens(try tokenIDs(items))
        default:
            throw APIError.badField(
                "prompt", "must be a string, a list of one string or a list of token ids, not \(value.kindName)")
        }
    }

    private static func tokenIDs(_ items: [JSONValue]) throws(APIError) -> [UInt32] {
        guard !items.isEmpty else { throw APIError.badField("prompt", "must not be an empty list") }
        var ids: [UInt32] = []
        for item in items {
            guard case .number(let n) = item, n.rounded() == n, n >= 0, n <= Double(UInt32.max) else {
                throw APIError.badField("prompt", "a list of token ids must hold non-negative integers only")
            }
            ids.append(UInt32(n))
        }
        return ids
    }

    private static func chatPrompt(_ f: Fields) throws(APIError) -> Prompt {
        guard let value = f.fields["messages"], value != .null else {
            throw APIError.badRequest("'messages' is required", param: "messages", code: "missing_field")
        }
        guard case .array(let items) = value, !items.isEmpty else {
            throw APIError.badField("messages", "must be a non-empty list of messages")
        }
        var messages: [Prompt.Message] = []
        for (i, item) in items.enumerated() {
            let name = "messages[\(i)]"
            guard case .object(let o) = item else {
                throw APIError.badField(name, "must be an object, not \(item.kindName)")
            }
            let m = Fields(o, prefix: name + ".")
            guard var role = try m.string("role") else {
                throw APIError.badRequest("'\(name).role' is required", param: name + ".role", code: "missing_field")
            }
            if role == "developer" { role = "system" }
            guard ["system", "user", "assistant"].contains(role) else {
                throw APIError.badField(
                    name + ".role", "must be 'system', 'developer', 'user' or 'assistant', got '\(role)'")
            }
            messages.append(Prompt.Message(role: role, content: try content(o["content"], name: name + ".content")))
        }
        return .chat(messages)
    }

    /// A message's text: a string, or a list of `{"type": "text", "text": …}` parts.
    private static func content(_ value: JSONValue?, name: String) throws(APIError) -> String {
        switch value {
        case .string(let s)?:
            return s
        case .array(let parts)?:
            var text = ""
            for (i, part) in parts.enumerated() {
                guard case .object(let p) = part, p["type"] == .string("text"), case .string(let t)? = p["text"] else {
                    throw APIError.badField(
                        "\(name)[\(i)]", "only text parts ({\"type\": \"text\", \"text\": …}) are supported")
                }
                text += t
            }
            return text
        case nil, .null?:
            throw APIError.badRequest("'\(name)' is required", param: name, code: "missing_field")
        case let other?:
            throw APIError.badField(name, "must be a string or a list of text parts, not \(other.kindName)")
        }
    }

    private static func stops(_ f: Fields) throws(APIError) -> [String] {
        let stops: [String]
        switch f.fields["stop"] {
        case nil, .null?: return []
        case .string(let s)?: stops = [s]
        case .array(let items)?:
            var list: [String] = []
            for item in items {
                guard case .string(let s) = item else {
                    throw APIError.badField("stop", "must be a string or a list of strings")
                }
                list.append(s)
            }
            stops = list
        case let other?: throw APIError.badField("stop", "must be a string or a list of strings, not \(other.kindName)")
        }
        guard stops.count <= 16 else { throw APIError.badField("stop", "at most 16 stop strings, got \(stops.count)") }
        guard !stops.contains("") else { throw APIError.badField("stop", "stop strings must not be empty") }
        return stops
    }
}

/// Typed access to an object's fields; `null` counts as absent; a wrong type names the field.
struct Fields {
    let fields: [String: JSONValue]
    let prefix: String

    init(_ fields: [String: JSONValue], prefix: String = "") {
        self.fields = fields
        self.prefix = prefix
    }

    func string(_ key: String) throws(APIError) -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        case let v?: throw APIError.badField(prefix + key, "must be a string, not \(v.kindName)")
        }
    }

    func number(_ key: String) throws(APIError) -> Double? {
        switch fields[key] {
        case nil, .null?: return nil
        case .number(let n)?: return n
        case let v?: throw APIError.badField(prefix + key, "must be a number, not \(v.kindName)")
        }
    }

    func integer(_ key: String) throws(APIError) -> Int? {
        guard let n = try number(key) else { return nil }
        guard n.rounded() == n, abs(n) <= 9.007_199_254_740_992e15 else {
            throw APIError.badField(prefix + key, "must be an integer, got \(n)")
        }
        return Int(n)
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        switch fields[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        case let v?: throw APIError.badField(prefix + key, "must be a boolean, not \(v.kindName)")
        }
    }
}
