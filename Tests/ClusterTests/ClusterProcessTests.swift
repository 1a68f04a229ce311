import Foundation
import Synchronization
import KVCache
import LlamaModel
import Testing
import Wire

@testable import Cluster
@testable import squat

#if canImport(Glibc)
    import Glibc
#endif

/// The greedy prompts of the llama.cpp golden file: (name, text, number of tokens to generate).
func goldenPrompts() throws -> [(name: String, text: String, tokens: Int)] {
    let data = try #require(FileManager.default.contents(atPath: Paths.golden), "missing \(Paths.golden)")
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let prompts = try #require(json["prompts"] as? [[String: Any]])
    return try prompts.map { p in
        let greedy = try #require(p["greedy_default"] as? [String: Any])
        let ids = try #require(greedy["generated_ids"] as? [Any])
        return (p["name"] as? String ?? "?", try #require(p["prompt"] as? String), ids.count)
    }
}

/// A real coordinator and real worker processes over tcp on 127.0.0.1.
@Suite("Cluster processes", .serialized, .timeLimit(.minutes(10)))
struct ClusterProcessTests {
    /// Tokens and finish reason from the single-process generator.
    func reference(_ kv: String, prompts: [(name: String, text: String, tokens: Int)]) throws -> [([Int32], String)] {
        let files = try ModelLoader.open(path: Paths.model)
        let tokenizer = try files.tokenizer()
        let factory = try CacheOptions.parse(["--kv", kv]).factory(
            headDim: files.config.headDim, contextLength: files.config.contextLength)
        // The workers run with the command line's default activation precision.
        let stage = LlamaStage(weights: try files.weights(), threads: 2, activations: try EngineOptions.parse([]).activationPrecision)
        let generator = Generator(stage: stage, tokenizer: tokenizer, cacheFactory: factory)
        return try prompts.map { p in
            let r = try generator.generate(
                GenerationRequest(prompt: tokenizer.encode(p.text), sampling: .greedy, maxTokens: p.tokens)) { _ in }
            return (r.tokens, r.finishReason.rawValue)
        }
    }

    @Test("coordinator + 2 workers give the single-process tokens, all prompts at once", arguments: ["full", "squat"])
    func matchesGenerator(kv: String) throws {
        // The golden prompts, plus one long enough for two prefill chunks (> 512 tokens).
        let long = String(repeating: "The quick brown fox jumps over the lazy dog while the cat watches. ", count: 45)
        let prompts = try goldenPrompts() + [(name: "long", text: long + "What did the fox do?", tokens: 12)]
        let expected = try reference(kv, prompts: prompts)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "2", "--kv", kv])
        for w in ["w1", "w2"] {
            try procs.spawn(w, ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", w])
        }
        try procs.waitReady(endpoint, workers: 2)

        // Garbage from a peer is counted and dropped, never a crash.
        let context = try Context()
        let junk = try Socket(context, .dealer, options: [.linger(.zero)])
        try junk.connect(endpoint)
        _ = try junk.send(frames: [[0xFF, 0x00, 0x13]])
        let status = try ClusterClient(endpoint: endpoint).status()
        let push = try Socket(context, .push, options: [.linger(.zero)])
        try push.connect(status.workers[1].dataEndpoint)
        _ = try push.send(frames: [[1, 2, 3], [4]])
        _ = try push.send(.stepBatch(StepBatch(epoch: 999, microBatchID: 1, rows: [BatchRow(sequenceID: 7, startPosition: 0, count: 1)], tokenIDs: [1])))

        // Every prompt submitted at once: continuous batching must not change any token.
        let results = Mutex<[Int: ([Int32], Finished.Reason?)]>([:])
        let group = DispatchGroup()
        for (i, p) in prompts.enumerated() {
            group.enter()
            Thread {
                defer { group.leave() }
                var tokens: [Int32] = []
                var reason: Finished.Reason?
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(60))
                    let submit = Submit(
                        requestID: "r\(i)", prompt: .text(p.text),
                        sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: UInt32(p.tokens)))
                    try client.submit(submit) { event in
                        if case .token(let t) = event { tokens.append(Int32(bitPattern: t.tokenID)) }
                        if case .finished(let f) = event { reason = f.reason }
                    }
                } catch {}
                results.withLock { $0[i] = (tokens, reason) }
            }.start()
        }
        #expect(group.wait(timeout: .now() + 240) == .success, "requests did not finish:\n\(procs.allLogs)")
        let got = results.withLock { $0 }
        for (i, p) in prompts.enumerated() {
            let (tokens, reason) = got[i] ?? ([], nil)
            #expect(tokens == expected[i].0, "\(kv) \(p.name): cluster tokens differ from the generator's")
            let name = reason.map { $0 == .maxTokens ? "length" : $0 == .endOfSequence ? "stop" : "\($0)" }
            #expect(name == expected[i].1, "\(kv) \(p.name): finish reason")
        }
        let client = try ClusterClient(endpoint: endpoint)
        #expect(try client.status().droppedMalformed >= 1)
        // The stale StepBatch was counted by the worker and reported in its heartbeats.
        #expect(Processes.wait(.seconds(5)) { (try? client.status().workers.map(\.droppedStale).reduce(0, +)) ?? 0 >= 1 })
        let after = try client.status()
        #expect(after.workers.count == 2)
        #expect(after.sequences.isEmpty)
    }

    @Test("squat submit prints byte for byte what squat generate prints")
    func submitMatchesGenerate() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "2"])
        for w in ["w1", "w2"] {
            try procs.spawn(w, ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", w])
        }
        try procs.waitReady(endpoint, workers: 2)
        let requests = [
            ["--chat", "--temperature", "0", "--max-tokens", "40", "--stop", "Everest", "What is the tallest mountain in the world?"],
            // Sampled: the last stage's per-sequence sampler, seed and repetition penalty.
            ["--temperature", "0.9", "--seed", "7", "--repeat-penalty", "1.2", "--max-tokens", "40", "Once upon a time"],
        ]
        for (i, request) in requests.enumerated() {
            let submit = try procs.spawn("submit\(i)", ["submit", "--coordinator", endpoint] + request)
            let generate = try procs.spawn("generate\(i)", ["generate", "--model", Paths.model, "--threads", "1"] + request)
            #expect(Processes.wait(.seconds(120)) { !submit.isRunning && !generate.isRunning })
            #expect(submit.terminationStatus == 0)
            func text(_ log: String) -> String { String(log.split(separator: "\n[", omittingEmptySubsequences: false).first ?? "") }
            let generated = text(
                procs.log("generate\(i)").components(separatedBy: "\n").filter { !$0.hasPrefix("loaded ") }.joined(separator: "\n"))
            #expect(!generated.isEmpty)
            #expect(text(procs.log("submit\(i)")) == generated, "\(procs.allLogs)")
        }
    }

    @Test("a client that leaves mid-request does not disturb the others")
    func abandonedRequest() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "2", "--kv", "full"])
        for w in ["w1", "w2"] {
            try procs.spawn(w, ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", w])
        }
        try procs.waitReady(endpoint, workers: 2)
        @Sendable func run(_ id: String, _ text: String, max: UInt32, abandonAfter: Int? = nil) -> [UInt32] {
            var tokens: [UInt32] = []
            struct Leave: Error {}
            do {
                let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(60))
                try client.submit(
                    Submit(requestID: id, prompt: .text(text), sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: max))
                ) { event in
                    if case .token(let t) = event { tokens.append(t.tokenID) }
                    if let n = abandonAfter, tokens.count >= n { throw Leave() }
                }
            } catch {}
            return tokens
        }
        let alone = run("b0", "Once upon a time", max: 40)
        #expect(alone.count == 40)
        let together = Mutex<[UInt32]>([])
        let group = DispatchGroup()
        group.enter()
        Thread {
            together.withLock { $0 = run("b1", "Once upon a time", max: 40) }
            group.leave()
        }.start()
        _ = run("a1", "The capital of France is", max: 200, abandonAfter: 3)
        #expect(group.wait(timeout: .now() + 120) == .success)
        #expect(together.withLock { $0 } == alone, "\(procs.allLogs)")
        #expect(Processes.wait(.seconds(10)) { (try? ClusterClient(endpoint: endpoint).status().sequences.isEmpty) ?? false })
    }

    @Test("a worker with another model file is refused with a clear message")
    func modelMismatchRefused() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        // The same model with one metadata byte changed: it loads, but its fingerprint differs.
        let other = procs.directory.appendingPathComponent("other.gguf")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Paths.model))
        let marker = Data("general.name".utf8)
        let at = try #require(bytes.range(of: marker, in: 0..<(1 << 20)))
        bytes[at.upperBound + 12] = UInt8(ascii: "X")  // the first letter of the name's value
        try bytes.write(to: other)
        let endpoint = try procs.startCoordinator(["--workers", "1"])
        let worker = try procs.spawn("bad", ["worker", "--model", other.path, "--coordinator", endpoint, "--id", "bad"])
        #expect(Processes.wait(.seconds(30)) { !worker.isRunning }, "the refused worker did not exit")
        #expect(worker.terminationStatus == 2)
        #expect(procs.log("bad").contains("registration refused"))
        #expect(procs.log("bad").contains("model mismatch"))
    }

    @Test("workers notice a dead coordinator and exit, bounded")
    func coordinatorDeath() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "1"])
        let worker = try procs.spawn("w1", ["worker", "--model", Paths.model, "--coordinator", endpoint, "--id", "w1"])
        try procs.waitReady(endpoint, workers: 1)
        let coordinator = try #require(procs.children.first { $0.name == "coordinator" }).process
        kill(coordinator.processIdentifier, SIGKILL)
        let t0 = ContinuousClock.now
        #expect(Processes.wait(.seconds(15)) { !worker.isRunning }, "the worker is still running:\n\(procs.allLogs)")
        #expect(ContinuousClock.now - t0 < .seconds(15))
        #expect(worker.terminationStatus == 3)
        #expect(procs.log("w1").contains("coordinator silent"))
    }
}
