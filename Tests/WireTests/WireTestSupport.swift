import Foundation
import Synchronization
import Testing

@testable import Wire

/// A small seeded generator (SplitMix64): the fuzz and random tests repeat exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A process-wide unique inproc endpoint, so parallel tests never collide.
func uniqueInproc(_ name: String) -> String {
    "inproc://wire-test-\(name)-\(endpointCounter.add(1, ordering: .relaxed).newValue)"
}
private let endpointCounter = Atomic<Int>(0)

/// Counts releases of zero-copy owners. `Sendable`: the count is atomic, and ZeroMQ releases
/// owners on its I/O threads.
final class ReleaseCounter: Sendable {
    let released = Atomic<Int>(0)
    var value: Int { released.load(ordering: .acquiring) }

    /// Polls until `value == expected` or `timeout` passes; returns the last value seen.
    func wait(for expected: Int, timeout: Duration = .seconds(5)) -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while value != expected && clock.now < deadline { usleep(1000) }
        return value
    }
}

/// Owns bytes for a zero-copy frame and counts its own release.
final class CountedBuffer: Sendable {
    let buffer: TensorBuffer
    let counter: ReleaseCounter

    init(bytes: [UInt8], counter: ReleaseCounter) {
        let buffer = TensorBuffer(byteCount: bytes.count)
        bytes.withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
        self.buffer = buffer
        self.counter = counter
    }

    deinit { counter.released.add(1, ordering: .releasing) }
}

/// Receives one multipart message or fails the test, copying the frames out.
func receiveFrames(_ socket: Socket, sourceLocation: SourceLocation = #_sourceLocation) throws -> [[UInt8]] {
    switch try socket.receive() {
    case .timeout:
        Issue.record("timed out waiting for a message on \(socket)", sourceLocation: sourceLocation)
        return []
    case .message(let parts):
        return parts.allBytes
    }
}

/// Messages covering every `WireMessage` case, with non-default values in every field,
/// non-ASCII text, extreme integers, optional fields both set and unset, and enum values this
/// build does not name.
func sampleMessages() -> [WireMessage] {
    let sampler = SamplerParams(
        temperature: 0.7, topK: 40, topP: 0.95, minP: 0.05, repetitionPenalty: 1.1, repetitionWindow: 64,
        seed: .max)
    let rowSampling = RowSampling(sampler: sampler, drawIndex: 17, penaltyTokens: [1, 2, 3, .max])
    let rows = [
        BatchRow(sequenceID: 1, startPosition: 0, count: 5, flags: [.promptEnds, .needLogits], sampling: rowSampling),
        BatchRow(sequenceID: .max, startPosition: 4095, count: 1, flags: []),
        BatchRow(sequenceID: 7, startPosition: 12, count: 2, flags: RowFlags(rawValue: 0x8000_0004)),
    ]
    let cache = CacheConfig(
        kind: .squat, keyBits: 2, valueBits: 4, groupSize: 32, residualLength: 32, quantGroupSize: 32,
        subspaceDim: 16, squatLambda: 0.001, maxContextTokens: 8192, keyRope: .post, subspaceRope: .pre,
        scales: ScaleStorage(rawValue: 9))
    let load = WorkerLoad(
        state: .ready, layers: LayerRange(start: 0, end: 15), kvBytesUsed: 1 << 40, kvBytesFree: .max,
        tokensPerSecond: 123.5, liveSequences: 9, droppedStale: 3, cache: "squat-k4v4")
    return [
        .submit(
            Submit(
                requestID: "req-1", prompt: .text("Grüße, 世界! 🚀\nline two"),
                sampling: Sampling(sampler: sampler, maxTokens: 256, stop: ["</s>", "\n\n", "終"]),
                cache: CacheOptions(kind: .kivi, keyBits: 2, valueBits: 2, maxContextTokens: 4096))),
        .submit(
            Submit(
                requestID: "req-2",
                prompt: .chat([
                    Prompt.Message(role: "system", content: "Be brief."),
                    Prompt.Message(role: "user", content: "Ça va ?"),
                    Prompt.Message(role: "assistant", content: ""),
                ]))),
        .submit(Submit(requestID: "", prompt: .tokens([0, 1, 49151, .max]))),
        .submit(Submit(requestID: "req-4", prompt: .tokens([]), sampling: Sampling(sampler: SamplerParams(seed: 0)))),
        .submit(Submit(requestID: "req-5", prompt: .chat([]), cache: CacheOptions(kind: CacheKind(rawValue: 99)))),
        .tokenEvent(TokenEvent(requestID: "req-1", index: 3, tokenID: 4649, piece: [0xE4, 0xB8], logprob: -0.25)),
        .tokenEvent(TokenEvent(requestID: "req-1", index: .max, tokenID: 0, piece: [], logprob: -.infinity)),
        .finished(
            Finished(
                requestID: "req-1", reason: .stopString,
                usage: Usage(promptTokens: 12, completionTokens: 30, cachedPromptTokens: 4),
                timings: Timings(
                    queuedMicroseconds: 1, prefillMicroseconds: 2_000, decodeMicroseconds: .max, totalMicroseconds: 99))
        ),
        .finished(Finished(requestID: "req-x", reason: Finished.Reason(rawValue: 1234))),
        .error(ErrorReply(requestID: "req-9", code: .overloaded, message: "no KV memory: 0 bytes free")),
        .error(ErrorReply(code: ErrorCode(rawValue: 77), message: "")),
        .cancel(Cancel(requestID: "req-1")),
        .statusRequest(StatusRequest(includeSequences: true)),
        .statusRequest(StatusRequest()),
        .status(
            Status(
                epoch: 42, modelFingerprint: "sha256:abcdef",
                workers: [
                    WorkerStatus(
                        workerID: "w0", layers: LayerRange(start: 0, end: 15), state: .ready, kvBytesUsed: 1024,
                        kvBytesFree: 4096, tokensPerSecond: 88.25, dataEndpoint: "tcp://10.0.0.1:5600", droppedStale: 2,
                        cache: "kivi-prerope-k2v2-f32scales"),
                    WorkerStatus(workerID: "w1", state: .lost),
                ],
                sequences: [
                    SequenceStatus(
                        requestID: "req-1", sequenceID: 5, state: .decode, promptTokens: 12, generatedTokens: 7)
                ],
                droppedStale: 11, droppedMalformed: 1)),
        .status(Status()),
        .register(
            Register(
                workerID: "worker-α", modelFingerprint: "sha256:abcdef", memoryBudgetBytes: 8 << 30, threads: 2,
                dataEndpoint: "tcp://127.0.0.1:5601")),
        .registerReply(RegisterReply(workerID: "worker-α", heartbeatIntervalMs: 1000, heartbeatLiveness: 4)),
        .refuse(Refuse(reason: .modelMismatch, message: "fingerprint differs")),
        .assign(
            Assign(
                epoch: 3, layers: LayerRange(start: 15, end: 30), nextStageEndpoint: "", isFirst: false, isLast: true,
                cache: cache, maxInFlight: 4)),
        .assign(
            Assign(epoch: .max, layers: LayerRange(start: 0, end: 1), nextStageEndpoint: "tcp://h:1", isFirst: true)),
        .heartbeat(Heartbeat(epoch: 3, sequence: 100, sentUnixMs: 1_700_000_000_000, load: load)),
        .heartbeat(Heartbeat(epoch: 3, sequence: 101)),
        .releaseSequence(ReleaseSequence(epoch: 3, sequenceIDs: [1, 2, .max])),
        .releaseSequence(ReleaseSequence(epoch: 0, sequenceIDs: [])),
        .drain(Drain(epoch: 3, deadlineMs: 5000, reason: "maintenance")),
        .assign(
            Assign(
                epoch: 5, layers: LayerRange(start: 0, end: 12), nextStageEndpoint: "tcp://h:2", isFirst: true,
                cache: cache, keepCachesFromEpoch: 4, sequenceIDs: [3, 7])),
        .exportCaches(ExportCaches(epoch: 4, layers: LayerRange(start: 12, end: 17), sequenceIDs: [3, 7])),
        .cacheLayer(
            CacheLayer(
                epoch: 4, sequenceID: 3, layer: 12, tokenCount: 160, blob: TensorHeader(dtype: .u8, shape: [71_714]))),
        .cacheLayer(CacheLayer(epoch: 4, sequenceID: 7, layer: 13, error: "sequence 7 has no cache here")),
        .cachesImported(CachesImported(epoch: 5, sequences: 2, layersReceived: 10)),
        .drainRequest(DrainRequest(workerID: "worker-α")),
        .cachesImported(CachesImported(epoch: 5, error: "layer 12 of sequence 3: truncated")),
        .stepBatch(StepBatch(epoch: 3, microBatchID: 77, rows: rows, tokenIDs: [1, 2, 3, 4, 5, 6, 7, 8])),
        .stepBatch(
            StepBatch(
                epoch: 3, microBatchID: 78, rows: [], tokenIDs: [],
                tensor: TensorHeader(dtype: .f16, shape: [0, 576]))),
        .activations(
            Activations(epoch: 3, microBatchID: 77, rows: rows, tensor: TensorHeader(dtype: .f32, shape: [8, 576]))),
        .activations(Activations(epoch: 4, microBatchID: 0, rows: [], tensor: TensorHeader())),
        .sampledTokens(
            SampledTokens(
                epoch: 3, microBatchID: 77,
                tokens: [
                    SampledToken(sequenceID: 1, tokenID: 42, logprob: -1.5), SampledToken(sequenceID: .max, tokenID: 0),
                ])),
        .sampledTokens(SampledTokens(epoch: 3, microBatchID: 79, tokens: [])),
    ]
}

/// Minimal protobuf writer for hand-made frames (the tests must build inputs the Swift API
/// refuses to produce).
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: UInt64, wireType: UInt64) { varint(field << 3 | wireType) }

    mutating func uint(_ field: UInt64, _ value: UInt64) {
        tag(field, wireType: 0)
        varint(value)
    }

    mutating func lengthDelimited(_ field: UInt64, _ payload: [UInt8]) {
        tag(field, wireType: 2)
        varint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    /// An `Envelope` with `version` and a body at `field`.
    static func envelope(version: UInt64 = 1, field: UInt64, body: [UInt8]) -> [UInt8] {
        var w = ProtoWriter()
        w.uint(1, version)
        w.lengthDelimited(field, body)
        return w.bytes
    }
}
