import Foundation
import FuzzSupport
import Testing

@testable import LlamaModel

// Fuzz: the JSON side of Hugging Face models, 100,000 seeded inputs per decoder:
// - `JSONParser.parse` (the safetensors header and config.json parser): mutations of config,
//   safetensors-header and tokenizer JSON texts (byte edits, JSON tokens, numbers at the
//   edges, deep nesting, escapes and surrogates) and random text of JSON characters;
// - `LlamaConfig(huggingFaceConfig:file:)` on config.json texts with 1 to 4 keys replaced by
//   random JSON values or removed (every input valid JSON, so all reach the config reader);
// - `Tokenizer(tokenizerJSON:path:tokenizerConfig:configPath:)` (tokenizer.json and
//   tokenizer_config.json, read with Foundation's JSONSerialization): mutations of small
//   byte-level and SentencePiece-style (byte fallback, Prepend/Replace, Metaspace) files.
// Each input must give a value or the decoder's typed error (`JSONParseError` at an offset
// inside the text; `ModelFileError` naming the file), its message at most twice the input.
@Suite("Fuzz: JSON, config.json and tokenizer.json", .timeLimit(.minutes(10)))
struct JSONFuzzTests {
    static let inputs = 100_000

    static func json(_ object: Any) -> [UInt8] {
        (try? Array(JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))) ?? []
    }

    /// A small byte-level BPE tokenizer.json: added tokens, a Digits + ByteLevel pre-tokenizer,
    /// a TemplateProcessing post-processor, merges in both spellings.
    static func byteLevelTokenizer() -> [UInt8] {
        var vocab: [String: Int] = ["<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<tool>": 3]
        for b in Array(" the<|>lowrdin12_".utf8) where vocab[ByteLevel.encode([b])] == nil {
            vocab[ByteLevel.encode([b])] = vocab.count
        }
        for t in ["Ġt", "he", "Ġthe", "in", "Ġin"] { vocab[t] = vocab.count }
        let added: [[String: Any]] = [
            ["id": 0, "content": "<|endoftext|>", "special": true],
            ["id": 1, "content": "<|im_start|>", "special": true],
            ["id": 2, "content": "<|im_end|>", "special": true], ["id": 3, "content": "<tool>", "special": false],
        ]
        return json(
            [
                "version": "1.0", "added_tokens": added, "normalizer": NSNull(),
                "pre_tokenizer": [
                    "type": "Sequence",
                    "pretokenizers": [
                        ["type": "Digits", "individual_digits": true],
                        ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
                    ],
                ],
                "post_processor": [
                    "type": "TemplateProcessing",
                    "single": [
                        ["SpecialToken": ["id": "<|im_start|>", "type_id": 0]],
                        ["Sequence": ["id": "A", "type_id": 0]],
                    ],
                ],
                "decoder": ["type": "ByteLevel"],
                "model": [
                    "type": "BPE", "unk_token": NSNull(), "byte_fallback": false, "ignore_merges": false,
                    "vocab": vocab,
                    "merges": ["Ġ t", "h e", ["Ġt", "he"], "i n", "Ġ in"],
                ],
            ] as [String: Any])
    }

    /// A small SentencePiece-converted tokenizer.json: byte fallback (some bytes only),
    /// Prepend + Replace normalizers or a Metaspace pre-tokenizer, an unknown token.
    static func sentencePieceTokenizer(metaspace: Bool) -> [UInt8] {
        var vocab: [String: Int] = ["<unk>": 0, "<s>": 1, "</s>": 2]
        for b in [0x0A, 0x20, 0x41, 0xC3, 0xA9, 0xE2, 0x96, 0x81, 0xF0, 0x9F, 0x98, 0x80] {
            vocab[String(format: "<0x%02X>", b)] = vocab.count
        }
        for t in [
            "▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "llo", "hello", "▁hello", "▁w", "or", "▁wor", "ld",
        ] {
            vocab[t] = vocab.count
        }
        var object: [String: Any] = [
            "added_tokens": [
                ["id": 0, "content": "<unk>", "special": true], ["id": 1, "content": "<s>", "special": true],
                ["id": 2, "content": "</s>", "special": true],
            ],
            "decoder": ["type": "Sequence", "decoders": [["type": "ByteFallback"], ["type": "Fuse"]]],
            "model": [
                "type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true, "vocab": vocab,
                "merges": ["h e", "l l", "ll o", "he llo", "▁ hello", "▁ w", "o r", "▁w or", "l d"],
            ],
        ]
        if metaspace {
            object["pre_tokenizer"] = [
                "type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true,
            ]
        } else {
            object["normalizer"] = [
                "type": "Sequence",
                "normalizers": [
                    ["type": "Prepend", "prepend": "▁"],
                    ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
                ],
            ]
        }
        return json(object)
    }

    static func tokenizerConfigs() -> [[UInt8]] {
        [
            json(
                [
                    "bos_token": "<s>", "eos_token": ["content": "</s>"], "add_bos_token": true, "add_eos_token": false,
                    "unk_token": "<unk>", "pad_token": NSNull(),
                    "chat_template": [
                        ["name": "default", "template": "{{ messages }}"], ["name": "tool_use", "template": "x"],
                    ],
                ] as [String: Any]),
            json(["bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": "{{ x }}"]),
        ]
    }

    /// JSON texts of every kind the engine parses, plus nesting and escapes at the edges.
    static func jsonSeeds() -> [[UInt8]] {
        [
            Array(tinyConfigJSON().utf8),
            Array(
                tinyConfigJSON([
                    "rope_scaling":
                        #"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}"#
                ]).utf8),
            Array(STWriter.header(tinyModelTensors()).utf8),
            Array(
                #"{"s": "x\u00e9\ud83d\ude00\ud800\n\t\"\\\/", "n": [0, -0, 1.5e-3, -2E+10, 123456789012345678901234567890], "o": {}, "a": [], "t": true, "f": false, "z": null}"#
                    .utf8),
            Array((String(repeating: "[", count: 63) + "1" + String(repeating: "]", count: 63)).utf8),
            Array((String(repeating: "{\"a\":", count: 40) + "null" + String(repeating: "}", count: 40)).utf8),
            byteLevelTokenizer(),
        ] + tokenizerConfigs()
    }

    @Test("100,000 seeded JSON texts parse or give a JSONParseError at an offset inside the text")
    func parser() async {
        let seeds = Self.jsonSeeds()
        let alphabet = Array("{}[]\":,0123456789-+eE.truefalsnl \\u\n".utf8)
        var rng = SeededRandom(seed: 0x150_5EED)
        var failures: [String] = []
        let tally = await runFuzzer("JSONParser", inputs: Self.inputs) { i, tally in
            let bytes: [UInt8]
            if i % 10 == 0 {
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
                    Bool.random(using: &rng)
                        ? (alphabet.randomElement(using: &rng) ?? 0) : UInt8.random(in: 0...255, using: &rng)
                }
            } else {
                bytes = FileMutator.mutated(
                    seeds[i % seeds.count], donors: seeds, dictionary: FileMutator.jsonDictionary, using: &rng)
            }
            let duplicates: JSONParser.DuplicateKeys = i % 2 == 0 ? .lastWins : .reject
            tally.timed(i) { tally in
                do throws(JSONParseError) {
                    let value = try JSONParser.parse(bytes, duplicateKeys: duplicates)
                    _ = (value.brief, value.intValue, value.doubleValue)
                    tally.record("parsed")
                } catch {
                    if error.offset < 0 || error.offset > bytes.count || error.message.isEmpty
                        || error.message.utf8.count > 2 * bytes.count + 1024
                    {
                        failures.append("error '\(error)' for \(bytes.count) bytes")
                    }
                    tally.record("JSONParseError")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["parsed"] > 10_000 && tally["JSONParseError"] > 10_000, "\(tally)")
    }

    /// Values for config keys: right and wrong types, zero, negative, huge, fractional, NaN-like.
    static let configValues = [
        "0", "1", "2", "3", "4", "8", "12", "16", "-1", "-8", "7", "64", "2048", "16777217", "9223372036854775807",
        "-9223372036854775808", "1e309", "-1e309", "1e-5", "0.0", "1.5", "8.0", "1e300", "null", "true", "false",
        "\"silu\"", "\"gelu\"", "\"llama\"", "\"mistral\"", "\"x\"", "[]", "[\"LlamaForCausalLM\"]",
        "[\"MistralForCausalLM\", 3]", "[\"GPT2\"]", "{}",
        #"{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 32}"#,
        #"{"type": "llama3", "factor": 0, "low_freq_factor": 4, "high_freq_factor": 1, "original_max_position_embeddings": -1}"#,
        #"{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 1e309}"#, #"{"rope_type": "yarn"}"#,
        #"{"rope_type": "default", "rope_theta": 0}"#,
    ]
    static let configKeys = [
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "rms_norm_eps", "rope_theta", "vocab_size", "max_position_embeddings",
        "tie_word_embeddings", "hidden_act", "head_dim", "sliding_window", "rope_scaling", "rope_parameters",
        "attention_bias", "mlp_bias",
    ]

    @Test("100,000 seeded config.json texts give a configuration or a ModelFileError naming the file")
    func config() async {
        var rng = SeededRandom(seed: 0xC0F1_65EED)
        var failures: [String] = []
        let file = "/fuzz/config.json"
        let tally = await runFuzzer("LlamaConfig(huggingFaceConfig:)", inputs: Self.inputs) { i, tally in
            var overrides: [String: String?] = [:]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let key = Self.configKeys.randomElement(using: &rng) ?? "hidden_size"
                overrides[key] =
                    Int.random(in: 0..<8, using: &rng) == 0
                    ? .some(nil) : Self.configValues.randomElement(using: &rng)
            }
            // One time in twenty, the whole config is some other JSON value.
            let text =
                i % 20 == 0 ? (Self.configValues.randomElement(using: &rng) ?? "0") : tinyConfigJSON(overrides)
            tally.timed(i) { tally in
                let json: JSONValue
                do {
                    json = try JSONParser.parse(Array(text.utf8))
                } catch {
                    failures.append("generated config is not JSON: \(text)")
                    tally.record("not JSON")
                    return
                }
                do throws(ModelFileError) {
                    _ = try LlamaConfig(huggingFaceConfig: json, file: file)
                    tally.record("config read")
                } catch {
                    if error.file != file || error.what.isEmpty
                        || error.what.utf8.count > 2 * text.utf8.count + 1024
                    {
                        failures.append("error '\(error)'")
                    }
                    tally.record("ModelFileError")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["config read"] > 5_000 && tally["ModelFileError"] > 10_000, "\(tally)")
    }

    @Test("100,000 seeded tokenizer.json files give a working tokenizer or a ModelFileError naming the file")
    func tokenizerJSON() async throws {
        let tokenizers = [
            Self.byteLevelTokenizer(), Self.sentencePieceTokenizer(metaspace: false),
            Self.sentencePieceTokenizer(metaspace: true),
        ]
        let configs = Self.tokenizerConfigs()
        let donors = tokenizers + configs
        var rng = SeededRandom(seed: 0x70C_5EED)
        var failures: [String] = []
        let path = "/fuzz/tokenizer.json"
        let configPath = "/fuzz/tokenizer_config.json"
        let tally = await runFuzzer("Tokenizer(tokenizerJSON:)", inputs: Self.inputs) { i, tally in
            var json = tokenizers[i % tokenizers.count]
            // The SentencePiece-style files with the <s>/</s> config, the byte-level one with its own.
            var config: [UInt8]? = i % 3 == 0 ? configs[1] : (i % 2 == 0 ? configs[0] : nil)
            if i % 5 == 0, let c = config {
                config = FileMutator.mutated(c, donors: donors, dictionary: FileMutator.jsonDictionary, using: &rng)
            } else {
                json = FileMutator.mutated(
                    json, donors: donors, dictionary: FileMutator.jsonDictionary, using: &rng)
            }
            tally.timed(i) { tally in
                do throws(ModelFileError) {
                    let tokenizer = try Tokenizer(
                        tokenizerJSON: json, path: path, tokenizerConfig: config, configPath: configPath)
                    let ids = tokenizer.encode("the hello <|im_start|>wörld 12 <s>\u{1F600}\u{FFFD}")
                    if ids.contains(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) {
                        failures.append("token id out of range")
                    }
                    _ = tokenizer.decode(ids + [-1, Int32(tokenizer.vocabularySize)])
                    tally.record("tokenizer")
                } catch {
                    let input = json.count + (config?.count ?? 0)
                    if error.file != path && error.file != configPath || error.what.isEmpty
                        || error.what.utf8.count > 2 * input + 1024
                    {
                        failures.append("error '\(error)'")
                    }
                    tally.record("ModelFileError")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["tokenizer"] > 5_000 && tally["ModelFileError"] > 10_000, "\(tally)")
    }

    /// Found by this fuzzer (once it could put a dictionary number in place of a whole number):
    /// an added token's id far past the others made the reader reserve room for every id up to
    /// it before finding the gap; 2^31 - 2 asked for 32 GiB and aborted the process.
    @Test("regression: a tokenizer.json token id far past the vocabulary is refused without reserving room for it")
    func hugeTokenID() throws {
        func json(_ id: Int) -> [UInt8] {
            Array(
                #"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"added_tokens":[{"id":\#(id),"content":"x","special":true}]}"#
                    .utf8)
        }
        for id in [2_147_483_646, 1_000_000_000] {
            let error = #expect(throws: ModelFileError.self) { try Tokenizer(tokenizerJSON: json(id), path: "t.json") }
            #expect(
                error
                    == ModelFileError(
                        file: "t.json", what: "key 'model.vocab' has no token with id 3 (ids must be contiguous from 0)"
                    ))
        }
        #expect(try Tokenizer(tokenizerJSON: json(3), path: "t.json").vocabularySize == 4)
    }

    @Test("the seed tokenizer.json files load, with and without their configs")
    func seedsLoad() throws {
        let configs = Self.tokenizerConfigs()
        let byteLevel = try Tokenizer(tokenizerJSON: Self.byteLevelTokenizer(), path: "b", tokenizerConfig: configs[1])
        #expect(byteLevel.model == .byteLevelBPE && byteLevel.encode("the the", addSpecial: false).count == 3)
        for metaspace in [false, true] {
            let spm = try Tokenizer(
                tokenizerJSON: Self.sentencePieceTokenizer(metaspace: metaspace), path: "s", tokenizerConfig: configs[0]
            )
            #expect(spm.model == .characterBPE && spm.addsBOS)
            #expect(spm.decode(spm.encode("hello world", addSpecial: false)) == " hello world")
        }
        for config in [tinyConfigJSON()] {
            #expect(throws: Never.self) {
                try LlamaConfig(huggingFaceConfig: JSONParser.parse(Array(config.utf8)), file: "c")
            }
        }
    }
}
