import Foundation
import KVCache
import Testing

@testable import LlamaModel

@Suite("Generation")
struct GenerationTests {
    /// `generate --temperature 0` equals llama.cpp's greedy text up to the first step whose
    /// margin (llama.cpp's top-1 minus top-2 logit) is below 0.3.
    @Test("greedy text equals llama.cpp's up to the first near-tie", arguments: ActivationPrecision.allCases)
    func greedyMatchesLlamaCpp(activations: ActivationPrecision) throws {
        let model = try SharedModel.get()
        let tokenizer = try Tokenizer(gguf: model.gguf)
        let cpp = try Golden.json("golden/llamacpp_smollm2_q4_1.json")
        let prompts = try #require(cpp["prompts"] as? [[String: Any]])
        let stage = LlamaStage(weights: model.weights, threads: 2, activations: activations)
        let generator = Generator(stage: stage, tokenizer: tokenizer, cacheFactory: FullPrecisionCacheFactory())
        var compared = 0
        for p in prompts {
            let name = p["name"] as? String ?? "?"
            let text = try #require(p["prompt"] as? String)
            let greedy = try #require(p["greedy_default"] as? [String: Any])
            let expected = try #require(greedy["generated_ids"] as? [Any]).ints.map { Int32($0) }
            let steps = try #require(greedy["steps"] as? [[String: Any]])
            let margins = steps.map { ($0["top1_minus_top2"] as? NSNumber)?.floatValue ?? 0 }
            let agree = margins.firstIndex { $0 < 0.3 } ?? expected.count
            let prompt = tokenizer.encode(text)
            #expect(prompt == (p["tokens_default"] as? [Any])?.ints.map { Int32($0) }, "\(name): tokens")
            var streamed = ""
            let result = try generator.generate(
                GenerationRequest(prompt: prompt, maxTokens: agree, ignoreEndOfGeneration: true)
            ) { streamed += $0 }
            #expect(Array(result.tokens.prefix(agree)) == Array(expected.prefix(agree)), "\(name): first \(agree) tokens")
            #expect(streamed == tokenizer.decode(result.tokens), "\(name): streamed text")
            compared += agree
        }
        #expect(compared >= 20)
    }

    /// One prefill call, chunked prefill and token-by-token decode give bit-identical logits.
    @Test("prefill, chunked prefill and decode are bit-identical", arguments: ActivationPrecision.allCases)
    func batchInvariance(activations: ActivationPrecision) throws {
        let model = try SharedModel.get()
        let tokens: [Int32] = [504, 3575, 282, 4649, 314, 7042, 30, 198, 198, 504, 1797, 1918, 553]
        let all = Array(0..<tokens.count)
        func run(chunks: [Int], threads: Int) -> [[Float]] {
            let s = LlamaStage(weights: model.weights, threads: threads, activations: activations)
            let cache = s.makeCache(FullPrecisionCacheFactory())
            var out: [[Float]] = []
            var i = 0
            for n in chunks {
                let logits = s.forward(
                    .tokens(Array(tokens[i..<i + n])), segments: [StageSegment(cache: cache, rows: n)],
                    logitRows: Array(0..<n))
                let V = model.config.vocabularySize
                for r in 0..<n { out.append(Array(logits[r * V..<(r + 1) * V])) }
                i += n
            }
            return out
        }
        let whole = run(chunks: [tokens.count], threads: 2)
        let chunked = run(chunks: [5, 3, 4, 1], threads: 1)
        let single = run(chunks: Array(repeating: 1, count: tokens.count), threads: 2)
        #expect(whole.count == all.count)
        for r in all {
            #expect(whole[r] == chunked[r], "row \(r): whole vs chunked")
            #expect(whole[r] == single[r], "row \(r): whole vs one at a time")
        }
    }
}

@Suite("Sampling")
struct SamplingTests {
    func logits(_ seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<1000).map { _ in Float(g.nextUnitFloat()) * 10 }
    }

    @Test("greedy is argmax with the lowest id on ties")
    func greedy() {
        var s = Sampler(.greedy)
        #expect(s.sample(logits: [1, 5, 5, 2], history: []) == 1)
        let l = logits(3)
        #expect(Int(s.sample(logits: l, history: [])) == l.indices.max { l[$0] < l[$1] })
    }

    @Test("the same seed gives the same tokens; different seeds differ")
    func reproducible() {
        var p = SamplingParameters()
        p.temperature = 1.5
        p.topK = 0
        p.topP = 1
        p.minP = 0
        p.seed = 7
        let l = logits(1)
        func draw(_ seed: UInt64) -> [Int32] {
            var q = p
            q.seed = seed
            var s = Sampler(q)
            return (0..<50).map { _ in s.sample(logits: l, history: []) }
        }
        #expect(draw(7) == draw(7))
        #expect(draw(7) != draw(8))
        #expect(Set(draw(7)).count > 5)
    }

    @Test("top-k, top-p and min-p keep only the allowed candidates")
    func filters() {
        let l: [Float] = [0, 10, 9.9, 9.8, 1, 2, 3]
        var p = SamplingParameters()
        p.temperature = 1
        p.topP = 1
        p.minP = 0
        p.topK = 2
        var s = Sampler(p)
        for _ in 0..<200 { #expect([1, 2].contains(s.sample(logits: l, history: []))) }
        p.topK = 0
        p.topP = 0.5
        s = Sampler(p)
        for _ in 0..<200 { #expect([1, 2].contains(s.sample(logits: l, history: []))) }
        p.topP = 1
        p.minP = 0.5  // keeps tokens with p ≥ 0.5 · p(top): ids 1, 2, 3
        s = Sampler(p)
        var seen = Set<Int32>()
        for _ in 0..<400 { seen.insert(s.sample(logits: l, history: [])) }
        #expect(seen == [1, 2, 3])
    }

    @Test("log probability: matches a double log-softmax; 0 outside the row")
    func logProbability() {
        var rng = SystemRandomNumberGenerator()
        let logits = (0..<49_157).map { _ in Float.random(in: -30...25, using: &rng) }
        let m = Double(logits.max() ?? 0)
        let lse = m + Foundation.log(logits.reduce(0.0) { $0 + exp(Double($1) - m) })
        for token in [0, 7, 49_156, logits.firstIndex(of: logits.max() ?? 0) ?? 0] {
            let expected = Double(logits[token]) - lse
            #expect(abs(Double(Sampler.logProbability(logits: logits, token: token)) - expected) <= 1e-5 * max(1, abs(expected)))
        }
        #expect(Sampler.logProbability(logits: logits, token: logits.count) == 0)
        #expect(Sampler.logProbability(logits: [], token: 0) == 0)
    }

    @Test("repetition penalty demotes recent tokens")
    func repetition() {
        var p = SamplingParameters.greedy
        p.repetitionPenalty = 2
        var s = Sampler(p)
        #expect(s.sample(logits: [0, 4, 3], history: [1]) == 2)
        #expect(s.sample(logits: [0, 4, 3], history: []) == 1)
    }

    @Test("invalid settings are rejected with the field's name")
    func validation() {
        var p = SamplingParameters()
        p.topP = 0
        #expect(throws: SamplingError.self) { try p.validate() }
        p = SamplingParameters()
        p.temperature = -1
        do {
            try p.validate()
            Issue.record("no error")
        } catch {
            #expect(error.description.contains("temperature"))
        }
    }

    @Test("stop strings cut the text and never leak a partial match")
    func stops() {
        var m = StopMatcher(stops: ["</s>", "STOP"])
        var out = ""
        var stopped = false
        for piece in ["Hello", " wor", "ld<", "/", "s> more"] {
            let r = m.feed(piece)
            out += r.emit
            if r.stopped {
                stopped = true
                break
            }
        }
        #expect(stopped)
        #expect(out == "Hello world")
        var n = StopMatcher(stops: ["STOP"])
        #expect(n.feed("ST").emit == "")
        #expect(n.feed("ay").emit == "STay")
        #expect(n.flush() == "")
    }
}
