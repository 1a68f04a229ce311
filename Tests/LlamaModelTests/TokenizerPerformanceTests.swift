import Foundation
import Testing

@testable import LlamaModel

@Suite("Tokenizer: encode speed")
struct TokenizerPerformanceTests {
    /// About 10k tokens of English-like text built from a seeded word list.
    static func englishText(tokens: Int = 10_000) -> String {
        let words = """
            the of and to in is was that for it with as on be at by this had not are but from or have an they which one \
            you were all her she there would their we him been has when who will more no if out so said what up its about \
            into than them can only other new some could time these two may then do first any my now such like our over \
            man me even most made after also did many before must through back years where much your way well down should \
            because each just those people Mr how too little state good very make world still own see men work long get \
            here between both life being under never day same another know while last might us great old year off come \
            since against go came right used take three mountain river history language computer science government \
            Tuesday Paris 1987 42 3.14 don't it's we're e-mail co-operation
            """.split(separator: " ").map(String.init)
        var rng = TokenizerRobustnessTests.SplitMix64(state: 42)
        var out = ""
        var count = 0
        while count < tokens * 82 / 100 {
            var sentence = words.randomElement(using: &rng)!.capitalized
            for _ in 0..<Int.random(in: 6...18, using: &rng) {
                sentence += " " + words.randomElement(using: &rng)!
                if Int.random(in: 0..<12, using: &rng) == 0 { sentence += "," }
            }
            out += sentence + (Int.random(in: 0..<8, using: &rng) == 0 ? "?\n\n" : ". ")
            count += sentence.split(separator: " ").count
        }
        return out
    }

    @Test("encoding 10k tokens of English is fast")
    func encodeSpeed() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let text = Self.englishText()
        _ = tok.encode(String(text.prefix(1000)))  // warm up
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let elapsed = clock.measure { ids = tok.encode(text, addSpecial: false) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print("encode: \(ids.count) tokens from \(text.utf8.count) bytes in \(String(format: "%.1f", seconds * 1000)) ms")
        #expect(ids.count >= 10_000)
        #expect(tok.decode(ids) == text)
        #if DEBUG
            #expect(seconds < 30, "debug build")
        #else
            #expect(seconds < 1.0)
        #endif
    }
}
