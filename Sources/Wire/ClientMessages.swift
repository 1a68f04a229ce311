// Swift mirrors of proto/squat/v1/client.proto: client <-> coordinator.

/// What to generate from.
public enum Prompt: Sendable, Hashable {
    /// One chat turn.
    public struct Message: Sendable, Hashable {
        /// "system", "user", "assistant", …
        public var role: String
        /// `squat.v1.ChatMessage.content`.
        public var content: String

        /// Memberwise; defaulted parameters are the proto3 zero values.
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    /// Plain text, tokenized by the coordinator.
    case text(String)
    /// A conversation, rendered with the model's chat template.
    case chat([Message])
    /// Token ids, used as they are.
    case tokens([UInt32])
}

/// Generation settings of one request: the sampler plus stopping rules.
public struct Sampling: Sendable, Hashable {
    /// `squat.v1.Sampling.sampler`.
    public var sampler: SamplerParams
    /// 0: the coordinator's default.
    public var maxTokens: UInt32
    /// Stop strings, matched on the detokenized text.
    public var stop: [String]
    /// Keep going past end-of-generation tokens (for benchmarks, like llama.cpp's --ignore-eos).
    public var ignoreEndOfGeneration: Bool

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        sampler: SamplerParams = SamplerParams(), maxTokens: UInt32 = 0, stop: [String] = [],
        ignoreEndOfGeneration: Bool = false
    ) {
        self.sampler = sampler
        self.maxTokens = maxTokens
        self.stop = stop
        self.ignoreEndOfGeneration = ignoreEndOfGeneration
    }
}

/// A request's cache wishes; zero fields take the cluster's defaults.
public struct CacheOptions: Sendable, Hashable {
    /// `squat.v1.CacheOptions.kind`.
    public var kind: CacheKind
    /// `squat.v1.CacheOptions.key_bits`.
    public var keyBits: UInt32
    /// `squat.v1.CacheOptions.value_bits`.
    public var valueBits: UInt32
    /// `squat.v1.CacheOptions.max_context_tokens`.
    public var maxContextTokens: UInt32

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        kind: CacheKind = .unspecified, keyBits: UInt32 = 0, valueBits: UInt32 = 0, maxContextTokens: UInt32 = 0
    ) {
        self.kind = kind
        self.keyBits = keyBits
        self.valueBits = valueBits
        self.maxContextTokens = maxContextTokens
    }
}

/// Client → coordinator: start generating.
public struct Submit: Sendable, Hashable {
    /// Chosen by the client, unique among its live requests.
    public var requestID: String
    /// `squat.v1.Submit.prompt`.
    public var prompt: Prompt
    /// `squat.v1.Submit.sampling`.
    public var sampling: Sampling
    /// `squat.v1.Submit.cache`.
    public var cache: CacheOptions

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        requestID: String, prompt: Prompt, sampling: Sampling = Sampling(), cache: CacheOptions = CacheOptions()
    ) {
        self.requestID = requestID
        self.prompt = prompt
        self.sampling = sampling
        self.cache = cache
    }
}

/// Coordinator → client: one generated token.
public struct TokenEvent: Sendable, Hashable {
    /// `squat.v1.TokenEvent.request_id`.
    public var requestID: String
    /// 0 for the first generated token.
    public var index: UInt32
    /// `squat.v1.TokenEvent.token_id`.
    public var tokenID: UInt32
    /// Detokenized bytes; may end inside a UTF-8 character that the next piece completes.
    public var piece: [UInt8]
    /// `squat.v1.TokenEvent.logprob`.
    public var logprob: Float

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(requestID: String, index: UInt32, tokenID: UInt32, piece: [UInt8] = [], logprob: Float = 0) {
        self.requestID = requestID
        self.index = index
        self.tokenID = tokenID
        self.piece = piece
        self.logprob = logprob
    }
}

/// Token counts of a finished request.
public struct Usage: Sendable, Hashable {
    /// `squat.v1.Usage.prompt_tokens`.
    public var promptTokens: UInt32
    /// `squat.v1.Usage.completion_tokens`.
    public var completionTokens: UInt32
    /// `squat.v1.Usage.cached_prompt_tokens`.
    public var cachedPromptTokens: UInt32

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(promptTokens: UInt32 = 0, completionTokens: UInt32 = 0, cachedPromptTokens: UInt32 = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedPromptTokens = cachedPromptTokens
    }
}

/// Durations of a finished request, in microseconds.
public struct Timings: Sendable, Hashable {
    /// Submit → admitted.
    public var queuedMicroseconds: UInt64
    /// Admitted → first token.
    public var prefillMicroseconds: UInt64
    /// First token → finished.
    public var decodeMicroseconds: UInt64
    /// Submit → finished.
    public var totalMicroseconds: UInt64

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        queuedMicroseconds: UInt64 = 0, prefillMicroseconds: UInt64 = 0, decodeMicroseconds: UInt64 = 0,
        totalMicroseconds: UInt64 = 0
    ) {
        self.queuedMicroseconds = queuedMicroseconds
        self.prefillMicroseconds = prefillMicroseconds
        self.decodeMicroseconds = decodeMicroseconds
        self.totalMicroseconds = totalMicroseconds
    }
}

/// Coordinator → client: the request is over (after its last `TokenEvent`).
public struct Finished: Sendable, Hashable {
    /// Why generation stopped.
    public struct Reason: WireEnum {
        public var rawValue: UInt32
        /// The value numbered `rawValue` on the wire, named or not.
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// `FINISH_REASON_UNSPECIFIED`.
        public static let unspecified = Reason(rawValue: 0)
        /// The model produced an end-of-sequence token.
        public static let endOfSequence = Reason(rawValue: 1)
        /// `FINISH_REASON_STOP_STRING`.
        public static let stopString = Reason(rawValue: 2)
        /// `FINISH_REASON_MAX_TOKENS`.
        public static let maxTokens = Reason(rawValue: 3)
        /// `FINISH_REASON_CANCELLED`.
        public static let cancelled = Reason(rawValue: 4)
        /// `FINISH_REASON_CONTEXT_FULL`.
        public static let contextFull = Reason(rawValue: 5)
        /// `FINISH_REASON_ERROR`.
        public static let error = Reason(rawValue: 6)

        /// The names of the values this build knows.
        public static let names: [UInt32: String] = [
            0: "unspecified", 1: "endOfSequence", 2: "stopString", 3: "maxTokens", 4: "cancelled",
            5: "contextFull", 6: "error",
        ]
    }

    /// `squat.v1.Finished.request_id`.
    public var requestID: String
    /// `squat.v1.Finished.reason`.
    public var reason: Reason
    /// `squat.v1.Finished.usage`.
    public var usage: Usage
    /// `squat.v1.Finished.timings`.
    public var timings: Timings

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(requestID: String, reason: Reason, usage: Usage = Usage(), timings: Timings = Timings()) {
        self.requestID = requestID
        self.reason = reason
        self.usage = usage
        self.timings = timings
    }
}

/// What went wrong, in an `ErrorReply`.
public struct ErrorCode: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `ERROR_CODE_UNSPECIFIED`.
    public static let unspecified = ErrorCode(rawValue: 0)
    /// `ERROR_CODE_INVALID_REQUEST`.
    public static let invalidRequest = ErrorCode(rawValue: 1)
    /// `ERROR_CODE_MALFORMED_MESSAGE`.
    public static let malformedMessage = ErrorCode(rawValue: 2)
    /// `ERROR_CODE_UNSUPPORTED_VERSION`.
    public static let unsupportedVersion = ErrorCode(rawValue: 3)
    /// `ERROR_CODE_UNKNOWN_REQUEST`.
    public static let unknownRequest = ErrorCode(rawValue: 4)
    /// `ERROR_CODE_DUPLICATE_REQUEST`.
    public static let duplicateRequest = ErrorCode(rawValue: 5)
    /// Admission refused: no KV memory or the queue is full.
    public static let overloaded = ErrorCode(rawValue: 6)
    /// `ERROR_CODE_PROMPT_TOO_LONG`.
    public static let promptTooLong = ErrorCode(rawValue: 7)
    /// No complete pipeline of workers.
    public static let unavailable = ErrorCode(rawValue: 8)
    /// `ERROR_CODE_INTERNAL`.
    public static let internalError = ErrorCode(rawValue: 9)
    /// `ERROR_CODE_UNAUTHORIZED`: the sender's CURVE key may not send this message.
    public static let unauthorized = ErrorCode(rawValue: 10)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "invalidRequest", 2: "malformedMessage", 3: "unsupportedVersion", 4: "unknownRequest",
        5: "duplicateRequest", 6: "overloaded", 7: "promptTooLong", 8: "unavailable", 9: "internalError",
        10: "unauthorized",
    ]
}

/// Coordinator → client: a request failed (or, with an empty `requestID`, a frame did).
/// The proto message is `squat.v1.Error`.
public struct ErrorReply: Sendable, Hashable {
    /// `squat.v1.Error.request_id`.
    public var requestID: String
    /// `squat.v1.Error.code`.
    public var code: ErrorCode
    /// `squat.v1.Error.message`.
    public var message: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(requestID: String = "", code: ErrorCode, message: String) {
        self.requestID = requestID
        self.code = code
        self.message = message
    }
}

/// Client → coordinator: stop a request; the coordinator answers with `Finished(.cancelled)`.
public struct Cancel: Sendable, Hashable {
    /// `squat.v1.Cancel.request_id`.
    public var requestID: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(requestID: String) { self.requestID = requestID }
}

/// Client (or a worker, for itself) → coordinator: move this worker's layers to the others, then
/// let it go.
public struct DrainRequest: Sendable, Hashable {
    /// `squat.v1.DrainRequest.worker_id`.
    public var workerID: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(workerID: String) { self.workerID = workerID }
}

/// Client → coordinator: ask for a `Status`.
public struct StatusRequest: Sendable, Hashable {
    /// `squat.v1.StatusRequest.include_sequences`.
    public var includeSequences: Bool

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(includeSequences: Bool = false) { self.includeSequences = includeSequences }
}

/// A worker's life cycle as the coordinator sees it.
public struct WorkerState: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `WORKER_STATE_UNSPECIFIED`.
    public static let unspecified = WorkerState(rawValue: 0)
    /// Known, no layers assigned.
    public static let registered = WorkerState(rawValue: 1)
    /// Assigned, mapping weights.
    public static let loading = WorkerState(rawValue: 2)
    /// Serving its layer range.
    public static let ready = WorkerState(rawValue: 3)
    /// `WORKER_STATE_DRAINING`.
    public static let draining = WorkerState(rawValue: 4)
    /// Missed its heartbeats.
    public static let lost = WorkerState(rawValue: 5)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "registered", 2: "loading", 3: "ready", 4: "draining", 5: "lost",
    ]
}

/// One worker in a `Status`.
public struct WorkerStatus: Sendable, Hashable {
    /// `squat.v1.WorkerStatus.worker_id`.
    public var workerID: String
    /// `squat.v1.WorkerStatus.layers`.
    public var layers: LayerRange
    /// `squat.v1.WorkerStatus.state`.
    public var state: WorkerState
    /// `squat.v1.WorkerStatus.kv_bytes_used`.
    public var kvBytesUsed: UInt64
    /// `squat.v1.WorkerStatus.kv_bytes_free`.
    public var kvBytesFree: UInt64
    /// `squat.v1.WorkerStatus.tokens_per_second`.
    public var tokensPerSecond: Float
    /// `squat.v1.WorkerStatus.data_endpoint`.
    public var dataEndpoint: String
    /// Frames of an old epoch this worker dropped.
    public var droppedStale: UInt64
    /// The KV cache it builds (from its load report).
    public var cache: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        workerID: String, layers: LayerRange = LayerRange(), state: WorkerState = .unspecified, kvBytesUsed: UInt64 = 0,
        kvBytesFree: UInt64 = 0, tokensPerSecond: Float = 0, dataEndpoint: String = "", droppedStale: UInt64 = 0,
        cache: String = ""
    ) {
        self.workerID = workerID
        self.layers = layers
        self.state = state
        self.kvBytesUsed = kvBytesUsed
        self.kvBytesFree = kvBytesFree
        self.tokensPerSecond = tokensPerSecond
        self.dataEndpoint = dataEndpoint
        self.droppedStale = droppedStale
        self.cache = cache
    }
}

/// Where a live sequence is.
public struct SequenceState: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `SEQUENCE_STATE_UNSPECIFIED`.
    public static let unspecified = SequenceState(rawValue: 0)
    /// `SEQUENCE_STATE_QUEUED`.
    public static let queued = SequenceState(rawValue: 1)
    /// `SEQUENCE_STATE_PREFILL`.
    public static let prefill = SequenceState(rawValue: 2)
    /// `SEQUENCE_STATE_DECODE`.
    public static let decode = SequenceState(rawValue: 3)
    /// Being recomputed after a pipeline change.
    public static let replay = SequenceState(rawValue: 4)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [0: "unspecified", 1: "queued", 2: "prefill", 3: "decode", 4: "replay"]
}

/// One live sequence in a `Status`.
public struct SequenceStatus: Sendable, Hashable {
    /// `squat.v1.SequenceStatus.request_id`.
    public var requestID: String
    /// `squat.v1.SequenceStatus.sequence_id`.
    public var sequenceID: UInt64
    /// `squat.v1.SequenceStatus.state`.
    public var state: SequenceState
    /// `squat.v1.SequenceStatus.prompt_tokens`.
    public var promptTokens: UInt32
    /// `squat.v1.SequenceStatus.generated_tokens`.
    public var generatedTokens: UInt32

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        requestID: String, sequenceID: UInt64, state: SequenceState = .unspecified, promptTokens: UInt32 = 0,
        generatedTokens: UInt32 = 0
    ) {
        self.requestID = requestID
        self.sequenceID = sequenceID
        self.state = state
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
    }
}

/// Coordinator → client: the cluster as the coordinator sees it.
public struct Status: Sendable, Hashable {
    /// `squat.v1.Status.epoch`.
    public var epoch: UInt64
    /// `squat.v1.Status.model_fingerprint`.
    public var modelFingerprint: String
    /// `squat.v1.Status.workers`.
    public var workers: [WorkerStatus]
    /// `squat.v1.Status.sequences`.
    public var sequences: [SequenceStatus]
    /// Frames of an old epoch the coordinator dropped.
    public var droppedStale: UInt64
    /// Frames that failed to decode.
    public var droppedMalformed: UInt64
    /// Pipeline totals since the coordinator started.
    public var pipeline: PipelineStats
    /// The last workers lost (state `.lost`, their last load report), newest last.
    public var lostWorkers: [WorkerStatus] = []
    /// "curve" (every peer needs an admitted key) or "none".
    public var security = ""
    /// Connections the key check (ZAP) refused.
    public var authRejections: UInt64 = 0
    /// Messages refused because the sender's key may not send them (a client key registering
    /// as a worker, a worker key submitting).
    public var unauthorizedMessages: UInt64 = 0

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        epoch: UInt64 = 0, modelFingerprint: String = "", workers: [WorkerStatus] = [],
        sequences: [SequenceStatus] = [], droppedStale: UInt64 = 0, droppedMalformed: UInt64 = 0,
        pipeline: PipelineStats = PipelineStats(), lostWorkers: [WorkerStatus] = []
    ) {
        self.lostWorkers = lostWorkers
        self.epoch = epoch
        self.modelFingerprint = modelFingerprint
        self.workers = workers
        self.sequences = sequences
        self.droppedStale = droppedStale
        self.droppedMalformed = droppedMalformed
        self.pipeline = pipeline
    }
}

/// Totals over the micro-batches the pipeline answered (`squat.v1.PipelineStats`).
public struct PipelineStats: Sendable, Hashable {
    public var microBatches: UInt64
    /// Sequence rows: prefill chunks and decode rows.
    public var rows: UInt64
    /// Tokens run through the pipeline.
    public var tokensIn: UInt64
    /// Tokens sampled.
    public var tokensOut: UInt64
    /// Coordinator send → sampled tokens back, summed.
    public var roundTripMicroseconds: UInt64
    /// Compute time per stage, in pipeline order, summed.
    public var stageBusyMicroseconds: [UInt64]
    /// The credit: micro-batches the pipeline may hold at once.
    public var maxInFlight: UInt32
    /// The most micro-batches the pipeline held at once so far.
    public var peakInFlight: UInt32
    /// Epochs planned: the first plan, then one per membership change.
    public var replans: UInt64 = 0
    /// Tokens fed again to rebuild caches after a new plan.
    public var tokensReplayed: UInt64 = 0
    /// Why requests are held, when the pipeline does not serve ("" while serving).
    public var holdReason: String = ""
    /// Re-plans that shipped the moved layers' caches instead of replaying.
    public var cacheMigrations: UInt64 = 0
    /// Layer caches moved (one per sequence and layer).
    public var cacheLayersShipped: UInt64 = 0
    /// Their bytes.
    public var cacheBytesShipped: UInt64 = 0
    /// Shipments that failed or timed out and fell back to replay.
    public var cacheFallbacks: UInt64 = 0
    /// Micro-batches summed in `stageBusyMicroseconds` (which restarts when the stage count changes).
    public var stageBusyMicroBatches: UInt64 = 0

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        microBatches: UInt64 = 0, rows: UInt64 = 0, tokensIn: UInt64 = 0, tokensOut: UInt64 = 0,
        roundTripMicroseconds: UInt64 = 0, stageBusyMicroseconds: [UInt64] = [], maxInFlight: UInt32 = 0,
        peakInFlight: UInt32 = 0
    ) {
        self.peakInFlight = peakInFlight
        self.microBatches = microBatches
        self.rows = rows
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.roundTripMicroseconds = roundTripMicroseconds
        self.stageBusyMicroseconds = stageBusyMicroseconds
        self.maxInFlight = maxInFlight
    }

    /// Mean time per hop outside the stages' compute: (round trip − compute) over
    /// micro-batches × (stages + 1) hops. Includes queueing when several batches are in flight.
    /// Summed in floating point: the totals come off the wire, and any UInt64 values must do.
    public var meanHopMicroseconds: Double {
        guard microBatches > 0 else { return 0 }
        let busy = stageBusyMicroseconds.reduce(0.0) { $0 + Double($1) }
        let outside = Double(roundTripMicroseconds) - Double(busy)
        return max(0, outside) / Double(microBatches) / Double(stageBusyMicroseconds.count + 1)
    }
}
