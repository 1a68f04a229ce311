import ArgumentParser
import Cluster
import Foundation
import LlamaModel
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `squat bench --cluster N`: a local coordinator and N worker processes on loopback TCP;
/// greedy requests with random prompts at each concurrency; decode tokens/s (aggregate, also over
/// the window in which all sequences decode, and per sequence, wall and per CPU-second of all
/// cluster processes), time to first token, per-hop latency from the coordinator's pipeline
/// totals, and each process's resident memory.
struct ClusterBench {
    let modelPath: String
    let workers: Int
    let workerThreads: Int
    let concurrency: [Int]
    let promptTokens: Int
    let decodeTokens: Int
    let repeats: Int
    /// Flags for the coordinator and every worker (the cache).
    let cacheFlags: [String]
    /// Flags for the workers only (activations).
    let workerFlags: [String]
    /// Flags for the coordinator only (pipeline depth).
    let coordinatorFlags: [String]

    struct Row: Codable {
        var workers: Int
        var workerThreads: Int
        var concurrency: Int
        var decodeTokensPerSequence: Int
        var aggregateTokensPerSecond: Double
        var aggregateTokensPerCPUSecond: Double
        /// Tokens/s over the window in which every sequence was decoding: from the last first
        /// token to the first last token (no prefill ramp-up, no tail with fewer sequences).
        var allDecodingTokensPerSecond: Double
        var perSequenceTokensPerSecond: Double
        var timeToFirstTokenMs: Double
        var meanHopMicroseconds: Double
        var meanStageBusyMicroseconds: [Double]
        var meanRowsPerMicroBatch: Double
        /// The coordinator's credit: micro-batches it may hold in flight.
        var maxInFlight: Int
        var residentMiB: [String: Double]
        var peakResidentMiB: [String: Double]
    }

    /// A cluster process: its name, pid and log.
    final class Child {
        let name: String
        let process: Process
        let log: URL
        init(name: String, process: Process, log: URL) {
            self.name = name
            self.process = process
            self.log = log
        }
        var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    }

    func run(json: String?) throws {
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squat-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var children: [Child] = []
        func spawn(_ name: String, _ args: [String]) throws -> Child {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = args
            let log = dir.appendingPathComponent("\(name).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            p.standardOutput = handle
            p.standardError = handle
            try p.run()
            let c = Child(name: name, process: p, log: log)
            children.append(c)
            return c
        }
        defer {
            for c in children where c.process.isRunning { c.process.terminate() }
            for c in children { c.process.waitUntilExit() }
            try? FileManager.default.removeItem(at: dir)
        }
        let coordinator = try spawn(
            "coordinator",
            ["coordinator", "--model", modelPath, "--bind", "tcp://127.0.0.1:0", "--workers", "\(workers)"] + cacheFlags
                + coordinatorFlags)
        var endpoint: String?
        for _ in 0..<300 where endpoint == nil {
            if let r = coordinator.logText.range(of: "listening on ") {
                endpoint = coordinator.logText[r.upperBound...].split(separator: ";").first.map(String.init)
            } else {
                guard coordinator.process.isRunning else { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        guard let endpoint else { throw ValidationError("the coordinator did not start:\n\(coordinator.logText)") }
        for i in 1...workers {
            _ = try spawn(
                "worker\(i)",
                [
                    "worker", "--model", modelPath, "--coordinator", endpoint, "--threads", "\(workerThreads)", "--id",
                    "w\(i)",
                ]
                    + cacheFlags + workerFlags)
        }
        let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(5))
        var ready = false
        for _ in 0..<600 where !ready {
            if let s = try? client.status(includeSequences: false) {
                ready = s.pipeline.maxInFlight > 0 && s.workers.filter { $0.state == .ready }.count == workers
            }
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        guard ready else {
            throw ValidationError(
                "the pipeline did not become ready:\n"
                    + children.map { "\($0.name): \($0.logText)" }.joined(separator: "\n"))
        }
        let credit =
            (try? client.status(includeSequences: false).pipeline.maxInFlight).map {
                ", \($0) micro-batch(es) in flight at most"
            } ?? ""
        print(
            "cluster: \(workers) worker(s) × \(workerThreads) thread(s), \(promptTokens)-token prompts, \(decodeTokens) tokens each"
                + credit)
        var seed: UInt64 = 1
        // One short warm-up request (page faults, first-touch allocations).
        _ = try measure(endpoint: endpoint, concurrency: 1, seed: &seed, tokens: 8)
        // Rounds that each measure every concurrency once, so that a drifting machine weighs on
        // all of them alike; the rows printed are each concurrency's median round.
        var rounds: [[Row]] = []
        for _ in 0..<max(1, repeats) {
            var round: [Row] = []
            for c in concurrency {
                let before = try client.status(includeSequences: false).pipeline
                let cpu0 = cpuSeconds(children)
                let m = try measure(endpoint: endpoint, concurrency: c, seed: &seed, tokens: decodeTokens)
                let cpu = cpuSeconds(children) - cpu0
                let after = try client.status(includeSequences: false).pipeline
                let delta = PipelineStats(
                    microBatches: after.microBatches - before.microBatches, rows: after.rows - before.rows,
                    roundTripMicroseconds: after.roundTripMicroseconds - before.roundTripMicroseconds,
                    stageBusyMicroseconds: zip(
                        after.stageBusyMicroseconds,
                        before.stageBusyMicroseconds
                            + Array(
                                repeating: 0,
                                count: max(0, after.stageBusyMicroseconds.count - before.stageBusyMicroseconds.count))
                    ).map { $0 - $1 })
                let batches = Double(max(1, delta.microBatches))
                round.append(
                    Row(
                        workers: workers, workerThreads: workerThreads, concurrency: c,
                        decodeTokensPerSequence: decodeTokens,
                        aggregateTokensPerSecond: m.aggregate,
                        aggregateTokensPerCPUSecond: Double(m.decoded) / max(cpu, 1e-9),
                        allDecodingTokensPerSecond: m.allDecoding,
                        perSequenceTokensPerSecond: m.perSequence, timeToFirstTokenMs: m.ttft * 1000,
                        meanHopMicroseconds: delta.meanHopMicroseconds,
                        meanStageBusyMicroseconds: delta.stageBusyMicroseconds.map { Double($0) / batches },
                        meanRowsPerMicroBatch: Double(delta.rows) / batches, maxInFlight: Int(after.maxInFlight),
                        residentMiB: memory(children, field: "VmRSS:"),
                        peakResidentMiB: memory(children, field: "VmHWM:")))
            }
            rounds.append(round)
        }
        var rows: [Row] = []
        for (i, c) in concurrency.enumerated() {
            let runs = rounds.map { $0[i] }
            let r = runs.sorted { $0.aggregateTokensPerSecond < $1.aggregateTokensPerSecond }[runs.count / 2]
            rows.append(r)
            print(
                String(
                    format:
                        "concurrency %2d: aggregate %7.1f tok/s (%6.1f tok/CPU-s; %7.1f while all decode), per sequence %6.1f tok/s, TTFT %6.1f ms, hop %6.0f µs, stage busy %@ µs/batch, %.1f rows/batch",
                    c, r.aggregateTokensPerSecond, r.aggregateTokensPerCPUSecond, r.allDecodingTokensPerSecond,
                    r.perSequenceTokensPerSecond,
                    r.timeToFirstTokenMs, r.meanHopMicroseconds,
                    r.meanStageBusyMicroseconds.map { String(format: "%.0f", $0) }.joined(separator: "/"),
                    r.meanRowsPerMicroBatch))
        }
        if let i = concurrency.indices.min(by: { concurrency[$0] < concurrency[$1] }) {
            for (j, c) in concurrency.enumerated() where c > concurrency[i] {
                let scaling = Self.scaling(rounds.map { $0[i] }, rounds.map { $0[j] })
                print(
                    String(
                        format:
                            "scaling %d over %d: %.2f× aggregate (rounds %.2f–%.2f×), %.2f× while all decode (medians of %d round(s))",
                        c, concurrency[i], scaling.aggregate, scaling.aggregateRange.lowerBound,
                        scaling.aggregateRange.upperBound, scaling.allDecoding, rounds.count))
            }
        }
        fflush(nil)
        if let last = rows.last {
            for name in last.residentMiB.keys.sorted() {
                print(
                    String(
                        format: "%@: resident %.1f MiB, peak %.1f MiB", name, last.residentMiB[name] ?? 0,
                        last.peakResidentMiB[name] ?? 0))
            }
        }
        if let json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(rows).write(to: URL(fileURLWithPath: json))
        }
    }

    /// `other`'s aggregate (and all-decoding) tokens/s over the same round's `base` aggregate,
    /// per round (each ratio compares two runs made minutes apart at most): the (upper) medians over
    /// the rounds, and the aggregate ratios' range. Rounds whose base made no tokens are left out.
    struct Scaling {
        var aggregate = 0.0
        var allDecoding = 0.0
        var aggregateRange = 0.0...0.0
    }

    static func scaling(_ base: [Row], _ other: [Row]) -> Scaling {
        let pairs = zip(base, other).filter { $0.0.aggregateTokensPerSecond > 0 }
        let ratios = pairs.map { $0.1.aggregateTokensPerSecond / $0.0.aggregateTokensPerSecond }
        guard let lo = ratios.min(), let hi = ratios.max() else { return Scaling() }
        return Scaling(
            aggregate: median(ratios),
            allDecoding: median(pairs.map { $0.1.allDecodingTokensPerSecond / $0.0.aggregateTokensPerSecond }),
            aggregateRange: lo...hi)
    }

    /// Tokens/s while every sequence was decoding: the tokens that arrived after the last
    /// sequence's first token (a prefill's) and no later than the first sequence's last one, over
    /// that window; 0 when the sequences never all decoded at once.
    static func allDecodingRate(_ tokenTimes: [[Double]]) -> Double {
        guard let start = tokenTimes.map({ $0.first ?? .infinity }).max(),
            let end = tokenTimes.map({ $0.last ?? -.infinity }).min(), end > start
        else { return 0 }
        let n = tokenTimes.reduce(0) { n, times in n + times.filter { $0 > start && $0 <= end }.count }
        return Double(n) / (end - start)
    }

    struct Measurement {
        var aggregate: Double
        var allDecoding: Double
        var perSequence: Double
        var ttft: Double
        var decoded: Int
    }

    /// `concurrency` greedy requests at once, each `tokens` long past end-of-generation.
    func measure(endpoint: String, concurrency: Int, seed: inout UInt64, tokens: Int) throws -> Measurement {
        struct Trace {
            var submitted = 0.0
            var first = 0.0
            var last = 0.0
            var count = 0
            /// Arrival time of each token.
            var times: [Double] = []
            var error: String?
        }
        let traces = Mutex<[Int: Trace]>([:])
        let group = DispatchGroup()
        var rng = SeededGenerator(seed: seed)
        seed += 1
        let prompts = (0..<concurrency).map { _ in (0..<promptTokens).map { _ in UInt32(1000 + rng.next() % 40000) } }
        for i in 0..<concurrency {
            let prompt = prompts[i]
            group.enter()
            Thread {
                defer { group.leave() }
                var t = Trace()
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(120))
                    let submit = Submit(
                        requestID: "bench\(i)", prompt: .tokens(prompt),
                        sampling: Sampling(
                            sampler: SamplerParams(), maxTokens: UInt32(tokens), ignoreEndOfGeneration: true))
                    t.submitted = CPUClock.wall()
                    try client.submit(submit) { event in
                        switch event {
                        case .token:
                            let now = CPUClock.wall()
                            if t.count == 0 { t.first = now }
                            t.last = now
                            t.count += 1
                            t.times.append(now)
                        case .error(let e): t.error = e.message
                        case .finished: break
                        }
                    }
                } catch {
                    t.error = "\(error)"
                }
                traces.withLock { $0[i] = t }
            }.start()
        }
        group.wait()
        let all = traces.withLock { Array($0.values) }
        if let e = all.compactMap(\.error).first { throw ValidationError("a benchmark request failed: \(e)") }
        let decoded = all.reduce(0) { $0 + max(0, $1.count - 1) }
        let span = (all.map(\.last).max() ?? 0) - (all.map(\.first).min() ?? 0)
        let per = all.map { $0.last > $0.first ? Double($0.count - 1) / ($0.last - $0.first) : 0 }.sorted()
        let ttft = all.map { $0.first - $0.submitted }.sorted()
        return Measurement(
            aggregate: span > 0 ? Double(decoded) / span : 0, allDecoding: Self.allDecodingRate(all.map(\.times)),
            perSequence: per[per.count / 2],
            ttft: ttft[ttft.count / 2],
            decoded: decoded)
    }

    /// User + system CPU seconds of the cluster's processes so far.
    func cpuSeconds(_ children: [Child]) -> Double {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return children.reduce(0) { sum, c in
            guard let stat = try? String(contentsOfFile: "/proc/\(c.process.processIdentifier)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return sum }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command name: state is field 3; utime and stime are fields 14 and 15.
            guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return sum }
            return sum + (u + s) / ticks
        }
    }

    /// A `/proc/PID/status` memory field (kB) of each process, in MiB.
    func memory(_ children: [Child], field: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for c in children {
            guard
                let status = try? String(
                    contentsOfFile: "/proc/\(c.process.processIdentifier)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
                let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
            else { continue }
            out[c.name] = kb / 1024
        }
        return out
    }
}
