import ArgumentParser
import Foundation
import KVCache
import LlamaModel

/// `squat bench`: prefill and decode speed at several context depths and thread counts.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode tokens/s (wall clock and per CPU-second).")

    @OptionGroup var model: ModelOptions
    @Option(help: "Prompt tokens for the prefill measurement.") var promptTokens = 512
    @Option(help: "Tokens decoded per depth.") var decodeTokens = 128
    @Option(parsing: .upToNextOption, help: "Context depths at which to measure decode.") var depths: [Int] = [0, 1024, 4096, 8000]
    @Option(parsing: .upToNextOption, help: "Thread counts to measure.") var threads: [Int] = [1, 2]
    @Option(help: "Repetitions of each measurement; the median is reported.") var repeats = 1
    @Option(help: "Full-precision cache storage: f16 or f32.") var cache: String = "f16"
    @Option(help: "Activation precision in matrix products: f32 or q8.") var activations: String = "f32"
    @Option(help: "Write the results as JSON to this file.") var json: String?

    struct Row: Codable {
        var test: String
        var threads: Int
        var depth: Int
        var tokens: Int
        var tokensPerSecond: Double
        var tokensPerCPUSecond: Double
    }

    func run() throws {
        guard let precision = FullPrecision(rawValue: cache) else {
            throw ValidationError("--cache must be f16 or f32, got '\(cache)'")
        }
        guard let act = ActivationPrecision(rawValue: activations) else {
            throw ValidationError("--activations must be f32 or q8, got '\(activations)'")
        }
        let loaded = try ModelLoader.open(path: model.resolvedPath)
        let config = loaded.config
        let weights = try loaded.weights()
        for d in depths where d + decodeTokens > config.contextLength {
            throw ValidationError("depth \(d) + \(decodeTokens) decode tokens exceeds the context length \(config.contextLength)")
        }
        var rng = SeededGenerator(seed: 42)
        func randomTokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(config.vocabularySize)) } }
        let factory = FullPrecisionCacheFactory(precision: precision)
        var rows: [Row] = []
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

        for t in threads {
            let stage = LlamaStage(weights: weights, threads: t, activations: act)
            // Prefill.
            var walls: [Double] = []
            var cpus: [Double] = []
            for _ in 0..<max(1, repeats) {
                let cache = stage.makeCache(factory)
                let prompt = randomTokens(promptTokens)
                let clock = CPUClock()
                _ = prefill(stage, cache, prompt)
                let e = clock.elapsed
                walls.append(Double(promptTokens) / e.wall)
                cpus.append(Double(promptTokens) / e.cpu)
            }
            rows.append(Row(test: "prefill", threads: t, depth: 0, tokens: promptTokens,
                            tokensPerSecond: median(walls), tokensPerCPUSecond: median(cpus)))
            report(rows.last!)
            // Decode at depth.
            for depth in depths {
                walls = []
                cpus = []
                for _ in 0..<max(1, repeats) {
                    let cache = stage.makeCache(factory)
                    var last: Int32 = 0
                    if depth > 0 {
                        let logits = prefill(stage, cache, randomTokens(depth))
                        last = Int32(Sampler.argmax(logits))
                    }
                    let clock = CPUClock()
                    for _ in 0..<decodeTokens {
                        let logits = stage.forward(.tokens([last]), segments: [StageSegment(cache: cache, rows: 1)], logitRows: [0])
                        last = Int32(Sampler.argmax(logits))
                    }
                    let e = clock.elapsed
                    walls.append(Double(decodeTokens) / e.wall)
                    cpus.append(Double(decodeTokens) / e.cpu)
                }
                rows.append(Row(test: "decode", threads: t, depth: depth, tokens: decodeTokens,
                                tokensPerSecond: median(walls), tokensPerCPUSecond: median(cpus)))
                report(rows.last!)
            }
        }
        if let json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(rows).write(to: URL(fileURLWithPath: json))
        }
    }

    /// Prefills in chunks of 512 rows; returns the last row's logits.
    func prefill(_ stage: LlamaStage, _ cache: any SequenceKVCache, _ tokens: [Int32]) -> [Float] {
        var logits: [Float] = []
        var i = 0
        while i < tokens.count {
            let n = min(512, tokens.count - i)
            let last = i + n == tokens.count
            logits = stage.forward(.tokens(Array(tokens[i..<i + n])), segments: [StageSegment(cache: cache, rows: n)],
                                   logitRows: last ? [n - 1] : [])
            i += n
        }
        return logits
    }

    func report(_ r: Row) {
        let what = r.test == "prefill" ? "prefill \(r.tokens)" : "decode \(r.tokens) @ depth \(r.depth)"
        print(String(format: "%-28@ threads %d  %8.1f tok/s  %8.1f tok/CPU-s", what as NSString, r.threads, r.tokensPerSecond, r.tokensPerCPUSecond))
        fflush(nil)
    }
}
