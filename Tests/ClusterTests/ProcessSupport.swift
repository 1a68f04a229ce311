import Foundation
import Testing
import Wire

@testable import Cluster

#if canImport(Glibc)
    import Glibc
#endif

/// Paths of the package, its model and shared references, and of the built `squat` binary.
enum Paths {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static let golden = packageRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/golden/llamacpp_smollm2_q4_1.json").path

    /// The `squat` executable of this build: the test target depends on it, so SwiftPM puts it
    /// beside the test bundle (`<scratch>/<config>/`). `SQUAT_BINARY` overrides.
    static func squat() throws -> String {
        if let env = ProcessInfo.processInfo.environment["SQUAT_BINARY"] { return env }
        var dirs: [URL] = [
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        ]
        dirs.append(Bundle.main.bundleURL.deletingLastPathComponent())
        dirs += Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        var tried: [String] = []
        for start in dirs {
            var dir = start
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("squat").path
                tried.append(candidate)
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDir), !isDir.boolValue,
                    FileManager.default.isExecutableFile(atPath: candidate)
                {
                    return candidate
                }
                dir = dir.deletingLastPathComponent()
            }
        }
        throw ClusterError(
            "no squat binary near the test bundle (tried \(tried.joined(separator: ", "))); set SQUAT_BINARY")
    }
}

/// Child processes of one test, always stopped at the end (SIGTERM, then SIGKILL).
final class Processes: @unchecked Sendable {
    let binary: String
    let directory: URL
    private(set) var children: [(name: String, process: Process, log: URL)] = []

    init() throws {
        binary = try Paths.squat()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("squat-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { stopAll() }

    /// Starts `squat args…` (or `executable args…`) with stderr in `<name>.log`, and stdout
    /// there too or, with `separateOutput`, alone in `<name>.out` (see `output(_:)`).
    @discardableResult
    func spawn(_ name: String, executable: String? = nil, _ args: [String], separateOutput: Bool = false) throws
        -> Process
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable ?? binary)
        p.arguments = args
        func file(_ suffix: String) throws -> FileHandle {
            let url = directory.appendingPathComponent("\(name).\(suffix)")
            _ = FileManager.default.createFile(atPath: url.path, contents: nil)
            return try FileHandle(forWritingTo: url)
        }
        let log = directory.appendingPathComponent("\(name).log")
        p.standardError = try file("log")
        p.standardOutput = separateOutput ? try file("out") : p.standardError
        try p.run()
        children.append((name, p, log))
        return p
    }

    /// The stdout bytes of a child started with `separateOutput`.
    func output(_ name: String) -> Data {
        FileManager.default.contents(atPath: directory.appendingPathComponent("\(name).out").path) ?? Data()
    }

    func log(_ name: String) -> String {
        guard let c = children.first(where: { $0.name == name }),
            let d = FileManager.default.contents(atPath: c.log.path)
        else { return "" }
        return String(decoding: d, as: UTF8.self)
    }

    var allLogs: String {
        children.map { "--- \($0.name) ---\n" + log($0.name) }.joined(separator: "\n")
    }

    /// Waits (bounded by `timeout` times `TimeScale.factor`, `SQUAT_TIME_SCALE` for slow
    /// instrumented builds) for `condition`; false on timeout.
    static func wait(_ timeout: Duration, every: Duration = .milliseconds(100), _ condition: () throws -> Bool) rethrows
        -> Bool
    {
        let deadline = ContinuousClock.now + TimeScale.scaled(timeout)
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            Thread.sleep(
                forTimeInterval: Double(every.components.attoseconds) * 1e-18 + Double(every.components.seconds))
        }
        return try condition()
    }

    /// Starts a coordinator on a free port and returns its endpoint (read from its log).
    func startCoordinator(_ extra: [String], name: String = "coordinator", bind: String = "tcp://127.0.0.1:0") throws
        -> String
    {
        try spawn(name, ["coordinator", "--model", Paths.model, "--bind", bind] + extra)
        guard let endpoint = logValue(name, after: "listening on ", until: ";") else {
            throw ClusterError("the coordinator did not start:\n\(allLogs)")
        }
        return endpoint
    }

    /// The base URL of the HTTP gateway of coordinator `name` (started with `--http`), read from its log.
    func httpBase(_ name: String = "coordinator") throws -> String {
        guard let base = logValue(name, after: "HTTP gateway on ", until: " ") else {
            throw ClusterError("the HTTP gateway did not start:\n\(allLogs)")
        }
        return base
    }

    /// What follows `marker` in child `name`'s log up to `separator`, once it appears (30 s at most).
    func logValue(_ name: String, after marker: String, until separator: Character) -> String? {
        var value: String?
        _ = Processes.wait(.seconds(30)) {
            let log = self.log(name)
            if let r = log.range(of: marker) {
                value = log[r.upperBound...].split(separator: separator).first.map(String.init)
            }
            return value != nil
        }
        return value
    }

    /// A coordinator waiting for `n` workers and workers w1…wn (one thread each), all with `flags`
    /// (the workers also with `workerFlags`); returns the coordinator's endpoint once they serve.
    func startCluster(
        workers n: Int, _ flags: [String] = [], workerFlags: [String] = [], coordinatorFlags: [String] = []
    ) throws -> String {
        let endpoint = try startCoordinator(["--workers", "\(n)"] + flags + coordinatorFlags)
        try startWorkers(endpoint, (1...n).map { "w\($0)" }, flags + workerFlags)
        try waitReady(endpoint, workers: n)
        return endpoint
    }

    /// Workers with these ids (one thread each) for the coordinator at `endpoint`.
    func startWorkers(_ endpoint: String, _ ids: [String], _ flags: [String] = []) throws {
        for w in ids {
            try spawn(
                w, ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", w] + flags)
        }
    }

    /// Waits until the coordinator reports `count` ready workers.
    func waitReady(_ endpoint: String, workers count: Int, curve: CurveClientKeys? = nil) throws {
        let client = try ClusterClient(endpoint: endpoint, timeout: TimeScale.scaled(.seconds(2)), curve: curve)
        let ok = Processes.wait(.seconds(60), every: .milliseconds(300)) {
            guard let s = try? client.status() else { return false }
            return s.workers.filter { $0.state == .ready }.count >= count
        }
        if !ok { throw ClusterError("the pipeline did not become ready:\n\(allLogs)") }
    }

    /// Runs `squat args…` to its end (bounded by `timeout`, then killed) and returns its exit
    /// status and its stdout+stderr.
    func run(_ name: String, _ args: [String], timeout: Duration = .seconds(60)) throws -> (
        status: Int32, output: String
    ) {
        try runExecutable(name, [binary] + args, timeout: timeout)
    }

    /// Runs `command[0] command[1…]` to its end (bounded by `timeout`, then killed); its exit
    /// status and its stdout+stderr.
    func runExecutable(_ name: String, _ command: [String], timeout: Duration = .seconds(60)) throws -> (
        status: Int32, output: String
    ) {
        let p = try spawn(name, executable: command[0], Array(command.dropFirst()))
        if !Processes.wait(timeout, { !p.isRunning }) { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return (p.terminationStatus, log(name))
    }

    func stopAll() {
        for c in children where c.process.isRunning { c.process.terminate() }
        _ = Processes.wait(.seconds(5)) { children.allSatisfy { !$0.process.isRunning } }
        for c in children where c.process.isRunning { kill(c.process.processIdentifier, SIGKILL) }
        for c in children { c.process.waitUntilExit() }
    }
}
