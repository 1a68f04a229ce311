import Testing

@testable import Wire

@Suite("Decoder robustness", .timeLimit(.minutes(1)))
struct FuzzTests {
    /// One decode: a message (which must then re-encode to a stable byte string) or a typed
    /// error. `decode` is `throws(WireError)`, so no other error type can come out; the test is
    /// that nothing crashes, asserts or leaks past the API.
    private static func exercise(_ bytes: [UInt8], _ tally: inout Tally) {
        do {
            let message = try WireMessage.decode(bytes)
            tally.decoded += 1
            tally.types.insert(message.name)
            // A decoded message re-encodes, and that encoding is a fixed point (byte equality, so
            // NaN floats from random bits compare fine).
            do {
                let once = try message.encoded()
                let twice = try WireMessage.decode(once).encoded()
                if once != twice { tally.unstable += 1 }
            } catch {
                tally.unstable += 1
            }
        } catch {
            tally.errors[errorKind(error), default: 0] += 1
        }
    }

    private struct Tally {
        var decoded = 0
        var unstable = 0
        var types: Set<String> = []
        var errors: [String: Int] = [:]
        var total: Int { decoded + errors.values.reduce(0, +) }
    }

    private static func errorKind(_ error: WireError) -> String {
        switch error {
        case .malformedFrame: "malformedFrame"
        case .unsupportedVersion: "unsupportedVersion"
        case .unknownMessageType: "unknownMessageType"
        case .missingField: "missingField"
        case .invalidField: "invalidField"
        case .frameTooLarge: "frameTooLarge"
        default: "other: \(error)"
        }
    }

    @Test("20,000 seeded random and mutated frames decode to a message or a typed error")
    func fuzz() {
        var rng = SplitMix64(seed: 0x5_1ce_5eed)
        var tally = Tally()
        let seeds = sampleMessages().compactMap { try? $0.encoded() }
        #expect(seeds.count == sampleMessages().count)

        // 8,000 random byte strings, half of them behind a valid version field so that the body
        // parser gets exercised rather than only the version check.
        for i in 0..<8_000 {
            let count = Int.random(in: 0...200, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if i % 2 == 0 {
                let field = UInt8(
                    [10, 11, 12, 13, 14, 15, 16, 20, 21, 22, 23, 24, 25, 26, 30, 31, 32].randomElement(using: &rng)
                        ?? 10)
                bytes = [0x08, 0x01, field << 3 | 2, UInt8(min(count, 127))] + bytes
            }
            Self.exercise(bytes, &tally)
        }
        // 12,000 mutations of valid frames: flips, insertions, deletions, truncations, splices.
        for _ in 0..<12_000 {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            // Mostly one mutation, so that many frames still parse and reach the Swift conversion.
            let rounds = [1, 1, 1, 1, 2, 3, 4].randomElement(using: &rng) ?? 1
            for _ in 0..<rounds {
                Self.mutate(&bytes, seeds: seeds, using: &rng)
            }
            Self.exercise(bytes, &tally)
        }

        #expect(tally.total == 20_000)
        #expect(tally.unstable == 0)
        // Both outcomes must actually occur, or the fuzzer is not reaching the decoder.
        #expect(tally.decoded > 800, "decoded: \(tally.decoded), errors: \(tally.errors)")
        #expect(tally.errors["malformedFrame", default: 0] > 1_000, "errors: \(tally.errors)")
        #expect(tally.types.count >= 15, "types reached: \(tally.types.sorted())")
        #expect(tally.errors.keys.allSatisfy { !$0.hasPrefix("other") }, "errors: \(tally.errors)")
    }

    private static func mutate(_ bytes: inout [UInt8], seeds: [[UInt8]], using rng: inout SplitMix64) {
        let choice = Int.random(in: 0..<7, using: &rng)
        let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        switch choice {
        case 0 where !bytes.isEmpty:  // flip one bit
            bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1 where !bytes.isEmpty:  // replace a byte
            bytes[position] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // insert a byte
            bytes.insert(UInt8.random(in: 0...255, using: &rng), at: min(position, bytes.count))
        case 3 where !bytes.isEmpty:  // delete a byte
            bytes.remove(at: position)
        case 4:  // truncate
            bytes = Array(bytes.prefix(position))
        case 5 where !bytes.isEmpty:  // a varint-breaking run of 0xFF
            let end = min(bytes.count, position + Int.random(in: 1...10, using: &rng))
            for i in position..<end { bytes[i] = 0xFF }
        default:  // splice in a slice of another frame
            guard let other = seeds.randomElement(using: &rng), !other.isEmpty else { return }
            let start = Int.random(in: 0..<other.count, using: &rng)
            let end = Int.random(in: start...other.count, using: &rng)
            bytes.insert(contentsOf: other[start..<end], at: min(position, bytes.count))
        }
    }
}
