import Foundation
import Synchronization

// What the fuzz tests of every test target share: the outcome tally, the runner that times
// and reports a fuzzer, and the switch for Swift Testing's per-throw backtraces (one
// process-wide count of running fuzzers, hence a module of its own rather than a copy per
// test target).

/// What a fuzzer saw: the number of inputs run, how many ended in each outcome (one per input),
/// and notes (observations about some inputs, such as what a parsed file went on to give).
public struct FuzzTally: CustomStringConvertible {
    public private(set) var inputs = 0
    public private(set) var outcomes: [String: Int] = [:]
    public private(set) var notes: [String: Int] = [:]
    /// The slowest single input, in seconds, and its index.
    public private(set) var slowest: (seconds: Double, index: Int) = (0, -1)

    public init() {}

    /// The outcome of one input.
    public mutating func record(_ outcome: String) {
        inputs += 1
        outcomes[outcome, default: 0] += 1
    }

    /// An observation about the current input (not an outcome: inputs are not counted).
    public mutating func note(_ observation: String) {
        notes[observation, default: 0] += 1
    }

    /// Runs one input, keeping the slowest time (a hang shows as the test's time limit; a
    /// pathological slowdown as this).
    public mutating func timed(_ index: Int, _ body: (inout FuzzTally) -> Void) {
        let start = ContinuousClock.now
        body(&self)
        let seconds = durationSeconds(ContinuousClock.now - start)
        if seconds > slowest.seconds { slowest = (seconds, index) }
    }

    /// The number of inputs whose outcome satisfies `predicate`.
    public func count(where predicate: (String) -> Bool) -> Int {
        outcomes.filter { predicate($0.key) }.values.reduce(0, +)
    }

    /// The inputs with this outcome, or the count of this note.
    public subscript(_ key: String) -> Int { outcomes[key, default: 0] + notes[key, default: 0] }

    public var description: String {
        var text = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        if !notes.isEmpty {
            text +=
                "; notes: " + notes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        if slowest.index >= 0 {
            text += String(format: "; slowest input %.1f ms (#%d)", slowest.seconds * 1e3, slowest.index)
        }
        return text
    }
}

public func durationSeconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Runs `body` on inputs `0..<inputs`, prints one line with the decoder, the inputs, the
/// outcomes, the wall time and the CPU time (which other load on the machine does not
/// inflate): the numbers the CI log keeps for each fuzzer. Returns the tally.
///
/// Inputs run in chunks of `chunk`, with a `Task.yield()` between chunks: a test that holds a
/// thread of Swift Testing's pool (two on a 2-core machine) for seconds would otherwise starve
/// the tests queued behind it into their time limits. Swift Testing's backtrace of every thrown
/// error is off meanwhile (see `ThrowBacktraces`).
public func runFuzzer(
    _ decoder: String, inputs: Int, chunk: Int = 2_000, _ body: (_ index: Int, inout FuzzTally) -> Void
) async -> FuzzTally {
    var tally = FuzzTally()
    ThrowBacktraces.suspend()
    var cpu = 0.0
    let start = ContinuousClock.now
    for first in stride(from: 0, to: inputs, by: chunk) {
        let cpuStart = threadCPUSeconds()  // one chunk runs on one thread
        for index in first..<min(inputs, first + chunk) { body(index, &tally) }
        cpu += threadCPUSeconds() - cpuStart
        await Task.yield()
    }
    let elapsed = ContinuousClock.now - start
    ThrowBacktraces.resume()
    let times = String(format: "%.2f s (CPU %.2f s)", durationSeconds(elapsed), cpu)
    print("fuzz \(decoder): \(tally.inputs) inputs in \(times): \(tally)")
    return tally
}

/// The CPU time of the calling thread, in seconds.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Swift Testing hooks `swift_willThrow` to record a backtrace of every error thrown (for its
/// reports), about 10 µs a throw here: more than most decoders take to reject an input, so it
/// would dominate the fuzzers. `suspend()` clears the Swift runtime's two hooks (untyped and
/// typed throws) while any fuzzer runs and `resume()` puts them back after the last one; tests
/// running meanwhile only lose those backtraces. If the runtime's symbols are not found,
/// nothing changes but the speed.
public enum ThrowBacktraces {
    private struct State {
        var depth = 0
        var saved: [UInt] = []
    }
    private static let state = Mutex(State())

    /// The Swift runtime's hook variables: `_swift_willThrow`, `_swift_willThrowTypedImpl`.
    private static func hooks() -> [UnsafeMutablePointer<UInt>] {
        let names: [String] = ["_swift_willThrow", "_swift_willThrowTypedImpl"]
        return names.compactMap { name in
            dlsym(UnsafeMutableRawPointer(bitPattern: 0), name)?.assumingMemoryBound(to: UInt.self)
        }
    }

    public static func suspend() {
        state.withLock { state in
            state.depth += 1
            guard state.depth == 1 else { return }
            let hooks = hooks()
            state.saved = hooks.map { $0.pointee }
            for hook in hooks { hook.pointee = 0 }
        }
    }

    public static func resume() {
        state.withLock { state in
            state.depth -= 1
            guard state.depth == 0 else { return }
            for (hook, saved) in zip(hooks(), state.saved) { hook.pointee = saved }
        }
    }
}
