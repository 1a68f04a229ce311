import Foundation
import Testing

@testable import LlamaModel

@Suite("Tokenizer: streaming decode")
struct TokenizerStreamingTests {
    @Test(
        "multi-token characters come out whole, never partially",
        arguments: ["Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷", "你好，世界！今天天气很好。", "日本語のテキスト", "Ærøskøbing ½ ∞", "plain ascii text"])
    func streamsWholeCharacters(_ text: String) throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let ids = tok.encode(text, addSpecial: false)
        var decoder = StreamingDecoder(tokenizer: tok)
        var out = ""
        var sawHeldBytes = false
        for id in ids {
            let chunk = decoder.append(id)
            #expect(!chunk.contains("\u{FFFD}"), "token \(id) gave a replacement character")
            if decoder.pendingByteCount > 0 { sawHeldBytes = true }
            out += chunk
        }
        #expect(decoder.flush() == "")
        #expect(out == text)
        if text.unicodeScalars.contains(where: { $0.value > 0x7FF }) {
            // This vocabulary splits these characters across tokens, so bytes must have been held.
            #expect(sawHeldBytes || ids.count == 0)
        }
    }

    @Test("the emoji 😀 split over byte tokens streams as one character")
    func byteByByte() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        var d = StreamingDecoder(tokenizer: tok)
        let ids: [Int32] = [3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80]
        #expect(d.append(ids[0]) == "")
        #expect(d.append(ids[1]) == "")
        #expect(d.append(ids[2]) == "")
        #expect(d.append(ids[3]) == "😀")
        #expect(d.pendingByteCount == 0)
    }

    @Test("invalid bytes become U+FFFD; an unfinished character is replaced at flush")
    func invalidBytes() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        var d = StreamingDecoder(tokenizer: tok)
        // A lone continuation byte is invalid at once.
        #expect(d.append(3 + 0x80) == "\u{FFFD}")
        // E2 82 then 'h' (▁h would be a space): the held E2 82 is invalid once 'h' arrives.
        #expect(d.append(3 + 0xE2) == "")
        #expect(d.append(3 + 0x82) == "")
        #expect(d.append(260) == "\u{FFFD}h")
        // ED A0 (a surrogate) is never valid: not held.
        #expect(d.appendBytes([0xED, 0xA0]) == "\u{FFFD}\u{FFFD}")
        // Unfinished at the end.
        #expect(d.append(3 + 0xF0) == "")
        #expect(d.flush() == "\u{FFFD}")
        #expect(d.flush() == "")
        // Out-of-range ids add nothing.
        #expect(d.append(-1) == "" && d.append(1_000_000) == "")
    }

    @Test("skipSpecialTokens leaves control tokens out")
    func skipSpecial() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
        var d = StreamingDecoder(tokenizer: tok, skipSpecialTokens: true)
        var s = ""
        for id in ids { s += d.append(id) }
        #expect(s == "user\nhi")
    }
}
