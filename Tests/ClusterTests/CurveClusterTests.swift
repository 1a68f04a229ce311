import Foundation
import Testing
import Wire

@testable import Cluster

/// A cluster with CURVE keys everywhere, as real processes over tcp: `squat keygen`, a
/// coordinator admitting worker and client keys, workers and clients with their own pairs.
@Suite("CURVE cluster", .serialized, .timeLimit(.minutes(10)))
struct CurveClusterTests {
    /// `squat keygen` into DIR/NAME/; returns that directory.
    private func keygen(_ procs: Processes, _ name: String) throws -> String {
        let dir = procs.directory.appendingPathComponent("keys-\(name)").path
        let r = try procs.run("keygen-\(name)", ["keygen", "--out", dir, "--name", name])
        #expect(r.status == 0, "keygen failed: \(r.output)")
        #expect(r.output.contains("public key "))
        return dir
    }

    private func publicKeyFile(_ dir: String, _ name: String) -> String { "\(dir)/\(name).pub" }

    @Test(
        "keyed workers and clients are served exactly; strangers, wrong roles and keyless peers are refused, fast and clearly"
    )
    func keyedCluster() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let coordinatorKeys = try keygen(procs, "coordinator")
        let workerKeys = try ["w1", "w2"].map { try keygen(procs, $0) }
        let aliceKeys = try keygen(procs, "alice")
        let malloryKeys = try keygen(procs, "mallory")
        let serverKey = publicKeyFile(coordinatorKeys, "coordinator")

        // Worker keys in workers/, client keys in clients/; mallory is nowhere.
        let auth = procs.directory.appendingPathComponent("authorized").path
        let fm = FileManager.default
        for role in ["workers", "clients"] {
            try fm.createDirectory(atPath: "\(auth)/\(role)", withIntermediateDirectories: true)
        }
        for (name, dir) in zip(["w1", "w2"], workerKeys) {
            try fm.copyItem(atPath: publicKeyFile(dir, name), toPath: "\(auth)/workers/\(name).pub")
        }
        try fm.copyItem(atPath: publicKeyFile(aliceKeys, "alice"), toPath: "\(auth)/clients/alice.pub")

        let endpoint = try procs.startCoordinator([
            "--workers", "2", "--kv", "full", "--curve-secret", coordinatorKeys, "--authorized-keys", auth, "--http",
            "127.0.0.1:0",
        ])
        #expect(procs.log("coordinator").contains("CURVE"))
        for (name, dir) in zip(["w1", "w2"], workerKeys) {
            try procs.spawn(
                name,
                [
                    "worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", name,
                    "--curve-secret", dir, "--curve-server-key", serverKey,
                ])
        }
        let alice = try CurveClientKeys.load(secretDirectory: aliceKeys, serverKeyFile: serverKey)
        try procs.waitReady(endpoint, workers: 2, curve: alice)

        // The keyed pipeline (coordinator → w1 → w2, every hop CURVE) gives the generator's tokens.
        let prompts = Array(try goldenPrompts().prefix(2)).map { (name: $0.name, text: $0.text, tokens: 16) }
        let expected = try ClusterProcessTests().cachedReference("full", prompts: prompts)
        func generate(_ p: (name: String, text: String, tokens: Int)) throws -> [Int32] {
            var tokens: [Int32] = []
            let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(60), curve: alice)
            try client.submit(
                Submit(
                    requestID: p.name, prompt: .text(p.text),
                    sampling: Sampling(sampler: SamplerParams(.greedy), maxTokens: UInt32(p.tokens)))
            ) { event in
                if case .token(let t) = event { tokens.append(Int32(bitPattern: t.tokenID)) }
            }
            return tokens
        }
        for (p, e) in zip(prompts, expected) { #expect(try generate(p) == e.0, "\(p.name)\n\(procs.allLogs)") }

        // The CLI client with alice's keys.
        let ok = try procs.run(
            "submit-alice",
            [
                "submit", "--coordinator", endpoint, "--curve-secret", aliceKeys, "--curve-server-key", serverKey,
                "--max-tokens", "4",
                "Hello",
            ])
        #expect(ok.status == 0, "\(ok.output)")

        // The Python client with alice's keys, and with mallory's.
        let python = [
            "/usr/bin/env", "python3", PythonClientTests.script, "--coordinator", endpoint, "--curve-server-key",
            serverKey,
        ]
        let pyAlice = try procs.runExecutable(
            "python-alice", python + ["--curve-secret", aliceKeys, "--max-tokens", "4", "--temperature", "0", "Hello"])
        #expect(pyAlice.status == 0, "\(pyAlice.output)")
        #expect(pyAlice.output.contains("4 generated"), "\(pyAlice.output)")
        let pyMallory = try procs.runExecutable("python-mallory", python + ["--curve-secret", malloryKeys, "Hello"])
        #expect(pyMallory.status != 0)
        #expect(pyMallory.output.contains("refused this client's CURVE key"), "\(pyMallory.output)")

        // A stranger's key: refused by the key check, told so, exits non-zero, never hangs.
        let start = ContinuousClock.now
        let mallory = try procs.run(
            "submit-mallory",
            [
                "submit", "--coordinator", endpoint, "--curve-secret", malloryKeys, "--curve-server-key", serverKey,
                "Hello",
            ],
            timeout: .seconds(30))
        #expect(mallory.status != 0)
        #expect(mallory.output.contains("refused this client's CURVE key"), "\(mallory.output)")
        #expect(ContinuousClock.now - start < .seconds(15))

        // No keys at all: the handshake cannot succeed; a clear error, not a hang.
        let plain = try procs.run(
            "submit-plain", ["submit", "--coordinator", endpoint, "Hello"], timeout: .seconds(30))
        #expect(plain.status != 0)
        #expect(plain.output.contains("handshake"), "\(plain.output)")

        // A client key cannot register as a worker; a stranger's key cannot either.
        func keyedWorker(_ name: String, id: String, keys: String) throws -> (status: Int32, output: String) {
            try procs.run(
                name,
                [
                    "worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", id,
                    "--curve-secret", keys, "--curve-server-key", serverKey,
                ], timeout: .seconds(30))
        }
        let impostor = try keyedWorker("worker-alice", id: "impostor", keys: aliceKeys)
        #expect(impostor.status == 2, "\(impostor.output)")
        #expect(impostor.output.contains("may not register as a worker"), "\(impostor.output)")
        let strangerWorker = try keyedWorker("worker-mallory", id: "stranger", keys: malloryKeys)
        #expect(strangerWorker.status != 0)
        #expect(strangerWorker.output.contains("refused this worker's CURVE key"), "\(strangerWorker.output)")

        // A stranger pushing into a stage's data socket (with that stage's real public key) is
        // refused by the stage's own key check: only its sender gets in.
        let context = try Context()
        let status = try ClusterClient(endpoint: endpoint, timeout: .seconds(5), curve: alice).status()
        let w2 = try #require(status.workers.first { $0.workerID == "w2" })
        let malloryPair = try Curve.loadPair(directory: malloryKeys).pair
        let push = try Socket(
            context, .push,
            options: malloryPair.clientOptions(server: try Curve.readKey(file: publicKeyFile(workerKeys[1], "w2"))) + [
                .linger(.zero)
            ])
        defer { push.close() }
        try push.connect(w2.dataEndpoint)
        _ = try push.send(
            .stepBatch(StepBatch(epoch: status.epoch, microBatchID: 99, rows: [], tokenIDs: [])), dontWait: true)
        #expect(
            Processes.wait(.seconds(10)) { procs.log("w2").contains("refused a data connection") }, "\(procs.log("w2"))"
        )

        // Status: the refusals are counted, the cluster still serves both workers, exactly.
        let after = try ClusterClient(endpoint: endpoint, timeout: .seconds(5), curve: alice).status()
        #expect(after.security == "curve")
        #expect(after.authRejections >= 2, "auth rejections: \(after.authRejections)")
        #expect(after.unauthorizedMessages >= 1)
        #expect(Set(after.workers.map(\.workerID)) == ["w1", "w2"])
        #expect(procs.log("coordinator").contains("refused a connection from 127.0.0.1"))
        #expect(try generate(prompts[0]) == expected[0].0)

        // The HTTP gateway (in the coordinator's process, over inproc: no key) serves /metrics
        // with the refusals counted by reason.
        let base = try procs.httpBase()
        let metrics = try procs.runExecutable(
            "metrics",
            [
                "/usr/bin/env", "python3", "-c",
                "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                base + "/metrics",
            ])
        let keyLine = metrics.output.split(separator: "\n").first {
            $0.hasPrefix("squat_rejected_connections_total{reason=\"key\"}")
        }
        let refusedByKey = keyLine.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } ?? -1
        #expect(refusedByKey >= 2, "\(metrics.output)")
        let roleLine = metrics.output.split(separator: "\n").first {
            $0.hasPrefix("squat_rejected_connections_total{reason=\"role\"}")
        }
        #expect(
            (roleLine.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } ?? -1) >= 1, "\(metrics.output)")
    }

    @Test("binding a non-loopback address without keys is refused unless --insecure")
    func openBinds() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let coordinator = try procs.run(
            "open-coordinator", ["coordinator", "--model", Paths.model, "--bind", "tcp://0.0.0.0:0"])
        #expect(coordinator.status != 0)
        #expect(
            coordinator.output.contains("refusing to bind the coordinator on tcp://0.0.0.0:0 without CURVE keys"),
            "\(coordinator.output)")
        let worker = try procs.run(
            "open-worker",
            ["worker", "--model", Paths.model, "--coordinator", "tcp://127.0.0.1:1", "--data-bind", "tcp://*:0"])
        #expect(worker.status != 0)
        #expect(worker.output.contains("--insecure"), "\(worker.output)")
        let http = try procs.run(
            "open-http", ["coordinator", "--model", Paths.model, "--http", "0.0.0.0:0"])
        #expect(http.status != 0)
        #expect(http.output.contains("without --http-token"), "\(http.output)")
        let halfKeys = try procs.run("half-keys", ["submit", "--curve-secret", procs.directory.path, "Hello"])
        #expect(halfKeys.status != 0 && halfKeys.output.contains("go together"), "\(halfKeys.output)")
        // --insecure: it starts.
        let endpoint = try procs.startCoordinator(["--insecure"], name: "insecure", bind: "tcp://0.0.0.0:0")
        #expect(endpoint.hasPrefix("tcp://0.0.0.0:"))
    }
}
