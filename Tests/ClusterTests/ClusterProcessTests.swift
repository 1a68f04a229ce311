import Foundation
import KVCache
import LlamaModel
import Synchronization
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
        try reference(cacheFlags: ["--kv", kv], prompts: prompts)
    }

    /// The same with any cache flags.
    func reference(cacheFlags: [String], prompts: [(name: String, text: String, tokens: Int)]) throws -> [(
        [Int32], String
    )] {
        let files = try ModelLoader.open(path: Paths.model)
        let tokenizer = try files.tokenizer()
        let factory = try CacheOptions.parse(cacheFlags).factory(
            headDim: files.config.headDim, contextLength: files.config.contextLength)
        // The workers run with the command line's default activation precision.
        let stage = LlamaStage(
            weights: try files.weights(), threads: 2, activations: try EngineOptions.parse([]).activationPrecision)
        let generator = Generator(stage: stage, tokenizer: tokenizer, cacheFactory: factory)
        return try prompts.map { p in
            let r = try generator.generate(
                GenerationRequest(prompt: tokenizer.encode(p.text), sampling: .greedy, maxTokens: p.tokens)
            ) { _ in }
            return (r.tokens, r.finishReason.rawValue)
        }
    }

    /// Eight prompts of different lengths (3 to 600+ tokens: one needs two prefill chunks).
    static func mixedPrompts() throws -> [(name: String, text: String, tokens: Int)] {
        let golden = try goldenPrompts().prefix(5).map { (name: $0.name, text: $0.text, tokens: 12) }
        let sentence = "The quick brown fox jumps over the lazy dog while the cat watches. "
        return golden + [
            (name: "medium", text: String(repeating: sentence, count: 12) + "What did the fox do?", tokens: 12),
            (name: "long", text: String(repeating: sentence, count: 45) + "What did the cat do?", tokens: 12),
            (name: "tiny", text: "Hi", tokens: 12),
        ]
    }

    /// The generator's tokens per cache kind and prompt set, computed once for all cluster shapes.
    static let references = Mutex<[String: [([Int32], String)]]>([:])

    /// Keyed by the cache kind *and* the prompts: `CurveClusterTests` asks for other prompts with
    /// the same kind, and got this suite's answers when both ran in one process.
    func cachedReference(_ kv: String, prompts: [(name: String, text: String, tokens: Int)]) throws -> [(
        [Int32], String
    )] {
        let key = ([kv] + prompts.map { "\($0.name):\($0.tokens):\($0.text)" }).joined(separator: "\u{0}")
        if let r = Self.references.withLock({ $0[key] }) { return r }
        let r = try reference(kv, prompts: prompts)
        Self.references.withLock { $0[key] = r }
        return r
    }

    @Test(
        "1, 2 and 3 workers give the single-process tokens for 8 requests submitted at once",
        arguments: [1, 2, 3], ["full", "kivi", "squat"])
    func matchesGenerator(workers: Int, kv: String) throws {
        let prompts = try Self.mixedPrompts()
        let expected = try cachedReference(kv, prompts: prompts)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: workers, ["--kv", kv])

        // Sockets that sent garbage stay open until the end: closing them (linger 0) could drop
        // what they queued before it was delivered.
        var garbageSockets: [Socket] = []
        defer { garbageSockets.forEach { $0.close() } }
        let context = try Context()
        if workers == 2 && kv == "full" {
            // Garbage from a peer is counted and dropped, never a crash.
            let junk = try Socket(context, .dealer, options: [.linger(.zero)])
            try junk.connect(endpoint)
            _ = try junk.send(frames: [[0xFF, 0x00, 0x13]])
            let status = try ClusterClient(endpoint: endpoint).status()
            let push = try Socket(context, .push, options: [.linger(.zero)])
            try push.connect(status.workers[1].dataEndpoint)
            _ = try push.send(frames: [[1, 2, 3], [4]])
            _ = try push.send(
                .stepBatch(
                    StepBatch(
                        epoch: 999, microBatchID: 1, rows: [BatchRow(sequenceID: 7, startPosition: 0, count: 1)],
                        tokenIDs: [1])))
            garbageSockets += [junk, push]
        }

        // Every prompt submitted at once: continuous batching and pipelining must not change any token.
        let results = Mutex<[Int: ([Int32], Finished.Reason?)]>([:])
        let group = DispatchGroup()
        for (i, p) in prompts.enumerated() {
            group.enter()
            Thread {
                defer { group.leave() }
                var tokens: [Int32] = []
                var reason: Finished.Reason?
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60)))
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
        #expect(
            group.wait(timeout: .now() + Double(300 * TimeScale.factor)) == .success,
            "requests did not finish:\n\(procs.allLogs)")
        let got = results.withLock { $0 }
        for (i, p) in prompts.enumerated() {
            let (tokens, reason) = got[i] ?? ([], nil)
            #expect(
                tokens == expected[i].0,
                "\(workers) worker(s), \(kv), \(p.name): cluster tokens differ from the generator's")
            let name = reason.map { $0 == .maxTokens ? "length" : $0 == .endOfSequence ? "stop" : "\($0)" }
            #expect(name == expected[i].1, "\(workers) worker(s), \(kv), \(p.name): finish reason")
        }
        let client = try ClusterClient(endpoint: endpoint)
        let after = try client.status()
        #expect(after.workers.count == workers)
        #expect(after.sequences.isEmpty)
        // Pipelining: one micro-batch per stage may be in flight, and with 8 sequences was.
        #expect(after.pipeline.maxInFlight == UInt32(workers))
        #expect(after.pipeline.peakInFlight == UInt32(workers), "peak micro-batches in flight")
        #expect(after.pipeline.stageBusyMicroseconds.count == workers)
        #expect(after.pipeline.tokensOut >= UInt64(prompts.count))
        if workers == 2 && kv == "full" {
            #expect(after.droppedMalformed >= 1)
            // The stale StepBatch was counted by the worker and reported in its heartbeats.
            #expect(
                Processes.wait(.seconds(5)) {
                    (try? client.status().workers.map(\.droppedStale).reduce(0, +)) ?? 0 >= 1
                })
        }
        // Every cache was released: the workers report no KV memory in use.
        #expect(
            Processes.wait(.seconds(5)) { (try? client.status().workers.allSatisfy { $0.kvBytesUsed == 0 }) ?? false })
    }

    @Test("the coordinator's cache flags (bits, key placement, scale storage) reach workers started without them")
    func coordinatorCacheFlagsReachWorkers() throws {
        let flags = ["--kv", "kivi", "--key-rope", "pre", "--kv-scales", "f32", "--k-bits", "2", "--v-bits", "2"]
        let prompts = Array(try Self.mixedPrompts().prefix(3))
        let expected = try reference(cacheFlags: flags, prompts: prompts)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2, coordinatorFlags: flags)
        for w in ["w1", "w2"] {
            #expect(procs.log(w).contains("cache kivi-prerope-k2v2-f32scales"), "\(w): \(procs.log(w))")
        }
        // `squat status` shows each worker's cache (from its load reports).
        let status = try ClusterClient(endpoint: endpoint).status()
        #expect(status.workers.map(\.cache) == ["kivi-prerope-k2v2-f32scales", "kivi-prerope-k2v2-f32scales"])
        // The coordinator expects the same name from its own flags: it names no worker.
        #expect(!procs.log("coordinator").contains("coordinator's flags"), "\(procs.log("coordinator"))")
        for (i, p) in prompts.enumerated() {
            var tokens: [Int32] = []
            let submit = Submit(
                requestID: "r\(i)", prompt: .text(p.text),
                sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: UInt32(p.tokens)))
            try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60))).submit(submit) { event in
                if case .token(let t) = event { tokens.append(Int32(bitPattern: t.tokenID)) }
            }
            #expect(tokens == expected[i].0, "\(p.name): the cluster's tokens differ from generate's with \(flags)")
        }
    }

    @Test("generate --stages N prints byte for byte what generate prints")
    func stagesMatchGenerate() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let request = ["--chat", "--temperature", "0", "--max-tokens", "48", "Name three rivers in Europe."]
        let plain = try procs.spawn("plain", ["generate", "--model", Paths.model, "--threads", "1"] + request)
        let staged = try procs.spawn(
            "staged", ["generate", "--model", Paths.model, "--threads", "3", "--stages", "3"] + request)
        #expect(Processes.wait(.seconds(120)) { !plain.isRunning && !staged.isRunning })
        #expect(plain.terminationStatus == 0 && staged.terminationStatus == 0, "\(procs.allLogs)")
        func text(_ log: String) -> String {
            let kept = log.components(separatedBy: "\n").filter { !$0.hasPrefix("loaded ") }.joined(separator: "\n")
            return String(kept.split(separator: "\n[", omittingEmptySubsequences: false).first ?? "")
        }
        #expect(!text(procs.log("plain")).isEmpty)
        #expect(text(procs.log("staged")) == text(procs.log("plain")), "\(procs.allLogs)")
    }

    @Test("a cancelled request ends with Finished(cancelled) and frees its caches")
    func cancel() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2)
        let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60)))
        var tokens = 0
        var sawKV = false
        let finished = try client.submit(
            Submit(
                requestID: "c1", prompt: .text("Write a long story about a dragon."),
                sampling: Sampling(maxTokens: 500, ignoreEndOfGeneration: true))
        ) { event in
            guard case .token = event else { return }
            tokens += 1
            if tokens == 5 {
                sawKV = try ClusterClient(endpoint: endpoint).status().sequences.count == 1
                try client.cancel("c1")
            }
        }
        #expect(finished?.reason == .cancelled)
        #expect(tokens >= 5 && tokens < 500)
        #expect(sawKV)
        #expect(
            Processes.wait(.seconds(10)) {
                guard let s = try? ClusterClient(endpoint: endpoint).status() else { return false }
                return s.sequences.isEmpty && s.workers.allSatisfy { $0.kvBytesUsed == 0 }
            }, "caches not freed after cancel:\n\(procs.allLogs)")
        // Cancelling an unknown request is an error naming it, not a crash.
        let context = try Context()
        let raw = try Socket(
            context, .dealer, options: [.linger(.zero), .receiveTimeout(TimeScale.scaled(.seconds(5)))])
        try raw.connect(endpoint)
        _ = try raw.send(.cancel(Cancel(requestID: "nope")))
        let reply = try raw.receiveMessage()
        guard case .message(let incoming) = consume reply, case .error(let e) = incoming.message else {
            Issue.record("no error reply to cancelling an unknown request")
            return
        }
        #expect(e.code == .unknownRequest && e.requestID == "nope")
    }

    @Test("admission: a request whose KV cache can never fit is refused; one that fits only alone waits its turn")
    func admission() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "1", "--kv", "squat"])
        // 100 MiB: the 93.8 MiB model file plus ~6.2 MiB for caches. A SQuat 4-bit sequence takes
        // ~3.4 MiB fixed + ~7 KiB per token over 30 layers: one of 160 tokens fits, two do not.
        try procs.spawn(
            "w1",
            [
                "worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", "w1",
                "--memory-budget", "100",
            ])
        try procs.waitReady(endpoint, workers: 1)

        var refusal: ErrorReply?
        try ClusterClient(endpoint: endpoint).submit(
            Submit(requestID: "big", prompt: .text("Hello"), sampling: Sampling(maxTokens: 2000))
        ) { event in
            if case .error(let e) = event { refusal = e }
        }
        #expect(refusal?.code == .overloaded)
        #expect(refusal?.message.contains("--memory-budget") == true, "\(refusal?.message ?? "no error")")

        struct Times {
            var first: Double?
            var finished: Double?
            var tokens = 0
        }
        let times = Mutex<[String: Times]>([:])
        let group = DispatchGroup()
        for id in ["a", "b"] {
            group.enter()
            Thread {
                defer { group.leave() }
                var t = Times()
                _ = try? ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60))).submit(
                    Submit(
                        requestID: id, prompt: .text("Tell me about the sea."),
                        sampling: Sampling(maxTokens: 150, ignoreEndOfGeneration: true))
                ) { event in
                    let now = Date().timeIntervalSince1970
                    if case .token = event {
                        if t.first == nil { t.first = now }
                        t.tokens += 1
                    }
                    if case .finished = event { t.finished = now }
                }
                times.withLock { $0[id] = t }
            }.start()
            Thread.sleep(forTimeInterval: 0.3)
        }
        // While the first runs, the second is queued, not prefilling.
        var sawQueued = false
        _ = Processes.wait(.seconds(20), every: .milliseconds(100)) {
            if let s = try? ClusterClient(endpoint: endpoint).status(), s.sequences.count == 2 {
                sawQueued = s.sequences.contains { $0.requestID == "b" && $0.state == .queued }
            }
            return sawQueued
        }
        #expect(group.wait(timeout: .now() + Double(120 * TimeScale.factor)) == .success)
        let got = times.withLock { $0 }
        #expect(sawQueued, "the second request was never seen waiting")
        #expect(got["a"]?.tokens == 150 && got["b"]?.tokens == 150)
        if let aDone = got["a"]?.finished, let bFirst = got["b"]?.first {
            #expect(bFirst >= aDone, "the second request started before the first freed its reservation")
        } else {
            Issue.record("missing timings: \(got)")
        }
    }

    @Test("squat submit prints byte for byte what squat generate prints")
    func submitMatchesGenerate() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2)
        let requests = [
            [
                "--chat", "--temperature", "0", "--max-tokens", "40", "--stop", "Everest",
                "What is the tallest mountain in the world?",
            ],
            // Sampled: the last stage's per-sequence sampler, seed and repetition penalty.
            [
                "--temperature", "0.9", "--seed", "7", "--repeat-penalty", "1.2", "--max-tokens", "40",
                "Once upon a time",
            ],
        ]
        for (i, request) in requests.enumerated() {
            let submit = try procs.spawn("submit\(i)", ["submit", "--coordinator", endpoint] + request)
            let generate = try procs.spawn(
                "generate\(i)", ["generate", "--model", Paths.model, "--threads", "1"] + request)
            #expect(Processes.wait(.seconds(120)) { !submit.isRunning && !generate.isRunning })
            #expect(submit.terminationStatus == 0)
            func text(_ log: String) -> String {
                String(log.split(separator: "\n[", omittingEmptySubsequences: false).first ?? "")
            }
            let generated = text(
                procs.log("generate\(i)").components(separatedBy: "\n").filter { !$0.hasPrefix("loaded ") }.joined(
                    separator: "\n"))
            #expect(!generated.isEmpty)
            #expect(text(procs.log("submit\(i)")) == generated, "\(procs.allLogs)")
        }
    }

    @Test("a client that leaves mid-request does not disturb the others")
    func abandonedRequest() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2, ["--kv", "full"])
        @Sendable func run(_ id: String, _ text: String, max: UInt32, abandonAfter: Int? = nil) -> [UInt32] {
            var tokens: [UInt32] = []
            struct Leave: Error {}
            do {
                let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60)))
                try client.submit(
                    Submit(
                        requestID: id, prompt: .text(text),
                        sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: max))
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
        #expect(group.wait(timeout: .now() + Double(120 * TimeScale.factor)) == .success)
        #expect(together.withLock { $0 } == alone, "\(procs.allLogs)")
        #expect(
            Processes.wait(.seconds(10)) {
                (try? ClusterClient(endpoint: endpoint).status().sequences.isEmpty) ?? false
            })
        // The abandoned request's caches were freed on every worker.
        #expect(
            Processes.wait(.seconds(10)) {
                (try? ClusterClient(endpoint: endpoint).status().workers.allSatisfy { $0.kvBytesUsed == 0 }) ?? false
            })
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
        let worker = try procs.spawn(
            "bad", ["worker", "--model", other.path, "--coordinator", endpoint, "--id", "bad"])
        #expect(Processes.wait(.seconds(30)) { !worker.isRunning }, "the refused worker did not exit")
        #expect(worker.terminationStatus == 2)
        #expect(procs.log("bad").contains("registration refused"))
        #expect(procs.log("bad").contains("model mismatch"))
    }

    @Test("with --exit-on-coordinator-loss, workers notice a dead coordinator and exit 3, bounded")
    func coordinatorDeath() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "1"])
        let worker = try procs.spawn(
            "w1",
            ["worker", "--model", Paths.model, "--coordinator", endpoint, "--id", "w1", "--exit-on-coordinator-loss"])
        try procs.waitReady(endpoint, workers: 1)
        let coordinator = try #require(procs.children.first { $0.name == "coordinator" }).process
        kill(coordinator.processIdentifier, SIGKILL)
        let t0 = ContinuousClock.now
        #expect(Processes.wait(.seconds(15)) { !worker.isRunning }, "the worker is still running:\n\(procs.allLogs)")
        #expect(ContinuousClock.now - t0 < TimeScale.scaled(.seconds(15)))
        #expect(worker.terminationStatus == 3)
        #expect(procs.log("w1").contains("coordinator silent"))
    }
}
