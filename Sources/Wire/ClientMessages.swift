// Swift mirrors of proto/squat/v1/client.proto: client <-> coordinator.

/// What to generate from.
public enum Prompt: Sendable, Hashable {
    /// One chat turn.
    public struct Message: Sendable, Hashable {
        /// "system", "user", "assistant", …
        public var role: String
        public var content: String

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
    public var sampler: SamplerParams
    /// 0: the coordinator's default.
    public var maxTokens: UInt32
    /// Stop strings, matched on the detokenized text.
    public var stop: [String]

    public init(sampler: SamplerParams = SamplerParams(), maxTokens: UInt32 = 0, stop: [String] = []) {
        self.sampler = sampler
        self.maxTokens = maxTokens
        self.stop = stop
    }
}

/// A request's cache wishes; zero fields take the cluster's defaults.
public struct CacheOptions: Sendable, Hashable {
    public var kind: CacheKind
    public var keyBits: UInt32
    public var valueBits: UInt32
    public var maxContextTokens: UInt32

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
    public var prompt: Prompt
    public var sampling: Sampling
    public var cache: CacheOptions

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
    public var requestID: String
    /// 0 for the first generated token.
    public var index: UInt32
    public var tokenID: UInt32
    /// Detokenized bytes; may end inside a UTF-8 character that the next piece completes.
    public var piece: [UInt8]
    public var logprob: Float

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
    public var promptTokens: UInt32
    public var completionTokens: UInt32
    public var cachedPromptTokens: UInt32

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
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let unspecified = Reason(rawValue: 0)
        /// The model produced an end-of-sequence token.
        public static let endOfSequence = Reason(rawValue: 1)
        public static let stopString = Reason(rawValue: 2)
        public static let maxTokens = Reason(rawValue: 3)
        public static let cancelled = Reason(rawValue: 4)
        public static let contextFull = Reason(rawValue: 5)
        public static let error = Reason(rawValue: 6)

        public static let names: [UInt32: String] = [
            0: "unspecified", 1: "endOfSequence", 2: "stopString", 3: "maxTokens", 4: "cancelled",
            5: "contextFull", 6: "error",
        ]
    }

    public var requestID: String
    public var reason: Reason
    public var usage: Usage
    public var timings: Timings

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
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = ErrorCode(rawValue: 0)
    public static let invalidRequest = ErrorCode(rawValue: 1)
    public static let malformedMessage = ErrorCode(rawValue: 2)
    public static let unsupportedVersion = ErrorCode(rawValue: 3)
    public static let unknownRequest = ErrorCode(rawValue: 4)
    public static let duplicateRequest = ErrorCode(rawValue: 5)
    /// Admission refused: no KV memory or the queue is full.
    public static let overloaded = ErrorCode(rawValue: 6)
    public static let promptTooLong = ErrorCode(rawValue: 7)
    /// No complete pipeline of workers.
    public static let unavailable = ErrorCode(rawValue: 8)
    public static let internalError = ErrorCode(rawValue: 9)

    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "invalidRequest", 2: "malformedMessage", 3: "unsupportedVersion", 4: "unknownRequest",
        5: "duplicateRequest", 6: "overloaded", 7: "promptTooLong", 8: "unavailable", 9: "internalError",
    ]
}

/// Coordinator → client: a request failed (or, with an empty `requestID`, a frame did).
/// The proto message is `squat.v1.Error`.
public struct ErrorReply: Sendable, Hashable {
    public var requestID: String
    public var code: ErrorCode
    public var message: String

    public init(requestID: String = "", code: ErrorCode, message: String) {
        self.requestID = requestID
        self.code = code
        self.message = message
    }
}

/// Client → coordinator: stop a request; the coordinator answers with `Finished(.cancelled)`.
public struct Cancel: Sendable, Hashable {
    public var requestID: String

    public init(requestID: String) { self.requestID = requestID }
}

/// Client → coordinator: ask for a `Status`.
public struct StatusRequest: Sendable, Hashable {
    public var includeSequences: Bool

    public init(includeSequences: Bool = false) { self.includeSequences = includeSequences }
}

/// A worker's life cycle as the coordinator sees it.
public struct WorkerState: WireEnum {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = WorkerState(rawValue: 0)
    /// Known, no layers assigned.
    public static let registered = WorkerState(rawValue: 1)
    /// Assigned, mapping weights.
    public static let loading = WorkerState(rawValue: 2)
    /// Serving its layer range.
    public static let ready = WorkerState(rawValue: 3)
    public static let draining = WorkerState(rawValue: 4)
    /// Missed its heartbeats.
    public static let lost = WorkerState(rawValue: 5)

    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "registered", 2: "loading", 3: "ready", 4: "draining", 5: "lost",
    ]
}

/// One worker in a `Status`.
public struct WorkerStatus: Sendable, Hashable {
    public var workerID: String
    public var layers: LayerRange
    public var state: WorkerState
    public var kvBytesUsed: UInt64
    public var kvBytesFree: UInt64
    public var tokensPerSecond: Float
    public var dataEndpoint: String
    /// Frames of an old epoch this worker dropped.
    public var droppedStale: UInt64

    public init(
        workerID: String, layers: LayerRange = LayerRange(), state: WorkerState = .unspecified, kvBytesUsed: UInt64 = 0,
        kvBytesFree: UInt64 = 0, tokensPerSecond: Float = 0, dataEndpoint: String = "", droppedStale: UInt64 = 0
    ) {
        self.workerID = workerID
        self.layers = layers
        self.state = state
        self.kvBytesUsed = kvBytesUsed
        self.kvBytesFree = kvBytesFree
        self.tokensPerSecond = tokensPerSecond
        self.dataEndpoint = dataEndpoint
        self.droppedStale = droppedStale
    }
}

/// Where a live sequence is.
public struct SequenceState: WireEnum {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = SequenceState(rawValue: 0)
    public static let queued = SequenceState(rawValue: 1)
    public static let prefill = SequenceState(rawValue: 2)
    public static let decode = SequenceState(rawValue: 3)
    /// Being recomputed after a pipeline change.
    public static let replay = SequenceState(rawValue: 4)

    public static let names: [UInt32: String] = [0: "unspecified", 1: "queued", 2: "prefill", 3: "decode", 4: "replay"]
}

/// One live sequence in a `Status`.
public struct SequenceStatus: Sendable, Hashable {
    public var requestID: String
    public var sequenceID: UInt64
    public var state: SequenceState
    public var promptTokens: UInt32
    public var generatedTokens: UInt32

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
    public var epoch: UInt64
    public var modelFingerprint: String
    public var workers: [WorkerStatus]
    public var sequences: [SequenceStatus]
    /// Frames of an old epoch the coordinator dropped.
    public var droppedStale: UInt64
    /// Frames that failed to decode.
    public var droppedMalformed: UInt64

    public init(
        epoch: UInt64 = 0, modelFingerprint: String = "", workers: [WorkerStatus] = [],
        sequences: [SequenceStatus] = [], droppedStale: UInt64 = 0, droppedMalformed: UInt64 = 0
    ) {
        self.epoch = epoch
        self.modelFingerprint = modelFingerprint
        self.workers = workers
        self.sequences = sequences
        self.droppedStale = droppedStale
        self.droppedMalformed = droppedMalformed
    }
}
