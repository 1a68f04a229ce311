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
    @Option(parsing: .upToNextOption, help: "Context depths at which to measure decode.") var depths: [Int] = [
        0, 1024, 4096, 8000,
    ]
    @Option(parsing: .upToNextOption, help: "Thread counts to measure.") var threads: [Int] = [1, 2]
    @Option(
        help: "Repetitions of each measurement; the median is reported (with --cluster: rounds over all concurrencies)."
    )
    var repeats = 1
    @OptionGroup var cacheOptions: CacheOptions
    @Option(help: "Measure one depth: prefill this many tokens, then decode; report KV memory and peak RSS.")
    var context: Int?
    @Option(help: "Activation precision in matrix products: q8 or f32.") var activations: String = "q8"
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(
        help:
            "Benchmark a local cluster of N worker processes (coordinator + workers on loopback TCP) instead of one process."
    )
    var cluster: Int?
    @Option(parsing: .upToNextOption, help: "With --cluster: concurrent requests to measure.") var concurrency: [Int] =
        [1, 8]
    @Option(help: "With --cluster: compute threads per worker.") var workerThreads = 1
    @Option(help: "With --cluster: prompt tokens per request.") var clusterPromptTokens = 32
    @Option(help: "With --cluster: micro-batches the coordinator may hold in flight (default: its own, one per stage).")
    var maxInFlight: Int?

    struct Row: Codable {
        var test: String
        var threads: Int
        var depth: Int
        var tokens: Int
        var tokensPerSecond: Double
        var tokensPerCPUSecond: Double
    }

    func run() throws {
        if let cluster {
            for (flag, value) in [("--cluster", cluster), ("--worker-threads", workerThreads)]
                + concurrency.map({ ("--concurrency", $0) }) + (maxInFlight.map { [("--max-in-flight", $0)] } ?? [])
            where value < 1 {
                throw ValidationError("\(flag) must be ≥ 1, got \(value)")
            }
            try ClusterBench(
                modelPath: model.resolvedPath, workers: cluster, workerThreads: workerThreads, concurrency: concurrency,
                promptTokens: clusterPromptTokens, decodeTokens: decodeTokens, repeats: repeats,
                cacheFlags: cacheOptions.commandLineFlags, workerFlags: ["--activations", activations],
                coordinatorFlags: maxInFlight.map { ["--max-in-flight", "\($0)"] } ?? []
            ).run(json: json)
            return
        }
        guard let act = ActivationPrecision(rawValue: activations) else {
            throw ValidationError("--activations must be f32 or q8, got '\(activations)'")
        }
        let loaded = try ModelLoader.open(path: model.resolvedPath)
        let config = loaded.config
        let weights = try loaded.weights()
        var rng = SeededGenerator(seed: 42)
        func randomTokens(_ n: Int) -> [Int32] {
            (0..<n).map { _ in Int32(rng.next() % UInt64(config.vocabularySize)) }
        }
        let factory = try cacheOptions.factory(headDim: config.headDim, contextLength: config.contextLength)
        if let context {
            try measureContext(
                context, weights: weights, factory: factory, activations: act, randomTokens: randomTokens)
            return
        }
        for d in depths where d + decodeTokens > config.contextLength {
            throw ValidationError(
                "depth \(d) + \(decodeTokens) decode tokens exceeds the context length \(config.contextLength)")
        }
        print("cache: \(factory.name), activations: \(act.rawValue)")
        var rows: [Row] = []

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
            rows.append(
                Row(
                    test: "prefill", threads: t, depth: 0, tokens: promptTokens,
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
                        let logits = stage.forward(
                            .tokens([last]), segments: [StageSegment(cache: cache, rows: 1)], logitRows: [0])
                        last = Int32(Sampler.argmax(logits))
                    }
                    let e = clock.elapsed
                    walls.append(Double(decodeTokens) / e.wall)
                    cpus.append(Double(decodeTokens) / e.cpu)
                }
                rows.append(
                    Row(
                        test: "decode", threads: t, depth: depth, tokens: decodeTokens,
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

    /// One depth: KV bytes, peak RSS and decode speed (the memory/speed benchmark of the caches).
    func measureContext(
        _ n: Int, weights: LlamaWeights, factory: any KVCacheFactory, activations: ActivationPrecision,
        randomTokens: (Int) -> [Int32]
    ) throws {
        let config = weights.config
        guard n >= 1, n + decodeTokens <= config.contextLength else {
            throw ValidationError(
                "--context \(n) + \(decodeTokens) decode tokens must fit the context length \(config.contextLength)")
        }
        let t = threads.first ?? 1
        let stage = LlamaStage(weights: weights, threads: t, activations: activations)
        let cache = stage.makeCache(factory)
        let prefillClock = CPUClock()
        let logits = prefill(stage, cache, randomTokens(n))
        let prefillTime = prefillClock.elapsed
        let kvBytes = cache.byteCount
        var last = Int32(Sampler.argmax(logits))
        let clock = CPUClock()
        for _ in 0..<decodeTokens {
            let l = stage.forward(.tokens([last]), segments: [StageSegment(cache: cache, rows: 1)], logitRows: [0])
            last = Int32(Sampler.argmax(l))
        }
        let e = clock.elapsed
        let row = Row(
            test: "decode", threads: t, depth: n, tokens: decodeTokens,
            tokensPerSecond: Double(decodeTokens) / e.wall, tokensPerCPUSecond: Double(decodeTokens) / e.cpu)
        print("cache \(factory.name), threads \(t), context \(n)")
        print(
            String(
                format: "prefill %d tokens: %.1f s (%.1f tok/s, %.1f tok/CPU-s)", n, prefillTime.wall,
                Double(n) / prefillTime.wall, Double(n) / prefillTime.cpu))
        print(
            String(format: "KV bytes: %d total, %.1f per token (at %d tokens)", kvBytes, Double(kvBytes) / Double(n), n)
        )
        print(
            String(
                format: "decode %d tokens at depth %d: %.1f tok/s, %.1f tok/CPU-s", decodeTokens, n,
                row.tokensPerSecond, row.tokensPerCPUSecond))
        print(String(format: "peak RSS: %.1f MiB", Double(CPUClock.peakRSS()) / 1_048_576))
        if let json {
            struct Out: Codable {
                var cache: String
                var context: Int
                var kvBytes: Int
                var kvBytesPerToken: Double
                var peakRSS: Int
                var decode: Row
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(
                Out(
                    cache: factory.name, context: n, kvBytes: kvBytes, kvBytesPerToken: Double(kvBytes) / Double(n),
                    peakRSS: CPUClock.peakRSS(), decode: row)
            ).write(to: URL(fileURLWithPath: json))
        }
    }

    /// Prefills in chunks of 512 rows; returns the last row's logits.
    func prefill(_ stage: LlamaStage, _ cache: any SequenceKVCache, _ tokens: [Int32]) -> [Float] {
        var logits: [Float] = []
        var i = 0
        while i < tokens.count {
            let n = min(512, tokens.count - i)
            let last = i + n == tokens.count
            logits = stage.forward(
                .tokens(Array(tokens[i..<i + n])), segments: [StageSegment(cache: cache, rows: n)],
                logitRows: last ? [n - 1] : [])
            i += n
        }
        return logits
    }

    func report(_ r: Row) {
        let what = r.test == "prefill" ? "prefill \(r.tokens)" : "decode \(r.tokens) @ depth \(r.depth)"
        print(
            String(
                format: "%-28@ threads %d  %8.1f tok/s  %8.1f tok/CPU-s", what as NSString, r.threads,
                r.tokensPerSecond, r.tokensPerCPUSecond))
        fflush(nil)
    }
}

/// The upper median of `xs` (the middle value; of the two middle ones, the larger); 0 when empty.
func median(_ xs: [Double]) -> Double {
    xs.isEmpty ? 0 : xs.sorted()[xs.count / 2]
}
