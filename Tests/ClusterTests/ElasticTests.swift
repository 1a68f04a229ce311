import Foundation
import LlamaModel
import Synchronization
import Testing
import Wire

@testable import Cluster

#if canImport(Glibc)
    import Glibc
#endif

/// Membership changes while 8 greedy requests run: every request completes, and its tokens
/// equal the single-process generator's (the undisturbed run), because a new plan either ships
/// the moved layers' caches to their new owners (a join or a drain) or replays every live
/// sequence from its token history into empty caches (a loss, or a move that fails).
@Suite("Elastic cluster", .serialized, .timeLimit(.minutes(10)))
struct ElasticTests {
    /// Tokens per request: long enough that the disturbance lands mid-generation.
    static let tokens = 24

    struct Outcome {
        var tokens: [Int32] = []
        var reason: Finished.Reason?
        var error: String?
    }

    /// Submits the 8 mixed prompts at once; calls `disturb` once, when `after` tokens have
    /// arrived over all requests; returns each request's outcome.
    func run(
        endpoint: String, procs: Processes, after: Int, disturb: @escaping @Sendable () throws -> Void
    ) throws -> [(name: String, outcome: Outcome)] {
        let prompts = try ClusterProcessTests.mixedPrompts()
        let received = Atomic<Int>(0)
        let fired = Atomic<Bool>(false)
        let disturbError = Mutex<String?>(nil)
        let results = Mutex<[Int: Outcome]>([:])
        let group = DispatchGroup()
        for (i, p) in prompts.enumerated() {
            group.enter()
            Thread {
                defer { group.leave() }
                var o = Outcome()
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(90)))
                    let submit = Submit(
                        requestID: "e\(i)", prompt: .text(p.text),
                        sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: UInt32(Self.tokens)))
                    try client.submit(submit) { event in
                        switch event {
                        case .token(let t):
                            o.tokens.append(Int32(bitPattern: t.tokenID))
                            let n = received.add(1, ordering: .relaxed).newValue
                            if n >= after, !fired.exchange(true, ordering: .relaxed) {
                                do { try disturb() } catch { disturbError.withLock { $0 = "\(error)" } }
                            }
                        case .finished(let f): o.reason = f.reason
                        case .error(let e): o.error = e.message
                        }
                    }
                } catch {
                    o.error = "\(error)"
                }
                results.withLock { $0[i] = o }
            }.start()
        }
        #expect(
            group.wait(timeout: .now() + Double(300 * TimeScale.factor)) == .success,
            "requests did not finish:\n\(procs.allLogs)")
        let didFire = fired.load(ordering: .relaxed)
        #expect(didFire, "the disturbance never ran")
        #expect(disturbError.withLock { $0 } == nil)
        let got = results.withLock { $0 }
        return prompts.enumerated().map { (i, p) in (p.name, got[i] ?? Outcome(error: "no result")) }
    }

    /// The generator's tokens for the same prompts (cut to `tokens`).
    func expected(_ kv: String) throws -> [[Int32]] {
        if let r = Self.references.withLock({ $0[kv] }) { return r }
        let prompts = try ClusterProcessTests.mixedPrompts().map { (name: $0.name, text: $0.text, tokens: Self.tokens) }
        let r = try ClusterProcessTests().reference(kv, prompts: prompts).map(\.0)
        Self.references.withLock { $0[kv] = r }
        return r
    }
    static let references = Mutex<[String: [[Int32]]]>([:])

    func check(
        _ outcomes: [(name: String, outcome: Outcome)], _ expected: [[Int32]], _ what: String, _ procs: Processes
    ) {
        for (i, (name, o)) in outcomes.enumerated() {
            #expect(o.error == nil, "\(what), \(name): \(o.error ?? "")\n\(procs.allLogs)")
            #expect(o.tokens == expected[i], "\(what), \(name): tokens differ from the undisturbed run")
        }
    }

    @Test(
        "SIGKILL of a worker at a random step: every request completes with the undisturbed tokens",
        arguments: [
            (seed: 1, kv: "squat"), (seed: 2, kv: "full"), (seed: 3, kv: "kivi"),
        ])
    func killWorker(seed: Int, kv: String) throws {
        var rng = SeededGenerator(seed: UInt64(seed))
        let after = 8 + Int(rng.next() % 120)  // of 8 × 24 tokens
        let victim = ["w1", "w2", "w3"][Int(rng.next() % 3)]
        let expected = try expected(kv)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 3, ["--kv", kv])
        let pid = try #require(procs.children.first { $0.name == victim }).process.processIdentifier
        let killedAt = Mutex<ContinuousClock.Instant?>(nil)
        let outcomes = try run(endpoint: endpoint, procs: procs, after: after) {
            kill(pid, SIGKILL)
            killedAt.withLock { $0 = .now }
        }
        check(outcomes, expected, "seed \(seed) (\(victim) killed after \(after) tokens, \(kv))", procs)
        let s = try ClusterClient(endpoint: endpoint).status()
        #expect(s.workers.count == 2)
        #expect(!s.workers.contains { $0.workerID == victim })
        #expect(s.pipeline.replans >= 2)
        #expect(s.pipeline.tokensReplayed > 0)
        #expect(s.pipeline.holdReason.isEmpty)
        #expect(procs.log("coordinator").contains("worker \(victim) lost"))
        #expect(s.lostWorkers.contains { $0.workerID == victim && $0.state == .lost }, "status reports the lost worker")
    }

    @Test(
        "survivors whose memory cannot hold the model: requests are held, status says why, a new worker resumes them exactly"
    )
    func holdUntilJoin() throws {
        let kv = "squat"
        let expected = try expected(kv)
        let procs = try Processes()
        defer { procs.stopAll() }
        // 62 MiB each: 19 of the 30 layers (93.8 MiB file, 3.1 MiB a layer) fit on one worker, so
        // two are needed; the first stage's 18 layers leave 5.7 MiB for caches, and the longest
        // request (636 + 24 tokens) needs 4.7 MiB.
        let endpoint = try procs.startCluster(workers: 2, ["--kv", kv], workerFlags: ["--memory-budget", "62"])
        let victim = try #require(procs.children.first { $0.name == "w2" }).process.processIdentifier
        let held = Mutex<String?>(nil)
        let outcomes = try run(endpoint: endpoint, procs: procs, after: 30) {
            kill(victim, SIGKILL)
            // Held, and said so, until a worker joins.
            var reason = ""
            _ = Processes.wait(.seconds(20), every: .milliseconds(200)) {
                reason = (try? ClusterClient(endpoint: endpoint).status().pipeline.holdReason) ?? ""
                return !reason.isEmpty && !reason.hasPrefix("epoch")
            }
            held.withLock { $0 = reason }
            Thread.sleep(forTimeInterval: 1)
            try procs.startWorkers(endpoint, ["w3"], ["--kv", kv, "--memory-budget", "62"])
        }
        check(outcomes, expected, "w2 killed, w1 alone too small, w3 joined", procs)
        let reason = held.withLock { $0 } ?? ""
        #expect(reason.contains("memory budgets do not hold the model"), "hold reason: '\(reason)'")
        let s = try ClusterClient(endpoint: endpoint).status()
        #expect(s.workers.map(\.workerID).sorted() == ["w1", "w3"])
        #expect(s.pipeline.holdReason.isEmpty)
    }

    @Test(
        "a worker added mid-generation takes layers, the moved layers' caches shipped (or replayed); outputs unchanged",
        arguments: [
            (kv: "squat", ship: true), (kv: "full", ship: true), (kv: "kivi", ship: true), (kv: "squat", ship: false),
        ])
    func addWorker(kv: String, ship: Bool) throws {
        let expected = try expected(kv)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(
            workers: 2, ["--kv", kv], coordinatorFlags: ship ? [] : ["--replay-only"])
        let outcomes = try run(endpoint: endpoint, procs: procs, after: 40) {
            try procs.startWorkers(endpoint, ["w3"], ["--kv", kv])
        }
        check(outcomes, expected, "w3 added after 40 tokens (\(kv), \(ship ? "caches shipped" : "replay"))", procs)
        let s = try ClusterClient(endpoint: endpoint).status()
        #expect(s.workers.count == 3)
        #expect(s.workers.allSatisfy { $0.layers.end > $0.layers.start }, "every worker serves layers: \(s.workers)")
        #expect(s.pipeline.replans >= 2)
        #expect(s.pipeline.cacheFallbacks == 0, "\(procs.log("coordinator"))")
        if ship {
            #expect(s.pipeline.cacheMigrations >= 1)
            #expect(s.pipeline.cacheLayersShipped > 0 && s.pipeline.cacheBytesShipped > 0)
            #expect(s.pipeline.tokensReplayed == 0, "nothing replayed when the caches move")
            #expect(procs.log("coordinator").contains("no replay"))
        } else {
            #expect(s.pipeline.cacheMigrations == 0 && s.pipeline.cacheLayersShipped == 0)
            #expect(s.pipeline.tokensReplayed > 0)
        }
    }

    @Test(
        "a joining worker that cannot import the shipped caches: the move falls back to replay; no request fails"
    )
    func shippingFallsBackToReplay() throws {
        let kv = "squat"
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2, ["--kv", kv])
        let outcomes = try run(endpoint: endpoint, procs: procs, after: 40) {
            // Every cache setting comes with the Assign, so a real mismatch cannot be made here:
            // the worker's fault-injection flag fails its imports as a corrupt blob would.
            try procs.startWorkers(endpoint, ["w3"], ["--kv", kv, "--debug-refuse-cache-imports"])
        }
        for (name, o) in outcomes {
            #expect(o.error == nil && o.reason != nil, "\(name): \(o.error ?? "no end")\n\(procs.allLogs)")
            #expect(o.tokens.count == Self.tokens || o.reason == .endOfSequence, "\(name): \(o.tokens.count) tokens")
        }
        let s = try ClusterClient(endpoint: endpoint).status()
        #expect(s.pipeline.cacheFallbacks == 1, "\(procs.log("coordinator"))")
        #expect(s.pipeline.cacheMigrations == 0)
        #expect(s.pipeline.tokensReplayed > 0)
        #expect(procs.log("w3").contains("cache import failed"), "\(procs.log("w3"))")
        #expect(procs.log("coordinator").contains("replaying instead"))
        #expect(s.workers.count == 3 && s.pipeline.holdReason.isEmpty)
    }

    @Test("draining workers (squat drain, then SIGTERM) moves their layers; they exit 0; outputs unchanged")
    func drainWorkers() throws {
        let kv = "squat"
        let expected = try expected(kv)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 3, ["--kv", kv])
        let w2 = try #require(procs.children.first { $0.name == "w2" }).process
        let w3 = try #require(procs.children.first { $0.name == "w3" }).process
        let outcomes = try run(endpoint: endpoint, procs: procs, after: 30) {
            let drain = try procs.spawn("drain", ["drain", "--coordinator", endpoint, "w3"])
            drain.waitUntilExit()
            // Then, while the replay runs, the other way out: SIGTERM.
            kill(w2.processIdentifier, SIGTERM)
        }
        check(outcomes, expected, "w3 drained, w2 sent SIGTERM", procs)
        #expect(Processes.wait(.seconds(30)) { !w2.isRunning && !w3.isRunning }, "\(procs.allLogs)")
        for (name, w) in [("w2", w2), ("w3", w3)] where !w.isRunning {
            #expect(w.terminationStatus == 0, "\(name) exit status")
        }
        #expect(procs.log("drain").contains("draining w3"))
        let s = try ClusterClient(endpoint: endpoint).status()
        #expect(s.workers.map(\.workerID) == ["w1"])
        #expect(s.workers.first?.layers == LayerRange(start: 0, end: 30))
        // Both moves shipped the caches: nothing was replayed.
        #expect(s.pipeline.cacheMigrations >= 1 && s.pipeline.cacheFallbacks == 0, "\(procs.log("coordinator"))")
        #expect(s.pipeline.tokensReplayed == 0)
    }

    @Test(
        "a restarted coordinator: live requests end with a clear error, workers register again, new requests are served"
    )
    func restartCoordinator() throws {
        let kv = "squat"
        let expected = try expected(kv)
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2, ["--kv", kv])
        let first = try #require(procs.children.first { $0.name == "coordinator" }).process.processIdentifier
        let killedAt = Mutex<ContinuousClock.Instant?>(nil)
        let outcomes = try run(endpoint: endpoint, procs: procs, after: 20) {
            kill(first, SIGKILL)
            killedAt.withLock { $0 = .now }
        }
        // Every live request ended with an error naming the lost connection, within seconds.
        // (A request that had already finished before the kill has the undisturbed tokens.)
        var errors = 0
        for (i, (name, o)) in outcomes.enumerated() {
            if o.reason != nil && o.error == nil {
                #expect(o.tokens == expected[i], "\(name) finished before the kill with other tokens")
            } else {
                #expect(
                    o.error?.contains("lost the connection to the coordinator") == true,
                    "\(name): \(o.error ?? "no error")")
                errors += 1
            }
        }
        #expect(errors >= 4, "most requests were live when the coordinator died")
        // A new coordinator on the same endpoint: the workers find it.
        _ = try procs.startCoordinator(["--workers", "2", "--kv", kv], name: "coordinator2", bind: endpoint)
        try procs.waitReady(endpoint, workers: 2)
        #expect(procs.log("w1").contains("registering again"))
        let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(60)))
        let prompts = try ClusterProcessTests.mixedPrompts()
        var tokens: [Int32] = []
        try client.submit(
            Submit(
                requestID: "after", prompt: .text(prompts[0].text),
                sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: UInt32(Self.tokens)))
        ) { event in
            if case .token(let t) = event { tokens.append(Int32(bitPattern: t.tokenID)) }
        }
        #expect(tokens == expected[0])
    }
}
