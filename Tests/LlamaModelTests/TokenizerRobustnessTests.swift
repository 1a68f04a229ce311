import Foundation
import Testing

@testable import LlamaModel

/// Malformed files give errors that name the file and the key; hostile input never crashes.
@Suite("Tokenizer: malformed metadata and hostile input")
struct TokenizerRobustnessTests {
    typealias W = TestGGUFWriter

    static func metadata(_ base: [(String, W.Value)], set key: String, to value: W.Value?) -> [(String, W.Value)] {
        var kvs = base.filter { $0.0 != key }
        if let value { kvs.append((key, value)) }
        return kvs
    }

    struct BadCase: Sendable, CustomStringConvertible {
        let name: String
        let key: String
        let value: W.Value?
        let spm: Bool
        var description: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "missing model", key: "tokenizer.ggml.model", value: nil, spm: false),
        BadCase(name: "unsupported model", key: "tokenizer.ggml.model", value: .string("bert"), spm: false),
        BadCase(name: "model of wrong type", key: "tokenizer.ggml.model", value: .uint32(2), spm: false),
        BadCase(name: "missing tokens", key: "tokenizer.ggml.tokens", value: nil, spm: false),
        BadCase(name: "tokens not an array", key: "tokenizer.ggml.tokens", value: .string("a"), spm: false),
        BadCase(name: "tokens of wrong element type", key: "tokenizer.ggml.tokens", value: .int32s([1, 2]), spm: false),
        BadCase(name: "empty tokens", key: "tokenizer.ggml.tokens", value: .strings([]), spm: false),
        BadCase(name: "duplicate tokens", key: "tokenizer.ggml.tokens", value: .strings(["a", "b", "a"]), spm: true),
        BadCase(name: "token types too short", key: "tokenizer.ggml.token_type", value: .int32s([1]), spm: false),
        BadCase(name: "scores of wrong type", key: "tokenizer.ggml.scores", value: .strings(["x"]), spm: true),
        BadCase(name: "missing merges", key: "tokenizer.ggml.merges", value: nil, spm: false),
        BadCase(name: "merge naming an unknown token", key: "tokenizer.ggml.merges", value: .strings(["Ġ t", "h zz"]), spm: false),
        BadCase(name: "merge without a space", key: "tokenizer.ggml.merges", value: .strings(["Ġt"]), spm: false),
        BadCase(name: "merge making an unknown token", key: "tokenizer.ggml.merges", value: .strings(["a b"]), spm: false),
        BadCase(name: "merges of wrong type", key: "tokenizer.ggml.merges", value: .int32s([3]), spm: false),
        BadCase(name: "unknown pre-tokenizer", key: "tokenizer.ggml.pre", value: .string("klingon"), spm: false),
        BadCase(name: "BOS id out of range", key: "tokenizer.ggml.bos_token_id", value: .uint32(1_000_000), spm: false),
        BadCase(name: "EOS id negative", key: "tokenizer.ggml.eos_token_id", value: .int32(-1), spm: true),
        BadCase(name: "EOS id of wrong type", key: "tokenizer.ggml.eos_token_id", value: .string("2"), spm: false),
        BadCase(name: "add_bos_token of wrong type", key: "tokenizer.ggml.add_bos_token", value: .uint32(1), spm: false),
        BadCase(name: "chat template of wrong type", key: "tokenizer.chat_template", value: .uint32(1), spm: false),
    ]

    @Test("malformed GGUF metadata names the file and the key", arguments: badCases)
    func malformedGGUF(_ c: BadCase) throws {
        let base = c.spm ? W.spmMetadata() : W.bpeMetadata()
        let kvs = Self.metadata(base, set: c.key, to: c.value)
        let path = try W.write(kvs)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let gguf = try GGUFFile(path: path)
        let error = #expect(throws: ModelFileError.self) { try Tokenizer(gguf: gguf) }
        #expect(error?.file == path)
        if c.name != "duplicate tokens" {
            #expect(error?.what.contains(c.key) == true, "\(error?.what ?? "no error")")
        }
    }

    @Test("the synthetic byte-level vocabulary itself loads and merges")
    func syntheticBPE() throws {
        let tok = try W.tokenizer(W.bpeMetadata())
        // "the the": "the" then " the" (Ġ t → Ġt, h e → he, Ġt he → Ġthe).
        let the = try #require(tok.tokenID(forText: "t"))
        let h = try #require(tok.tokenID(forText: "h")), e = try #require(tok.tokenID(forText: "e"))
        let he = try #require(tok.tokenID(forText: "he")), gthe = try #require(tok.tokenID(forText: "Ġthe"))
        #expect(tok.encode("the the") == [the, he, gthe])
        #expect(tok.encode("h e", addSpecial: false).count == 3)
        _ = (h, e)
        #expect(!tok.addsBOS)
    }

    @Test("malformed tokenizer.json names the key")
    func malformedJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squat-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func load(_ json: Any) throws -> ModelFileError? {
            let url = dir.appendingPathComponent("t\(UUID().uuidString).json")
            if let s = json as? String {
                try Data(s.utf8).write(to: url)
            } else {
                try JSONSerialization.data(withJSONObject: json).write(to: url)
            }
            do {
                _ = try Tokenizer(tokenizerJSONAt: url.path, tokenizerConfigPath: nil)
                return nil
            } catch {
                #expect(error.file == url.path)
                return error
            }
        }
        let vocab: [String: Int] = ["a": 0, "b": 1, "ab": 2]
        func model(_ extra: [String: Any]) -> [String: Any] {
            ["model": (["type": "BPE", "vocab": vocab, "merges": ["a b"]] as [String: Any]).merging(extra) { $1 }]
        }
        #expect(try load("{not json")?.what.contains("JSON") == true)
        #expect(try load(["nomodel": 1])?.what.contains("'model'") == true)
        #expect(try load(model(["type": "Unigram"]))?.what.contains("model.type") == true)
        #expect(try load(model(["merges": ["a c"]]))?.what.contains("model.merges[0]") == true)
        #expect(try load(model(["merges": [["a"]]]))?.what.contains("model.merges[0]") == true)
        #expect(try load(model(["vocab": ["a": 0, "b": 2]]))?.what.contains("model.vocab") == true)
        #expect(try load(model(["vocab": ["a": -3]]))?.what.contains("model.vocab") == true)
        #expect(try load(model(["vocab": ["a": true, "b": 1, "ab": 2]]))?.what.contains("model.vocab") == true)
        var badPre = model([:])
        badPre["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "[a-z]+"], "behavior": "Isolated"]
        #expect(try load(badPre)?.what.contains("pre_tokenizer.pattern") == true)
        var badAdded = model([:])
        badAdded["added_tokens"] = [["id": "x", "content": 3]]
        #expect(try load(badAdded)?.what.contains("added_tokens[0]") == true)
        #expect(try load(model([:])) == nil)
        let missing = #expect(throws: ModelFileError.self) {
            try Tokenizer(tokenizerJSONAt: dir.appendingPathComponent("nope.json").path, tokenizerConfigPath: nil)
        }
        #expect(missing?.what.contains("cannot read") == true)
    }

    /// SplitMix64: a small seeded generator so failures reproduce.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func randomText(_ rng: inout SplitMix64, specials: [String]) -> String {
        let n = Int.random(in: 0...40, using: &rng)
        var bytes: [UInt8] = []
        for _ in 0..<n {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: bytes += Array(specials.randomElement(using: &rng)!.utf8)
            case 1: bytes += Array("é漢😀 \n\t".utf8).shuffled(using: &rng).prefix(3)
            case 2...4: bytes.append(UInt8.random(in: 0x20...0x7E, using: &rng))
            default: bytes.append(UInt8.random(in: 0...255, using: &rng))
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("random text and random ids never crash (seeded, 3000 rounds per vocabulary)")
    func fuzz() throws {
        let tokenizers = [
            try TokenizerTestSupport.smolTokenizer(),
            try W.tokenizer(W.spmMetadata()),
            try W.tokenizer(W.bpeMetadata()),
        ]
        var rng = SplitMix64(state: 0x5EED)
        for tok in tokenizers {
            let specials = ["<|im_start|>", "<|im_end|>", "<s>", "</s>", "<|endoftext|>", "<0x41>", "▁"]
            for _ in 0..<3000 {
                let text = Self.randomText(&rng, specials: specials)
                let ids = tok.encode(text, addSpecial: Bool.random(using: &rng), parseSpecial: Bool.random(using: &rng))
                #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tok.vocabularySize })
                // Without special tokens, byte-level vocabularies give the text back exactly, less
                // the bytes the vocabulary has no symbol for (SmolLM2 lacks a few control bytes;
                // llama.cpp drops them too).
                if tok.model == .byteLevelBPE {
                    let kept = Array(text.utf8).filter { tok.byteLevelSymbols[Int($0)] >= 0 }
                    let back = tok.decode(tok.encode(text, addSpecial: false, parseSpecial: false))
                    #expect(Array(back.utf8) == Array(String(decoding: kept, as: UTF8.self).utf8), "\(Array(text.utf8))")
                }
                var randomIDs: [Int32] = []
                for _ in 0..<Int.random(in: 0...12, using: &rng) {
                    randomIDs.append(Int32.random(in: -5...Int32(tok.vocabularySize + 5), using: &rng))
                }
                randomIDs.append(Int32.min)
                randomIDs.append(Int32.max)
                _ = tok.decode(randomIDs)
                var stream = StreamingDecoder(tokenizer: tok)
                var streamed = ""
                for id in randomIDs { streamed += stream.append(id) }
                streamed += stream.flush()
                #expect(streamed == tok.decode(randomIDs))
            }
        }
    }
}
