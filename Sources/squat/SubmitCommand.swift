import ArgumentParser
import Cluster
import Foundation
import LlamaModel
import Wire

/// `squat submit`: send a prompt to a coordinator and stream the answer.
struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Send a prompt to a coordinator; the text streams to stdout.")

    @Option(help: "The coordinator's endpoint.") var coordinator = "tcp://127.0.0.1:5555"
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var sampling: SamplingOptions
    @Flag(help: "Print one JSON event per line instead of text.") var json = false
    @Option(help: "Seconds of silence from the coordinator before giving up.") var timeout: Int = 120
    @OptionGroup var keys: ClientKeyOptions

    func validate() throws {
        guard sampling.maxTokens >= 1 else { throw ValidationError("--max-tokens must be ≥ 1 through the cluster") }
    }

    func run() throws {
        let text = try promptOptions.text()
        let prompt: Prompt
        if promptOptions.chat {
            var messages: [Prompt.Message] = []
            if let system = promptOptions.system { messages.append(Prompt.Message(role: "system", content: system)) }
            messages.append(Prompt.Message(role: "user", content: text))
            prompt = .chat(messages)
        } else {
            prompt = .text(text)
        }
        let submit = Submit(
            requestID: UUID().uuidString, prompt: prompt,
            sampling: Sampling(
                sampler: SamplerParams(sampling.parameters), maxTokens: UInt32(sampling.maxTokens), stop: sampling.stop,
                ignoreEndOfGeneration: sampling.ignoreEos))
        let client = try ClusterClient(endpoint: coordinator, timeout: .seconds(timeout), curve: try keys.keys())
        var printer = EventPrinter(json: json, stops: sampling.stop)
        let finished = try client.submit(submit) { printer.handle($0) }
        try printer.finish(finished)
    }
}

/// Prints a request's events the way `squat generate` prints a generation: the text streamed to
/// stdout, statistics to stderr; or one JSON object per event and line.
struct EventPrinter {
    let json: Bool
    private var assembler: TextAssembler
    private var failure: ErrorReply?
    private let out = FileHandle.standardOutput

    init(json: Bool, stops: [String]) {
        self.json = json
        assembler = TextAssembler(stops: stops)
    }

    mutating func handle(_ event: ClientEvent) {
        switch event {
        case .token(let t):
            if json {
                let piece = String(decoding: t.piece, as: UTF8.self)
                write(
                    jsonLine([
                        "event": "token", "index": Int(t.index), "token_id": Int(t.tokenID), "piece": piece,
                        "logprob": Double(t.logprob),
                    ]))
            } else {
                out.write(Data(assembler.append(t.piece).utf8))
            }
        case .finished(let f):
            if json {
                write(
                    jsonLine([
                        "event": "finished", "reason": f.reason.generateName,
                        "prompt_tokens": Int(f.usage.promptTokens),
                        "completion_tokens": Int(f.usage.completionTokens),
                        "prefill_us": Int(f.timings.prefillMicroseconds),
                        "decode_us": Int(f.timings.decodeMicroseconds), "total_us": Int(f.timings.totalMicroseconds),
                    ]))
            } else if f.reason != .stopString {
                out.write(Data(assembler.finish().utf8))
            }
        case .error(let e):
            failure = e
            if json { write(jsonLine(["event": "error", "code": "\(e.code)", "message": e.message])) }
        }
    }

    /// The statistics line (text mode) and the exit status: 1 after an error.
    func finish(_ finished: Finished?) throws {
        if let f = finished, !json {
            let prefill = Double(f.timings.prefillMicroseconds) / 1e6
            let decode = Double(f.timings.decodeMicroseconds) / 1e6
            let generated = Int(f.usage.completionTokens)
            StandardError.write(
                String(
                    format: "\n[%d prompt tokens, prefill %.1f tok/s; %d generated, decode %.1f tok/s; finish: %@]\n",
                    Int(f.usage.promptTokens), prefill > 0 ? Double(f.usage.promptTokens) / prefill : 0, generated,
                    decode > 0 ? Double(max(generated - 1, 0)) / decode : 0, f.reason.generateName))
        }
        if let failure {
            StandardError.write("error (\(failure.code)): \(failure.message)\n")
            throw ExitCode(1)
        }
    }

    private func write(_ line: String) { out.write(Data((line + "\n").utf8)) }

    private func jsonLine(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// `squat drain`: move a worker's layers to the others, then let it go.
struct DrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Move a worker's layers to the other workers, then let it exit.")

    @Option(help: "The coordinator's endpoint.") var coordinator = "tcp://127.0.0.1:5555"
    @Argument(help: "The worker's id (as `squat status` lists it).") var worker: String
    @OptionGroup var keys: ClientKeyOptions

    func run() throws {
        let client = try ClusterClient(endpoint: coordinator, timeout: .seconds(5), curve: try keys.keys())
        let s = try client.drain(workerID: worker)
        print("draining \(worker); epoch \(s.epoch), \(s.workers.count) worker(s) known")
    }
}

/// `squat status`: the cluster as the coordinator sees it.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print the coordinator's workers, layer ranges and live sequences.")

    @Option(help: "The coordinator's endpoint.") var coordinator = "tcp://127.0.0.1:5555"
    @OptionGroup var keys: ClientKeyOptions

    func run() throws {
        let client = try ClusterClient(endpoint: coordinator, timeout: .seconds(5), curve: try keys.keys())
        let s = try client.status()
        print(
            "epoch \(s.epoch), model \(s.modelFingerprint), dropped: \(s.droppedStale) stale, \(s.droppedMalformed) malformed"
        )
        print(
            "security \(s.security): \(s.authRejections) connection(s) refused by the key check, \(s.unauthorizedMessages) message(s) refused by role"
        )
        let p = s.pipeline
        print(
            p.holdReason.isEmpty
                ? "serving: \(p.maxInFlight) micro-batch(es) in flight at most" : "NOT serving: \(p.holdReason)")
        print(
            "re-plans \(p.replans), tokens replayed \(p.tokensReplayed), micro-batches \(p.microBatches), tokens out \(p.tokensOut)"
        )
        print(
            "caches moved in \(p.cacheMigrations) re-plan(s): \(p.cacheLayersShipped) layer cache(s), \(p.cacheBytesShipped) bytes; \(p.cacheFallbacks) fell back to replay"
        )
        var rows = [["WORKER", "LAYERS", "STATE", "CACHE", "KV USED", "KV FREE", "TOK/S", "STALE", "DATA ENDPOINT"]]
        func row(_ w: WorkerStatus, state: String) -> [String] {
            [
                w.workerID, w.layers.end > w.layers.start ? "[\(w.layers.start),\(w.layers.end))" : "-", state,
                w.cache.isEmpty ? "-" : w.cache,
                Self.bytes(w.kvBytesUsed), Self.bytes(w.kvBytesFree), String(format: "%.1f", w.tokensPerSecond),
                "\(w.droppedStale)", w.dataEndpoint,
            ]
        }
        for w in s.workers { rows.append(row(w, state: WorkerState.names[w.state.rawValue] ?? "\(w.state.rawValue)")) }
        for w in s.lostWorkers { rows.append(row(w, state: "LOST")) }
        print(Self.table(rows), terminator: "")
        print("\(s.sequences.count) live sequence(s)")
        if !s.sequences.isEmpty {
            var seqs = [["REQUEST", "SEQ", "STATE", "PROMPT", "GENERATED"]]
            for q in s.sequences {
                seqs.append([
                    q.requestID, "\(q.sequenceID)", SequenceState.names[q.state.rawValue] ?? "\(q.state.rawValue)",
                    "\(q.promptTokens)", "\(q.generatedTokens)",
                ])
            }
            print(Self.table(seqs), terminator: "")
        }
    }

    /// Rows as left-aligned columns two spaces apart (cells hold no tabs; the first three
    /// columns never hold spaces, for scripts that split on whitespace).
    static func table(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.map { r in
            r.enumerated().map { c, cell in
                c == r.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count + 2)
            }.joined() + "\n"
        }.joined()
    }

    /// Bytes in binary units: 0 B, 812 KiB, 1.4 MiB, 2.0 GiB.
    static func bytes(_ n: UInt64) -> String {
        let d = Double(n)
        if n < 1024 { return "\(n) B" }
        if d < 1_048_576 { return String(format: "%.0f KiB", d / 1024) }
        if d < 1_073_741_824 { return String(format: "%.1f MiB", d / 1_048_576) }
        return String(format: "%.1f GiB", d / 1_073_741_824)
    }
}
