// Swift mirrors of proto/squat/v1/control.proto: worker <-> coordinator control plane.

/// Worker → coordinator: the first message after connecting.
public struct Register: Sendable, Hashable {
    /// `squat.v1.Register.worker_id`.
    public var workerID: String
    /// Must match the coordinator's model.
    public var modelFingerprint: String
    /// Weights plus KV cache this worker may use.
    public var memoryBudgetBytes: UInt64
    /// `squat.v1.Register.threads`.
    public var threads: UInt32
    /// Where this worker's PULL socket for activations listens.
    public var dataEndpoint: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
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
    /// `squat.v1.RegisterReply.worker_id`.
    public var workerID: String
    /// `squat.v1.RegisterReply.heartbeat_interval_ms`.
    public var heartbeatIntervalMs: UInt32
    /// Silent intervals before a peer counts as dead.
    public var heartbeatLiveness: UInt32

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(workerID: String, heartbeatIntervalMs: UInt32 = 0, heartbeatLiveness: UInt32 = 0) {
        self.workerID = workerID
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.heartbeatLiveness = heartbeatLiveness
    }
}

/// Why a registration was refused.
public struct RefuseReason: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `REFUSE_REASON_UNSPECIFIED`.
    public static let unspecified = RefuseReason(rawValue: 0)
    /// `REFUSE_REASON_MODEL_MISMATCH`.
    public static let modelMismatch = RefuseReason(rawValue: 1)
    /// `REFUSE_REASON_DUPLICATE_WORKER_ID`.
    public static let duplicateWorkerID = RefuseReason(rawValue: 2)
    /// `REFUSE_REASON_UNSUPPORTED_VERSION`.
    public static let unsupportedVersion = RefuseReason(rawValue: 3)
    /// `REFUSE_REASON_INSUFFICIENT_MEMORY`.
    public static let insufficientMemory = RefuseReason(rawValue: 4)
    /// `REFUSE_REASON_CLUSTER_FULL`.
    public static let clusterFull = RefuseReason(rawValue: 5)
    /// `REFUSE_REASON_SHUTTING_DOWN`.
    public static let shuttingDown = RefuseReason(rawValue: 6)
    /// `REFUSE_REASON_UNAUTHORIZED`: the peer's CURVE key is not a worker key.
    public static let unauthorized = RefuseReason(rawValue: 7)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [
        0: "unspecified", 1: "modelMismatch", 2: "duplicateWorkerID", 3: "unsupportedVersion",
        4: "insufficientMemory", 5: "clusterFull", 6: "shuttingDown", 7: "unauthorized",
    ]
}

/// Coordinator → worker: registration refused; the worker should not retry unchanged.
public struct Refuse: Sendable, Hashable {
    /// `squat.v1.Refuse.reason`.
    public var reason: RefuseReason
    /// `squat.v1.Refuse.message`.
    public var message: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(reason: RefuseReason, message: String = "") {
        self.reason = reason
        self.message = message
    }
}

/// Coordinator → worker: serve these layers from this epoch on.
public struct Assign: Sendable, Hashable {
    /// `squat.v1.Assign.epoch`.
    public var epoch: UInt64
    /// `squat.v1.Assign.layers`.
    public var layers: LayerRange
    /// Empty on the last stage (it answers the coordinator).
    public var nextStageEndpoint: String
    /// Owns the embedding.
    public var isFirst: Bool
    /// Owns the final norm, `lm_head` and sampling.
    public var isLast: Bool
    /// `squat.v1.Assign.cache`.
    public var cache: CacheConfig
    /// Credit: micro-batches this stage may hold at once.
    public var maxInFlight: UInt32
    /// The next stage's CURVE public key (Z85), for connecting to its data socket; empty
    /// without CURVE.
    public var nextStageServerKey: String
    /// The CURVE public key (Z85) of whoever sends to this stage's data socket (the coordinator
    /// or the previous stage); empty without CURVE.
    public var upstreamKey: String
    /// Cache shipping: non-zero when the worker keeps, from the layers it served in that epoch,
    /// the caches of `sequenceIDs`; its other new layers' caches arrive as `CacheLayer`s.
    /// Zero: every stage starts with empty caches (replay).
    public var keepCachesFromEpoch: UInt64
    /// The live sequences whose caches continue (with `keepCachesFromEpoch`).
    public var sequenceIDs: [UInt64]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        epoch: UInt64, layers: LayerRange, nextStageEndpoint: String = "", isFirst: Bool = false, isLast: Bool = false,
        cache: CacheConfig = CacheConfig(), maxInFlight: UInt32 = 0, nextStageServerKey: String = "",
        upstreamKey: String = "", keepCachesFromEpoch: UInt64 = 0, sequenceIDs: [UInt64] = []
    ) {
        self.keepCachesFromEpoch = keepCachesFromEpoch
        self.sequenceIDs = sequenceIDs
        self.nextStageServerKey = nextStageServerKey
        self.upstreamKey = upstreamKey
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
    /// `squat.v1.WorkerLoad.state`.
    public var state: WorkerState
    /// `squat.v1.WorkerLoad.layers`.
    public var layers: LayerRange
    /// `squat.v1.WorkerLoad.kv_bytes_used`.
    public var kvBytesUsed: UInt64
    /// `squat.v1.WorkerLoad.kv_bytes_free`.
    public var kvBytesFree: UInt64
    /// `squat.v1.WorkerLoad.tokens_per_second`.
    public var tokensPerSecond: Float
    /// `squat.v1.WorkerLoad.live_sequences`.
    public var liveSequences: UInt32
    /// `squat.v1.WorkerLoad.dropped_stale`.
    public var droppedStale: UInt64
    /// The KV cache this worker builds (its factory's name: kind, bits, key placement, scale
    /// storage; not the group sizes or SQuat's settings); empty without layers.
    public var cache: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        state: WorkerState = .unspecified, layers: LayerRange = LayerRange(), kvBytesUsed: UInt64 = 0,
        kvBytesFree: UInt64 = 0, tokensPerSecond: Float = 0, liveSequences: UInt32 = 0, droppedStale: UInt64 = 0,
        cache: String = ""
    ) {
        self.state = state
        self.layers = layers
        self.kvBytesUsed = kvBytesUsed
        self.kvBytesFree = kvBytesFree
        self.tokensPerSecond = tokensPerSecond
        self.liveSequences = liveSequences
        self.droppedStale = droppedStale
        self.cache = cache
    }
}

/// Both ways, about once a second (Paranoid Pirate): a peer is dead after
/// `RegisterReply.heartbeatLiveness` silent intervals.
public struct Heartbeat: Sendable, Hashable {
    /// The sender's current epoch.
    public var epoch: UInt64
    /// Increases by one per heartbeat sent.
    public var sequence: UInt64
    /// `squat.v1.Heartbeat.sent_unix_ms`.
    public var sentUnixMs: UInt64
    /// Set by workers, nil from the coordinator.
    public var load: WorkerLoad?

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, sequence: UInt64, sentUnixMs: UInt64 = 0, load: WorkerLoad? = nil) {
        self.epoch = epoch
        self.sequence = sequence
        self.sentUnixMs = sentUnixMs
        self.load = load
    }
}

/// Coordinator → worker: free the KV cache of these sequences.
public struct ReleaseSequence: Sendable, Hashable {
    /// `squat.v1.ReleaseSequence.epoch`.
    public var epoch: UInt64
    /// `squat.v1.ReleaseSequence.sequence_ids`.
    public var sequenceIDs: [UInt64]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, sequenceIDs: [UInt64]) {
        self.epoch = epoch
        self.sequenceIDs = sequenceIDs
    }
}

/// Coordinator → worker: finish the work in hand, accept no new work, then leave.
public struct Drain: Sendable, Hashable {
    /// `squat.v1.Drain.epoch`.
    public var epoch: UInt64
    /// 0: no deadline.
    public var deadlineMs: UInt32
    /// `squat.v1.Drain.reason`.
    public var reason: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, deadlineMs: UInt32 = 0, reason: String = "") {
        self.epoch = epoch
        self.deadlineMs = deadlineMs
        self.reason = reason
    }
}

/// Coordinator → worker: send back, one `CacheLayer` each, the caches of these layers for these
/// sequences (the layers move to another worker; the pipeline is quiet meanwhile).
public struct ExportCaches: Sendable, Hashable {
    /// The worker's current epoch.
    public var epoch: UInt64
    /// Model layers to export.
    public var layers: LayerRange
    /// `squat.v1.ExportCaches.sequence_ids`.
    public var sequenceIDs: [UInt64]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, layers: LayerRange, sequenceIDs: [UInt64] = []) {
        self.epoch = epoch
        self.layers = layers
        self.sequenceIDs = sequenceIDs
    }
}

/// One layer of one sequence's KV cache: an exported blob (`CacheSnapshot` format) travels as a
/// raw `.u8` frame beside this header. Worker → coordinator answering `ExportCaches`, then
/// coordinator → the layer's new owner.
public struct CacheLayer: Sendable, Hashable {
    /// The export's epoch (from a worker), or the new epoch (to a worker).
    public var epoch: UInt64
    /// `squat.v1.CacheLayer.sequence_id`.
    public var sequenceID: UInt64
    /// Model layer index.
    public var layer: UInt32
    /// Tokens the cache holds.
    public var tokenCount: UInt32
    /// Non-empty: the layer could not be exported (no frame follows).
    public var error: String
    /// The raw frame's header (`.u8`, `[bytes]`); nil with `error`.
    public var blob: TensorHeader?

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        epoch: UInt64, sequenceID: UInt64, layer: UInt32, tokenCount: UInt32 = 0, error: String = "",
        blob: TensorHeader? = nil
    ) {
        self.epoch = epoch
        self.sequenceID = sequenceID
        self.layer = layer
        self.tokenCount = tokenCount
        self.error = error
        self.blob = blob
    }
}

/// Worker → coordinator: after an `Assign` that keeps caches, every cache of the new layer range
/// is in place, or `error` says why not (the coordinator then replays instead).
public struct CachesImported: Sendable, Hashable {
    /// The Assign's epoch.
    public var epoch: UInt64
    /// Sequences whose caches are in place.
    public var sequences: UInt32
    /// `CacheLayer` messages taken in.
    public var layersReceived: UInt32
    /// Non-empty: the import failed.
    public var error: String

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, sequences: UInt32 = 0, layersReceived: UInt32 = 0, error: String = "") {
        self.epoch = epoch
        self.sequences = sequences
        self.layersReceived = layersReceived
        self.error = error
    }
}
