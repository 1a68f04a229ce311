import FuzzSupport
import Testing

@testable import Wire

// Fuzz: protobuf-c unpack of the `Envelope` and every body type, through `WireMessage.decode`
// (C unpack, then the Swift conversion of Codec*.swift). 100,000 seeded inputs per body type
// (18 types: 1,800,000 frames): 90% mutations of that type's valid envelopes, 10% random bytes
// behind that type's envelope field; plus 100,000 unstructured frames (random bytes, random
// versions and fields, mutations of any type). Each input must decode to a message or a typed
// `WireError`, and a decoded message must re-encode to a fixed point.
@Suite("Fuzz: WireMessage.decode", .timeLimit(.minutes(10)))
struct FuzzTests {
    static let inputsPerType = 100_000

    /// An `Envelope` body: its proto name and field number in `squat.v1.Envelope`.
    struct BodyType: Sendable, CustomStringConvertible {
        let name: String
        let field: UInt8
        var description: String { name }
    }

    static let bodyTypes: [BodyType] = [
        ("Submit", 10), ("TokenEvent", 11), ("Finished", 12), ("Error", 13), ("Cancel", 14), ("StatusRequest", 15),
        ("Status", 16), ("DrainRequest", 17), ("Register", 20), ("RegisterReply", 21), ("Refuse", 22),
        ("Assign", 23), ("Heartbeat", 24), ("ReleaseSequence", 25), ("Drain", 26), ("ExportCaches", 27),
        ("CacheLayer", 28), ("CachesImported", 29), ("StepBatch", 30),
        ("Activations", 31), ("SampledTokens", 32),
    ].map { BodyType(name: "squat.v1.\($0.0)", field: $0.1) }

    /// One decode: a message (which must then re-encode to a stable byte string) or a typed
    /// error. `decode` is `throws(WireError)`, so no other error type can come out; the test is
    /// that nothing crashes, asserts or leaks past the API.
    static func exercise(_ bytes: [UInt8], expecting type: String?, maxSize: Int, _ tally: inout FuzzTally) {
        do {
            let message = try WireMessage.decode(bytes, maxSize: maxSize)
            consume(message)
            // A decoded message re-encodes, and that encoding is a fixed point (byte equality, so
            // NaN floats from random bits compare fine).
            do {
                let once = try message.encoded()
                let twice = try WireMessage.decode(once).encoded()
                if once != twice { tally.note("unstable") }
            } catch {
                tally.note("unstable")
            }
            if type == nil || message.name == type {
                tally.record("decoded")
            } else {
                tally.record("decoded as another type")
            }
        } catch {
            tally.record(errorKind(error))
        }
    }

    @Test(
        "100,000 seeded random and mutated frames per body type decode to that message or a typed error",
        arguments: bodyTypes)
    func perType(_ type: BodyType) async throws {
        let all = try fuzzSeedMessages().map { try $0.encoded() }
        let seeds = try fuzzSeedMessages().filter { $0.name == type.name }.map { try $0.encoded() }
        try #require(!seeds.isEmpty, "no sample message of \(type)")
        var rng = SplitMix64(seed: 0x5_1CE_5EED ^ UInt64(type.field) << 32)
        let tally = await runFuzzer("WireMessage.decode \(type.name)", inputs: Self.inputsPerType) { i, tally in
            let bytes: [UInt8]
            if i % 10 == 0 {
                // Random body bytes behind a valid version and this type's field.
                let body = Mutator.random(Int.random(in: 0...200, using: &rng), using: &rng)
                let length = Bool.random(using: &rng) ? UInt64(body.count) : UInt64.random(in: 0...300, using: &rng)
                bytes = [0x08, 0x01, type.field << 3 | 2] + Mutator.varint(length) + body
            } else {
                let seed = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
                // Donors: mostly this type's encodings, sometimes any type's.
                bytes = Mutator.mutated(seed, donors: i % 4 == 0 ? all : seeds, using: &rng)
            }
            // 1%: a size limit below the frame's size.
            let maxSize = i % 100 == 1 ? Int.random(in: 0...bytes.count, using: &rng) : WireMessage.defaultMaxSize
            Self.exercise(bytes, expecting: type.name, maxSize: maxSize, &tally)
        }
        #expect(tally.inputs == Self.inputsPerType)
        #expect(tally["unstable"] == 0, "\(tally)")
        // Both outcomes must actually occur, or the fuzzer is not reaching the decoder.
        #expect(tally["decoded"] > 5_000, "\(tally)")
        #expect(tally["malformedFrame"] > 5_000, "\(tally)")
        #expect(tally.count { $0.hasPrefix("other") } == 0, "\(tally)")
    }

    @Test("100,000 unstructured frames (random bytes, versions, fields) decode to a message or a typed error")
    func unstructured() async throws {
        let all = try fuzzSeedMessages().map { try $0.encoded() }
        var rng = SplitMix64(seed: 0xF0F0_5EED)
        let tally = await runFuzzer("WireMessage.decode unstructured", inputs: Self.inputsPerType) { i, tally in
            var bytes: [UInt8]
            switch i % 4 {
            case 0:  // random bytes
                bytes = Mutator.random(Int.random(in: 0...300, using: &rng), using: &rng)
            case 1:  // a random version and field number (known, unknown, the version's own)
                let field = UInt64.random(in: 1...40, using: &rng)
                let wireType = UInt64.random(in: 0...7, using: &rng)
                var w = ProtoWriter()
                w.uint(1, Bool.random(using: &rng) ? 1 : UInt64.random(in: 0...3, using: &rng))
                w.tag(field, wireType: wireType)
                bytes = w.bytes + Mutator.random(Int.random(in: 0...60, using: &rng), using: &rng)
            case 2:  // a valid envelope of another type's body behind some field
                bytes = all[Int.random(in: 0..<all.count, using: &rng)]
                Mutator.mutate(&bytes, donors: all, using: &rng)
                bytes = ProtoWriter.envelope(field: UInt64.random(in: 10...32, using: &rng), body: bytes)
            default:  // two envelopes concatenated (proto merges them), mutated
                bytes =
                    all[Int.random(in: 0..<all.count, using: &rng)]
                    + all[Int.random(in: 0..<all.count, using: &rng)]
                bytes = Mutator.mutated(bytes, donors: all, using: &rng)
            }
            Self.exercise(bytes, expecting: nil, maxSize: WireMessage.defaultMaxSize, &tally)
        }
        #expect(tally.inputs == Self.inputsPerType)
        #expect(tally["unstable"] == 0, "\(tally)")
        #expect(tally["decoded"] > 1_000, "\(tally)")
        #expect(tally["malformedFrame"] > 10_000, "\(tally)")
        #expect(tally["unsupportedVersion"] > 0 && tally["unknownMessageType"] > 0, "\(tally)")
        #expect(tally.count { $0.hasPrefix("other") } == 0, "\(tally)")
    }

    /// Found by this fuzzer: `PipelineStats.meanHopMicroseconds` summed `stage_busy_us` in UInt64
    /// and trapped on overflow for a `Status` whose stage times add up past 2^64.
    @Test("regression: a Status whose stage times overflow UInt64 gives a finite mean hop time")
    func stageTimesOverflow() throws {
        var stats = ProtoWriter()
        stats.uint(1, 1)  // micro_batches
        for value in [UInt64.max, UInt64.max, 1] { stats.uint(6, value) }  // stage_busy_us, unpacked
        var status = ProtoWriter()
        status.lengthDelimited(7, stats.bytes)  // pipeline
        guard case .status(let decoded) = try WireMessage.decode(ProtoWriter.envelope(field: 16, body: status.bytes))
        else {
            Issue.record("not decoded as a Status")
            return
        }
        #expect(decoded.pipeline.stageBusyMicroseconds == [.max, .max, 1])
        let hop = decoded.pipeline.meanHopMicroseconds
        #expect(hop == 0)
    }

    @Test("every body type has sample messages")
    func samplesCoverEveryType() {
        let names = Set(fuzzSeedMessages().map(\.name))
        #expect(names == Set(Self.bodyTypes.map(\.name)))
    }
}
