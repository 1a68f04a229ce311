// Swift mirrors of proto/squat/v1/control.proto: worker <-> coordinator control plane.

/// Worker → coordinator: the first message after connecting.
public struct Register: Sendable, Hashable {
    public var workerID: String
    /// Must match the coordinator's model.
    public var modelFingerprint: String
    /// Weights plus KV cache this worker may use.
    public var memoryBudgetBytes: UInt64
    public var threads: UInt32
    /// Where this worker's PULL socket for activations listens.
    public var dataEndpoint: String

    public init(
        workerID: String, modelFingerprint: String, memoryBudgetBytes: UInt64 = 0, threads: UInt32 = 0,
        dataEndpoint: String = ""
    ) {
        self.workerID = workerID
        self.modelFingerprint = modelFingerprint
        self.memoryBudgetBytes = memoryBudgetBytes
        self.threads = threads
        self.dataEndpoint = dataEndpoint
    }
}

/// Coordinator → worker: registration accepted.
public struct RegisterReply: Sendable, Hashable {
    public var workerID: String
    public var heartbeatIntervalMs: UInt32
    /// Silent intervals before a peer counts as dead.
    public var heartbeatLiveness: UInt32

    public init(workerID: String, heartbeatIntervalMs: UInt32 = 0, heartbeatLiveness: UInt32 = 0) {
        self.workerID = workerID
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.heartbeatLiveness = heartbeatLiveness
    }
}

/// Why a registration was refused.
public struct RefuseReason: WireEnum {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = RefuseReason(rawValue: 0)
    public static let modelMismatch = RefuseReason(rawValue: 1)
    public static let duplicateWorkerID = RefuseReason(rawValue: 2)
    public static let unsupportedVersion = RefuseReason(rawValue: 3)
    public static let insufficientMemory = RefuseReason(rawValue: 4)
    public static let clusterFull = RefuseReason(rawValue: 5)
    public static let shuttingDown = RefuseReason(rawValue: 6)

    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "modelMismatch", 2: "duplicateWorkerID", 3: "unsupportedVersion",
        4: "insufficientMemory", 5: "clusterFull", 6: "shuttingDown",
    ]
}

/// Coordinator → worker: registration refused; the worker should not retry unchanged.
public struct Refuse: Sendable, Hashable {
    public var reason: RefuseReason
    public var message: String

    public init(reason: RefuseReason, message: String = "") {
        self.reason = reason
        self.message = message
    }
}

/// Coordinator → worker: serve these layers from this epoch on.
public struct Assign: Sendable, Hashable {
    public var epoch: UInt64
    public var layers: LayerRange
    /// Empty on the last stage (it answers the coordinator).
    public var nextStageEndpoint: String
    /// Owns the embedding.
    public var isFirst: Bool
    /// Owns the final norm, `lm_head` and sampling.
    public var isLast: Bool
    public var cache: CacheConfig
    /// Credit: micro-batches this stage may hold at once.
    public var maxInFlight: UInt32

    public init(
        epoch: UInt64, layers: LayerRange, nextStageEndpoint: String = "", isFirst: Bool = false, isLast: Bool = false,
        cache: CacheConfig = CacheConfig(), maxInFlight: UInt32 = 0
    ) {
        self.epoch = epoch
        self.layers = layers
        self.nextStageEndpoint = nextStageEndpoint
        self.isFirst = isFirst
        self.isLast = isLast
        self.cache = cache
        self.maxInFlight = maxInFlight
    }
}

/// The load report a worker attaches to its heartbeats.
public struct WorkerLoad: Sendable, Hashable {
    public var state: WorkerState
    public var layers: LayerRange
    public var kvBytesUsed: UInt64
    public var kvBytesFree: UInt64
    public var tokensPerSecond: Float
    public var liveSequences: UInt32
    public var droppedStale: UInt64

    public init(
        state: WorkerState = .unspecified, layers: LayerRange = LayerRange(), kvBytesUsed: UInt64 = 0,
        kvBytesFree: UInt64 = 0, tokensPerSecond: Float = 0, liveSequences: UInt32 = 0, droppedStale: UInt64 = 0
    ) {
        self.state = state
        self.layers = layers
        self.kvBytesUsed = kvBytesUsed
        self.kvBytesFree = kvBytesFree
        self.tokensPerSecond = tokensPerSecond
        self.liveSequences = liveSequences
        self.droppedStale = droppedStale
    }
}

/// Both ways, about once a second (Paranoid Pirate): a peer is dead after
/// `RegisterReply.heartbeatLiveness` silent intervals.
public struct Heartbeat: Sendable, Hashable {
    /// The sender's current epoch.
    public var epoch: UInt64
    /// Increases by one per heartbeat sent.
    public var sequence: UInt64
    public var sentUnixMs: UInt64
    /// Set by workers, nil from the coordinator.
    public var load: WorkerLoad?

    public init(epoch: UInt64, sequence: UInt64, sentUnixMs: UInt64 = 0, load: WorkerLoad? = nil) {
        self.epoch = epoch
        self.sequence = sequence
        self.sentUnixMs = sentUnixMs
        self.load = load
    }
}

/// Coordinator → worker: free the KV cache of these sequences.
public struct ReleaseSequence: Sendable, Hashable {
    public var epoch: UInt64
    public var sequenceIDs: [UInt64]

    public init(epoch: UInt64, sequenceIDs: [UInt64]) {
        self.epoch = epoch
        self.sequenceIDs = sequenceIDs
    }
}

/// Coordinator → worker: finish the work in hand, accept no new work, then leave.
public struct Drain: Sendable, Hashable {
    public var epoch: UInt64
    /// 0: no deadline.
    public var deadlineMs: UInt32
    public var reason: String

    public init(epoch: UInt64, deadlineMs: UInt32 = 0, reason: String = "") {
        self.epoch = epoch
        self.deadlineMs = deadlineMs
        self.reason = reason
    }
}
