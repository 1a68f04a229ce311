import Foundation
import Synchronization

@testable import LlamaModel

// Shared by the file and tokenizer fuzzers of this target (the wire fuzzers have their own
// copy in WireTests/FuzzSupport.swift: test targets cannot share sources).

/// Byte-level mutations for file formats: bit flips, byte replacements, insertions, deletions,
/// truncations, little-endian "interesting" integers written over 1, 2, 4 or 8 bytes (lengths,
/// counts, type ids, offsets), repeated slices and splices of other valid files, and, for text
/// formats, tokens from a dictionary (JSON punctuation, literals, numbers at the edges) inserted,
/// written over the text, or put in place of a whole number.
enum FileMutator {
    /// Values that sit at the edges of the parsers' checks.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 16, 31, 32, 64, 127, 128, 255, 256, 1023, 4096, 65535, 65536,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 40, (1 << 40) + 1, 1 << 62, 0x7FFF_FFFF_FFFF_FFFF,
        0x8000_0000_0000_0000, .max, .max - 1,
    ]

    /// `seed` after 1 to 4 mutations (mostly one, so that many inputs still parse).
    static func mutated(
        _ seed: [UInt8], donors: [[UInt8]], dictionary: [[UInt8]] = [], using rng: inout SeededRandom
    ) -> [UInt8] {
        var bytes = seed
        let rounds = [1, 1, 1, 1, 2, 3, 4].randomElement(using: &rng) ?? 1
        for _ in 0..<rounds { mutate(&bytes, donors: donors, dictionary: dictionary, using: &rng) }
        return bytes
    }

    static func mutate(_ bytes: inout [UInt8], donors: [[UInt8]], dictionary: [[UInt8]], using rng: inout SeededRandom)
    {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<(dictionary.isEmpty ? 9 : 14), using: &rng) {
        case 0 where !bytes.isEmpty:  // flip one bit
            bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1 where !bytes.isEmpty:  // replace a byte
            bytes[position] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // insert a byte
            bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
        case 3 where !bytes.isEmpty:  // delete a run of bytes
            bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...8, using: &rng)))
        case 4:  // truncate
            bytes = Array(bytes.prefix(position))
        case 5,
            6 where !bytes.isEmpty:  // an interesting little-endian integer over 1, 2, 4 or 8 bytes
            let width = [1, 2, 4, 8, 8, 8].randomElement(using: &rng) ?? 8
            var value = interesting.randomElement(using: &rng) ?? 0
            if Bool.random(using: &rng) { value = value &+ UInt64(bytes.count) }  // near the file size
            for k in 0..<width where position + k < bytes.count {
                bytes[position + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))
            }
        case 7 where !bytes.isEmpty:  // repeat a slice
            let end = min(bytes.count, position + Int.random(in: 1...64, using: &rng))
            bytes.insert(contentsOf: bytes[position..<end], at: end)
        case 12, 13:  // a whole number in the text (a run of digits) replaced by a dictionary number
            let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
            guard let start = bytes[position...].firstIndex(where: { digits.contains($0) }) else { return }
            let end = bytes[start...].firstIndex { !digits.contains($0) } ?? bytes.count
            let numbers = dictionary.filter { $0.first.map { digits.contains($0) || $0 == UInt8(ascii: "-") } ?? false }
            bytes.replaceSubrange(start..<end, with: numbers.randomElement(using: &rng) ?? [])
        case 9, 10, 11:  // a dictionary token, inserted or written over
            let token = dictionary.randomElement(using: &rng) ?? []
            if Bool.random(using: &rng) || bytes.isEmpty {
                bytes.insert(contentsOf: token, at: position)
            } else {
                bytes.replaceSubrange(position..<min(bytes.count, position + token.count), with: token)
            }
        default:  // splice in a slice of another valid input
            guard let other = donors.randomElement(using: &rng), !other.isEmpty else { return }
            let start = Int.random(in: 0..<other.count, using: &rng)
            let end = min(other.count, start + Int.random(in: 1...256, using: &rng))
            bytes.insert(contentsOf: other[start..<end], at: position)
        }
    }

    /// `count` random bytes.
    static func random(_ count: Int, using rng: inout SeededRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// JSON punctuation, literals, escapes and numbers at the edges of Int, Int32 and Double.
    static let jsonDictionary: [[UInt8]] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud83d", "\\udc00", "\\u0000", "null", "true", "false",
        "0", "-1", "1e3", "1.5", "-0", "1e309", "-1e309", "1000000000", "2147483646", "2147483647", "2147483648",
        "4294967296",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "1e-400", "0.0000001", " ", "\n", "[[[[[[[[", "]]]]]]]]", "{\"a\":", "\"\":", "é", "\u{FFFD}", "\u{0}",
    ].map { Array($0.utf8) }
}

/// What a fuzzer saw: the number of inputs run, how many ended in each outcome (one per input),
/// and notes (observations about some inputs, such as what a parsed file went on to give).
struct FuzzTally: CustomStringConvertible {
    private(set) var inputs = 0
    private(set) var outcomes: [String: Int] = [:]
    private(set) var notes: [String: Int] = [:]
    /// The slowest single input, in seconds, and its index.
    private(set) var slowest: (seconds: Double, index: Int) = (0, -1)

    /// The outcome of one input.
    mutating func record(_ outcome: String) {
        inputs += 1
        outcomes[outcome, default: 0] += 1
    }

    /// An observation about the current input (not an outcome: inputs are not counted).
    mutating func note(_ observation: String) {
        notes[observation, default: 0] += 1
    }

    /// Runs one input, keeping the slowest time (a hang shows as the test's time limit; a
    /// pathological slowdown as this).
    mutating func timed(_ index: Int, _ body: (inout FuzzTally) -> Void) {
        let start = ContinuousClock.now
        body(&self)
        let seconds = durationSeconds(ContinuousClock.now - start)
        if seconds > slowest.seconds { slowest = (seconds, index) }
    }

    /// The inputs with this outcome, or the count of this note.
    subscript(_ key: String) -> Int { outcomes[key, default: 0] + notes[key, default: 0] }

    var description: String {
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

func durationSeconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Runs `body`, prints one line with the decoder, the inputs, the outcomes and the wall time
/// (the numbers the CI log keeps for each fuzzer), and returns the tally. Swift Testing's
/// backtrace of every thrown error is off meanwhile (see `ThrowBacktraces`).
func runFuzzer(_ decoder: String, _ body: (inout FuzzTally) -> Void) -> FuzzTally {
    var tally = FuzzTally()
    ThrowBacktraces.suspend()
    let elapsed = ContinuousClock().measure { body(&tally) }
    ThrowBacktraces.resume()
    print("fuzz \(decoder): \(tally.inputs) inputs in \(String(format: "%.2f", durationSeconds(elapsed))) s: \(tally)")
    return tally
}

/// Swift Testing hooks `swift_willThrow` to record a backtrace of every error thrown (for its
/// reports), about 10 µs a throw here: more than most decoders take to reject an input, so it
/// would dominate the fuzzers. `suspend()` clears the Swift runtime's two hooks (untyped and
/// typed throws) while any fuzzer runs and `resume()` puts them back after the last one; tests
/// running meanwhile only lose those backtraces. If the runtime's symbols are not found,
/// nothing changes but the speed.
enum ThrowBacktraces {
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

    static func suspend() {
        state.withLock { state in
            state.depth += 1
            guard state.depth == 1 else { return }
            let hooks = hooks()
            state.saved = hooks.map { $0.pointee }
            for hook in hooks { hook.pointee = 0 }
        }
    }

    static func resume() {
        state.withLock { state in
            state.depth -= 1
            guard state.depth == 0 else { return }
            for (hook, saved) in zip(hooks(), state.saved) { hook.pointee = saved }
        }
    }
}
