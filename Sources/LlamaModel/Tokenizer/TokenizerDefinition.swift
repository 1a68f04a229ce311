/// Attributes of a vocabulary entry (llama.cpp's `llama_token_attr`).
public struct TokenAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let unknown = TokenAttributes(rawValue: 1 << 0)
    public static let unused = TokenAttributes(rawValue: 1 << 1)
    public static let normal = TokenAttributes(rawValue: 1 << 2)
    public static let control = TokenAttributes(rawValue: 1 << 3)
    public static let userDefined = TokenAttributes(rawValue: 1 << 4)
    public static let byte = TokenAttributes(rawValue: 1 << 5)

    /// From a GGUF `tokenizer.ggml.token_type` value (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte; anything else undefined).
    init(ggufTokenType t: Int) {
        switch t {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = []
        }
    }
}

/// How text fragments are turned into tokens.
enum TokenizerModel: Sendable, Equatable {
    /// GPT-2-style byte-level BPE with ranked merges (GGUF `gpt2`, HF `ByteLevel`).
    case byteLevelBPE
    /// llama.cpp's score-driven SentencePiece BPE with `<0xNN>` byte fallback (GGUF `llama`).
    case sentencePiece
    /// Hugging Face BPE over characters with ranked merges and optional `<0xNN>` byte fallback
    /// (tokenizer.json of SentencePiece-converted models such as Llama 2 or TinyLlama).
    case characterBPE
}

/// When a character-level BPE fragment gets the `▁` space marker in front (HF `Metaspace`).
enum PrependScheme: Sendable, Equatable {
    case always, first, never
}

/// Everything a loader reads from a model's tokenizer description; `Tokenizer.init(definition:)`
/// derives the rest exactly as llama.cpp does after reading a GGUF.
struct TokenizerDefinition: Sendable {
    var file: String
    var model: TokenizerModel
    var tokens: [String]
    var attributes: [TokenAttributes]
    var scores: [Float]
    /// Merges as pairs of token ids, in rank order.
    var merges: [(Int32, Int32, Int32)] = []
    var preTokenizer = PreTokenizer(steps: [])
    var ignoreMerges = false
    var addSpacePrefix = false
    var addBOS = false
    var addEOS = false
    var bos: Int32? = nil
    var eos: Int32? = nil
    var eot: Int32? = nil
    var eom: Int32? = nil
    var unknown: Int32? = nil
    var padding: Int32? = nil
    var fimPad: Int32? = nil
    var fimRep: Int32? = nil
    var fimSep: Int32? = nil
    var chatTemplate: String? = nil
    /// Mark tokens recognised by their text as end-of-turn/end-of-generation as control tokens,
    /// as llama.cpp does for GGUF vocabularies (which changes how text containing them is
    /// split). tokenizer.json files declare their special tokens in `added_tokens` instead.
    var promoteDetectedSpecialTokens = true

    // Hugging Face options (tokenizer.json only).
    /// `Prepend` normalizer: text put in front of every non-empty fragment.
    var normalizerPrepend: String? = nil
    /// `Replace` normalizers with plain-string patterns, in order.
    var normalizerReplacements: [(String, String)] = []
    /// `Metaspace` pre-tokenizer: replacement character, prepend scheme, split on it.
    var metaspace: (replacement: String, scheme: PrependScheme, split: Bool)? = nil
    /// `ByteLevel(add_prefix_space: true)`.
    var byteLevelAddPrefixSpace = false
    /// BPE `byte_fallback`.
    var byteFallback = false
    /// BPE `fuse_unk`.
    var fuseUnknown = false
}
