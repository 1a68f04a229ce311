import Foundation
import LlamaModel
import Wire

/// Diagnostics to stderr, one line each, prefixed with the role ("coordinator", "worker w1").
public struct ClusterLog: Sendable {
    public let prefix: String
    public let verbose: Bool
    public let quiet: Bool
    public init(_ prefix: String, verbose: Bool = false, quiet: Bool = false) {
        self.prefix = prefix
        self.verbose = verbose
        self.quiet = quiet
    }
    /// Progress and membership news (silent when quiet).
    public func info(_ s: String) {
        if !quiet { write(s) }
    }
    /// Every dropped frame and admitted request (only when verbose).
    public func debug(_ s: String) {
        if verbose { write(s) }
    }
    /// Failures: always printed.
    public func error(_ s: String) { write(s) }
    /// One line: `[prefix HH:MM:SS.mmm] message` (UTC wall clock, to line up several logs).
    private func write(_ s: String) {
        let now = Date().timeIntervalSince1970
        let day = Int(now) % 86_400
        let stamp = String(format: "%02d:%02d:%02d.%03d", day / 3600, day / 60 % 60, day % 60, Int(now * 1000) % 1000)
        FileHandle.standardError.write(Data("[\(prefix) \(stamp)] \(s)\n".utf8))
    }
}

/// Monotonic time.
public enum Monotonic {
    public static func now() -> ContinuousClock.Instant { ContinuousClock.now }
    public static func microseconds(_ d: Duration) -> UInt64 {
        let (s, attos) = d.components
        return UInt64(max(0, s)) * 1_000_000 + UInt64(max(0, attos / 1_000_000_000_000))
    }
}

/// One factor for the protocol's deadlines (a busy stage's silence, a step's answer, a cache move,
/// a drain), read once from the environment variable `SQUAT_TIME_SCALE` (a whole number 1…1000;
/// 1 when unset). Builds under a sanitizer or valgrind run 5–50 times slower than plain ones and
/// would otherwise take healthy peers inside a long forward pass for dead. Heartbeat intervals are
/// not scaled: they cost nothing and keep detection of a really dead peer fast.
public enum TimeScale {
    public static let factor: Int = parse(ProcessInfo.processInfo.environment["SQUAT_TIME_SCALE"])

    /// The factor `text` names, or 1 when it is missing or not a whole number in 1…1000.
    static func parse(_ text: String?) -> Int {
        guard let text, let n = Int(text.trimmingCharacters(in: .whitespaces)), (1...1000).contains(n) else { return 1 }
        return n
    }

    /// `d` times the factor.
    public static func scaled(_ d: Duration) -> Duration { d * factor }
}

/// Milliseconds since the Unix epoch, for heartbeats.
func unixMilliseconds() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

extension SamplerParams {
    /// The wire form of engine sampling parameters.
    public init(_ p: SamplingParameters) {
        self.init(
            temperature: p.temperature, topK: UInt32(max(0, p.topK)), topP: p.topP, minP: p.minP,
            repetitionPenalty: p.repetitionPenalty, repetitionWindow: UInt32(max(0, p.repetitionWindow)), seed: p.seed)
    }

    /// The engine parameters; wire zeros mean "off" (top-p 1, penalty 1), a zero window the
    /// default 64, an unset seed 0.
    public var engineParameters: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = temperature
        p.topK = Int(topK)
        p.topP = topP == 0 ? 1 : topP
        p.minP = minP
        p.repetitionPenalty = repetitionPenalty == 0 ? 1 : repetitionPenalty
        p.repetitionWindow = repetitionWindow == 0 ? 64 : Int(repetitionWindow)
        p.seed = seed ?? 0
        return p
    }
}

/// Rebuilds streamed text from raw token bytes exactly as `Generator` prints it: whole UTF-8
/// characters only, text that may begin a stop string held back, nothing after a stop.
public struct TextAssembler: Sendable {
    private var pending: [UInt8] = []
    private var stops: StopMatcher
    public private(set) var stopped = false

    public init(stops: [String]) { self.stops = StopMatcher(stops: stops) }

    /// Adds one token's bytes; returns the text now safe to print.
    public mutating func append(_ bytes: [UInt8]) -> String {
        guard !stopped else { return "" }
        pending.append(contentsOf: bytes)
        let keep = StreamingDecoder.incompleteSuffixLength(pending)
        let ready = pending.count - keep
        guard ready > 0 else { return "" }
        let text = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        let (out, hit) = stops.feed(text)
        if hit { stopped = true }
        return out
    }

    /// The text held back, at the end of a generation that did not end on a stop string.
    public mutating func finish() -> String {
        guard !stopped else { return "" }
        let text = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        let (out, hit) = stops.feed(text)
        if hit {
            stopped = true
            return out
        }
        return out + stops.flush()
    }
}
