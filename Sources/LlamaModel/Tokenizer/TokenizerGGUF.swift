extension Tokenizer {
    /// Reads the vocabulary from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`),
    /// with llama.cpp's defaults for missing optional keys.
    ///
    /// - Throws: `ModelFileError` naming the file and the key when a key is missing, has the wrong
    ///   type, or holds values that do not fit the vocabulary (unknown merge parts, ids out of range).
    public convenience init(gguf: GGUFFile) throws(ModelFileError) {
        var r = GGUFTokenizerReader(file: gguf)
        try self.init(definition: try r.definition())
    }
}

/// Type-checked access to a GGUF file's tokenizer metadata.
private struct GGUFTokenizerReader {
    let file: GGUFFile
    var path: String { file.path }

    func fail(_ key: String, _ what: String) -> ModelFileError {
        ModelFileError(file: path, what: "metadata '\(key)' \(what)")
    }

    func string(_ key: String) throws(ModelFileError) -> String? {
        guard let v = file.metadata[key] else { return nil }
        guard let s = v.stringValue else { throw fail(key, "has type \(typeName(v)), expected a string") }
        return s
    }

    func bool(_ key: String) throws(ModelFileError) -> Bool? {
        guard let v = file.metadata[key] else { return nil }
        if let b = v.boolValue { return b }
        throw fail(key, "has type \(typeName(v)), expected a bool")
    }

    func tokenID(_ key: String, count: Int) throws(ModelFileError) -> Int32? {
        guard let v = file.metadata[key] else { return nil }
        if case .bool = v { throw fail(key, "has type bool, expected an integer token id") }
        guard let i = v.intValue else { throw fail(key, "has type \(typeName(v)), expected an integer token id") }
        guard i >= 0, i < count else { throw fail(key, "is \(i), outside the vocabulary (0..<\(count))") }
        return Int32(i)
    }

    func array(_ key: String) throws(ModelFileError) -> [GGUFValue]? {
        guard let v = file.metadata[key] else { return nil }
        guard let a = v.arrayValue else { throw fail(key, "has type \(typeName(v)), expected an array") }
        return a
    }

    func typeName(_ v: GGUFValue) -> String {
        switch v {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float32: "float32"
        case .float64: "float64"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        }
    }

    mutating func definition() throws(ModelFileError) -> TokenizerDefinition {
        let modelKey = "tokenizer.ggml.model"
        guard let modelName = try string(modelKey) else { throw fail(modelKey, "is missing") }
        let model: TokenizerModel
        switch modelName {
        case "gpt2": model = .byteLevelBPE
        case "llama": model = .sentencePiece
        default: throw fail(modelKey, "is '\(modelName)'; supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece BPE)")
        }

        let tokensKey = "tokenizer.ggml.tokens"
        guard let tokenValues = try array(tokensKey) else { throw fail(tokensKey, "is missing") }
        guard !tokenValues.isEmpty else { throw fail(tokensKey, "is empty") }
        var tokens: [String] = []
        tokens.reserveCapacity(tokenValues.count)
        for (i, v) in tokenValues.enumerated() {
            guard let s = v.stringValue else { throw fail(tokensKey, "entry \(i) has type \(typeName(v)), expected a string") }
            tokens.append(s.isEmpty ? "[EMPTY_\(i)]" : s)
        }
        let n = tokens.count

        var attrs = [TokenAttributes](repeating: .normal, count: n)
        let typeKey = "tokenizer.ggml.token_type"
        if let types = try array(typeKey) {
            guard types.count >= n else { throw fail(typeKey, "has \(types.count) entries, fewer than the \(n) tokens") }
            for i in 0..<n {
                guard let t = types[i].intValue else { throw fail(typeKey, "entry \(i) has type \(typeName(types[i])), expected an integer") }
                attrs[i] = TokenAttributes(ggufTokenType: t)
            }
        }

        var scores = [Float](repeating: 0, count: n)
        let scoresKey = "tokenizer.ggml.scores"
        if let s = try array(scoresKey) {
            guard s.count >= n else { throw fail(scoresKey, "has \(s.count) entries, fewer than the \(n) tokens") }
            for i in 0..<n {
                if case .bool = s[i] { throw fail(scoresKey, "entry \(i) has type bool, expected a number") }
                guard let v = s[i].doubleValue else { throw fail(scoresKey, "entry \(i) has type \(typeName(s[i])), expected a number") }
                scores[i] = Float(v)
            }
        }

        var d = TokenizerDefinition(file: path, model: model, tokens: tokens, attributes: attrs, scores: scores)
        d.chatTemplate = try string("tokenizer.chat_template")

        let preKey = "tokenizer.ggml.pre"
        switch model {
        case .byteLevelBPE:
            let pre = try string(preKey) ?? ""
            guard let (p, ignore, bos) = PreTokenizer.forGGUFName(pre) else {
                throw fail(preKey, "is '\(pre)', a pre-tokenizer this engine does not know (known: default, gpt-2, llama-bpe/llama3, smollm, qwen2, starcoder, …)")
            }
            d.preTokenizer = p
            d.ignoreMerges = ignore
            d.addBOS = bos
            d.merges = try merges(tokens: tokens)
            // llama.cpp's defaults for BPE vocabularies, dropped when out of range.
            d.bos = n > 11 ? 11 : nil
            d.eos = n > 11 ? 11 : nil
        case .sentencePiece:
            d.addSpacePrefix = true
            d.addBOS = true
            d.bos = n > 1 ? 1 : nil
            d.eos = n > 2 ? 2 : nil
            d.unknown = 0
        case .characterBPE:
            break
        }
        if let v = try bool("tokenizer.ggml.add_space_prefix") { d.addSpacePrefix = v }

        let ids: [(String, WritableKeyPath<TokenizerDefinition, Int32?>)] = [
            ("tokenizer.ggml.bos_token_id", \.bos),
            ("tokenizer.ggml.eos_token_id", \.eos),
            ("tokenizer.ggml.eot_token_id", \.eot),
            ("tokenizer.ggml.eom_token_id", \.eom),
            ("tokenizer.ggml.unknown_token_id", \.unknown),
            ("tokenizer.ggml.padding_token_id", \.padding),
            ("tokenizer.ggml.fim_pad_token_id", \.fimPad),
            ("tokenizer.ggml.fim_rep_token_id", \.fimRep),
            ("tokenizer.ggml.fim_sep_token_id", \.fimSep),
        ]
        for (key, path) in ids {
            if let id = try tokenID(key, count: n) { d[keyPath: path] = id }
        }
        if let v = try bool("tokenizer.ggml.add_bos_token") { d.addBOS = v }
        if let v = try bool("tokenizer.ggml.add_eos_token") { d.addEOS = v }
        if d.addBOS, d.bos == nil { throw fail("tokenizer.ggml.add_bos_token", "is true, but tokenizer.ggml.bos_token_id is not set") }
        if d.addEOS, d.eos == nil { throw fail("tokenizer.ggml.add_eos_token", "is true, but tokenizer.ggml.eos_token_id is not set") }
        return d
    }

    /// `tokenizer.ggml.merges`: "left right" strings (split at the first space after the first
    /// byte, as llama.cpp does), both parts and their concatenation in the vocabulary.
    func merges(tokens: [String]) throws(ModelFileError) -> [(Int32, Int32, Int32)] {
        let key = "tokenizer.ggml.merges"
        guard let values = try array(key) else { throw fail(key, "is missing (required for 'gpt2' vocabularies)") }
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[Array(t.utf8)] == nil { ids[Array(t.utf8)] = Int32(i) }
        var out: [(Int32, Int32, Int32)] = []
        out.reserveCapacity(values.count)
        for (i, v) in values.enumerated() {
            guard let s = v.stringValue else { throw fail(key, "entry \(i) has type \(typeName(v)), expected a string") }
            let u = Array(s.utf8)
            guard u.count >= 3, let sp = u[1...].firstIndex(of: 0x20) else {
                throw fail(key, "entry \(i) ('\(s)') is not of the form 'left right'")
            }
            let left = Array(u[..<sp]), right = Array(u[(sp + 1)...])
            guard let l = ids[left] else { throw fail(key, "entry \(i) ('\(s)') names '\(String(decoding: left, as: UTF8.self))', which is not in the vocabulary") }
            guard let r = ids[right] else { throw fail(key, "entry \(i) ('\(s)') names '\(String(decoding: right, as: UTF8.self))', which is not in the vocabulary") }
            guard let m = ids[left + right] else { throw fail(key, "entry \(i) ('\(s)') makes '\(String(decoding: left + right, as: UTF8.self))', which is not in the vocabulary") }
            out.append((l, r, m))
        }
        return out
    }
}
