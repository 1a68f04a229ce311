import Foundation
import KVCache
import LlamaModel
import Wire

/// How a worker process is set up (the `squat worker` flags).
public struct WorkerOptions: Sendable {
    /// The coordinator's control endpoint (its ROUTER).
    public var coordinator: String
    public var modelPath: String
    /// Where this worker's PULL socket for activations binds; port 0 picks a free port.
    public var dataBind: String = "tcp://127.0.0.1:0"
    public var workerID: String
    public var threads: Int
    public var memoryBudgetBytes: UInt64 = 0
    public var activations: ActivationPrecision = .f32
    /// Paranoid Pirate heartbeat: one message at least this often both ways…
    public var heartbeatInterval: Duration = .seconds(1)
    /// …and a peer silent for this many intervals is dead.
    public var liveness: Int = 4
    /// How long to wait for the coordinator's answer to Register (without `rejoin`).
    public var registerTimeout: Duration = TimeScale.scaled(.seconds(30))
    /// When the coordinator goes silent (or is not there yet), register again with backoff
    /// (1 s doubling to 10 s) instead of leaving.
    public var rejoin = true
    /// On a stop request (SIGTERM): how long to wait for the coordinator to move this worker's
    /// layers away and send Drain before leaving anyway. Scaled by `TimeScale`, as is `registerTimeout`.
    public var drainTimeout: Duration = TimeScale.scaled(.seconds(20))
    public var verbose = false
    /// Fault injection for tests: every cache import fails (as a corrupt blob would), so that the
    /// coordinator's fallback to replay can be exercised with real processes.
    public var refuseCacheImports = false
    /// Only errors on stderr (the in-process cluster of `squat generate --stages`).
    public var quiet = false
    /// The ZeroMQ context to use (a shared one makes `inproc://` endpoints reachable); nil: a new one.
    public var context: Context?
    /// CURVE: this worker's key pair and the coordinator's public key; nil runs without keys.
    /// The data socket then admits only the stage that sends to it (as the coordinator says).
    public var curve: CurveClientKeys?
    /// Builds the KV cache factory for an Assign's cache configuration (the CLI merges its own flags).
    public var makeCacheFactory: @Sendable (CacheConfig, LlamaConfig) throws -> any KVCacheFactory

    public init(
        coordinator: String, modelPath: String, workerID: String, threads: Int,
        makeCacheFactory: @escaping @Sendable (CacheConfig, LlamaConfig) throws -> any KVCacheFactory
    ) {
        self.coordinator = coordinator
        self.modelPath = modelPath
        self.workerID = workerID
        self.threads = threads
        self.makeCacheFactory = makeCacheFactory
    }
}

/// Why a worker's run ended.
public enum WorkerOutcome: Sendable, Equatable {
    /// The coordinator sent Drain.
    case drained
    /// The coordinator stopped answering (no message for `liveness` heartbeat intervals).
    case coordinatorLost
    /// The coordinator refused the registration (model mismatch, duplicate id, …) or this
    /// worker's key.
    case refused(String)
    /// An Assign asked for what this worker cannot build (a cache configuration it does not
    /// know): it leaves, and the coordinator, hearing no more heartbeats, plans without it.
    case unusableAssign(String)
}

/// One pipeline stage: registers with the coordinator, loads the layers it is assigned, keeps
/// the KV caches of those layers for every live sequence, and runs micro-batches as they
/// arrive on its data socket, passing hidden states on (or sampled tokens back, when last).
///
/// Single-threaded: one loop polls the control DEALER and the data PULL; sockets never leave it.
public final class Worker {
    public let options: WorkerOptions
    let log: ClusterLog
    let files: LoadedModelFiles
    public let fingerprint: String
    private let modelFileBytes: UInt64

    private let context: Context
    private var control: Socket
    /// Handshake failures of `control`: a refused key ends the run instead of a silent retry.
    private var controlMonitor: SocketMonitor
    private let data: Socket
    /// The key check of `data`'s peers (with `options.curve`).
    private let zap: ZAPHandler?
    public private(set) var dataEndpoint = ""
    private var next: Socket?

    private var epoch: UInt64 = 0
    private var assignment: Assign?
    private var stage: LlamaStage?
    private var factory: (any KVCacheFactory)?
    private var caches: [UInt64: any SequenceKVCache] = [:]
    /// The last stage's samplers, with the draw index each expects next: a row whose index
    /// differs (another stage sampled meanwhile) gets a sampler resumed at its index.
    private var samplers: [UInt64: (sampler: Sampler, nextDraw: UInt32)] = [:]
    /// Caches still arriving after an Assign that keeps them (cache shipping); the stage
    /// reports `.loading` until they are all in place.
    private var pendingImport: PendingImport?

    /// The layer caches an Assign with `keepCachesFromEpoch` waits for.
    struct PendingImport {
        var epoch: UInt64
        /// Sequences whose caches are rebuilt from blobs (the others were kept whole).
        var sequences: [UInt64]
        /// The new layer range.
        var layers: Range<Int>
        /// Layers this worker served before and keeps: no blob comes for them.
        var own: Range<Int>
        /// Blobs by sequence and model layer: this worker's own kept layers, then those received.
        var blobs: [UInt64: [Int: [UInt8]]]
        /// `CacheLayer` messages still to come.
        var expected: Int
        var received = 0
    }

    /// Set when an Assign cannot be carried out: the run ends with `.unusableAssign`.
    private var unusableAssign: String?
    private var droppedStale: UInt64 = 0
    private var droppedMalformed: UInt64 = 0
    private var droppedUnknownSequence: UInt64 = 0
    private var heartbeatsSent: UInt64 = 0
    private var lastHeard = Monotonic.now()
    private var lastSent = Monotonic.now()
    private var tokensDone = 0
    private var busySeconds = 0.0

    public init(options: WorkerOptions) throws {
        self.options = options
        log = ClusterLog("worker \(options.workerID)", verbose: options.verbose, quiet: options.quiet)
        files = try ModelLoader.open(path: options.modelPath)
        fingerprint = try ModelFingerprint.of(path: options.modelPath)
        let attributes = try? FileManager.default.attributesOfItem(atPath: options.modelPath)
        modelFileBytes = (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
        if let shared = options.context { context = shared } else { context = try Context() }
        if let curve = options.curve {
            // Listening before the data socket binds: without it libzmq would admit any key.
            // The coordinator's key is admitted from the start; each Assign adds the sender's.
            let log = self.log
            // The grace: the previous stage may knock before this stage has read the Assign naming it.
            zap = try ZAPHandler(context: context, keys: [curve.serverKey: "upstream"], grace: .seconds(5)) { request in
                log.info(
                    "refused a data connection from \(request.address.isEmpty ? "?" : request.address): "
                        + (request.publicKey.map { "key \($0) is not this stage's sender" } ?? "no CURVE key"))
            }
        } else {
            zap = nil
        }
        (control, controlMonitor) = try Self.makeControl(context, options, files.config)
        // The largest legitimate frame: 65,536 rows (the most a micro-batch may have) of hidden states.
        let dataMax = Int64(1 << 16) * Int64(max(1, files.config.hiddenSize)) * 4
        data = try Socket(
            context, .pull,
            options: [.linger(.zero), .maxMessageSize(dataMax)] + (options.curve?.pair.serverOptions ?? []))
    }

    /// A control DEALER (with the CURVE client keys, if any) and the monitor of its handshakes.
    private static func makeControl(_ context: Context, _ options: WorkerOptions, _ config: LlamaConfig) throws -> (
        Socket, SocketMonitor
    ) {
        let socket = try Socket(
            context, .dealer,
            options: controlOptions(config) + (options.curve.map { $0.pair.clientOptions(server: $0.serverKey) } ?? []))
        let monitor = try socket.monitor(events: [
            .handshakeFailedAuth, .handshakeFailedProtocol, .handshakeFailedNoDetail,
        ])
        return (socket, monitor)
    }

    /// Why the control connection cannot work, if its monitor says so: a key the coordinator
    /// refused, or a handshake that cannot succeed (wrong server key, CURVE on one side only).
    private func handshakeFailure() throws -> String? {
        while let event = try controlMonitor.next(timeout: .zero) {
            switch event.kind {
            case .handshakeFailedAuth:
                return "the coordinator at \(options.coordinator) refused this worker's CURVE key"
                    + (options.curve.map { " \($0.pair.publicKey)" } ?? "")
                    + " (ZAP status \(event.value)): its .pub must be in the coordinator's --authorized-keys DIR/workers/"
            case .handshakeFailedProtocol, .handshakeFailedNoDetail:
                return "the security handshake with the coordinator at \(options.coordinator) failed (\(event.kind)): "
                    + (options.curve == nil
                        ? "the coordinator probably requires CURVE keys (--curve-secret, --curve-server-key)"
                        : "check --curve-server-key (the coordinator's .pub) and that the coordinator runs with keys")
            default:
                continue
            }
        }
        return nil
    }

    /// Registers, then serves until the coordinator drains this worker (or, without `rejoin`,
    /// loses it). A stop request asks the coordinator to move the layers away first.
    public func run(shouldStop: () -> Bool = { false }) throws -> WorkerOutcome {
        defer { zap?.stop() }
        dataEndpoint = try data.bind(options.dataBind)
        try control.connect(options.coordinator)
        let register = Register(
            workerID: options.workerID, modelFingerprint: fingerprint, memoryBudgetBytes: options.memoryBudgetBytes,
            threads: UInt32(options.threads), dataEndpoint: dataEndpoint)
        _ = try control.send(.register(register))
        log.info("registering with \(options.coordinator) (data \(dataEndpoint), model \(fingerprint))")
        var registered = false
        var started = Monotonic.now()
        var backoff = options.heartbeatInterval
        var leavingSince: ContinuousClock.Instant?
        let silence = options.heartbeatInterval * options.liveness
        var poller = Poller()
        poller.add(control)
        poller.add(data)
        while true {
            if leavingSince == nil && shouldStop() {
                guard registered, assignment != nil else { return .drained }
                // Ask to be drained: the coordinator moves the layers, then sends Drain.
                log.info("stop requested: asking the coordinator to move this worker's layers")
                _ = try? control.send(.drainRequest(DrainRequest(workerID: options.workerID)), dontWait: true)
                leavingSince = Monotonic.now()
            }
            if let t = leavingSince, Monotonic.now() - t > options.drainTimeout {
                log.info("no Drain within \(options.drainTimeout); leaving anyway")
                return .drained
            }
            let ready = try poller.poll(timeout: .milliseconds(100))
            if let failure = try handshakeFailure() {
                log.error(failure)
                return .refused(failure)
            }
            if ready[0].contains(.readable) {
                // Control first: an Assign or Release must apply before the next batch.
                while case .message(let incoming) = try control.receiveMessage(dontWait: true) {
                    lastHeard = Monotonic.now()
                    switch incoming.message {
                    case .registerReply:
                        registered = true
                        backoff = options.heartbeatInterval
                        log.info("registered")
                    case .refuse(let r):
                        return .refused("\(r.reason): \(r.message)")
                    case .assign(let a):
                        try apply(a)
                        if let why = unusableAssign { return .unusableAssign(why) }
                    case .heartbeat:
                        break
                    case .releaseSequence(let r):
                        guard r.epoch == epoch else {
                            droppedStale += 1
                            break
                        }
                        for id in r.sequenceIDs {
                            caches[id] = nil
                            samplers[id] = nil
                        }
                        try sendHeartbeat()  // the load report shows the freed KV memory now
                    case .drain(let d):
                        log.info("drained: \(d.reason)")
                        return .drained
                    case .exportCaches(let e):
                        try export(e)
                    case .cacheLayer(let c):
                        let blob = incoming.withTensor { frame in frame.withUnsafeBytes { [UInt8]($0) } }
                        try receive(c, blob: blob)
                    default:
                        droppedMalformed += 1
                    }
                }
            }
            var worked = false
            if ready[1].contains(.readable) {
                try receiveData()
                worked = true
            }
            let now = Monotonic.now()
            var lost = false
            if registered {
                if now - lastSent >= options.heartbeatInterval { try sendHeartbeat() }
                // After a long forward pass the coordinator's heartbeats wait unread: read
                // them (next turn, control first) before judging its silence.
                if !worked && now - lastHeard > silence {
                    log.info(
                        "coordinator silent for \(now - lastHeard)"
                            + (options.rejoin ? "; registering again" : "; leaving"))
                    lost = true
                }
            } else if now - started > (options.rejoin ? backoff : options.registerTimeout) {
                if options.rejoin {
                    log.info("no answer from \(options.coordinator) within \(backoff); registering again")
                }
                lost = true
            }
            if lost {
                guard options.rejoin, leavingSince == nil else { return .coordinatorLost }
                let wasRegistered = registered
                // Whatever this worker held belongs to the old coordinator: forget it, and
                // register on a fresh connection (a new identity the new coordinator can route to).
                dropAssignment()
                poller = Poller()
                control.close()
                controlMonitor.close()
                (control, controlMonitor) = try Self.makeControl(context, options, files.config)
                try control.connect(options.coordinator)
                _ = try control.send(.register(register), dontWait: true)
                poller.add(control)
                poller.add(data)
                registered = false
                started = Monotonic.now()
                lastHeard = started
                backoff = wasRegistered ? options.heartbeatInterval : min(backoff * 2, .seconds(10))
            }
        }
    }

    /// The control DEALER: ZMTP heartbeats so that a cut link is noticed by both sides.
    /// A shipped cache layer may be far larger than any other control frame.
    private static func controlOptions(_ config: LlamaConfig) -> [SocketOption] {
        [
            .linger(.milliseconds(200)), .heartbeatInterval(.seconds(1)), .heartbeatTimeout(.seconds(4)),
            .maxMessageSize(CacheShipping.controlMaxFrameBytes(config)),
            // Exports block rather than drop when the coordinator reads slower than they come.
            .sendTimeout(.seconds(10)),
        ]
    }

    /// Back to an unassigned worker: no layers, no caches, epoch 0 (a new coordinator counts afresh).
    private func dropAssignment() {
        epoch = 0
        assignment = nil
        stage = nil
        factory = nil
        caches.removeAll()
        samplers.removeAll()
        pendingImport = nil
        next?.close()
        next = nil
    }

    // MARK: - Control

    private func apply(_ a: Assign) throws {
        guard a.epoch > epoch else {
            droppedStale += 1
            return
        }
        let config = files.config
        guard a.layers.end <= UInt32(config.layerCount), a.layers.start <= a.layers.end else {
            droppedMalformed += 1
            log.info("ignoring Assign with layers \(a.layers) for a \(config.layerCount)-layer model")
            return
        }
        if options.curve != nil && !a.isLast && a.layers.count > 0 && !Curve.isKey(a.nextStageServerKey) {
            droppedMalformed += 1
            log.error("ignoring Assign for epoch \(a.epoch): no CURVE key for the next stage at \(a.nextStageEndpoint)")
            return
        }
        // The cache configuration first: one this worker cannot build ends its run (staying
        // would hold the coordinator, which waits for every stage to reach the new epoch).
        var newFactory: (any KVCacheFactory)?
        if a.layers.count > 0 {
            do {
                newFactory = try options.makeCacheFactory(a.cache, config)
            } catch {
                let why = "the Assign for epoch \(a.epoch) asks for a cache this worker cannot build: \(error)"
                log.error(why + "; leaving")
                dropAssignment()
                unusableAssign = why
                return
            }
        }
        let newLayers = Int(a.layers.start)..<Int(a.layers.end)
        let oldLayers = assignment.map { Int($0.layers.start)..<Int($0.layers.end) } ?? 0..<0
        // Cache shipping: take what this worker keeps before the old state goes.
        var keep = a.keepCachesFromEpoch == 0 ? nil : keptCaches(a, old: oldLayers, new: newLayers)
        let sameStage = stage != nil && oldLayers == newLayers && assignment?.cache == a.cache
        let keptStage = sameStage ? stage : nil
        let keptFactory = sameStage ? factory : nil
        epoch = a.epoch
        assignment = a
        caches.removeAll()
        if keep == nil { samplers.removeAll() }
        pendingImport = nil
        next?.close()
        next = nil
        stage = nil
        if a.layers.count > 0 {
            let t0 = Monotonic.now()
            if let keptStage, let keptFactory {
                // The same layers as before: the mapped, repacked weights stay.
                stage = keptStage
                factory = keptFactory
            } else {
                let weights = try files.weights(layers: newLayers)
                stage = LlamaStage(weights: weights, threads: options.threads, activations: options.activations)
                factory = newFactory
            }
            if let zap, !a.upstreamKey.isEmpty { zap.admit(a.upstreamKey, userID: "upstream") }
            if !a.isLast {
                var pushOptions: [SocketOption] = [.linger(.zero), .sendTimeout(.seconds(5))]
                if let curve = options.curve { pushOptions += curve.pair.clientOptions(server: a.nextStageServerKey) }
                let push = try Socket(context, .push, options: pushOptions)
                try push.connect(a.nextStageEndpoint)
                next = push
            }
            log.info(
                "epoch \(a.epoch): layers \(a.layers)\(a.isFirst ? " +embedding" : "")\(a.isLast ? " +head" : " → \(a.nextStageEndpoint)")"
                    + ", cache \(factory?.name ?? "?"), loaded in \(Monotonic.now() - t0)")
        } else {
            log.info("epoch \(a.epoch): standby (no layers)")
        }
        if a.keepCachesFromEpoch != 0 {
            switch keep.take() {
            case .failure(let message)?:
                try reportImport(CachesImported(epoch: a.epoch, error: message.description))
            case .success(let kept)?:
                caches = kept.whole
                samplers = samplers.filter { a.sequenceIDs.contains($0.key) }
                let own = oldLayers.clamped(to: newLayers)
                let rebuilt = newLayers.isEmpty ? [] : a.sequenceIDs.filter { kept.whole[$0] == nil }
                pendingImport = PendingImport(
                    epoch: a.epoch, sequences: rebuilt, layers: newLayers, own: own, blobs: kept.blobs,
                    expected: rebuilt.count * (newLayers.count - own.count))
                if pendingImport?.expected == 0 { try finishImport() }
            case nil:
                break
            }
        }
        try sendHeartbeat()
    }

    /// What an Assign that keeps caches keeps of this worker's: whole caches when the layer
    /// range is unchanged, else the blobs of the layers it still owns; a failure when this
    /// worker is not at the epoch the coordinator counts on, or lacks a cache it should have.
    private func keptCaches(_ a: Assign, old: Range<Int>, new: Range<Int>) -> Result<
        (whole: [UInt64: any SequenceKVCache], blobs: [UInt64: [Int: [UInt8]]]), CacheShippingFailure
    > {
        var whole: [UInt64: any SequenceKVCache] = [:]
        var blobs: [UInt64: [Int: [UInt8]]] = [:]
        let own = old.clamped(to: new)
        // Nothing of its own to keep (a new worker, or all its layers move): everything arrives.
        guard !own.isEmpty else { return .success((whole, blobs)) }
        guard a.keepCachesFromEpoch == epoch else {
            return .failure(
                CacheShippingFailure(
                    "worker \(options.workerID) is at epoch \(epoch), the Assign keeps caches of epoch \(a.keepCachesFromEpoch)"
                ))
        }
        for id in a.sequenceIDs {
            guard let cache = caches[id] else {
                return .failure(
                    CacheShippingFailure("worker \(options.workerID) has no cache of sequence \(id) (layers \(old))"))
            }
            if old == new {
                whole[id] = cache
                continue
            }
            for (i, blob) in cache.exportLayers().enumerated() where own.contains(old.lowerBound + i) {
                blobs[id, default: [:]][old.lowerBound + i] = blob
            }
        }
        return .success((whole, blobs))
    }

    /// Answers ExportCaches: one CacheLayer (with the blob as a raw frame) per sequence and
    /// layer asked for, or one naming what is wrong.
    private func export(_ e: ExportCaches) throws {
        func refuse(_ message: String) throws {
            log.info("cannot export caches: \(message)")
            _ = try control.send(
                .cacheLayer(
                    CacheLayer(
                        epoch: e.epoch, sequenceID: e.sequenceIDs.first ?? 0, layer: e.layers.start, error: message)))
        }
        guard e.epoch == epoch, let assignment, pendingImport == nil else {
            droppedStale += 1
            return try refuse("worker \(options.workerID) is at epoch \(epoch), not \(e.epoch)")
        }
        let mine = Int(assignment.layers.start)..<Int(assignment.layers.end)
        let asked = Int(e.layers.start)..<Int(max(e.layers.start, e.layers.end))
        guard mine.clamped(to: asked) == asked else {
            return try refuse("layers \(e.layers) are not all in this worker's \(assignment.layers)")
        }
        var bytes = 0
        for id in e.sequenceIDs {
            guard let cache = caches[id] else { return try refuse("no cache of sequence \(id)") }
            let blobs = cache.exportLayers()
            for layer in asked {
                let blob = blobs[layer - mine.lowerBound]
                guard let size = UInt32(exactly: blob.count) else {
                    return try refuse("layer \(layer) of sequence \(id) is \(blob.count) bytes")
                }
                let header = CacheLayer(
                    epoch: e.epoch, sequenceID: id, layer: UInt32(layer), tokenCount: UInt32(cache.count),
                    blob: TensorHeader(dtype: .u8, shape: [size]))
                guard try control.send(.cacheLayer(header), tensor: try Message(bytes: blob)) == .sent else {
                    log.info("the coordinator did not take layer \(layer) of sequence \(id) within 10 s")
                    _ = try? control.send(
                        .cacheLayer(
                            CacheLayer(
                                epoch: e.epoch, sequenceID: id, layer: UInt32(layer),
                                error: "worker \(options.workerID) could not send layer \(layer) of sequence \(id)")),
                        dontWait: true)
                    return
                }
                bytes += blob.count
            }
        }
        log.info(
            "exported layers \(e.layers) of \(e.sequenceIDs.count) sequence(s): \(bytes) bytes")
    }

    /// Takes in one shipped layer cache; installs the caches once all have come.
    private func receive(_ c: CacheLayer, blob: [UInt8]?) throws {
        guard var p = pendingImport, c.epoch == p.epoch else {
            droppedStale += 1
            return
        }
        let layer = Int(c.layer)
        guard c.error.isEmpty, let blob, p.sequences.contains(c.sequenceID), p.layers.contains(layer),
            !p.own.contains(layer), p.blobs[c.sequenceID]?[layer] == nil
        else {
            droppedMalformed += 1
            log.info("dropped an unexpected cache layer \(layer) of sequence \(c.sequenceID)")
            return
        }
        p.blobs[c.sequenceID, default: [:]][layer] = blob
        p.received += 1
        pendingImport = p
        if p.received == p.expected { try finishImport() }
    }

    /// Builds every rebuilt sequence's cache from its blobs, in layer order; any failure drops
    /// them all and tells the coordinator, which then replays.
    private func finishImport() throws {
        guard let p = pendingImport else { return }
        pendingImport = nil
        var built: [UInt64: any SequenceKVCache] = [:]
        if !p.sequences.isEmpty {
            guard let stage, let factory else {
                return try reportImport(CachesImported(epoch: p.epoch, error: "no layers to import into"))
            }
            if options.refuseCacheImports {
                caches.removeAll()
                return try reportImport(
                    CachesImported(epoch: p.epoch, error: "imports refused (--debug-refuse-cache-imports)"))
            }
            for id in p.sequences {
                var blobs: [[UInt8]] = []
                for layer in p.layers {
                    guard let blob = p.blobs[id]?[layer] else {
                        caches.removeAll()
                        return try reportImport(
                            CachesImported(epoch: p.epoch, error: "sequence \(id): no cache of layer \(layer)"))
                    }
                    blobs.append(blob)
                }
                let cache = stage.makeCache(factory)
                do {
                    try cache.importLayers(blobs)
                } catch {
                    caches.removeAll()
                    return try reportImport(
                        CachesImported(
                            epoch: p.epoch,
                            error: "sequence \(id), layer \(p.layers.lowerBound + error.layer): \(error)"))
                }
                built[id] = cache
            }
        }
        caches.merge(built) { $1 }
        try reportImport(
            CachesImported(epoch: p.epoch, sequences: UInt32(caches.count), layersReceived: UInt32(p.received)))
    }

    private func reportImport(_ r: CachesImported) throws {
        if r.error.isEmpty {
            log.info(
                "epoch \(r.epoch): caches of \(r.sequences) sequence(s) in place (\(r.layersReceived) layers received)")
        } else {
            log.error("epoch \(r.epoch): cache import failed: \(r.error)")
        }
        _ = try control.send(.cachesImported(r))
        try sendHeartbeat()
    }

    /// The memory budget left for KV caches (budget − this stage's share of the model file −
    /// caches), or without a budget what the system still has available.
    private var kvBytesFree: UInt64 {
        let used = UInt64(caches.values.reduce(0) { $0 + $1.byteCount })
        guard options.memoryBudgetBytes > 0 else { return systemMemoryAvailable() ?? 0 }
        let layers = UInt64(assignment.map { $0.layers.end - $0.layers.start } ?? 0)
        let weights = modelFileBytes / UInt64(max(1, files.config.layerCount)) * layers
        return options.memoryBudgetBytes > weights + used ? options.memoryBudgetBytes - weights - used : 0
    }

    private func sendHeartbeat() throws {
        heartbeatsSent += 1
        let load = WorkerLoad(
            state: assignment == nil ? .registered : pendingImport != nil ? .loading : .ready,
            layers: assignment?.layers ?? LayerRange(),
            kvBytesUsed: UInt64(caches.values.reduce(0) { $0 + $1.byteCount }),
            kvBytesFree: kvBytesFree, tokensPerSecond: busySeconds > 0 ? Float(Double(tokensDone) / busySeconds) : 0,
            liveSequences: UInt32(caches.count), droppedStale: droppedStale,
            cache: stage != nil ? factory?.name ?? "" : "")
        _ = try control.send(
            .heartbeat(Heartbeat(epoch: epoch, sequence: heartbeatsSent, sentUnixMs: unixMilliseconds(), load: load)),
            dontWait: true)
        lastSent = Monotonic.now()
    }

    // MARK: - Data

    private func receiveData() throws {
        let inbound = try data.receiveMessage(dontWait: true)
        switch consume inbound {
        case .timeout:
            return
        case .rejected(_, let error):
            droppedMalformed += 1
            log.debug("dropped a malformed data frame: \(error)")
        case .message(let incoming):
            switch incoming.message {
            case .stepBatch(let b):
                process(
                    epoch: b.epoch, microBatch: b.microBatchID, rows: b.rows,
                    input: .tokens(b.tokenIDs.map { Int32(bitPattern: $0) }), tokenCount: b.tokenIDs.count,
                    busyBefore: [])
            case .activations(let a):
                let floats = incoming.withTensor { $0.floats() } ?? []
                process(
                    epoch: a.epoch, microBatch: a.microBatchID, rows: a.rows, input: .hidden(floats), tokenCount: nil,
                    busyBefore: a.stageBusyMicroseconds)
            default:
                droppedMalformed += 1
            }
        }
    }

    /// Checks a micro-batch against this stage's state; runs it only if every row fits.
    private func process(
        epoch e: UInt64, microBatch: UInt64, rows: [BatchRow], input: StageInput, tokenCount: Int?, busyBefore: [UInt64]
    ) {
        guard e == epoch else {
            droppedStale += 1
            return
        }
        guard let stage, let factory, let assignment else {
            droppedMalformed += 1
            return
        }
        let config = files.config
        let total = rows.reduce(0) { $0 + Int($1.count) }
        var valid = !rows.isEmpty && rows.allSatisfy { $0.count > 0 } && total <= 1 << 16
        switch input {
        case .tokens:
            valid = valid && assignment.isFirst && tokenCount == total
        case .hidden(let h):
            // The forward pass requires exactly rows × hidden floats: never let a peer trip it.
            valid = valid && !assignment.isFirst && h.count == total * config.hiddenSize
        }
        guard valid, Set(rows.map(\.sequenceID)).count == rows.count else {
            droppedMalformed += 1
            log.debug("dropped malformed micro-batch \(microBatch)")
            return
        }
        for row in rows {
            let known = caches[row.sequenceID]
            let fits = Int(row.startPosition) + Int(row.count) <= config.contextLength
            let consistent = row.startPosition == 0 || known?.count == Int(row.startPosition)
            if !fits || !consistent {
                droppedUnknownSequence += 1
                log.info(
                    "dropped micro-batch \(microBatch): sequence \(row.sequenceID) at \(row.startPosition) does not continue its cache (\(known.map { "\($0.count)" } ?? "none"))"
                )
                return
            }
        }
        var segments: [StageSegment] = []
        var logitRows: [Int] = []
        var row0 = 0
        for row in rows {
            if row.startPosition == 0 { caches[row.sequenceID] = stage.makeCache(factory) }
            segments.append(StageSegment(cache: caches[row.sequenceID]!, rows: Int(row.count)))
            if assignment.isLast && row.flags.contains(.needLogits) { logitRows.append(row0 + Int(row.count) - 1) }
            row0 += Int(row.count)
        }
        let t0 = Monotonic.now()
        let out = stage.forward(input, segments: segments, logitRows: logitRows)
        let elapsed = Monotonic.now() - t0
        busySeconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        tokensDone += total
        let busy = busyBefore.suffix(64) + [Monotonic.microseconds(elapsed)]
        if assignment.isLast {
            let vocab = config.vocabularySize
            var sampled: [SampledToken] = []
            var i = 0
            for row in rows where row.flags.contains(.needLogits) {
                // One row's logits are the whole output: shared, not copied.
                let logits = out.count == vocab ? out : Array(out[i * vocab..<(i + 1) * vocab])
                i += 1
                let rs = row.sampling ?? RowSampling()
                var sampler =
                    samplers[row.sequenceID].flatMap { $0.nextDraw == rs.drawIndex ? $0.sampler : nil }
                    ?? Sampler(rs.sampler.engineParameters, resumingAfter: Int(rs.drawIndex))
                let token = sampler.sample(logits: logits, history: rs.penaltyTokens.map { Int32(bitPattern: $0) })
                samplers[row.sequenceID] = (sampler, rs.drawIndex &+ 1)
                sampled.append(
                    SampledToken(
                        sequenceID: row.sequenceID, tokenID: UInt32(bitPattern: token),
                        logprob: Sampler.logProbability(logits: logits, token: Int(token))))
            }
            do {
                _ = try control.send(
                    .sampledTokens(
                        SampledTokens(
                            epoch: epoch, microBatchID: microBatch, tokens: sampled, stageBusyMicroseconds: Array(busy))
                    ))
            } catch {
                log.info("cannot return sampled tokens: \(error)")
            }
        } else if let next {
            let buffer = TensorBuffer(floats: out)
            let header = TensorHeader(dtype: .f32, shape: [UInt32(total), UInt32(config.hiddenSize)])
            do {
                let frame = try Message(zeroCopy: UnsafeRawBufferPointer(buffer.bytes), owner: buffer)
                let result = try next.send(
                    .activations(
                        Activations(
                            epoch: epoch, microBatchID: microBatch, rows: rows, tensor: header,
                            stageBusyMicroseconds: Array(busy))), tensor: frame)
                if result == .timeout {
                    log.info("next stage did not take micro-batch \(microBatch) within 5 s; dropped")
                }
            } catch {
                log.info("cannot pass micro-batch \(microBatch) on: \(error)")
            }
        }
    }
}
