import Cluster
import Foundation
import KVCache
import Testing
import Wire

@testable import squat

/// The cache configuration an Assign carries: a coordinator's cache flags, encoded on the wire,
/// decide the cache a worker builds, whatever that worker's own flags say.
@Suite("Cache configuration in the Assign")
struct CacheConfigTests {
    /// `config` through an Assign's protobuf encoding and back.
    func overTheWire(_ config: CacheConfig) throws -> CacheConfig {
        let bytes = try WireMessage.assign(Assign(epoch: 1, layers: LayerRange(start: 0, end: 30), cache: config))
            .encoded()
        guard case .assign(let a) = try WireMessage.decode(bytes) else {
            Issue.record("not an Assign")
            return CacheConfig()
        }
        return a.cache
    }

    @Test("every cache flag of the coordinator overrides the worker's own")
    func coordinatorFlagsWin() throws {
        let coordinator = try CacheOptions.parse([
            "--kv", "squat", "--key-rope", "post", "--subspace-rope", "pre", "--kv-scales", "f32", "--k-bits", "2",
            "--v-bits", "4", "--group-size", "16", "--residual-length", "48", "--subspace-dim", "8", "--squat-lambda",
            "0.5", "--quant-group-size", "16",
        ])
        let worker = try CacheOptions.parse([
            "--kv", "kivi", "--key-rope", "pre", "--subspace-rope", "post", "--kv-scales", "f16",
        ])
        let config = try overTheWire(coordinator.wireConfig(headDim: 64))
        let built = try worker.applying(config).factory(headDim: 64, contextLength: 1024)
        let factory = try #require(built as? QuantizedCacheFactory)
        #expect(factory.method == .squat)
        #expect(
            factory.params
                == QuantizationParameters(
                    kBits: 2, vBits: 4, groupSize: 16, residualLength: 48, subspaceDim: 8, lambda: 0.5,
                    quantGroupSize: 16,
                    subspaceRope: .pre, keyRope: .post))
        #expect(factory.scales == .f32)
        #expect(factory.name == "squat-postrope-k2v4-f32scales")
        // KIVI's default key placement travels too (after RoPE), over a worker that says before.
        let kivi = try CacheOptions.parse(["--kv", "kivi"]).wireConfig(headDim: 64)
        let kiviBuilt = try #require(
            try worker.applying(try overTheWire(kivi)).factory(headDim: 64, contextLength: 1024)
                as? QuantizedCacheFactory)
        #expect(kiviBuilt.params.keyRope == .post && kiviBuilt.scales == .f16)
    }

    @Test("a worker sent an Assign whose cache it cannot build leaves (exit 2, saying why) instead of holding the plan")
    func unusableAssignEndsTheWorker() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        // This test plays the coordinator: a ROUTER that answers the registration, then assigns.
        let context = try Context()
        let router = try Socket(context, .router, options: [.linger(.zero), .receiveTimeout(.seconds(30))])
        let endpoint = try router.bind("tcp://127.0.0.1:0")
        let worker = try procs.spawn(
            "w1",
            [
                "worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", "w1",
                "--exit-on-coordinator-loss",
            ])
        var identity: [UInt8]?
        while identity == nil {
            guard case .message(let incoming) = try router.receiveMessage() else {
                Issue.record("no registration:\n\(procs.allLogs)")
                return
            }
            if case .register = incoming.message { identity = incoming.identity }
        }
        _ = try router.send(.registerReply(RegisterReply(workerID: "w1", heartbeatIntervalMs: 1000)), to: identity)
        var cache = try CacheOptions.parse(["--kv", "squat"]).wireConfig(headDim: 64)
        cache.keyRope = RopePlacementWire(rawValue: 7)
        _ = try router.send(
            .assign(Assign(epoch: 1, layers: LayerRange(start: 0, end: 30), isFirst: true, isLast: true, cache: cache)),
            to: identity)
        #expect(Processes.wait(.seconds(30)) { !worker.isRunning }, "the worker stayed:\n\(procs.log("w1"))")
        #expect(worker.terminationStatus == 2, "\(procs.log("w1"))")
        #expect(
            procs.log("w1").contains("cannot build") && procs.log("w1").contains("--key-rope"), "\(procs.log("w1"))")
    }

    @Test("the coordinator names a worker that builds another cache than its flags make, or does not say")
    func coordinatorNamesOtherCaches() throws {
        let fingerprint = try ModelFingerprint.of(path: Paths.model)
        // Each case: a coordinator, and a worker played by this test that registers, takes its
        // Assign and reports `cache` in its load, as another version of squat might.
        for (id, cache, expected) in [
            ("old", "", "worker old does not report the cache it builds"),
            (
                "odd", "squat-k4v4",
                "worker odd builds a squat-k4v4 cache, not the kivi-k2v2 of this coordinator's flags"
            ),
            ("same", "kivi-k2v2", ""),
        ] {
            let procs = try Processes()
            defer { procs.stopAll() }
            let endpoint = try procs.startCoordinator([
                "--workers", "1", "--kv", "kivi", "--k-bits", "2", "--v-bits", "2",
            ])
            let context = try Context()
            let dealer = try Socket(context, .dealer, options: [.linger(.zero), .receiveTimeout(.seconds(30))])
            defer { dealer.close() }
            try dealer.connect(endpoint)
            _ = try dealer.send(
                .register(
                    Register(
                        workerID: id, modelFingerprint: fingerprint, threads: 1, dataEndpoint: "tcp://127.0.0.1:9")))
            var assign: Assign?
            while assign == nil {
                guard case .message(let incoming) = try dealer.receiveMessage() else {
                    Issue.record("\(id): no Assign\n\(procs.allLogs)")
                    return
                }
                if case .assign(let a) = incoming.message { assign = a }
            }
            guard let a = assign else { return }
            #expect(a.cache.kind == .kivi && a.cache.keyBits == 2 && a.cache.keyRope == .post)
            _ = try dealer.send(
                .heartbeat(
                    Heartbeat(
                        epoch: a.epoch, sequence: 1, sentUnixMs: 0,
                        load: WorkerLoad(state: .ready, layers: a.layers, cache: cache))))
            if expected.isEmpty {
                // Nothing to name: the pipeline serves (the status shows the worker ready) and the log is quiet.
                #expect(
                    Processes.wait(.seconds(10)) {
                        (try? ClusterClient(endpoint: endpoint).status().workers.first?.cache) == cache
                    })
                #expect(!procs.log("coordinator").contains("cache it builds"), "\(procs.log("coordinator"))")
                #expect(!procs.log("coordinator").contains("coordinator's flags"), "\(procs.log("coordinator"))")
            } else {
                #expect(
                    Processes.wait(.seconds(10)) { procs.log("coordinator").contains(expected) },
                    "\(id): \(procs.log("coordinator"))")
            }
        }
    }

    @Test("a value this build does not know is refused by name, not replaced by the worker's flag")
    func unknownValuesAreRefused() throws {
        let worker = try CacheOptions.parse([])
        let base = try CacheOptions.parse(["--kv", "squat"]).wireConfig(headDim: 64)
        var unknownKeyRope = base
        unknownKeyRope.keyRope = RopePlacementWire(rawValue: 7)
        var unknownSubspace = base
        unknownSubspace.subspaceRope = RopePlacementWire(rawValue: 7)
        var unknownScales = base
        unknownScales.scales = ScaleStorage(rawValue: 7)
        var unknownKind = base
        unknownKind.kind = CacheKind(rawValue: 9)
        for (what, config) in [
            ("--key-rope", unknownKeyRope), ("--subspace-rope", unknownSubspace), ("--kv-scales", unknownScales),
            ("unknown cache", unknownKind),
        ] {
            do {
                _ = try worker.applying(try overTheWire(config)).factory(headDim: 64, contextLength: 1024)
                Issue.record("\(what): an unknown value was accepted")
            } catch {
                #expect("\(error)".contains(what) && "\(error)".contains("unknown here"), "\(what): \(error)")
            }
        }
        // A full-precision cache has no subspace: an unknown subspace placement does not matter to it.
        var full = try CacheOptions.parse(["--kv", "full"]).wireConfig(headDim: 64)
        full.subspaceRope = RopePlacementWire(rawValue: 7)
        #expect(
            try worker.applying(try overTheWire(full)).factory(headDim: 64, contextLength: 1024)
                is FullPrecisionCacheFactory)
    }
}

/// `squat eval`'s own flags are checked before the model loads.
@Suite("Eval flags")
struct EvalFlagTests {
    @Test("bad --perturb values, --seed without --perturb and oversized token counts are refused by name")
    func refused() {
        let cases: [([String], String)] = [
            (["--perturb=nan"], "--perturb must be a finite value in [0, 1), got nan"),
            (["--perturb=-1"], "--perturb must be a finite value in [0, 1), got -1.0"),
            (["--perturb=inf"], "--perturb must be a finite value in [0, 1), got inf"),
            (["--perturb", "1"], "--perturb must be a finite value in [0, 1), got 1.0"),
            (["--seed", "3"], "--seed applies only with --perturb"),
            (["--prompt-tokens", "99999999999"], "--prompt-tokens must be at most 16777216, got 99999999999"),
        ]
        for (args, message) in cases {
            do {
                _ = try Eval.parse(args)
                Issue.record("\(args) was accepted")
            } catch {
                #expect(Eval.message(for: error) == message, "\(args)")
            }
        }
        #expect((try? Eval.parse(["--perturb", "1e-7", "--seed", "3"])) != nil)
    }
}
