import Foundation
import Testing

@testable import LlamaModel

/// SentencePiece-style BPE on a tiny vocabulary written by the test; every expected id list is
/// traced by hand in the comments (ids: <unk> 0, <s> 1, </s> 2, <0xNN> 3+NN, then
/// ▁ 259, h 260, e 261, l 262, o 263, a 264, b 265, c 266, he 267, ll 268, llo 269, hello 270,
/// ▁hello 271, ab 272, bc 273, ▁a 274).
@Suite("Tokenizer: SentencePiece BPE (synthetic vocabulary)")
struct TokenizerSentencePieceTests {
    @Test("score-ordered merges, ties to the left, stale pairs skipped")
    func merges() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        #expect(tok.addsBOS)  // llama default
        #expect(tok.bosToken == 1 && tok.eosToken == 2 && tok.unknownToken == 0)
        // " hello abc" → "▁hello▁abc". Pairs: ll(-2) → he(-3) → llo(-4, left 3, before bc at 8)
        // → hello(-1) → ▁hello(-0.5) → bc(-4) → ab(-5) stale (b is now bc) → ▁a(-6).
        #expect(tok.encode("hello abc") == [1, 271, 274, 273])
        #expect(tok.encode("hello abc", addSpecial: false) == [271, 274, 273])
        #expect(tok.decode([271, 274, 273]) == " hello abc")
    }

    @Test("unknown characters fall back to <0xNN> byte tokens")
    func byteFallback() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        // "▁hé": ▁ h é, no pair is a token; é = C3 A9 → <0xC3> (3+195) <0xA9> (3+169).
        #expect(tok.encode("hé", addSpecial: false) == [259, 260, 198, 172])
        #expect(tok.pieceBytes(198) == [0xC3])
        #expect(tok.decode([259, 260, 198, 172]) == " hé")
        // 😀 = F0 9F 98 80.
        let emoji: [Int32] = [259, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80]
        #expect(tok.encode("😀", addSpecial: false) == emoji)
    }

    @Test("space prefix after special tokens, and add_space_prefix = false")
    func spacePrefix() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        // "a</s>b": " a" → ▁a; </s>; "b" follows a special token → " b" → ▁ b.
        #expect(tok.encode("a</s>b") == [1, 274, 2, 259, 265])
        // Without special parsing "</s>" is text: "▁a</s>b" → ▁a, then < / s > b as bytes (no pair is a token).
        let asText: [Int32] = [274, 3 + 0x3C, 3 + 0x2F, 3 + 0x73, 3 + 0x3E, 265]
        #expect(tok.encode("a</s>b", addSpecial: false, parseSpecial: false) == asText)
        let noPrefix = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata(extra: [("tokenizer.ggml.add_space_prefix", .bool(false))]))
        // "abc": ab(-5), bc(-4) → bc first; "abc" is not a token.
        #expect(noPrefix.encode("abc", addSpecial: false) == [264, 273])
        #expect(noPrefix.encode("") == [1])
        #expect(noPrefix.encode("", addSpecial: false) == [])
    }

    @Test("add_bos/add_eos flags from metadata")
    func flags() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata(extra: [
            ("tokenizer.ggml.add_bos_token", .bool(false)), ("tokenizer.ggml.add_eos_token", .bool(true)),
        ]))
        #expect(tok.encode("abc") == tok.encode("abc", addSpecial: false) + [2])
        #expect(tok.eogTokens == [2])
    }

    @Test("GGUF of a trained sentencepiece BPE model matches sentencepiece on 49 strings")
    func sentencepieceReference() throws {
        let dir = TokenizerTestSupport.fixturesDir
        let root = try #require(try TokenizerTestSupport.json(at: dir.appendingPathComponent("sentencepiece_reference_tokens.json").path) as? [String: Any])
        let cases = try #require(root["cases"] as? [[String: Any]])
        #expect(cases.count >= 45)
        let tok = try Tokenizer(gguf: try GGUFFile(path: dir.appendingPathComponent("sentencepiece_tiny.gguf").path))
        #expect(tok.model == .sentencePiece && tok.addsBOS && tok.bosToken == 1)
        var byteTokens = 0
        for c in cases {
            let text = c["text"] as? String ?? ""
            let expected = TokenizerTestSupport.ints(c["ids"]) ?? []
            let ids = tok.encode(text, addSpecial: false)
            #expect(ids == expected, "\(text.debugDescription)")
            #expect(tok.encode(text) == [1] + expected)
            byteTokens += ids.filter { tok.attributes(of: $0).contains(.byte) }.count
            // sentencepiece's decode drops the dummy-prefix space; llama.cpp's pieces keep it.
            if let decoded = c["decoded"] as? String, !text.isEmpty {
                #expect(tok.decode(ids) == " " + decoded, "\(text.debugDescription)")
            }
        }
        #expect(byteTokens > 20)
    }

    @Test("tokenizer.json with Prepend/Replace normalizers, byte fallback and 'a b' merges")
    func tokenizerJSONCharacterBPE() throws {
        var vocab: [String: Int] = ["<unk>": 0, "<s>": 1, "</s>": 2]
        for b in 0..<256 { vocab[String(format: "<0x%02X>", b)] = 3 + b }
        for (i, t) in ["▁", "h", "e", "l", "o", "he", "ll", "hell", "hello", "▁hello"].enumerated() { vocab[t] = 259 + i }
        let json: [String: Any] = [
            "added_tokens": [
                ["id": 0, "content": "<unk>", "special": true], ["id": 1, "content": "<s>", "special": true],
                ["id": 2, "content": "</s>", "special": true],
            ],
            "normalizer": ["type": "Sequence", "normalizers": [
                ["type": "Prepend", "prepend": "▁"],
                ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
            ]],
            "pre_tokenizer": NSNull(),
            "model": [
                "type": "BPE", "byte_fallback": true, "fuse_unk": true, "unk_token": "<unk>", "vocab": vocab,
                "merges": ["h e", "l l", "he ll", "hell o", "▁ hello"],
            ],
        ]
        let config: [String: Any] = [
            "add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
            "eos_token": ["content": "</s>"], "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squat-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tj = dir.appendingPathComponent("tokenizer.json"), tc = dir.appendingPathComponent("tokenizer_config.json")
        try JSONSerialization.data(withJSONObject: json).write(to: tj)
        try JSONSerialization.data(withJSONObject: config).write(to: tc)
        let tok = try Tokenizer(tokenizerJSONAt: tj.path, tokenizerConfigPath: tc.path)
        #expect(tok.model == .characterBPE)
        #expect(tok.addsBOS && !tok.addsEOS && tok.bosToken == 1 && tok.eosToken == 2)
        #expect(tok.chatTemplate?.hasPrefix("{{ bos_token }}") == true)
        // "▁hello": h+e (rank 0), l+l (1), he+ll (2), hell+o (3), ▁+hello (4).
        #expect(tok.encode("hello") == [1, 268])
        // "▁hé": é → <0xC3> <0xA9>.
        #expect(tok.encode("hé") == [1, 259, 260, 198, 172])
        // Special token in the middle: each text fragment gets the ▁ prefix.
        #expect(tok.encode("hello</s>hello", addSpecial: false) == [268, 2, 268])
        #expect(tok.decode([1, 268, 259, 260, 198, 172]) == "<s> hello hé")
        #expect(tok.decode([1, 268], skipSpecialTokens: true) == " hello")
    }
}
