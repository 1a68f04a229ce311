import Foundation
import LlamaModel
import Testing
import Wire

@testable import Cluster
@testable import squat

/// A running coordinator and worker take 10,000 malformed frames each — random bytes,
/// truncated envelopes, wrong frame counts, tensors whose size disagrees with their header,
/// old and future epochs — and afterwards still answer a request with the right tokens.
@Suite("Hostile frames", .serialized, .timeLimit(.minutes(10)))
struct HostileFrameTests {
    /// Frame sets of every kind, drawn from `rng`.
    static func garbage(_ rng: inout SeededGenerator, valid: [[UInt8]], epoch: UInt64) throws -> [[UInt8]] {
        func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:  // random bytes
            return [random(Int.random(in: 0...300, using: &rng))]
        case 1:  // a valid envelope cut short
            let v = valid.randomElement(using: &rng) ?? [0]
            return [Array(v.prefix(Int.random(in: 0..<max(1, v.count), using: &rng)))]
        case 2:  // wrong frame counts: extra frames after a valid message, or empty frames
            let v = valid.randomElement(using: &rng) ?? [0]
            return [v]
                + (0..<Int.random(in: 1...3, using: &rng)).map { _ in random(Int.random(in: 0...40, using: &rng)) }
        case 3:  // a tensor whose size disagrees with its header
            let rows = UInt32.random(in: 1...4, using: &rng)
            let a = Activations(
                epoch: epoch, microBatchID: rng.next(),
                rows: [BatchRow(sequenceID: rng.next() % 5, startPosition: 0, count: rows)],
                tensor: TensorHeader(dtype: .f32, shape: [rows, 576]))
            return [try WireMessage.activations(a).encoded(), random(Int.random(in: 0...64, using: &rng) * 4)]
        case 4:  // old and future epochs, unknown sequences
            let epochs: [UInt64] = [0, epoch &- 1, epoch + 1, 999]
            let e = epochs.randomElement(using: &rng) ?? 0
            let b = StepBatch(
                epoch: e, microBatchID: rng.next(),
                rows: [
                    BatchRow(sequenceID: rng.next(), startPosition: UInt32.random(in: 0...9, using: &rng), count: 1)
                ],
                tokenIDs: [UInt32.random(in: 0...60_000, using: &rng)])
            return [try WireMessage.stepBatch(b).encoded()]
        default:  // one flipped byte in a valid frame
            var v = valid.randomElement(using: &rng) ?? [0]
            if !v.isEmpty { v[Int.random(in: 0..<v.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
            return [v]
        }
    }

    @Test("10,000 malformed frames to a coordinator and to a worker; both still answer correctly")
    func survive() throws {
        let prompt = "The capital of France is"
        let files = try ModelLoader.open(path: Paths.model)
        let tokenizer = try files.tokenizer()
        let stage = LlamaStage(
            weights: try files.weights(), threads: 1, activations: try EngineOptions.parse([]).activationPrecision)
        let factory = try CacheOptions.parse(["--kv", "full"]).factory(
            headDim: files.config.headDim, contextLength: files.config.contextLength)
        let expected = try Generator(stage: stage, tokenizer: tokenizer, cacheFactory: factory).generate(
            GenerationRequest(prompt: tokenizer.encode(prompt), sampling: .greedy, maxTokens: 16)
        ) { _ in }.tokens

        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCluster(workers: 2, ["--kv", "full"])
        let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(60))
        let before = try client.status()
        let valid: [[UInt8]] = try [
            // (No Submit: a mutated one that still decodes would be a real request.)
            WireMessage.cancel(Cancel(requestID: "x")).encoded(),
            WireMessage.statusRequest(StatusRequest(includeSequences: true)).encoded(),
            WireMessage.heartbeat(Heartbeat(epoch: before.epoch, sequence: 1, sentUnixMs: 0)).encoded(),
            WireMessage.stepBatch(
                StepBatch(
                    epoch: before.epoch, microBatchID: 1, rows: [BatchRow(sequenceID: 1, startPosition: 0, count: 1)],
                    tokenIDs: [1])
            ).encoded(),
            WireMessage.sampledTokens(
                SampledTokens(epoch: before.epoch, microBatchID: 9, tokens: [SampledToken(sequenceID: 1, tokenID: 2)])
            ).encoded(),
            // Cache shipping outside a move: dropped and counted, never applied.
            WireMessage.cacheLayer(
                CacheLayer(
                    epoch: before.epoch, sequenceID: 1, layer: 3, tokenCount: 5,
                    blob: TensorHeader(dtype: .u8, shape: [4]))
            ).encoded(),
            WireMessage.cacheLayer(CacheLayer(epoch: before.epoch, sequenceID: 1, layer: 3, error: "x")).encoded(),
            WireMessage.cachesImported(CachesImported(epoch: before.epoch + 1, sequences: 1)).encoded(),
            WireMessage.exportCaches(
                ExportCaches(epoch: before.epoch, layers: LayerRange(start: 0, end: 30), sequenceIDs: [1])
            )
            .encoded(),
        ]
        let context = try Context()
        let toCoordinator = try Socket(context, .dealer, options: [.linger(.seconds(5)), .sendHighWaterMark(20_000)])
        try toCoordinator.connect(endpoint)
        let toWorker = try Socket(context, .push, options: [.linger(.seconds(5)), .sendHighWaterMark(20_000)])
        try toWorker.connect(before.workers[1].dataEndpoint)
        var rng = SeededGenerator(seed: 0xBAD_F00D)
        for _ in 0..<10_000 {
            _ = try toCoordinator.send(frames: try Self.garbage(&rng, valid: valid, epoch: before.epoch))
            _ = try toWorker.send(frames: try Self.garbage(&rng, valid: valid, epoch: before.epoch))
        }
        // Everything delivered and read: the counters grow, and the processes are all alive.
        #expect(
            Processes.wait(.seconds(60), every: .milliseconds(500)) {
                guard let s = try? client.status() else { return false }
                let workerDrops = s.workers.map(\.droppedStale).reduce(0, +)
                return s.droppedMalformed >= before.droppedMalformed + 1_000 && workerDrops >= 100
            }, "drop counters did not grow:\n\(procs.allLogs)")
        #expect(procs.children.allSatisfy { $0.process.isRunning }, "a process died:\n\(procs.allLogs)")

        var tokens: [Int32] = []
        try client.submit(
            Submit(
                requestID: "after", prompt: .text(prompt),
                sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: 16))
        ) { event in
            if case .token(let t) = event { tokens.append(Int32(bitPattern: t.tokenID)) }
        }
        #expect(tokens == expected, "\(procs.allLogs.suffix(4000))")
        let s = try client.status()
        #expect(s.workers.count == 2 && s.sequences.isEmpty)
        #expect(s.pipeline.replans == before.pipeline.replans, "garbage made the coordinator re-plan")
    }

    /// Reads replies on `socket` until an Error for `requestID` (or nothing for 10 s).
    func errorReply(_ socket: Socket, _ requestID: String) throws -> ErrorReply? {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let inbound = try socket.receiveMessage()
            if case .message(let m) = consume inbound, case .error(let e) = m.message, e.requestID == requestID {
                return e
            }
        }
        return nil
    }

    @Test(
        "request limits per client and in total, prompt and generation limits, and a protocol version mismatch, are answered with coded errors"
    )
    func limits() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator([
            "--workers", "1", "--kv", "full", "--max-requests", "3", "--max-requests-per-client", "2",
            "--max-prompt-tokens", "50",
            "--max-tokens-limit", "500",
        ])
        try procs.startWorkers(endpoint, ["w1"], ["--kv", "full"])
        try procs.waitReady(endpoint, workers: 1)
        let context = try Context()
        func client() throws -> Socket {
            let s = try Socket(context, .dealer, options: [.linger(.zero), .receiveTimeout(.seconds(10))])
            try s.connect(endpoint)
            return s
        }
        func submit(_ id: String) -> WireMessage {
            .submit(
                Submit(
                    requestID: id, prompt: .text("Count to one hundred:"),
                    sampling: Sampling(maxTokens: 400, ignoreEndOfGeneration: true)))
        }
        // Per-request limits: a long prompt, too many tokens asked, a bad sampling value, an unknown id.
        let c = try client()
        _ = try c.send(.submit(Submit(requestID: "long", prompt: .tokens(Array(repeating: 42, count: 51)))))
        let long = try errorReply(c, "long")
        #expect(
            long?.code == .promptTooLong && long?.message.contains("--max-prompt-tokens") == true,
            "\(String(describing: long))")
        _ = try c.send(.submit(Submit(requestID: "many", prompt: .text("Hi"), sampling: Sampling(maxTokens: 501))))
        let many = try errorReply(c, "many")
        #expect(
            many?.code == .invalidRequest && many?.message.contains("--max-tokens-limit") == true,
            "\(String(describing: many))")
        _ = try c.send(
            .submit(
                Submit(
                    requestID: "hot", prompt: .text("Hi"),
                    sampling: Sampling(sampler: SamplerParams(temperature: -1), maxTokens: 4))))
        let badSampling = try errorReply(c, "hot")
        #expect(
            badSampling?.code == .invalidRequest && badSampling?.message.contains("temperature") == true,
            "\(String(describing: badSampling))")
        _ = try c.send(.cancel(Cancel(requestID: "nobody")))
        let unknown = try errorReply(c, "nobody")
        #expect(unknown?.code == .unknownRequest)

        let a = try client()
        for id in ["a1", "a2", "a3"] { _ = try a.send(submit(id)) }
        let perClient = try errorReply(a, "a3")
        #expect(perClient?.code == .overloaded)
        #expect(perClient?.message.contains("--max-requests-per-client") == true, "\(perClient?.message ?? "none")")
        let b = try client()
        for id in ["b1", "b2"] { _ = try b.send(submit(id)) }
        let total = try errorReply(b, "b2")
        #expect(total?.code == .overloaded)
        #expect(total?.message.contains("--max-requests") == true, "\(total?.message ?? "none")")
        // An envelope of protocol version 2 (field 1 = 2, then an empty StatusRequest).
        _ = try b.send(frames: [[0x08, 0x02, 0x7A, 0x00]])
        let version = try errorReply(b, "")
        #expect(version?.code == .unsupportedVersion, "\(String(describing: version))")
        // Cancel what runs; the coordinator is fine.
        for id in ["a1", "a2"] { _ = try a.send(.cancel(Cancel(requestID: id))) }
        _ = try b.send(.cancel(Cancel(requestID: "b1")))
        #expect(
            Processes.wait(.seconds(20)) {
                (try? ClusterClient(endpoint: endpoint).status().sequences.isEmpty) ?? false
            })
    }
}
