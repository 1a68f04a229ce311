import Foundation
import Testing

@testable import LlamaModel

/// The default model's tokenizer against llama.cpp's own output
/// (`shared/golden/llamacpp_smollm2_q4_1.json`, read at test time).
@Suite("Tokenizer: llama.cpp golden file")
struct TokenizerGoldenTests {
    static func golden() throws -> [String: Any] {
        guard let g = try TokenizerTestSupport.json(at: TokenizerTestSupport.goldenPath) as? [String: Any] else {
            throw TokenizerTestSupport.Missing(description: "golden file is not a JSON object")
        }
        return g
    }

    @Test("vocabulary facts match llama.cpp")
    func vocabularyFacts() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let g = try Self.golden()
        #expect(tok.vocabularySize == g["n_vocab"] as? Int)
        #expect(tok.bosToken.map(Int.init) == g["bos_id"] as? Int)
        #expect(tok.eosToken.map(Int.init) == g["eos_id"] as? Int)
        #expect(tok.eotToken.map(Int.init) == g["eot_id"] as? Int)
        #expect(tok.addsBOS == g["vocab_add_bos_default"] as? Bool)
        #expect(tok.addsEOS == g["vocab_add_eos_default"] as? Bool)
        // <|endoftext|>, <|im_end|>, <fim_pad>, <reponame> (llama.cpp's EOG list for this vocabulary).
        #expect(tok.eogTokens.contains(0))
        #expect(tok.eogTokens.contains(2))
        #expect(!tok.eogTokens.contains(1))
        #expect(tok.isControl(1))
        #expect(!tok.isControl(504))
        #expect(!tok.isControl(-1))
        #expect(!tok.isControl(Int32(tok.vocabularySize)))
    }

    @Test("every golden prompt tokenizes as llama.cpp")
    func prompts() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let prompts = try #require(try Self.golden()["prompts"] as? [[String: Any]])
        #expect(prompts.count >= 5)
        for p in prompts {
            let name = p["name"] as? String ?? "?"
            let text = try #require(p["prompt"] as? String)
            let expected = try #require(TokenizerTestSupport.ints(p["tokens_default"]))
            #expect(tok.encode(text) == expected, "\(name): tokens_default")
            // llama.cpp's tokens_with_bos: BOS prepended to the default tokenization.
            let withBOS = try #require(TokenizerTestSupport.ints(p["tokens_with_bos"]))
            #expect([tok.bosToken ?? -1] + tok.encode(text, addSpecial: false) == withBOS, "\(name): tokens_with_bos")
            // tokens_no_special is llama_tokenize(add_special: false, parse_special: true).
            let noSpecial = try #require(TokenizerTestSupport.ints(p["tokens_no_special"]))
            #expect(tok.encode(text, addSpecial: false) == noSpecial, "\(name): tokens_no_special")
            // Pieces and text back.
            let pieces = try #require(p["tokens_default_pieces"] as? [String])
            #expect(expected.map { String(decoding: tok.pieceBytes($0), as: UTF8.self) } == pieces, "\(name): pieces")
            #expect(tok.decode(expected) == text, "\(name): decode")
        }
    }

    @Test("control tokens in text stay text when parseSpecial is false")
    func parseSpecialOff() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let text = "<|im_start|>user\nHi<|im_end|>"
        let ids = tok.encode(text, addSpecial: false, parseSpecial: false)
        #expect(!ids.contains(1) && !ids.contains(2))
        #expect(tok.decode(ids) == text)
        #expect(tok.encode(text, addSpecial: false).first == 1)
    }

    @Test("generated pieces decode to llama.cpp's bytes")
    func generatedPieces() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let prompts = try #require(try Self.golden()["prompts"] as? [[String: Any]])
        var checked = 0
        for p in prompts {
            for key in ["greedy_default", "greedy_with_bos"] {
                guard let run = p[key] as? [String: Any] else { continue }
                let ids = try #require(TokenizerTestSupport.ints(run["generated_ids"]))
                let hex = try #require(run["generated_pieces_hex"] as? [String])
                #expect(ids.count == hex.count)
                for (id, h) in zip(ids, hex) {
                    let got = tok.pieceBytes(id).map { String(format: "%02x", $0) }.joined()
                    #expect(got == h.lowercased(), "token \(id)")
                    checked += 1
                }
                if let text = run["generated_text"] as? String {
                    #expect(tok.decode(ids) == text)
                }
                if let text = run["generated_text_no_special"] as? String {
                    #expect(tok.decode(ids, skipSpecialTokens: true) == text)
                }
            }
        }
        #expect(checked > 100)
    }
}
