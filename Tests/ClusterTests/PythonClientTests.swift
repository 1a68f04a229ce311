import Foundation
import Testing
import Wire

@testable import Cluster

/// clients/python/squat_client.py (pyzmq + the proto files) against a real coordinator and worker.
@Suite("Python client", .serialized, .timeLimit(.minutes(10)))
struct PythonClientTests {
    static let script = Paths.packageRoot.appendingPathComponent("clients/python/squat_client.py").path

    /// Runs the Python client with `args`; stdout in `procs.output(name)`.
    @discardableResult
    func python(_ procs: Processes, _ name: String, _ args: [String]) throws -> Process {
        try procs.spawn(name, executable: "/usr/bin/env", ["python3", Self.script] + args, separateOutput: true)
    }

    @Test("the Python client prints byte for byte what squat generate prints, and sees the worker")
    func pythonMatchesGenerate() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        // python3, pyzmq, protobuf and protoc must be there: a missing one fails, never skips.
        let help = try python(procs, "python-help", ["--help"])
        #expect(Processes.wait(.seconds(60)) { !help.isRunning })
        try #require(
            help.terminationStatus == 0,
            "the Python client cannot start (it needs python3, pyzmq, protobuf and protoc): run scripts/setup.sh\n\(procs.log("python-help"))"
        )

        let endpoint = try procs.startCoordinator(["--workers", "1"])
        try procs.spawn(
            "w1", ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", "w1"])
        try procs.waitReady(endpoint, workers: 1)

        // Status from Python: the same worker line the Swift client's status gives.
        let w = try #require(try ClusterClient(endpoint: endpoint).status().workers.first)
        let status = try python(procs, "python-status", ["--coordinator", endpoint, "--status"])
        #expect(Processes.wait(.seconds(30)) { !status.isRunning })
        #expect(status.terminationStatus == 0, "\(procs.log("python-status"))")
        let lines = String(decoding: procs.output("python-status"), as: UTF8.self).split(separator: "\n")
        #expect(
            lines.contains("w1\t\(w.layers.start)..<\(w.layers.end)\tWORKER_STATE_READY\t\(w.dataEndpoint)"), "\(lines)"
        )
        #expect(w.layers.end > w.layers.start)

        // Greedy requests, through Python and through `squat generate`: stdout bytes equal.
        let requests = [
            [
                "--chat", "--temperature", "0", "--max-tokens", "40", "--stop", "Everest",
                "What is the tallest mountain in the world?",
            ],
            ["--temperature", "0", "--max-tokens", "32", "The capital of France is"],
        ]
        var generated: [Data] = []
        for (i, request) in requests.enumerated() {
            let client = try python(procs, "python\(i)", ["--coordinator", endpoint] + request)
            let generate = try procs.spawn(
                "generate\(i)", ["generate", "--model", Paths.model, "--threads", "1"] + request, separateOutput: true)
            #expect(Processes.wait(.seconds(120)) { !client.isRunning && !generate.isRunning })
            #expect(client.terminationStatus == 0, "\(procs.log("python\(i)"))")
            #expect(generate.terminationStatus == 0, "\(procs.log("generate\(i)"))")
            generated.append(procs.output("generate\(i)"))
            #expect(!generated[i].isEmpty)
            #expect(procs.output("python\(i)") == generated[i], "\(procs.allLogs)")
        }

        // The same prompt as token ids (from `squat tokenize`) gives the same text.
        let tokenize = try procs.spawn(
            "tokenize", ["tokenize", "--model", Paths.model, "The capital of France is"], separateOutput: true)
        #expect(Processes.wait(.seconds(60)) { !tokenize.isRunning })
        let ids = String(decoding: procs.output("tokenize"), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: "[]")))
            .replacingOccurrences(of: " ", with: "")
        #expect(!ids.isEmpty)
        let byIDs = try python(
            procs, "python-ids",
            ["--coordinator", endpoint, "--tokens", ids, "--temperature", "0", "--max-tokens", "32"])
        #expect(Processes.wait(.seconds(120)) { !byIDs.isRunning })
        #expect(byIDs.terminationStatus == 0, "\(procs.log("python-ids"))")
        #expect(procs.output("python-ids") == generated[1], "\(procs.allLogs)")
    }
}
