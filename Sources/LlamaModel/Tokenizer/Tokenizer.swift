/// A text ↔ token-id converter that reproduces llama.cpp's `llama_tokenize` and
/// `llama_token_to_piece` for the vocabulary of a GGUF model file or a Hugging Face
/// `tokenizer.json`.
///
/// Supported: GPT-2-style byte-level BPE (SmolLM2, Llama 3, Qwen 2, GPT-2) and
/// SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral). Immutable after
/// loading and safe to share between threads.
public final class Tokenizer: Sendable {
    /// The file the vocabulary was read from (used in error messages).
    public let file: String
    let model: TokenizerModel
    let tokens: [String]
    let attributes: [TokenAttributes]
    let scores: [Float]
    let textToID: [[UInt8]: Int32]
    let mergeTable: MergeTable
    let preTokenizer: PreTokenizer
    let ignoreMerges: Bool
    let addSpacePrefix: Bool
    /// Whether `encode(_:addSpecial:)` puts the BOS token first (`add_bos_token`).
    public let addsBOS: Bool
    /// Whether `encode(_:addSpecial:)` appends the EOS token (`add_eos_token`).
    public let addsEOS: Bool
    /// Beginning-of-sequence token, if the model has one.
    public let bosToken: Int32?
    /// End-of-sequence token, if the model has one.
    public let eosToken: Int32?
    /// End-of-turn token (metadata or detected by text like llama.cpp: `<|eot_id|>`, `<|im_end|>`, …).
    public let eotToken: Int32?
    /// End-of-message token (`<|eom_id|>`).
    public let eomToken: Int32?
    /// Unknown-token id, if any.
    public let unknownToken: Int32?
    /// Padding token id, if any.
    public let paddingToken: Int32?
    /// Every token that ends generation: EOS, EOT, EOM and the tokens llama.cpp recognises by
    /// their text (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, …), plus FIM pad/repo/separator.
    public let eogTokens: Set<Int32>
    /// The Jinja chat template stored with the vocabulary, if any.
    public let chatTemplate: String?
    /// Special tokens to split out of text before BPE, longest text first.
    let specialTokensByLength: [Int32]
    /// Token id for each raw byte in byte-level vocabularies (-1 where the vocabulary lacks it).
    let byteLevelSymbols: [Int32]
    /// `<0xNN>` byte tokens (-1 where missing).
    let byteTokens: [Int32]
    /// `token_to_piece(id, special: true)` for every id.
    let pieces: [[UInt8]]

    // Hugging Face options.
    let normalizerPrepend: [UInt8]?
    let normalizerReplacements: [([UInt8], [UInt8])]
    let metaspace: (replacement: [UInt8], scheme: PrependScheme, split: Bool)?
    let byteLevelAddPrefixSpace: Bool
    let byteFallback: Bool
    let fuseUnknown: Bool

    /// Number of entries in the vocabulary.
    public var vocabularySize: Int { tokens.count }

    /// Builds the tokenizer and derives what llama.cpp derives at load time: end-of-turn and FIM
    /// tokens detected by their text (and marked as control), the end-of-generation set, the
    /// special-token list for partitioning, and the piece of every token.
    init(definition d: TokenizerDefinition) throws(ModelFileError) {
        let n = d.tokens.count
        guard n > 0 else { throw ModelFileError(file: d.file, what: "the vocabulary is empty") }
        guard n < Int(Int32.max) else { throw ModelFileError(file: d.file, what: "the vocabulary has \(n) entries, too many") }
        guard d.attributes.count == n, d.scores.count == n else {
            throw ModelFileError(file: d.file, what: "internal: attribute/score arrays do not match the vocabulary")
        }
        file = d.file
        model = d.model
        var attrs = d.attributes
        var map: [[UInt8]: Int32] = [:]
        map.reserveCapacity(n)
        for (i, t) in d.tokens.enumerated() {
            let key = Array(t.utf8)
            if let other = map[key] {
                throw ModelFileError(file: d.file, what: "duplicate token in vocabulary: '\(t)' has ids \(other) and \(i)")
            }
            map[key] = Int32(i)
        }
        for id in [d.bos, d.eos, d.eot, d.eom, d.unknown, d.padding, d.fimPad, d.fimRep, d.fimSep] {
            if let id, id < 0 || Int(id) >= n {
                throw ModelFileError(file: d.file, what: "special token id \(id) is outside the vocabulary (0..<\(n))")
            }
        }
        if d.addBOS, d.bos == nil {
            throw ModelFileError(file: d.file, what: "add_bos_token is true, but no BOS token id is set")
        }
        if d.addEOS, d.eos == nil {
            throw ModelFileError(file: d.file, what: "add_eos_token is true, but no EOS token id is set")
        }

        // Auto-detect special tokens by text (llama.cpp iterates a hash map; we go by id, so the
        // lowest id wins where several candidates exist).
        var eot = d.eot, eom = d.eom, fimPad = d.fimPad, fimRep = d.fimRep, fimSep = d.fimSep
        let eotNames: Set<String> = [
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
            "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
        ]
        let fimPadNames: Set<String> = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]
        let fimRepNames: Set<String> = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]
        let eogNames: Set<String> = [
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
            "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
            "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
            "<｜end▁of▁sentence｜>", "[e~[",
        ]
        let promote = d.promoteDetectedSpecialTokens
        for (i, t) in d.tokens.enumerated() {
            let id = Int32(i)
            var detected = false
            if eot == nil, eotNames.contains(t) { eot = id; detected = true }
            if eom == nil, t == "<|eom_id|>" { eom = id; detected = true }
            if fimPad == nil, fimPadNames.contains(t) { fimPad = id; detected = true }
            if fimRep == nil, fimRepNames.contains(t) { fimRep = id; detected = true }
            if fimSep == nil, t == "<|file_sep|>" { fimSep = id; detected = true }
            if detected, promote { attrs[i].insert(.control) }
        }
        var eog = Set<Int32>()
        for id in [fimPad, fimRep, fimSep] { if let id { eog.insert(id) } }
        for (i, t) in d.tokens.enumerated() where eogNames.contains(t) {
            eog.insert(Int32(i))
            if promote { attrs[i].insert(.control) }
        }
        for id in [d.eos, eot, eom] { if let id { eog.insert(id) } }
        // o200k_harmony / solar-open: "<|end|>" is not end-of-generation when these exist.
        let eogTexts = Set(eog.map { d.tokens[Int($0)] })
        if (eogTexts.contains("<|return|>") && eogTexts.contains("<|call|>") && eogTexts.contains("<|end|>"))
            || (eogTexts.contains("<|calls|>") && eogTexts.contains("<|flush|>") && eogTexts.contains("<|end|>")),
            let endID = map[Array("<|end|>".utf8)]
        {
            eog.remove(endID)
            attrs[Int(endID)] = .userDefined
        }

        // Special tokens for partitioning: control, user-defined and unknown, longest first.
        var special: [Int32] = []
        for i in 0..<n where !attrs[i].isDisjoint(with: [.control, .userDefined, .unknown]) && !d.tokens[i].isEmpty {
            special.append(Int32(i))
        }
        let lengths = d.tokens.map { $0.utf8.count }
        special.sort { a, b in
            let la = lengths[Int(a)], lb = lengths[Int(b)]
            return la != lb ? la > lb : a < b
        }

        var merges = MergeTable()
        for (rank, m) in d.merges.enumerated() {
            merges.add(left: m.0, right: m.1, result: m.2, rank: rank)
        }

        var byteSyms = [Int32](repeating: -1, count: 256)
        var byteToks = [Int32](repeating: -1, count: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            var key: [UInt8] = []
            UTF8Util.append(ByteLevel.scalarForByte[b], to: &key)
            byteSyms[b] = map[key] ?? -1
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]
            byteToks[b] = map[name] ?? -1
        }

        tokens = d.tokens
        attributes = attrs
        scores = d.scores
        textToID = map
        mergeTable = merges
        preTokenizer = d.preTokenizer
        ignoreMerges = d.ignoreMerges
        addSpacePrefix = d.addSpacePrefix
        addsBOS = d.addBOS
        addsEOS = d.addEOS
        bosToken = d.bos
        eosToken = d.eos
        eotToken = eot
        eomToken = eom
        unknownToken = d.unknown
        paddingToken = d.padding
        eogTokens = eog
        chatTemplate = d.chatTemplate
        specialTokensByLength = special
        byteLevelSymbols = byteSyms
        byteTokens = byteToks
        normalizerPrepend = d.normalizerPrepend.map { Array($0.utf8) }
        normalizerReplacements = d.normalizerReplacements.map { (Array($0.0.utf8), Array($0.1.utf8)) }
        metaspace = d.metaspace.map { (Array($0.replacement.utf8), $0.scheme, $0.split) }
        byteLevelAddPrefixSpace = d.byteLevelAddPrefixSpace
        byteFallback = d.byteFallback
        fuseUnknown = d.fuseUnknown
        pieces = (0..<n).map { Self.piece(text: d.tokens[$0], attributes: attrs[$0], model: d.model) }
    }

    /// llama.cpp's `token_to_piece(special: true)` for one vocabulary entry.
    private static func piece(text: String, attributes a: TokenAttributes, model: TokenizerModel) -> [UInt8] {
        if !a.isDisjoint(with: [.unknown, .control, .userDefined]) { return Array(text.utf8) }
        if a.contains(.normal) {
            switch model {
            case .byteLevelBPE: return ByteLevel.decode(text)
            case .sentencePiece, .characterBPE: return replacing(Array(text.utf8), [0xE2, 0x96, 0x81], with: [0x20])
            }
        }
        if a.contains(.byte) {
            // "<0xNN>"
            let u = Array(text.utf8)
            guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E,
                let v = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
            else { return [] }
            return [v]
        }
        return []
    }

    /// `haystack` with every occurrence of `pattern` replaced.
    static func replacing(_ haystack: [UInt8], _ pattern: [UInt8], with replacement: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, haystack.count >= pattern.count else { return haystack }
        var out: [UInt8] = []
        out.reserveCapacity(haystack.count)
        var i = 0
        while i < haystack.count {
            if haystack[i] == pattern[0], i + pattern.count <= haystack.count,
                haystack[i..<i + pattern.count].elementsEqual(pattern)
            {
                out.append(contentsOf: replacement)
                i += pattern.count
            } else {
                out.append(haystack[i])
                i += 1
            }
        }
        return out
    }

    // MARK: Token properties

    /// The text of a vocabulary entry as stored (byte-level or `▁`-escaped form), or nil if the
    /// id is out of range.
    public func tokenText(_ id: Int32) -> String? {
        id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil
    }

    /// The attributes of a token (empty for ids out of range).
    public func attributes(of id: Int32) -> TokenAttributes {
        id >= 0 && Int(id) < attributes.count ? attributes[Int(id)] : []
    }

    /// Whether a token is a control token (`<|im_start|>`, `<s>`, …). False for ids out of range.
    public func isControl(_ id: Int32) -> Bool { attributes(of: id).contains(.control) }

    /// Whether a token ends generation.
    public func isEndOfGeneration(_ id: Int32) -> Bool { eogTokens.contains(id) }

    /// The id of a vocabulary entry given in its stored form, if present.
    public func tokenID(forText text: String) -> Int32? { textToID[Array(text.utf8)] }
}
