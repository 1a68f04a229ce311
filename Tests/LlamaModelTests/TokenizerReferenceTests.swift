import Foundation
import Testing

@testable import LlamaModel

/// The tokenizer against Hugging Face `tokenizers` on strings nobody tuned the code for.
/// Fixture made by `Fixtures/make_tokenizer_fixture.py` (the command is in its header).
@Suite("Tokenizer: Hugging Face tokenizers reference")
struct TokenizerReferenceTests {
    struct Case {
        let text: String
        let ids: [Int32]
        let idsSpecialAsText: [Int32]
        let decoded: String
    }
    struct Variant {
        let preTokenizer: Any
        let ignoreMerges: Bool
        let cases: [Case]
    }

    static func fixture() throws -> [String: Variant] {
        let path = TokenizerTestSupport.fixturesDir.appendingPathComponent("hf_reference_tokens.json").path
        let root = try #require(try TokenizerTestSupport.json(at: path) as? [String: Any])
        let variants = try #require(root["variants"] as? [String: [String: Any]])
        var out: [String: Variant] = [:]
        for (name, v) in variants {
            let cases = try #require(v["cases"] as? [[String: Any]]).map { c in
                Case(
                    text: c["text"] as? String ?? "",
                    ids: TokenizerTestSupport.ints(c["ids"]) ?? [],
                    idsSpecialAsText: TokenizerTestSupport.ints(c["ids_special_as_text"]) ?? [],
                    decoded: c["decoded"] as? String ?? "")
            }
            out[name] = Variant(preTokenizer: v["pre_tokenizer"] as Any, ignoreMerges: v["ignore_merges"] as? Bool ?? false, cases: cases)
        }
        return out
    }

    static var tokenizerJSONPath: String {
        TokenizerTestSupport.fixturesDir.appendingPathComponent("smollm2_tokenizer.json").path
    }

    static func check(_ tok: Tokenizer, _ variant: Variant, label: String) {
        for c in variant.cases {
            #expect(tok.encode(c.text, addSpecial: false) == c.ids, "\(label): \(c.text.debugDescription)")
            #expect(
                tok.encode(c.text, addSpecial: false, parseSpecial: false) == c.idsSpecialAsText,
                "\(label) special as text: \(c.text.debugDescription)")
            #expect(tok.decode(c.ids) == c.decoded, "\(label) decode: \(c.text.debugDescription)")
        }
    }

    @Test("GGUF vocabulary (pre 'smollm') matches tokenizers on 44 strings")
    func ggufSmolLM() throws {
        let fixture = try Self.fixture()
        let v = try #require(fixture["smollm"])
        #expect(v.cases.count >= 40)
        Self.check(try TokenizerTestSupport.smolTokenizer(), v, label: "gguf")
    }

    @Test("tokenizer.json path gives the same ids as tokenizers and as the GGUF path")
    func tokenizerJSON() throws {
        let v = try #require(try Self.fixture()["smollm"])
        let tok = try Tokenizer(tokenizerJSONAt: Self.tokenizerJSONPath, tokenizerConfigPath: nil)
        let gguf = try TokenizerTestSupport.smolTokenizer()
        #expect(tok.vocabularySize == gguf.vocabularySize)
        #expect(tok.eogTokens.isSuperset(of: [0, 2]))
        Self.check(tok, v, label: "tokenizer.json")
        for c in v.cases {
            #expect(tok.encode(c.text) == gguf.encode(c.text))
        }
    }

    @Test("Llama 3 and Qwen 2 split regexes match tokenizers", arguments: ["llama3", "qwen2"])
    func regexVariants(_ name: String) throws {
        let v = try #require(try Self.fixture()[name])
        // The same vocabulary with the variant's pre-tokenizer, written to a temporary file.
        var json = try #require(try TokenizerTestSupport.json(at: Self.tokenizerJSONPath) as? [String: Any])
        json["pre_tokenizer"] = v.preTokenizer
        var model = try #require(json["model"] as? [String: Any])
        model["ignore_merges"] = v.ignoreMerges
        json["model"] = model
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-tok-\(name)-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let tok = try Tokenizer(tokenizerJSONAt: url.path, tokenizerConfigPath: nil)
        #expect(tok.preTokenizer.steps == [.llama3(maxDigits: name == "llama3" ? 3 : 1)])
        Self.check(tok, v, label: name)
    }

    @Test(
        "SentencePiece-style tokenizer.json (byte fallback) matches tokenizers",
        arguments: ["prepend_replace", "metaspace_first", "metaspace_always_split"])
    func sentencePieceStyleJSON(_ style: String) throws {
        let path = TokenizerTestSupport.fixturesDir.appendingPathComponent("hf_reference_tokens.json").path
        let root = try #require(try TokenizerTestSupport.json(at: path) as? [String: Any])
        let variant = try #require((root["spm_variants"] as? [String: [String: Any]])?[style])
        let cases = try #require(variant["cases"] as? [[String: Any]])
        #expect(cases.count >= 40)
        let base = TokenizerTestSupport.fixturesDir.appendingPathComponent("spm_like_tokenizer.json").path
        var json = try #require(try TokenizerTestSupport.json(at: base) as? [String: Any])
        json["normalizer"] = variant["normalizer"] ?? NSNull()
        json["pre_tokenizer"] = variant["pre_tokenizer"] ?? NSNull()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-tok-\(style)-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let tok = try Tokenizer(tokenizerJSONAt: url.path, tokenizerConfigPath: nil)
        #expect(tok.model == .characterBPE)
        var byteFallbacks = 0
        for c in cases {
            let text = c["text"] as? String ?? ""
            let expected = TokenizerTestSupport.ints(c["ids"]) ?? []
            let got = tok.encode(text, addSpecial: false)
            #expect(got == expected, "\(style): \(text.debugDescription)")
            byteFallbacks += got.filter { tok.attributes(of: $0).contains(.byte) }.count
        }
        #expect(byteFallbacks > 20)  // the tiny vocabulary really exercises byte fallback
    }

    @Test("GGUF pre-tokenizer names map to llama.cpp's choices")
    func ggufPreNames() throws {
        let llama3 = try #require(PreTokenizer.forGGUFName("llama-bpe"))
        #expect(llama3.0.steps == [.llama3(maxDigits: 3)] && llama3.ignoreMerges && llama3.addBOS)
        let qwen = try #require(PreTokenizer.forGGUFName("qwen2"))
        #expect(qwen.0.steps == [.llama3(maxDigits: 1)] && !qwen.ignoreMerges)
        let smol = try #require(PreTokenizer.forGGUFName("smollm"))
        #expect(smol.0.steps == [.individualDigits, .gpt2])
        let def = try #require(PreTokenizer.forGGUFName("default"))
        #expect(def.0.steps == [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples])
        #expect(PreTokenizer.forGGUFName("no-such-pre") == nil)
    }
}
