import CProtobufC
import FuzzSupport
import SquatProto
import Testing

@testable import Wire

// Fuzz: each generated protobuf-c `squat__v1__*__unpack` called directly on its own message
// type (36 types; the Envelope's own unpack is what `WireMessage.decode` calls, see
// FuzzTests), then the Swift conversion of that type (`CMirror.init(c:)`). 100,000 seeded
// inputs per type (3,600,000 in all): 90% mutations of the type's valid encodings, 10% random
// bytes. Each input must unpack to a value (which then re-encodes to a fixed point), be
// refused by protobuf-c, or be a typed `WireError` from the conversion.
@Suite("Fuzz: protobuf-c unpack of each message type", .timeLimit(.minutes(10)))
struct UnpackFuzzTests {
    static let inputsPerType = 100_000

    /// One message type: its proto name, and a run of its unpack + conversion on some bytes,
    /// giving the outcome.
    struct Target {
        let name: String
        let run: ([UInt8], inout FuzzTally) -> Void
    }

    /// The packed bytes of `value` as a standalone message (not inside an Envelope).
    static func encode<M: CMirror>(_ value: M) throws(WireError) -> [UInt8] {
        let arena = Arena()
        let c = try arena.message(value)
        return withExtendedLifetime(arena) {
            let message = UnsafeMutableRawPointer(c).assumingMemoryBound(to: ProtobufCMessage.self)
            var bytes = [UInt8](repeating: 0, count: protobuf_c_message_get_packed_size(message))
            _ = bytes.withUnsafeMutableBufferPointer { protobuf_c_message_pack(message, $0.baseAddress) }
            return bytes
        }
    }

    /// Unpacks `bytes` with `unpack` and converts the result; nil when protobuf-c refuses them.
    static func decode<M: CMirror>(
        _ bytes: [UInt8],
        _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<M.C>?,
        _ free: (UnsafeMutablePointer<M.C>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void
    ) throws(WireError) -> M? {
        var empty: UInt8 = 0
        let c = bytes.withUnsafeBufferPointer { buffer in
            withUnsafePointer(to: &empty) { unpack(nil, buffer.count, buffer.baseAddress ?? $0) }
        }
        guard let c else { return nil }
        defer { free(c, nil) }
        return try M(c: c.pointee)
    }

    static func target<M: CMirror>(
        _: M.Type,
        _ unpack:
            @escaping (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<
                M.C
            >?,
        _ free: @escaping (UnsafeMutablePointer<M.C>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void
    ) -> Target {
        Target(name: M.protoName) { bytes, tally in
            do throws(WireError) {
                guard let value: M = try decode(bytes, unpack, free) else {
                    tally.record("malformed")
                    return
                }
                // The value re-encodes, and that encoding is a fixed point.
                let once = try encode(value)
                let again: M? = try decode(once, unpack, free)
                if let again {
                    if try encode(again) != once { tally.note("unstable") }
                } else {
                    tally.note("unstable")
                }
                tally.record("decoded")
            } catch {
                tally.record(errorKind(error))
            }
        }
    }

    /// Every message type of proto/squat/v1 but the Envelope, with its generated unpack.
    static func allTargets() -> [Target] {
        [
            target(Prompt.Message.self, squat__v1__chat_message__unpack, squat__v1__chat_message__free_unpacked),
            target(ChatMessages.self, squat__v1__chat_messages__unpack, squat__v1__chat_messages__free_unpacked),
            target(TokenIDs.self, squat__v1__token_ids__unpack, squat__v1__token_ids__free_unpacked),
            target(Sampling.self, squat__v1__sampling__unpack, squat__v1__sampling__free_unpacked),
            target(CacheOptions.self, squat__v1__cache_options__unpack, squat__v1__cache_options__free_unpacked),
            target(Submit.self, squat__v1__submit__unpack, squat__v1__submit__free_unpacked),
            target(TokenEvent.self, squat__v1__token_event__unpack, squat__v1__token_event__free_unpacked),
            target(Usage.self, squat__v1__usage__unpack, squat__v1__usage__free_unpacked),
            target(Timings.self, squat__v1__timings__unpack, squat__v1__timings__free_unpacked),
            target(Finished.self, squat__v1__finished__unpack, squat__v1__finished__free_unpacked),
            target(ErrorReply.self, squat__v1__error__unpack, squat__v1__error__free_unpacked),
            target(Cancel.self, squat__v1__cancel__unpack, squat__v1__cancel__free_unpacked),
            target(DrainRequest.self, squat__v1__drain_request__unpack, squat__v1__drain_request__free_unpacked),
            target(StatusRequest.self, squat__v1__status_request__unpack, squat__v1__status_request__free_unpacked),
            target(WorkerStatus.self, squat__v1__worker_status__unpack, squat__v1__worker_status__free_unpacked),
            target(SequenceStatus.self, squat__v1__sequence_status__unpack, squat__v1__sequence_status__free_unpacked),
            target(PipelineStats.self, squat__v1__pipeline_stats__unpack, squat__v1__pipeline_stats__free_unpacked),
            target(Status.self, squat__v1__status__unpack, squat__v1__status__free_unpacked),
            target(RowSampling.self, squat__v1__row_sampling__unpack, squat__v1__row_sampling__free_unpacked),
            target(BatchRow.self, squat__v1__batch_row__unpack, squat__v1__batch_row__free_unpacked),
            target(StepBatch.self, squat__v1__step_batch__unpack, squat__v1__step_batch__free_unpacked),
            target(Activations.self, squat__v1__activations__unpack, squat__v1__activations__free_unpacked),
            target(SampledToken.self, squat__v1__sampled_token__unpack, squat__v1__sampled_token__free_unpacked),
            target(SampledTokens.self, squat__v1__sampled_tokens__unpack, squat__v1__sampled_tokens__free_unpacked),
            target(SamplerParams.self, squat__v1__sampler_params__unpack, squat__v1__sampler_params__free_unpacked),
            target(LayerRange.self, squat__v1__layer_range__unpack, squat__v1__layer_range__free_unpacked),
            target(CacheConfig.self, squat__v1__cache_config__unpack, squat__v1__cache_config__free_unpacked),
            target(TensorHeader.self, squat__v1__tensor_header__unpack, squat__v1__tensor_header__free_unpacked),
            target(Register.self, squat__v1__register__unpack, squat__v1__register__free_unpacked),
            target(RegisterReply.self, squat__v1__register_reply__unpack, squat__v1__register_reply__free_unpacked),
            target(Refuse.self, squat__v1__refuse__unpack, squat__v1__refuse__free_unpacked),
            target(Assign.self, squat__v1__assign__unpack, squat__v1__assign__free_unpacked),
            target(ExportCaches.self, squat__v1__export_caches__unpack, squat__v1__export_caches__free_unpacked),
            target(CacheLayer.self, squat__v1__cache_layer__unpack, squat__v1__cache_layer__free_unpacked),
            target(
                CachesImported.self, squat__v1__caches_imported__unpack, squat__v1__caches_imported__free_unpacked),
            target(WorkerLoad.self, squat__v1__worker_load__unpack, squat__v1__worker_load__free_unpacked),
            target(Heartbeat.self, squat__v1__heartbeat__unpack, squat__v1__heartbeat__free_unpacked),
            target(
                ReleaseSequence.self, squat__v1__release_sequence__unpack, squat__v1__release_sequence__free_unpacked),
            target(Drain.self, squat__v1__drain__unpack, squat__v1__drain__free_unpacked),
        ]
    }

    static let typeNames = allTargets().map(\.name)

    /// Standalone encodings of every message (nested ones included) in `fuzzSeedMessages()`,
    /// by proto name.
    static func seedEncodings() throws(WireError) -> [String: [[UInt8]]] {
        var seeds: [String: Set<[UInt8]>] = [:]
        func add<M: CMirror>(_ value: M) throws(WireError) { seeds[M.protoName, default: []].insert(try encode(value)) }
        func add(rows: [BatchRow]) throws(WireError) {
            for row in rows {
                try add(row)
                if let sampling = row.sampling {
                    try add(sampling)
                    try add(sampling.sampler)
                }
            }
        }
        func add(workers: [WorkerStatus]) throws(WireError) {
            for worker in workers {
                try add(worker)
                try add(worker.layers)
            }
        }
        for message in fuzzSeedMessages() {
            switch message {
            case .submit(let m):
                try add(m)
                try add(m.sampling)
                try add(m.sampling.sampler)
                try add(m.cache)
                switch m.prompt {
                case .text: break
                case .chat(let messages):
                    try add(ChatMessages(messages))
                    for chat in messages { try add(chat) }
                case .tokens(let ids): try add(TokenIDs(ids))
                }
            case .tokenEvent(let m): try add(m)
            case .finished(let m):
                try add(m)
                try add(m.usage)
                try add(m.timings)
            case .error(let m): try add(m)
            case .cancel(let m): try add(m)
            case .statusRequest(let m): try add(m)
            case .status(let m):
                try add(m)
                try add(workers: m.workers + m.lostWorkers)
                for sequence in m.sequences { try add(sequence) }
                try add(m.pipeline)
            case .drainRequest(let m): try add(m)
            case .register(let m): try add(m)
            case .registerReply(let m): try add(m)
            case .refuse(let m): try add(m)
            case .assign(let m):
                try add(m)
                try add(m.layers)
                try add(m.cache)
            case .heartbeat(let m):
                try add(m)
                if let load = m.load {
                    try add(load)
                    try add(load.layers)
                }
            case .releaseSequence(let m): try add(m)
            case .drain(let m): try add(m)
            case .exportCaches(let m):
                try add(m)
                try add(m.layers)
            case .cacheLayer(let m):
                try add(m)
                if let blob = m.blob { try add(blob) }
            case .cachesImported(let m): try add(m)
            case .stepBatch(let m):
                try add(m)
                try add(rows: m.rows)
                if let tensor = m.tensor { try add(tensor) }
            case .activations(let m):
                try add(m)
                try add(rows: m.rows)
                try add(m.tensor)
            case .sampledTokens(let m):
                try add(m)
                for token in m.tokens { try add(token) }
            }
        }
        return seeds.mapValues { $0.sorted { $0.lexicographicallyPrecedes($1) } }
    }

    @Test(
        "100,000 seeded random and mutated inputs per message type unpack to a value or a typed error",
        arguments: typeNames)
    func perType(_ name: String) async throws {
        let target = try #require(Self.allTargets().first { $0.name == name })
        let encodings = try Self.seedEncodings()
        let seeds = try #require(encodings[name], "no sample of \(name)")
        let all = encodings.values.flatMap { $0 }
        var rng = SplitMix64(seed: 0xD1_5EED ^ UInt64(Self.typeNames.firstIndex(of: name) ?? 0) << 40)
        let tally = await runFuzzer("unpack \(name)", inputs: Self.inputsPerType) { i, tally in
            let bytes =
                i % 10 == 0
                ? Mutator.random(Int.random(in: 0...120, using: &rng), using: &rng)
                : Mutator.mutated(
                    seeds[Int.random(in: 0..<seeds.count, using: &rng)], donors: i % 4 == 0 ? all : seeds,
                    using: &rng)
            target.run(bytes, &tally)
        }
        #expect(tally.inputs == Self.inputsPerType)
        #expect(tally["unstable"] == 0, "\(tally)")
        #expect(tally["decoded"] > 1_000, "\(tally)")
        #expect(tally["malformed"] > 1_000, "\(tally)")
        #expect(tally.count { $0.hasPrefix("other") } == 0, "\(tally)")
    }

    @Test("the targets cover every message type but the Envelope, each with samples")
    func coverage() throws {
        #expect(Set(Self.typeNames).count == 39)
        let encodings = try Self.seedEncodings()
        #expect(Set(encodings.keys) == Set(Self.typeNames))
    }
}
