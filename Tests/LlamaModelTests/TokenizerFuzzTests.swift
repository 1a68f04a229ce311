import Foundation
import FuzzSupport
import Testing

@testable import LlamaModel

// Fuzz: the tokenizer on arbitrary input, for each flavour: byte-level BPE (the SmolLM2
// tokenizer.json fixture), SentencePiece BPE (the sentencepiece_tiny.gguf fixture) and
// character BPE with byte fallback (the spm_like_tokenizer.json fixture). Per flavour,
// 100,000 seeded texts encoded (invalid UTF-8 repaired, random Unicode from every plane,
// whitespace, digits, combining marks, the vocabulary's special tokens whole and cut, `▁`,
// `<0xNN>`; with and without special-token parsing and BOS/EOS) and 100,000 seeded token id
// sequences decoded, whole and streamed, ids out of range included. Checks: every id in the
// vocabulary, the text back from its ids (without special-token parsing: half the inputs),
// streaming = whole decode.
@Suite("Fuzz: tokenizer encode and decode", .timeLimit(.minutes(10)))
struct TokenizerFuzzTests {
    static let inputs = 100_000

    enum Flavour: String, CaseIterable, Sendable {
        case byteLevel = "byte-level BPE (smollm2_tokenizer.json)"
        case sentencePiece = "SentencePiece BPE (sentencepiece_tiny.gguf)"
        case characterBPE = "character BPE, byte fallback (spm_like_tokenizer.json)"
    }

    static func tokenizer(_ flavour: Flavour) throws -> Tokenizer {
        let dir = TokenizerTestSupport.fixturesDir
        switch flavour {
        case .byteLevel:
            return try Tokenizer(tokenizerJSONAt: dir.appendingPathComponent("smollm2_tokenizer.json").path)
        case .sentencePiece:
            return try Tokenizer(gguf: GGUFFile(path: dir.appendingPathComponent("sentencepiece_tiny.gguf").path))
        case .characterBPE:
            return try Tokenizer(tokenizerJSONAt: dir.appendingPathComponent("spm_like_tokenizer.json").path)
        }
    }

    /// Random text: pieces of every kind, as bytes, then repaired as `String(decoding:)` does.
    static func text(_ rng: inout SeededRandom, specials: [String]) -> String {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 0...24, using: &rng) {
            switch Int.random(in: 0..<16, using: &rng) {
            case 0, 1:  // a special token, whole
                bytes += Array((specials.randomElement(using: &rng) ?? "").utf8)
            case 2:  // a special token cut short
                let s = Array((specials.randomElement(using: &rng) ?? "").utf8)
                bytes += s.prefix(Int.random(in: 0...s.count, using: &rng))
            case 3:  // a random Unicode scalar, any plane
                let value = UInt32.random(in: 0...0x10FFFF, using: &rng)
                bytes += Array(String(Character(Unicode.Scalar(value) ?? "\u{FFFD}")).utf8)
            case 4:  // random bytes (invalid UTF-8 becomes U+FFFD)
                bytes += FileMutator.random(Int.random(in: 1...4, using: &rng), using: &rng)
            case 5:  // whitespace runs
                let ws = [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u{3000}", "\u{A0}", " \n "]
                bytes += Array((ws.randomElement(using: &rng) ?? " ").utf8)
            case 6:  // digits
                bytes += Array(
                    String(UInt64.random(in: 0...UInt64.max, using: &rng) >> UInt64.random(in: 0...63, using: &rng))
                        .utf8)
            case 7:  // combining marks, emoji sequences, other scripts
                let s = [
                    "e\u{301}", "\u{1F469}\u{200D}\u{1F4BB}", "\u{1F1EB}\u{1F1F7}", "Ελληνικά", "日本語", "עברית", "ﷺ",
                    "𝔘𝔫𝔦",
                ]
                bytes += Array((s.randomElement(using: &rng) ?? "").utf8)
            case 8:  // SentencePiece-looking text
                bytes += Array(
                    (["▁", "▁▁", "<0x41>", "<0xZZ>", "<unk>", "\u{2581}a"].randomElement(using: &rng) ?? "").utf8)
            case 9:  // punctuation and contractions
                bytes += Array(
                    (["'s", "'T", "...", "?!", "--", "\"", "(", ")", "``", "$%^"].randomElement(using: &rng) ?? "").utf8
                )
            default:  // ASCII words
                let n = Int.random(in: 1...8, using: &rng)
                bytes += (0..<n).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Random ids: mostly in range, some special, some negative or past the vocabulary.
    static func ids(_ rng: inout SeededRandom, vocabulary: Int, specials: [Int32]) -> [Int32] {
        (0..<Int.random(in: 0...24, using: &rng)).map { _ in
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: specials.randomElement(using: &rng) ?? 0
            case 1: [Int32.min, -1, Int32(vocabulary), Int32(vocabulary + 1), .max].randomElement(using: &rng) ?? -1
            case 2: Int32.random(in: .min ... .max, using: &rng)
            default: Int32.random(in: 0..<Int32(vocabulary), using: &rng)
            }
        }
    }

    /// What decoding `encode(text, parseSpecial: false)` (without BOS/EOS) must give back:
    /// byte-level loses only bytes its vocabulary lacks; the SentencePiece flavours add the
    /// dummy-prefix space and turn `▁` into spaces.
    static func expectedRoundTrip(_ text: String, _ tok: Tokenizer, _ flavour: Flavour) -> String? {
        switch flavour {
        case .byteLevel:
            return String(decoding: Array(text.utf8).filter { tok.byteLevelSymbols[Int($0)] >= 0 }, as: UTF8.self)
        case .sentencePiece, .characterBPE:
            guard !text.isEmpty else { return "" }
            // On bytes: as Characters, a `▁` followed by a combining mark would not match.
            return String(
                decoding: Tokenizer.replacing(Array((" " + text).utf8), Array("▁".utf8), with: [0x20]), as: UTF8.self)
        }
    }

    @Test("100,000 seeded texts encode and 100,000 id sequences decode, per flavour", arguments: Flavour.allCases)
    func fuzz(_ flavour: Flavour) async throws {
        let tok = try Self.tokenizer(flavour)
        let specialIDs = tok.specialTokensByLength
        let specials = specialIDs.compactMap { tok.tokenText($0) } + ["<|im_start|>", "<s>", "</s>", "<unk>"]
        var rng = SeededRandom(seed: 0x70_4E5EED ^ UInt64(flavour.rawValue.utf8.count))
        var failures: [String] = []
        let tally = await runFuzzer("tokenizer \(flavour.rawValue)", inputs: Self.inputs) { i, tally in
            let text = Self.text(&rng, specials: specials)
            let addSpecial = Bool.random(using: &rng)
            let parseSpecial = Bool.random(using: &rng)
            let randomIDs = Self.ids(&rng, vocabulary: tok.vocabularySize, specials: specialIDs)
            tally.timed(i) { tally in
                let ids = tok.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial)
                if ids.contains(where: { $0 < 0 || Int($0) >= tok.vocabularySize }) {
                    failures.append("id out of range for \(Array(text.utf8))")
                }
                tally.record(ids.contains { specialIDs.contains($0) } ? "encoded with special tokens" : "encoded")
                if ids.contains(where: { tok.attributes(of: $0).contains(.byte) }) { tally.note("byte fallback") }
                if ids.contains(where: { $0 == tok.unknownToken }) { tally.note("unknown token") }
                // Without special-token parsing (half the inputs), the text comes back (less
                // the BOS/EOS the model adds).
                if !parseSpecial {
                    var plain = ids[...]
                    if addSpecial, tok.addsBOS { plain = plain.dropFirst() }
                    if addSpecial, tok.addsEOS { plain = plain.dropLast() }
                    let back = tok.decode(Array(plain))
                    if back == Self.expectedRoundTrip(text, tok, flavour) {
                        tally.note("round trip exact")
                    } else {
                        tally.note("round trip differs")
                        failures.append("round trip of \(Array(text.utf8)): \(back)")
                    }
                }
                // Decoding: whole and streamed agree, ids out of range included.
                let whole = tok.decode(randomIDs)
                var stream = StreamingDecoder(tokenizer: tok, skipSpecialTokens: i % 2 == 0)
                var streamed = ""
                for id in randomIDs { streamed += stream.append(id) }
                streamed += stream.flush()
                if streamed != tok.decode(randomIDs, skipSpecialTokens: i % 2 == 0) {
                    failures.append("streamed \(randomIDs) differs")
                }
                tally.note(whole.contains("\u{FFFD}") ? "decoded with U+FFFD" : "decoded")
            }
        }
        #expect(failures.isEmpty, "\(failures.count) failures: \(failures.prefix(5))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["decoded"] + tally["decoded with U+FFFD"] == Self.inputs)
        #expect(tally["encoded with special tokens"] > 10_000 && tally["encoded"] > 10_000, "\(tally)")
        #expect(tally["decoded with U+FFFD"] > 1_000 && tally["decoded"] > 1_000, "\(tally)")
        #expect(tally["round trip exact"] > 40_000, "\(tally)")
        if flavour != .byteLevel { #expect(tally["byte fallback"] > 10_000, "\(tally)") }
        #expect(tally.slowest.seconds < 0.25, "\(tally)")
    }
}
