import Foundation

extension Tokenizer {
    /// Reads a Hugging Face `tokenizer.json` (model type BPE: byte-level like GPT-2/Llama 3/SmolLM2,
    /// or SentencePiece-converted with byte fallback like Llama 2/TinyLlama), plus optionally its
    /// `tokenizer_config.json` for the BOS/EOS tokens, `add_bos_token`/`add_eos_token` and the chat
    /// template.
    ///
    /// Tokens listed in `added_tokens` with `special: true` become control tokens, the others
    /// user-defined tokens, as llama.cpp's GGUF converter marks them. Which tokens are special
    /// follows the file (as in Hugging Face `tokenizers`); end-of-generation tokens are still
    /// recognised by their text for `eogTokens`.
    ///
    /// - Throws: `ModelFileError` naming the file and the JSON key that is missing, mistyped or
    ///   inconsistent (ids out of range, merges naming unknown tokens, unsupported components).
    public convenience init(tokenizerJSONAt path: String, tokenizerConfigPath: String? = nil) throws(ModelFileError) {
        let root = try Self.readJSONObject(path)
        var config: [String: Any] = [:]
        if let cp = tokenizerConfigPath { config = try Self.readJSONObject(cp) }
        let reader = HFTokenizerReader(path: path, root: root, configPath: tokenizerConfigPath ?? path, config: config)
        try self.init(definition: try reader.definition())
    }

    /// The same from the files' contents already in memory; `path` and `configPath` only name
    /// them in errors.
    public convenience init(
        tokenizerJSON: [UInt8], path: String, tokenizerConfig: [UInt8]? = nil, configPath: String? = nil
    ) throws(ModelFileError) {
        let root = try Self.parseJSONObject(Data(tokenizerJSON), path)
        var config: [String: Any] = [:]
        if let tokenizerConfig { config = try Self.parseJSONObject(Data(tokenizerConfig), configPath ?? path) }
        let reader = HFTokenizerReader(path: path, root: root, configPath: configPath ?? path, config: config)
        try self.init(definition: try reader.definition())
    }

    static func readJSONObject(_ path: String) throws(ModelFileError) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, what: "cannot read the file")
        }
        return try parseJSONObject(data, path)
    }

    static func parseJSONObject(_ data: Data, _ path: String) throws(ModelFileError) -> [String: Any] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ModelFileError(file: path, what: "not valid JSON: \(error)")
        }
        guard let dict = object as? [String: Any] else {
            throw ModelFileError(file: path, what: "the top level is not a JSON object")
        }
        return dict
    }
}

/// The pre-tokenizer regexes we implement natively, by their exact text in tokenizer.json files.
private let knownSplitRegexes: [String: PreTokenizerStep] = [
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#: .gpt2,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3(maxDigits: 3),
    #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3(maxDigits: 3),
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3(maxDigits: 1),
    #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3(maxDigits: 1),
    #"\p{N}"#: .individualDigits,
    #"\p{N}+"#: .numberRuns,
]

/// Interprets the parts of tokenizer.json / tokenizer_config.json the engine supports.
private struct HFTokenizerReader {
    let path: String
    let root: [String: Any]
    let configPath: String
    let config: [String: Any]

    func fail(_ key: String, _ what: String) -> ModelFileError {
        ModelFileError(file: path, what: "key '\(key)' \(what)")
    }

    func definition() throws(ModelFileError) -> TokenizerDefinition {
        guard let model = root["model"] as? [String: Any] else { throw fail("model", "is missing or not an object") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw fail("model.type", "is '\(type)'; only 'BPE' is supported") }
        guard let vocab = model["vocab"] as? [String: Any] else { throw fail("model.vocab", "is missing or not an object") }

        // id → text from model.vocab and added_tokens.
        var byID: [Int: String] = [:]
        byID.reserveCapacity(vocab.count + 64)
        for (text, v) in vocab {
            guard let id = Self.int(v), id >= 0, id < Int(Int32.max) else {
                throw fail("model.vocab", "entry '\(text)' has id \(v), expected a non-negative integer")
            }
            if let other = byID[id], other != text { throw fail("model.vocab", "id \(id) is used by '\(other)' and '\(text)'") }
            byID[id] = text
        }
        var addedSpecial = Set<Int>(), addedNormal = Set<Int>()
        if let added = root["added_tokens"] {
            guard let list = added as? [Any] else { throw fail("added_tokens", "is not an array") }
            for (i, item) in list.enumerated() {
                guard let t = item as? [String: Any], let content = t["content"] as? String, let id = Self.int(t["id"]), id >= 0, id < Int(Int32.max) else {
                    throw fail("added_tokens[\(i)]", "needs a string 'content' and a non-negative integer 'id'")
                }
                if let other = byID[id], other != content { throw fail("added_tokens[\(i)]", "id \(id) is '\(other)' in model.vocab, not '\(content)'") }
                byID[id] = content
                if (t["special"] as? Bool) ?? false { addedSpecial.insert(id) } else { addedNormal.insert(id) }
            }
        }
        guard let maxID = byID.keys.max() else { throw fail("model.vocab", "is empty") }
        // Room for the ids there are, not for `maxID + 1`: an id far past the others (up to 2^31)
        // is a gap, found within `byID.count + 1` steps.
        var tokens: [String] = []
        tokens.reserveCapacity(byID.count)
        for id in 0...maxID {
            guard let t = byID[id] else { throw fail("model.vocab", "has no token with id \(id) (ids must be contiguous from 0)") }
            tokens.append(t)
        }
        var textToID: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where textToID[t] == nil { textToID[t] = Int32(i) }

        let byteFallback = (model["byte_fallback"] as? Bool) ?? false
        var unknown: Int32? = nil
        if let unk = model["unk_token"], !(unk is NSNull) {
            guard let s = unk as? String, let id = textToID[s] else { throw fail("model.unk_token", "names '\(unk)', which is not in the vocabulary") }
            unknown = id
        }

        // Pre-tokenizer and normalizer decide the model kind.
        var steps: [PreTokenizerStep] = []
        var byteLevel = false
        var addPrefixSpace = false
        var metaspace: (replacement: String, scheme: PrependScheme, split: Bool)? = nil
        try readPreTokenizer(root["pre_tokenizer"], key: "pre_tokenizer", steps: &steps, byteLevel: &byteLevel, addPrefixSpace: &addPrefixSpace, metaspace: &metaspace)
        if !byteLevel, let dec = root["decoder"] as? [String: Any], Self.containsType("ByteLevel", dec) {
            byteLevel = true
        }
        var prepend: String? = nil
        var replacements: [(String, String)] = []
        try readNormalizer(root["normalizer"], key: "normalizer", prepend: &prepend, replacements: &replacements)

        var attrs = [TokenAttributes](repeating: .normal, count: tokens.count)
        for i in 0..<tokens.count {
            if addedSpecial.contains(i) {
                attrs[i] = .control
            } else if addedNormal.contains(i) {
                attrs[i] = .userDefined
            } else if byteFallback, Self.isByteToken(tokens[i]) {
                attrs[i] = .byte
            }
        }
        if let u = unknown, !addedSpecial.contains(Int(u)) { attrs[Int(u)] = .unknown }

        var d = TokenizerDefinition(
            file: path, model: byteLevel ? .byteLevelBPE : .characterBPE, tokens: tokens, attributes: attrs,
            scores: [Float](repeating: 0, count: tokens.count))
        d.promoteDetectedSpecialTokens = false
        d.preTokenizer = PreTokenizer(steps: steps)
        d.byteLevelAddPrefixSpace = addPrefixSpace
        d.metaspace = metaspace
        d.normalizerPrepend = prepend
        d.normalizerReplacements = replacements
        d.byteFallback = byteFallback
        d.fuseUnknown = (model["fuse_unk"] as? Bool) ?? false
        d.ignoreMerges = (model["ignore_merges"] as? Bool) ?? false
        d.unknown = unknown
        d.merges = try readMerges(model["merges"], textToID: textToID)

        // Special tokens and flags: tokenizer_config.json first, then the post-processor.
        func configToken(_ key: String) throws(ModelFileError) -> Int32? {
            guard let v = config[key], !(v is NSNull) else { return nil }
            let text: String
            if let s = v as? String {
                text = s
            } else if let o = v as? [String: Any], let s = o["content"] as? String {
                text = s
            } else {
                throw ModelFileError(file: configPath, what: "key '\(key)' is neither a string nor an object with 'content'")
            }
            guard let id = textToID[text] else {
                throw ModelFileError(file: configPath, what: "key '\(key)' names '\(text)', which is not in the vocabulary")
            }
            return id
        }
        d.bos = try configToken("bos_token")
        d.eos = try configToken("eos_token")
        d.padding = try configToken("pad_token")
        if let u = try configToken("unk_token") { d.unknown = u }
        if let v = config["add_bos_token"], !(v is NSNull) {
            guard let b = v as? Bool else { throw ModelFileError(file: configPath, what: "key 'add_bos_token' is not a bool") }
            d.addBOS = b
        } else if let first = Self.templateFirstSpecialToken(root["post_processor"]), let id = textToID[first] {
            d.addBOS = true
            if d.bos == nil { d.bos = id }
        }
        if let v = config["add_eos_token"], !(v is NSNull) {
            guard let b = v as? Bool else { throw ModelFileError(file: configPath, what: "key 'add_eos_token' is not a bool") }
            d.addEOS = b
        }
        if let t = config["chat_template"], !(t is NSNull) {
            if let s = t as? String {
                d.chatTemplate = s
            } else if let list = t as? [[String: Any]] {
                let named = list.first { ($0["name"] as? String) == "default" } ?? list.first
                d.chatTemplate = named?["template"] as? String
            } else {
                throw ModelFileError(file: configPath, what: "key 'chat_template' is neither a string nor a list of named templates")
            }
        }
        if d.addBOS, d.bos == nil { throw ModelFileError(file: configPath, what: "add_bos_token is true, but no bos_token is given") }
        if d.addEOS, d.eos == nil { throw ModelFileError(file: configPath, what: "add_eos_token is true, but no eos_token is given") }
        return d
    }

    /// An integer JSON value; JSON booleans (which Foundation also bridges to numbers) are not.
    static func int(_ v: Any?) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        if String(cString: n.objCType) == "c" { return nil }
        return v as? Int
    }

    static func isByteToken(_ t: String) -> Bool {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return false }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) != nil
    }

    static func containsType(_ type: String, _ obj: [String: Any]) -> Bool {
        if obj["type"] as? String == type { return true }
        for key in ["decoders", "pretokenizers", "normalizers", "processors"] {
            if let list = obj[key] as? [[String: Any]], list.contains(where: { containsType(type, $0) }) { return true }
        }
        return false
    }

    /// The first special token of a `TemplateProcessing` post-processor's single-sequence template.
    static func templateFirstSpecialToken(_ v: Any?) -> String? {
        guard let obj = v as? [String: Any] else { return nil }
        if obj["type"] as? String == "Sequence", let list = obj["processors"] as? [Any] {
            for p in list { if let t = templateFirstSpecialToken(p) { return t } }
            return nil
        }
        guard obj["type"] as? String == "TemplateProcessing", let single = obj["single"] as? [[String: Any]],
            let first = single.first, let st = first["SpecialToken"] as? [String: Any]
        else { return nil }
        return st["id"] as? String
    }

    func readPreTokenizer(
        _ v: Any?, key: String, steps: inout [PreTokenizerStep], byteLevel: inout Bool, addPrefixSpace: inout Bool,
        metaspace: inout (replacement: String, scheme: PrependScheme, split: Bool)?
    ) throws(ModelFileError) {
        guard let v, !(v is NSNull) else { return }
        guard let obj = v as? [String: Any], let type = obj["type"] as? String else { throw fail(key, "is not an object with a 'type'") }
        switch type {
        case "Sequence":
            guard let list = obj["pretokenizers"] as? [Any] else { throw fail("\(key).pretokenizers", "is missing") }
            for (i, item) in list.enumerated() {
                try readPreTokenizer(item, key: "\(key).pretokenizers[\(i)]", steps: &steps, byteLevel: &byteLevel, addPrefixSpace: &addPrefixSpace, metaspace: &metaspace)
            }
        case "ByteLevel":
            byteLevel = true
            if (obj["add_prefix_space"] as? Bool) ?? false { addPrefixSpace = true }
            if (obj["use_regex"] as? Bool) ?? true { steps.append(.gpt2) }
        case "Digits":
            steps.append((obj["individual_digits"] as? Bool) ?? false ? .individualDigits : .numberRuns)
        case "Split":
            guard let pattern = obj["pattern"] as? [String: Any] else { throw fail("\(key).pattern", "is missing") }
            guard let regex = pattern["Regex"] as? String, let step = knownSplitRegexes[regex] else {
                throw fail("\(key).pattern", "is \(pattern), not one of the split patterns this engine implements (GPT-2, Llama 3, Qwen 2, digits)")
            }
            let behavior = obj["behavior"] as? String ?? "Isolated"
            guard behavior == "Isolated", !((obj["invert"] as? Bool) ?? false) else {
                throw fail("\(key).behavior", "is '\(behavior)'; only 'Isolated' without invert is supported")
            }
            steps.append(step)
        case "Metaspace":
            let replacement = obj["replacement"] as? String ?? "▁"
            var scheme: PrependScheme = .always
            if let s = obj["prepend_scheme"] as? String {
                switch s {
                case "always": scheme = .always
                case "first": scheme = .first
                case "never": scheme = .never
                default: throw fail("\(key).prepend_scheme", "is '\(s)'")
                }
            } else if let b = obj["add_prefix_space"] as? Bool {
                scheme = b ? .always : .never
            }
            metaspace = (replacement, scheme, (obj["split"] as? Bool) ?? true)
        default:
            throw fail("\(key).type", "is '\(type)', a pre-tokenizer this engine does not implement")
        }
    }

    func readNormalizer(_ v: Any?, key: String, prepend: inout String?, replacements: inout [(String, String)]) throws(ModelFileError) {
        guard let v, !(v is NSNull) else { return }
        guard let obj = v as? [String: Any], let type = obj["type"] as? String else { throw fail(key, "is not an object with a 'type'") }
        switch type {
        case "Sequence":
            guard let list = obj["normalizers"] as? [Any] else { throw fail("\(key).normalizers", "is missing") }
            for (i, item) in list.enumerated() {
                try readNormalizer(item, key: "\(key).normalizers[\(i)]", prepend: &prepend, replacements: &replacements)
            }
        case "Prepend":
            guard let p = obj["prepend"] as? String else { throw fail("\(key).prepend", "is missing") }
            guard replacements.isEmpty else { throw fail(key, "Prepend after Replace is not supported") }
            prepend = (prepend ?? "") + p
        case "Replace":
            guard let pattern = obj["pattern"] as? [String: Any], let s = pattern["String"] as? String, !s.isEmpty,
                let content = obj["content"] as? String
            else { throw fail("\(key).pattern", "must be a non-empty plain String pattern with a 'content'") }
            replacements.append((s, content))
        case "NFC", "NFKC", "NFD", "NFKD":
            // llama.cpp does not normalize byte-level BPE input either; ignored on purpose.
            break
        default:
            throw fail("\(key).type", "is '\(type)', a normalizer this engine does not implement")
        }
    }

    func readMerges(_ v: Any?, textToID: [String: Int32]) throws(ModelFileError) -> [(Int32, Int32, Int32)] {
        guard let v, !(v is NSNull) else { return [] }
        guard let list = v as? [Any] else { throw fail("model.merges", "is not an array") }
        var out: [(Int32, Int32, Int32)] = []
        out.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            let left: String, right: String
            if let s = item as? String {
                let u = Array(s.utf8)
                guard u.count >= 3, let sp = u[1...].firstIndex(of: 0x20) else {
                    throw fail("model.merges[\(i)]", "('\(s)') is not of the form 'left right'")
                }
                left = String(decoding: u[..<sp], as: UTF8.self)
                right = String(decoding: u[(sp + 1)...], as: UTF8.self)
            } else if let pair = item as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                left = a
                right = b
            } else {
                throw fail("model.merges[\(i)]", "is neither 'left right' nor a [left, right] pair")
            }
            guard let l = textToID[left] else { throw fail("model.merges[\(i)]", "names '\(left)', which is not in the vocabulary") }
            guard let r = textToID[right] else { throw fail("model.merges[\(i)]", "names '\(right)', which is not in the vocabulary") }
            guard let m = textToID[left + right] else { throw fail("model.merges[\(i)]", "makes '\(left + right)', which is not in the vocabulary") }
            out.append((l, r, m))
        }
        return out
    }
}
