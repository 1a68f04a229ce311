import Foundation
import FuzzSupport

@testable import Wire

/// Byte-level mutations shared by the wire fuzzers: bit flips, byte replacements, insertions,
/// deletions, truncations, runs of 0xFF (broken varints), random varints, repeated slices and
/// splices of other valid encodings.
enum Mutator {
    /// `seed` after 1 to 4 mutations (mostly one, so that many inputs still parse and reach the
    /// code behind the C unpacker).
    static func mutated(_ seed: [UInt8], donors: [[UInt8]], using rng: inout SplitMix64) -> [UInt8] {
        var bytes = seed
        let rounds = [1, 1, 1, 1, 2, 3, 4].randomElement(using: &rng) ?? 1
        for _ in 0..<rounds { mutate(&bytes, donors: donors, using: &rng) }
        return bytes
    }

    /// One mutation of `bytes`.
    static func mutate(_ bytes: inout [UInt8], donors: [[UInt8]], using rng: inout SplitMix64) {
        let choice = Int.random(in: 0..<9, using: &rng)
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
        case 6 where !bytes.isEmpty:  // a random varint over 1 to 3 bytes (lengths, counts, enums)
            let end = min(bytes.count, position + Int.random(in: 1...3, using: &rng))
            let magnitude = [7, 14, 32, 64].randomElement(using: &rng) ?? 64
            let value = magnitude == 64 ? rng.next() : UInt64.random(in: 0..<(1 << UInt64(magnitude)), using: &rng)
            bytes.replaceSubrange(position..<end, with: varint(value))
        case 7 where !bytes.isEmpty:  // repeat a slice (repeated fields, merged messages)
            let end = Int.random(in: position...bytes.count, using: &rng)
            let slice = Array(bytes[position..<end])
            for _ in 0..<Int.random(in: 1...3, using: &rng) { bytes.insert(contentsOf: slice, at: end) }
        default:  // splice in a slice of another valid encoding
            guard let other = donors.randomElement(using: &rng), !other.isEmpty else { return }
            let start = Int.random(in: 0..<other.count, using: &rng)
            let end = Int.random(in: start...other.count, using: &rng)
            bytes.insert(contentsOf: other[start..<end], at: min(position, bytes.count))
        }
    }

    /// `count` random bytes.
    static func random(_ count: Int, using rng: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// The protobuf base-128 varint of `value`.
    static func varint(_ value: UInt64) -> [UInt8] {
        var w = ProtoWriter()
        w.varint(value)
        return w.bytes
    }
}

/// The case name of a wire error, for tallies.
func errorKind(_ error: WireError) -> String {
    switch error {
    case .malformedFrame: "malformedFrame"
    case .unsupportedVersion: "unsupportedVersion"
    case .unknownMessageType: "unknownMessageType"
    case .missingField: "missingField"
    case .invalidField: "invalidField"
    case .frameTooLarge: "frameTooLarge"
    case .tensorMismatch: "tensorMismatch"
    case .unexpectedFrames: "unexpectedFrames"
    case .missingFrame: "missingFrame"
    default: "other: \(error)"
    }
}

/// Messages beyond `sampleMessages()` so that every body type and every nested message type
/// has valid encodings with its fields set (pipeline statistics, lost workers, matching tensor
/// headers, penalty tokens, …).
func extraSampleMessages() -> [WireMessage] {
    let sampler = SamplerParams(temperature: 1.5, topK: 1, topP: 0.5, minP: 0.01, repetitionWindow: 8, seed: 7)
    let rows = [
        BatchRow(
            sequenceID: 9, startPosition: 3, count: 2, flags: [.needLogits],
            sampling: RowSampling(sampler: sampler, drawIndex: .max, penaltyTokens: [5])),
        BatchRow(sequenceID: 10, startPosition: 0, count: 1),
    ]
    return [
        .status(
            Status(
                epoch: 7, modelFingerprint: "fp",
                workers: [WorkerStatus(workerID: "w2", layers: LayerRange(start: 3, end: 1), state: .draining)],
                sequences: [SequenceStatus(requestID: "r", sequenceID: .max, state: .replay)],
                pipeline: PipelineStats(
                    microBatches: 10, rows: 20, tokensIn: 300, tokensOut: 10, roundTripMicroseconds: 5_000,
                    stageBusyMicroseconds: [1_000, 2_000], maxInFlight: 2, peakInFlight: 2),
                lostWorkers: [WorkerStatus(workerID: "gone", state: .lost, dataEndpoint: "tcp://h:2")])),
        .status(
            Status(
                pipeline: PipelineStats(
                    microBatches: .max, tokensOut: .max, roundTripMicroseconds: .max,
                    stageBusyMicroseconds: [.max, .max, 1], maxInFlight: .max, peakInFlight: .max))),
        .drainRequest(DrainRequest(workerID: "worker-α")),
        .drainRequest(DrainRequest(workerID: "")),
        .cancel(Cancel(requestID: "")),
        .refuse(Refuse(reason: RefuseReason(rawValue: 42))),
        .registerReply(RegisterReply(workerID: "")),
        .register(Register(workerID: "", modelFingerprint: "")),
        .drain(Drain(epoch: 0, deadlineMs: 0, reason: "")),
        .assign(
            Assign(
                epoch: 9, layers: LayerRange(start: 4, end: 9), keepCachesFromEpoch: 8, sequenceIDs: [1, .max, 0])),
        .exportCaches(ExportCaches(epoch: 0, layers: LayerRange())),
        .cacheLayer(CacheLayer(epoch: 0, sequenceID: 0, layer: 0, error: "no cache")),
        .cacheLayer(
            CacheLayer(
                epoch: .max, sequenceID: 1, layer: .max, tokenCount: 1, blob: TensorHeader(dtype: .u8, shape: [0]))),
        .cachesImported(CachesImported(epoch: 0)),
        .tokenEvent(TokenEvent(requestID: "r", index: 0, tokenID: 1, piece: [0xFF, 0x00, 0x80])),
        .finished(Finished(requestID: "r", reason: .maxTokens, usage: Usage(promptTokens: 1))),
        .stepBatch(StepBatch(epoch: 1, microBatchID: 2, rows: rows, tokenIDs: [4, 5, 6])),
        .stepBatch(
            StepBatch(
                epoch: 1, microBatchID: 3, rows: rows, tokenIDs: [],
                tensor: TensorHeader(dtype: .f32, shape: [3, 4]))),
        .activations(
            Activations(epoch: 2, microBatchID: 1, rows: rows, tensor: TensorHeader(dtype: .f16, shape: [3, 2]))),
        .activations(
            Activations(
                epoch: 2, microBatchID: 2, rows: [], tensor: TensorHeader(dtype: .f32, shape: [1, 2, 3]),
                stageBusyMicroseconds: [10, 20, .max])),
        .sampledTokens(
            SampledTokens(
                epoch: 2, microBatchID: 1, tokens: [SampledToken(sequenceID: 9, tokenID: 3, logprob: -.infinity)],
                stageBusyMicroseconds: [1, 2])),
    ]
}

/// Everything the fuzzers start from: `sampleMessages()` and `extraSampleMessages()`.
func fuzzSeedMessages() -> [WireMessage] {
    sampleMessages() + extraSampleMessages()
}

/// Reads what the engine reads from a decoded message (derived values included), so that a
/// decode which succeeds but leaves a value some consumer traps on is caught here too.
func consume(_ message: WireMessage) {
    _ = message.name
    _ = message.epoch
    if let header = message.tensorHeader {
        _ = header.description
        _ = try? message.validateTensor(frameBytes: nil)
        if let bytes = try? header.byteCount() { _ = try? message.validateTensor(frameBytes: bytes) }
    } else {
        _ = try? message.validateTensor(frameBytes: nil)
    }
    switch message {
    case .status(let s):
        _ = s.pipeline.meanHopMicroseconds
        for w in s.workers + s.lostWorkers { _ = (w.layers.count, w.layers.description, w.state.description) }
        for q in s.sequences { _ = q.state.description }
    case .assign(let a):
        _ = (a.layers.count, a.cache.kind.description)
    case .heartbeat(let h):
        _ = (h.load?.layers.count, h.load?.state.description)
    case .finished(let f):
        _ = f.reason.description
    case .error(let e):
        _ = e.code.description
    case .refuse(let r):
        _ = r.reason.description
    case .submit(let s):
        _ = (s.cache.kind.description, s.sampling.stop.count)
    case .stepBatch(let b):
        _ = tokenCount(b.rows)
    case .activations(let a):
        _ = tokenCount(a.rows)
    default:
        break
    }
}
