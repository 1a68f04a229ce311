import CProtobufC
import SquatProto

// C mirrors of control.proto.

extension Register: CMirror {
    static let protoName = "squat.v1.Register"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Register>?) -> Void { squat__v1__register__init }

    func fill(_ c: inout Squat__V1__Register, _ arena: Arena) throws(WireError) {
        c.worker_id = try arena.string(workerID, Self.protoName, "worker_id")
        c.model_fingerprint = try arena.string(modelFingerprint, Self.protoName, "model_fingerprint")
        c.memory_budget_bytes = memoryBudgetBytes
        c.threads = threads
        c.data_endpoint = try arena.string(dataEndpoint, Self.protoName, "data_endpoint")
    }

    init(c: Squat__V1__Register) throws(WireError) {
        self.init(
            workerID: try CRead.string(c.worker_id, Self.protoName, "worker_id"),
            modelFingerprint: try CRead.string(c.model_fingerprint, Self.protoName, "model_fingerprint"),
            memoryBudgetBytes: c.memory_budget_bytes, threads: c.threads,
            dataEndpoint: try CRead.string(c.data_endpoint, Self.protoName, "data_endpoint"))
    }
}

extension RegisterReply: CMirror {
    static let protoName = "squat.v1.RegisterReply"
    static var cInit: (UnsafeMutablePointer<Squat__V1__RegisterReply>?) -> Void { squat__v1__register_reply__init }

    func fill(_ c: inout Squat__V1__RegisterReply, _ arena: Arena) throws(WireError) {
        c.worker_id = try arena.string(workerID, Self.protoName, "worker_id")
        c.heartbeat_interval_ms = heartbeatIntervalMs
        c.heartbeat_liveness = heartbeatLiveness
    }

    init(c: Squat__V1__RegisterReply) throws(WireError) {
        self.init(
            workerID: try CRead.string(c.worker_id, Self.protoName, "worker_id"),
            heartbeatIntervalMs: c.heartbeat_interval_ms, heartbeatLiveness: c.heartbeat_liveness)
    }
}

extension Refuse: CMirror {
    static let protoName = "squat.v1.Refuse"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Refuse>?) -> Void { squat__v1__refuse__init }

    func fill(_ c: inout Squat__V1__Refuse, _ arena: Arena) throws(WireError) {
        c.reason = Squat__V1__RefuseReason(rawValue: reason.rawValue)
        c.message = try arena.string(message, Self.protoName, "message")
    }

    init(c: Squat__V1__Refuse) throws(WireError) {
        self.init(
            reason: RefuseReason(rawValue: c.reason.rawValue),
            message: try CRead.string(c.message, Self.protoName, "message"))
    }
}

extension Assign: CMirror {
    static let protoName = "squat.v1.Assign"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Assign>?) -> Void { squat__v1__assign__init }

    func fill(_ c: inout Squat__V1__Assign, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.layers = try arena.message(layers)
        c.next_stage_endpoint = try arena.string(nextStageEndpoint, Self.protoName, "next_stage_endpoint")
        c.is_first = isFirst ? 1 : 0
        c.is_last = isLast ? 1 : 0
        c.cache = try arena.message(cache)
        c.max_in_flight = maxInFlight
        c.next_stage_server_key = try arena.string(nextStageServerKey, Self.protoName, "next_stage_server_key")
        c.upstream_key = try arena.string(upstreamKey, Self.protoName, "upstream_key")
        c.keep_caches_from_epoch = keepCachesFromEpoch
        (c.n_sequence_ids, c.sequence_ids) = arena.scalars(sequenceIDs)
    }

    init(c: Squat__V1__Assign) throws(WireError) {
        self.init(
            epoch: c.epoch, layers: try CRead.message(c.layers, default: LayerRange()),
            nextStageEndpoint: try CRead.string(c.next_stage_endpoint, Self.protoName, "next_stage_endpoint"),
            isFirst: c.is_first != 0, isLast: c.is_last != 0, cache: try CRead.message(c.cache, default: CacheConfig()),
            maxInFlight: c.max_in_flight,
            nextStageServerKey: try CRead.string(c.next_stage_server_key, Self.protoName, "next_stage_server_key"),
            upstreamKey: try CRead.string(c.upstream_key, Self.protoName, "upstream_key"),
            keepCachesFromEpoch: c.keep_caches_from_epoch,
            sequenceIDs: try CRead.scalars(c.n_sequence_ids, c.sequence_ids, Self.protoName, "sequence_ids"))
    }
}

extension WorkerLoad: CMirror {
    static let protoName = "squat.v1.WorkerLoad"
    static var cInit: (UnsafeMutablePointer<Squat__V1__WorkerLoad>?) -> Void { squat__v1__worker_load__init }

    func fill(_ c: inout Squat__V1__WorkerLoad, _ arena: Arena) throws(WireError) {
        c.state = Squat__V1__WorkerState(rawValue: state.rawValue)
        c.layers = try arena.message(layers)
        c.kv_bytes_used = kvBytesUsed
        c.kv_bytes_free = kvBytesFree
        c.tokens_per_second = tokensPerSecond
        c.live_sequences = liveSequences
        c.dropped_stale = droppedStale
        c.cache = try arena.string(cache, Self.protoName, "cache")
    }

    init(c: Squat__V1__WorkerLoad) throws(WireError) {
        self.init(
            state: WorkerState(rawValue: c.state.rawValue), layers: try CRead.message(c.layers, default: LayerRange()),
            kvBytesUsed: c.kv_bytes_used, kvBytesFree: c.kv_bytes_free, tokensPerSecond: c.tokens_per_second,
            liveSequences: c.live_sequences, droppedStale: c.dropped_stale,
            cache: try CRead.string(c.cache, Self.protoName, "cache"))
    }
}

extension Heartbeat: CMirror {
    static let protoName = "squat.v1.Heartbeat"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Heartbeat>?) -> Void { squat__v1__heartbeat__init }

    func fill(_ c: inout Squat__V1__Heartbeat, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.sequence = sequence
        c.sent_unix_ms = sentUnixMs
        if let load { c.load = try arena.message(load) }
    }

    init(c: Squat__V1__Heartbeat) throws(WireError) {
        self.init(epoch: c.epoch, sequence: c.sequence, sentUnixMs: c.sent_unix_ms, load: try CRead.message(c.load))
    }
}

extension ReleaseSequence: CMirror {
    static let protoName = "squat.v1.ReleaseSequence"
    static var cInit: (UnsafeMutablePointer<Squat__V1__ReleaseSequence>?) -> Void { squat__v1__release_sequence__init }

    func fill(_ c: inout Squat__V1__ReleaseSequence, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        (c.n_sequence_ids, c.sequence_ids) = arena.scalars(sequenceIDs)
    }

    init(c: Squat__V1__ReleaseSequence) throws(WireError) {
        self.init(
            epoch: c.epoch,
            sequenceIDs: try CRead.scalars(c.n_sequence_ids, c.sequence_ids, Self.protoName, "sequence_ids"))
    }
}

extension Drain: CMirror {
    static let protoName = "squat.v1.Drain"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Drain>?) -> Void { squat__v1__drain__init }

    func fill(_ c: inout Squat__V1__Drain, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.deadline_ms = deadlineMs
        c.reason = try arena.string(reason, Self.protoName, "reason")
    }

    init(c: Squat__V1__Drain) throws(WireError) {
        self.init(
            epoch: c.epoch, deadlineMs: c.deadline_ms, reason: try CRead.string(c.reason, Self.protoName, "reason"))
    }
}

extension ExportCaches: CMirror {
    static let protoName = "squat.v1.ExportCaches"
    static var cInit: (UnsafeMutablePointer<Squat__V1__ExportCaches>?) -> Void { squat__v1__export_caches__init }

    func fill(_ c: inout Squat__V1__ExportCaches, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.layers = try arena.message(layers)
        (c.n_sequence_ids, c.sequence_ids) = arena.scalars(sequenceIDs)
    }

    init(c: Squat__V1__ExportCaches) throws(WireError) {
        self.init(
            epoch: c.epoch, layers: try CRead.message(c.layers, default: LayerRange()),
            sequenceIDs: try CRead.scalars(c.n_sequence_ids, c.sequence_ids, Self.protoName, "sequence_ids"))
    }
}

extension CacheLayer: CMirror {
    static let protoName = "squat.v1.CacheLayer"
    static var cInit: (UnsafeMutablePointer<Squat__V1__CacheLayer>?) -> Void { squat__v1__cache_layer__init }

    func fill(_ c: inout Squat__V1__CacheLayer, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.sequence_id = sequenceID
        c.layer = layer
        c.token_count = tokenCount
        c.error = try arena.string(error, Self.protoName, "error")
        if let blob { c.blob = try arena.message(blob) }
    }

    init(c: Squat__V1__CacheLayer) throws(WireError) {
        self.init(
            epoch: c.epoch, sequenceID: c.sequence_id, layer: c.layer, tokenCount: c.token_count,
            error: try CRead.string(c.error, Self.protoName, "error"), blob: try CRead.message(c.blob))
    }
}

extension CachesImported: CMirror {
    static let protoName = "squat.v1.CachesImported"
    static var cInit: (UnsafeMutablePointer<Squat__V1__CachesImported>?) -> Void { squat__v1__caches_imported__init }

    func fill(_ c: inout Squat__V1__CachesImported, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.sequences = sequences
        c.layers_received = layersReceived
        c.error = try arena.string(error, Self.protoName, "error")
    }

    init(c: Squat__V1__CachesImported) throws(WireError) {
        self.init(
            epoch: c.epoch, sequences: c.sequences, layersReceived: c.layers_received,
            error: try CRead.string(c.error, Self.protoName, "error"))
    }
}
