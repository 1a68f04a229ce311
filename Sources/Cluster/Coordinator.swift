import Foundation
import KVCache
import LlamaModel
import Wire

/// How the coordinator is set up (the `squat coordinator` flags).
public struct CoordinatorOptions: Sendable {
    /// One ROUTER for clients and workers.
    public var bind: String
    /// More endpoints bound by the same ROUTER (e.g. an `inproc://` one for the HTTP gateway's
    /// clients, which must then share `context`).
    public var extraBinds: [String] = []
    public var modelPath: String
    /// Workers to wait for before planning the pipeline.
    public var minWorkers: Int = 1
    /// The cache every stage keeps (sent in Assign).
    public var cache: CacheConfig = CacheConfig()
    /// The name of the cache `cache` makes, as workers report it (`WorkerLoad.cache`); a worker
    /// reporting another name, or none, is named in the log. Empty: not checked.
    public var cacheName = ""
    public var heartbeatInterval: Duration = .seconds(1)
    public var liveness: Int = 4
    /// Prompt rows per forward call of one sequence (the single-process generator's chunk).
    public var prefillChunk: Int = 512
    /// Rows per micro-batch beyond which no further prefill chunk joins it.
    public var maxBatchRows: Int = 512
    /// Tokens generated when a request does not say.
    public var defaultMaxTokens: Int = 256
    /// The longest prompt accepted, in tokens (nil: the context length − 1; never more).
    public var maxPromptTokens: Int?
    /// The most tokens one request may ask to generate (nil: the context length).
    public var maxTokensLimit: Int?
    /// Live requests (queued or running) beyond which a Submit is answered "busy" (OVERLOADED).
    public var maxLiveRequests: Int = 256
    /// Live requests one client connection may have.
    public var maxRequestsPerClient: Int = 64
    /// How long a pipeline worker may be silent while a micro-batch is in flight (it cannot
    /// heartbeat during a forward pass). Scaled by `TimeScale`, as is `stepTimeout`.
    public var busyLiveness: Duration = TimeScale.scaled(.seconds(30))
    /// A micro-batch not answered within this time fails its sequences.
    public var stepTimeout: Duration = TimeScale.scaled(.seconds(120))
    /// Credit: micro-batches the pipeline may hold at once (nil: one per stage, so that every
    /// stage has work). A sequence is in at most one micro-batch at a time.
    public var maxInFlight: Int?
    public var verbose = false
    /// Only errors on stderr (the in-process cluster of `squat generate --stages`).
    public var quiet = false
    /// The ZeroMQ context to use (a shared one makes `inproc://` endpoints reachable); nil: a new one.
    public var context: Context?
    /// CURVE: the coordinator's key pair and the keys it admits (workers and clients apart);
    /// nil serves without authentication or encryption.
    public var security: AuthorizedKeys?
    /// On a re-plan with a whole pipeline, ship the caches of the layers that move to their new
    /// owners instead of replaying every live sequence (replay stays the fallback).
    public var shipCaches = true

    public init(bind: String, modelPath: String) {
        self.bind = bind
        self.modelPath = modelPath
    }
}

/// Owns requests and the pipeline: registers workers, plans their layer ranges, admits and
/// tokenizes requests, schedules micro-batches (continuous batching: every live sequence gets a
/// prefill chunk or one decode row per step), detokenizes, applies stop rules and streams
/// events back. Single-threaded around one ROUTER socket.
public final class Coordinator {
    public let options: CoordinatorOptions
    let log: ClusterLog
    let files: LoadedModelFiles
    let tokenizer: Tokenizer
    public let fingerprint: String
    private let modelBytes: UInt64
    /// The KV cache a sequence will need, for admission against the workers' memory budgets.
    private let footprint: KVFootprint

    private let context: Context
    let router: Socket
    public private(set) var endpoint = ""
    /// The key check of `router`'s peers (with `options.security`).
    private let zap: ZAPHandler?
    /// Messages refused because of the sender's role.
    private var unauthorizedMessages: UInt64 = 0

    struct WorkerEntry {
        var id: String
        var identity: [UInt8]
        var register: Register
        /// The CURVE public key the worker authenticated with ("" without CURVE): its data
        /// socket's server key.
        var publicKey = ""
        var lastHeard: ContinuousClock.Instant
        var load: WorkerLoad?
        var heartbeatEpoch: UInt64 = 0
        var layers = LayerRange()
        /// Asked to leave: planned without, then sent Drain.
        var draining = false
        /// The epoch whose reported cache was last checked against `options.cacheName`.
        var cacheCheckedEpoch: UInt64 = 0
    }

    final class Sequence {
        let id: UInt64
        let client: [UInt8]
        let requestID: String
        let prompt: [Int32]
        var history: [Int32]
        var generated: [Int32] = []
        let sampler: SamplerParams
        let maxTokens: Int
        let ignoreEndOfGeneration: Bool
        var decoder: StreamingDecoder
        var stops: StopMatcher
        /// Tokens of `history` sent into the current epoch's pipeline (its caches hold them, or
        /// will when the micro-batch in flight is done). A new epoch starts it again at 0:
        /// the prompt and the generated tokens are replayed exactly as they were first fed.
        var fed = 0
        var inFlight = false
        let submitted: ContinuousClock.Instant
        var admitted: ContinuousClock.Instant?
        var firstToken: ContinuousClock.Instant?

        init(
            id: UInt64, client: [UInt8], requestID: String, prompt: [Int32], sampler: SamplerParams, maxTokens: Int,
            ignoreEndOfGeneration: Bool, stops: [String], tokenizer: Tokenizer
        ) {
            self.ignoreEndOfGeneration = ignoreEndOfGeneration
            self.id = id
            self.client = client
            self.requestID = requestID
            self.prompt = prompt
            self.history = prompt
            self.sampler = sampler
            self.maxTokens = maxTokens
            self.decoder = StreamingDecoder(tokenizer: tokenizer)
            self.stops = StopMatcher(stops: stops)
            self.submitted = Monotonic.now()
        }
    }

    var workers: [WorkerEntry] = []  // registration order
    var epoch: UInt64 = 0
    var pipeline: [[UInt8]] = []  // identities of the stages, in order
    private var firstStage: Socket?
    var sequences: [UInt64: Sequence] = [:]
    var order: [UInt64] = []  // admission order
    private var nextSequenceID: UInt64 = 1
    private var nextMicroBatch: UInt64 = 1
    /// A micro-batch sent to the first stage and not yet answered by the last.
    struct InFlightBatch {
        var sequences: [UInt64]
        var rows: Int
        var tokens: Int
        var sent: ContinuousClock.Instant
        /// Sequences that finished while this batch held them: their caches are released when
        /// it is answered (a stage that freed a cache first would drop the whole batch).
        var release: [UInt64] = []
    }
    private var inFlight: [UInt64: InFlightBatch] = [:]
    var stats = PipelineStats()
    private var lastHeartbeat = Monotonic.now()
    private var heartbeatCount: UInt64 = 0
    var droppedStale: UInt64 = 0
    var droppedMalformed: UInt64 = 0
    var pipelineWasReady = false
    /// The first plan waits for `minWorkers`; later ones follow membership.
    private var planned = false
    var needsPlan = false
    /// Why nothing is served, when nothing is ("" while serving).
    var holdReason = "waiting for workers"
    /// Workers a send found gone (ROUTER_MANDATORY's EHOSTUNREACH): reaped in the loop.
    var unreachable: Set<[UInt8]> = []
    var replans: UInt64 = 0
    /// The last workers lost, for `status`.
    private var lostWorkers: [WorkerStatus] = []
    private var tokensReplayed: UInt64 = 0
    /// When the pipeline last broke (a worker lost), for the recovery time in the log.
    private var brokenSince: ContinuousClock.Instant?
    /// A re-plan moving caches (CacheShipping.swift); nothing is stepped meanwhile.
    var migration: Migration?
    /// The next plan replays (a move failed).
    var forceReplay = false
    /// Since when a plan that would ship caches waits for the pipeline to settle.
    var shippingWaitSince: ContinuousClock.Instant?

    public init(options: CoordinatorOptions) throws {
        self.options = options
        log = ClusterLog("coordinator", verbose: options.verbose, quiet: options.quiet)
        files = try ModelLoader.open(path: options.modelPath)
        tokenizer = try files.tokenizer()
        fingerprint = try ModelFingerprint.of(path: options.modelPath)
        let attributes = try? FileManager.default.attributesOfItem(atPath: options.modelPath)
        modelBytes = (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
        footprint = KVFootprint(cache: options.cache, model: files.config)
        if let shared = options.context { context = shared } else { context = try Context() }
        if let security = options.security {
            // The key check must be listening before the router binds: without it libzmq admits any key.
            let log = self.log
            zap = try ZAPHandler(context: context, keys: security.zapTable) { request in
                log.info(
                    "refused a connection from \(request.address.isEmpty ? "?" : request.address): "
                        + (request.publicKey.map { "key \($0) is not in --authorized-keys" }
                            ?? "no CURVE key (\(request.mechanism))"))
            }
        } else {
            zap = nil
        }
        // ZMTP heartbeats, answered by the peers' I/O threads even inside a long forward pass:
        // a cut link closes its connection within seconds, and the next send to that worker
        // fails with EHOSTUNREACH (ROUTER_MANDATORY), which is how a lost worker is noticed.
        router = try Socket(
            context, .router,
            options: [
                .linger(.milliseconds(500)), .heartbeatInterval(.seconds(1)), .heartbeatTimeout(.seconds(4)),
                .maxMessageSize(CacheShipping.controlMaxFrameBytes(files.config)),
            ] + (options.security?.pair.serverOptions ?? []))
        endpoint = try router.bind(options.bind)
        for extra in options.extraBinds { _ = try router.bind(extra) }
        let keys =
            options.security.map {
                "; CURVE: key \($0.pair.publicKey), \($0.workers.count) worker and \($0.clients.count) client keys admitted"
            } ?? ""
        log.info(
            "listening on \(endpoint); model \(options.modelPath) (\(files.config.layerCount) layers, \(fingerprint)); waiting for \(options.minWorkers) worker(s)\(keys)"
        )
    }

    /// Serves until `shouldStop` returns true, then drains the workers.
    public func run(shouldStop: () -> Bool = { false }) throws {
        var poller = Poller()
        poller.add(router)
        while !shouldStop() {
            let ready = try poller.poll(timeout: .milliseconds(20))
            if ready[0].contains(.readable) {
                while try receiveOne() {}
            }
            let now = Monotonic.now()
            if now - lastHeartbeat >= options.heartbeatInterval { heartbeatAndReap(now) }
            if !unreachable.isEmpty { reapUnreachable() }
            if needsPlan || (!planned && workers.count >= options.minWorkers) { try plan() }
            if let m = migration {
                if now - m.started > CacheShipping.timeout {
                    abortMigration("not done within \(CacheShipping.timeout)")
                } else {
                    flushMigrationOutbox()
                }
            }
            for (id, f) in inFlight where now - f.sent > options.stepTimeout {
                log.info("micro-batch \(id) unanswered for \(options.stepTimeout): failing its sequences")
                inFlight[id] = nil
                for s in f.sequences {
                    sequences[s]?.inFlight = false
                    fail(s, code: .internalError, message: "the pipeline did not answer in time")
                }
                release(f.release)
            }
            // A pending plan that ships caches waits for the pipeline to empty: nothing new goes in.
            if !needsPlan && pipelineReady {
                while inFlight.count < credit, try step() {}
            }
        }
        log.info("shutting down: draining \(workers.count) worker(s)")
        for s in order { fail(s, code: .unavailable, message: "the coordinator is shutting down") }
        for w in workers {
            _ = try? router.send(
                .drain(Drain(epoch: epoch, reason: "coordinator shutting down")), to: w.identity, dontWait: true)
        }
        firstStage?.close()
        router.close()
        zap?.stop()
    }

    /// Micro-batches the pipeline may hold at once.
    private var credit: Int { max(1, options.maxInFlight ?? pipeline.count) }

    private var pipelineReady: Bool {
        guard !pipeline.isEmpty, migration == nil else { return false }
        let ready = pipelineSettled
        if ready && !pipelineWasReady {
            pipelineWasReady = true
            holdReason = ""
            var recovered = ""
            if let t = brokenSince {
                recovered = "; recovered \(Monotonic.now() - t) after the loss"
                brokenSince = nil
            }
            let replaying = order.compactMap { sequences[$0] }.filter {
                $0.fed < $0.history.count - 1 && !$0.generated.isEmpty
            }
            .count
            log.info(
                "pipeline ready (epoch \(epoch)): "
                    + pipeline.compactMap { id in
                        workers.first { $0.identity == id }.map { "\($0.id) \($0.layers)" }
                    }.joined(separator: " → ") + (replaying > 0 ? "; replaying \(replaying) live sequence(s)" : "")
                    + recovered)
        }
        return ready
    }

    // MARK: - Receiving

    /// Handles one waiting message; false when none was waiting.
    private func receiveOne() throws -> Bool {
        let inbound = try router.receiveMessage(dontWait: true)
        switch consume inbound {
        case .timeout:
            return false
        case .rejected(let identity, let error):
            droppedMalformed += 1
            log.debug("dropped a malformed frame: \(error)")
            if let identity, !isWorker(identity) {
                let code: ErrorCode
                if case .unsupportedVersion = error { code = .unsupportedVersion } else { code = .malformedMessage }
                send(.error(ErrorReply(code: code, message: "\(error)")), to: identity)
            }
            return true
        case .message(let incoming):
            let identity = incoming.identity ?? []
            let message = incoming.message
            let role = options.security?.role(userID: incoming.userID) ?? .local
            if let refusal = Self.refusal(of: message, from: role) {
                unauthorizedMessages += 1
                log.info("refused \(message.name) from \(role): \(refusal)")
                if case .register = message {
                    send(.refuse(Refuse(reason: .unauthorized, message: refusal)), to: identity)
                } else if !isWorker(identity) {
                    send(.error(ErrorReply(code: .unauthorized, message: refusal)), to: identity)
                }
                return true
            }
            if let i = workers.firstIndex(where: { $0.identity == identity }) { workers[i].lastHeard = Monotonic.now() }
            switch message {
            case .register(let r): handleRegister(r, from: identity, role: role)
            case .heartbeat(let h): handleHeartbeat(h, from: identity)
            case .sampledTokens(let s): handleSampled(s, from: identity)
            case .cacheLayer(let c):
                let blob =
                    expectsCacheLayer(c, from: identity)
                    ? incoming.withTensor { frame in frame.withUnsafeBytes { [UInt8]($0) } } : nil
                try handleCacheLayer(c, blob: blob, from: identity)
            case .cachesImported(let r): handleCachesImported(r, from: identity)
            case .submit(let s): handleSubmit(s, from: identity)
            case .cancel(let c):
                if let seq = sequences.values.first(where: { $0.client == identity && $0.requestID == c.requestID }) {
                    finish(seq.id, reason: .cancelled)
                } else {
                    send(
                        .error(
                            ErrorReply(requestID: c.requestID, code: .unknownRequest, message: "no such live request")),
                        to: identity)
                }
            case .statusRequest(let r): send(.status(status(includeSequences: r.includeSequences)), to: identity)
            case .drainRequest(let d): handleDrainRequest(d, from: identity)
            default:
                droppedMalformed += 1
            }
            return true
        }
    }

    private func isWorker(_ identity: [UInt8]) -> Bool { workers.contains { $0.identity == identity } }

    /// Why a peer of `role` may not send `message` (nil: it may). Worker keys run stages; client
    /// keys submit, cancel, ask for status and drain; in-process peers may do either.
    static func refusal(of message: WireMessage, from role: PeerRole) -> String? {
        switch (role, message) {
        case (.client, .register):
            return "\(role) may not register as a worker (worker keys go in --authorized-keys DIR/workers/)"
        case (.client, .heartbeat), (.client, .sampledTokens), (.client, .cacheLayer), (.client, .cachesImported):
            return "\(role) may not send worker messages"
        case (.worker, .submit), (.worker, .cancel):
            return "\(role) may not submit or cancel requests (client keys go in --authorized-keys DIR/clients/)"
        default:
            return nil
        }
    }

    func send(_ message: WireMessage, to identity: [UInt8]) {
        do {
            _ = try router.send(message, to: identity, dontWait: true)
        } catch {
            log.debug("cannot send \(message.name): \(error)")
            if case .hostUnreachable = error {
                if isWorker(identity) {
                    unreachable.insert(identity)
                } else {
                    for s in sequences.values where s.client == identity {
                        finish(s.id, reason: .cancelled, notify: false)
                    }
                }
            }
        }
    }

    private func handleRegister(_ r: Register, from identity: [UInt8], role: PeerRole) {
        guard r.modelFingerprint == fingerprint else {
            log.info("refused worker \(r.workerID): model fingerprint \(r.modelFingerprint) is not \(fingerprint)")
            send(
                .refuse(
                    Refuse(
                        reason: .modelMismatch,
                        message:
                            "model mismatch: the worker's model has fingerprint \(r.modelFingerprint), the coordinator serves \(fingerprint) (\(options.modelPath))"
                    )),
                to: identity)
            return
        }
        if let existing = workers.firstIndex(where: { $0.id == r.workerID }) {
            guard workers[existing].identity != identity else { return }
            // The same worker on a new connection (it lost ours and registered again): the old
            // connection is dead; its layers are planned anew.
            log.info("worker \(r.workerID) registered again on a new connection; replacing the old one")
            let old = workers.remove(at: existing)
            migrationLost(old.identity)
            if pipeline.contains(old.identity) { pipelineBroken() }
        }
        var entry = WorkerEntry(id: r.workerID, identity: identity, register: r, lastHeard: Monotonic.now())
        if case .worker(_, let key) = role { entry.publicKey = key }
        if options.security != nil && entry.publicKey.isEmpty && !r.dataEndpoint.hasPrefix("inproc://") {
            // Only an in-process worker comes without a key; a remote one's data socket needs its key.
            send(
                .refuse(
                    Refuse(reason: .unauthorized, message: "this coordinator requires CURVE keys; the worker has none")),
                to: identity)
            return
        }
        workers.append(entry)
        log.info(
            "worker \(r.workerID) registered (\(r.threads) threads, data \(r.dataEndpoint)); \(workers.count) known")
        // A worker joining a serving cluster takes a share of the layers: plan anew.
        if planned { needsPlan = true }
        send(
            .registerReply(
                RegisterReply(
                    workerID: r.workerID,
                    heartbeatIntervalMs: UInt32(options.heartbeatInterval.components.seconds * 1000),
                    heartbeatLiveness: UInt32(options.liveness))),
            to: identity)
    }

    private func handleHeartbeat(_ h: Heartbeat, from identity: [UInt8]) {
        guard let i = workers.firstIndex(where: { $0.identity == identity }) else {
            droppedMalformed += 1
            return
        }
        workers[i].heartbeatEpoch = h.epoch
        workers[i].load = h.load
        // Every stage should build the cache the Assign describes; a worker of another version
        // may ignore fields it does not know (or not report its cache at all). Once per epoch.
        if let load = h.load, load.layers.count > 0, h.epoch == epoch, !options.cacheName.isEmpty,
            workers[i].cacheCheckedEpoch != epoch
        {
            workers[i].cacheCheckedEpoch = epoch
            if load.cache.isEmpty {
                log.error(
                    "worker \(workers[i].id) does not report the cache it builds (an older version?): "
                        + "its answers may differ from `squat generate`'s with this coordinator's cache flags")
            } else if load.cache != options.cacheName {
                log.error(
                    "worker \(workers[i].id) builds a \(load.cache) cache, not the \(options.cacheName) of this "
                        + "coordinator's flags (another version?): its answers will differ from `squat generate`'s")
            }
        }
    }

    private func handleSampled(_ s: SampledTokens, from identity: [UInt8]) {
        guard s.epoch == epoch, identity == pipeline.last else {
            droppedStale += 1
            return
        }
        guard let f = inFlight.removeValue(forKey: s.microBatchID) else {
            droppedStale += 1
            return
        }
        for id in f.sequences { sequences[id]?.inFlight = false }
        release(f.release)
        stats.microBatches += 1
        stats.rows += UInt64(f.rows)
        stats.tokensIn += UInt64(f.tokens)
        stats.roundTripMicroseconds += Monotonic.microseconds(Monotonic.now() - f.sent)
        if stats.stageBusyMicroseconds.count != s.stageBusyMicroseconds.count {
            stats.stageBusyMicroseconds = Array(repeating: 0, count: s.stageBusyMicroseconds.count)
            stats.stageBusyMicroBatches = 0
        }
        stats.stageBusyMicroBatches += 1
        for (i, us) in s.stageBusyMicroseconds.enumerated() { stats.stageBusyMicroseconds[i] += us }
        for t in s.tokens {
            guard let seq = sequences[t.sequenceID], f.sequences.contains(t.sequenceID) else {
                droppedStale += 1
                continue
            }
            // Counted when delivered: a token of a request cancelled while its batch was in
            // flight is not output.
            stats.tokensOut += 1
            accept(Int32(bitPattern: t.tokenID), logprob: t.logprob, for: seq)
        }
    }

    /// The generator's rules, token by token: end-of-generation, stop strings, context, length.
    private func accept(_ token: Int32, logprob: Float, for seq: Sequence) {
        if seq.firstToken == nil { seq.firstToken = Monotonic.now() }
        if !seq.ignoreEndOfGeneration && tokenizer.isEndOfGeneration(token) {
            finish(seq.id, reason: .endOfSequence)
            return
        }
        seq.generated.append(token)
        seq.history.append(token)
        send(
            .tokenEvent(
                TokenEvent(
                    requestID: seq.requestID, index: UInt32(seq.generated.count - 1),
                    tokenID: UInt32(bitPattern: token),
                    piece: tokenizer.pieceBytes(token), logprob: logprob)),
            to: seq.client)
        guard sequences[seq.id] != nil else { return }  // the client is gone
        if seq.stops.feed(seq.decoder.append(token)).stopped {
            finish(seq.id, reason: .stopString)
        } else if seq.history.count >= files.config.contextLength {
            finish(seq.id, reason: .contextFull)
        } else if seq.generated.count >= seq.maxTokens {
            finish(seq.id, reason: .maxTokens)
        }
    }

    private func handleSubmit(_ s: Submit, from identity: [UInt8]) {
        func refuse(_ code: ErrorCode, _ message: String) {
            send(.error(ErrorReply(requestID: s.requestID, code: code, message: message)), to: identity)
        }
        if sequences.values.contains(where: { $0.client == identity && $0.requestID == s.requestID }) {
            return refuse(.duplicateRequest, "request '\(s.requestID)' is already live")
        }
        guard sequences.count < options.maxLiveRequests else {
            return refuse(
                .overloaded,
                "busy: \(sequences.count) live requests, the limit (--max-requests) is \(options.maxLiveRequests)")
        }
        let mine = sequences.values.filter { $0.client == identity }.count
        guard mine < options.maxRequestsPerClient else {
            return refuse(
                .overloaded,
                "busy: this client has \(mine) live requests, the limit (--max-requests-per-client) is \(options.maxRequestsPerClient)"
            )
        }
        let prompt: [Int32]
        switch s.prompt {
        case .text(let t): prompt = tokenizer.encode(t)
        case .chat(let messages):
            do {
                let text = try tokenizer.applyChatTemplate(
                    messages.map { ChatMessage(role: $0.role, content: $0.content) }, addGenerationPrompt: true)
                prompt = tokenizer.encode(text)
            } catch {
                return refuse(.invalidRequest, "chat template: \(error)")
            }
        case .tokens(let ids): prompt = ids.map { Int32(bitPattern: $0) }
        }
        let config = files.config
        guard !prompt.isEmpty else { return refuse(.invalidRequest, "the prompt is empty (no tokens)") }
        guard prompt.count < config.contextLength else {
            return refuse(
                .promptTooLong, "the prompt has \(prompt.count) tokens; the context holds \(config.contextLength)")
        }
        if let limit = options.maxPromptTokens, prompt.count > limit {
            return refuse(
                .promptTooLong, "the prompt has \(prompt.count) tokens; the limit (--max-prompt-tokens) is \(limit)")
        }
        let tokenLimit = options.maxTokensLimit ?? config.contextLength
        if Int(s.sampling.maxTokens) > tokenLimit {
            return refuse(
                .invalidRequest,
                "max_tokens \(s.sampling.maxTokens) is more than the limit (--max-tokens-limit) of \(tokenLimit)")
        }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= config.vocabularySize }) {
            return refuse(
                .invalidRequest, "prompt token id \(bad) is outside the vocabulary (0..<\(config.vocabularySize))")
        }
        do { try s.sampling.sampler.engineParameters.validate() } catch {
            return refuse(.invalidRequest, error.description)
        }
        var sampler = s.sampling.sampler
        if sampler.seed == nil { sampler.seed = 0 }
        let maxTokens = s.sampling.maxTokens == 0 ? options.defaultMaxTokens : Int(s.sampling.maxTokens)
        let seq = Sequence(
            id: nextSequenceID, client: identity, requestID: s.requestID, prompt: prompt, sampler: sampler,
            maxTokens: maxTokens, ignoreEndOfGeneration: s.sampling.ignoreEndOfGeneration, stops: s.sampling.stop,
            tokenizer: tokenizer)
        nextSequenceID += 1
        sequences[seq.id] = seq
        order.append(seq.id)
        log.debug("request \(s.requestID): sequence \(seq.id), \(prompt.count) prompt tokens")
    }

    // MARK: - Membership

    private func heartbeatAndReap(_ now: ContinuousClock.Instant) {
        lastHeartbeat = now
        heartbeatCount += 1
        let silence = options.heartbeatInterval * options.liveness
        // A stage inside a long forward pass cannot heartbeat: while a micro-batch is in
        // flight, pipeline workers get up to `busySilence` before they count as lost.
        let busySilence = max(silence, options.busyLiveness)
        let busy = !inFlight.isEmpty
        var lost: [(worker: WorkerEntry, allowed: Duration)] = []
        workers.removeAll { w in
            let allowed = busy && pipeline.contains(w.identity) ? busySilence : silence
            if now - w.lastHeard > allowed {
                lost.append((w, allowed))
                return true
            }
            return false
        }
        for w in workers {
            send(
                .heartbeat(Heartbeat(epoch: epoch, sequence: heartbeatCount, sentUnixMs: unixMilliseconds())),
                to: w.identity)
        }
        guard !lost.isEmpty else { return }
        for l in lost {
            log.info("worker \(l.worker.id) lost (silent for more than \(l.allowed))")
            remember(lost: l.worker)
        }
        if lost.contains(where: { pipeline.contains($0.worker.identity) }) { pipelineBroken() }
    }

    /// Workers whose connection is gone (a send failed with EHOSTUNREACH): lost now, without
    /// waiting for their heartbeats to lapse.
    private func reapUnreachable() {
        let gone = unreachable
        unreachable = []
        var broken = false
        workers.removeAll { w in
            guard gone.contains(w.identity) else { return false }
            log.info("worker \(w.id) lost (its connection closed)")
            remember(lost: w)
            if pipeline.contains(w.identity) { broken = true }
            return true
        }
        if broken { pipelineBroken() }
    }

    private func remember(lost w: WorkerEntry) {
        migrationLost(w.identity)
        var s = workerStatus(w)
        s.state = .lost
        lostWorkers = Array((lostWorkers + [s]).suffix(8))
    }

    /// A stage of the pipeline is gone: stop sending, plan among the others, replay.
    private func pipelineBroken() {
        if brokenSince == nil { brokenSince = Monotonic.now() }
        pipeline = []
        pipelineWasReady = false
        firstStage?.close()
        firstStage = nil
        needsPlan = true
    }

    /// A client (or the worker itself) asks a worker to leave: plan without it, then Drain it.
    private func handleDrainRequest(_ d: DrainRequest, from identity: [UInt8]) {
        guard let i = workers.firstIndex(where: { $0.id == d.workerID }) else {
            if !isWorker(identity) {
                send(
                    .error(ErrorReply(code: .invalidRequest, message: "no worker '\(d.workerID)' is registered")),
                    to: identity)
            }
            return
        }
        log.info("draining worker \(d.workerID)")
        workers[i].draining = true
        needsPlan = true
        if !isWorker(identity) { send(.status(status(includeSequences: false)), to: identity) }
    }

    /// Splits the layers over the workers (those not draining) and sends each its Assign: a new
    /// epoch. With a whole pipeline and live caches the moved layers' caches are shipped
    /// (`startMigration`, once no micro-batch is in flight); otherwise every stage starts with
    /// empty caches and every live sequence is replayed from its token history.
    private func plan() throws {
        // A move in progress finishes (or fails) first; the plan after it sees the new members.
        guard migration == nil else { return }
        if shippingApplies {
            // Quiesce: step() sends nothing while a plan is pending; the micro-batches in flight
            // finish, and the stages report ready at this epoch (a move right after a move).
            let waited = Monotonic.now() - (shippingWaitSince ?? Monotonic.now())
            if shippingWaitSince == nil { shippingWaitSince = Monotonic.now() }
            if !inFlight.isEmpty || (!pipelineSettled && waited < CacheShipping.settleTimeout) { return }
            shippingWaitSince = nil
            if pipelineSettled, try startMigration() {
                needsPlan = false
                planned = true
                return
            }
        }
        shippingWaitSince = nil
        forceReplay = false
        needsPlan = false
        planned = true
        // Workers asked to leave get nothing; they are let go once the new plan is out.
        let leaving = workers.filter(\.draining)
        workers.removeAll(where: \.draining)
        defer {
            for w in leaving {
                send(
                    .drain(Drain(epoch: epoch, reason: "drained: its layers moved to the other workers")),
                    to: w.identity)
                log.info("worker \(w.id) drained")
            }
        }
        let ranges = partition(workers)
        // Whatever happens next, the old pipeline's micro-batches are void.
        restartSequences()
        guard let ranges else {
            holdReason =
                workers.isEmpty
                ? "no workers: \(order.count) request(s) held until one joins"
                : "the workers' memory budgets do not hold the model: \(order.count) request(s) held until more join"
            log.info("cannot plan: " + holdReason)
            pipeline = []
            pipelineWasReady = false
            firstStage?.close()
            firstStage = nil
            return
        }
        try assignStages(ranges: ranges, keep: nil)
    }

    /// The planner's layer ranges for `members` (aligned with them), or nil when their memory
    /// budgets cannot hold the model (or there are none).
    func partition(_ members: [WorkerEntry]) -> [Range<Int>]? {
        let config = files.config
        let capacities = members.map {
            WorkerCapacity(threads: Int($0.register.threads), memoryBudgetBytes: $0.register.memoryBudgetBytes)
        }
        let perLayer = modelBytes / UInt64(max(1, config.layerCount))
        return members.isEmpty
            ? nil
            : PartitionPlanner.plan(
                layers: config.layerCount, workers: capacities, bytesPerLayer: perLayer,
                headLayers: files.outputHeadLayerEquivalents)
    }

    /// Starts a new epoch with `ranges` (aligned with `workers`): an Assign to every worker, the
    /// pipeline in order, a data socket to its first stage. With `keep`, the workers keep the
    /// caches of those sequences from that epoch (cache shipping); without, they start empty.
    func assignStages(ranges: [Range<Int>], keep: (epoch: UInt64, sequences: [UInt64])?) throws {
        epoch += 1
        replans += 1
        let used = ranges.indices.filter { !ranges[$0].isEmpty }
        pipeline = used.map { workers[$0].identity }
        for (n, i) in ranges.indices.enumerated() {
            let r = ranges[i]
            let isLast = n == used.count - 1
            workers[i].layers = LayerRange(start: UInt32(r.lowerBound), end: UInt32(r.upperBound))
            let nextEndpoint = !r.isEmpty && !isLast ? workers[used[n + 1]].register.dataEndpoint : ""
            // CURVE: a stage admits only its sender's key on its data socket, and connects to the
            // next with that one's key.
            let nextKey = !r.isEmpty && !isLast ? workers[used[n + 1]].publicKey : ""
            let upstreamKey =
                r.isEmpty ? "" : n == 0 ? (options.security?.pair.publicKey ?? "") : workers[used[n - 1]].publicKey
            send(
                .assign(
                    Assign(
                        epoch: epoch, layers: workers[i].layers, nextStageEndpoint: nextEndpoint,
                        isFirst: n == 0 && !r.isEmpty,
                        isLast: isLast && !r.isEmpty, cache: options.cache,
                        maxInFlight: UInt32(max(1, options.maxInFlight ?? used.count)),
                        nextStageServerKey: nextKey, upstreamKey: upstreamKey,
                        keepCachesFromEpoch: keep?.epoch ?? 0, sequenceIDs: keep?.sequences ?? [])),
                to: workers[i].identity)
        }
        var pushOptions: [SocketOption] = [.linger(.zero), .sendTimeout(.seconds(5))]
        if let security = options.security, !workers[used[0]].publicKey.isEmpty {
            pushOptions += security.pair.clientOptions(server: workers[used[0]].publicKey)
        }
        let push = try Socket(context, .push, options: pushOptions)
        try push.connect(workers[used[0]].register.dataEndpoint)
        firstStage?.close()
        firstStage = push
        pipelineWasReady = false
        holdReason = "epoch \(epoch): waiting for the workers to load their layers"
        log.info(
            "epoch \(epoch): planned " + used.map { "\(workers[$0].id) \(workers[$0].layers)" }.joined(separator: ", "))
    }

    /// Voids every micro-batch in flight and rewinds every live sequence to position 0: the
    /// next epoch's stages start empty, and replay rebuilds exactly the caches they had (the
    /// same prompt chunks, then the generated tokens, in the same positions).
    private func restartSequences() {
        for (_, b) in inFlight { release(b.release) }
        inFlight.removeAll()
        for id in order {
            guard let seq = sequences[id] else { continue }
            tokensReplayed += UInt64(seq.fed)
            seq.fed = 0
            seq.inFlight = false
        }
    }

    // MARK: - Scheduling

    /// Sends one micro-batch: a prefill chunk for sequences still reading their prompt, one row
    /// for each decoding sequence, among the sequences not already in flight. The live
    /// sequences are spread over the credit's micro-batches so that every stage has work.
    /// False when nothing was sent.
    private func step() throws -> Bool {
        guard let firstStage else { return false }
        var rows: [BatchRow] = []
        var tokens: [UInt32] = []
        var members: [UInt64] = []
        var total = 0
        let perBatch = max(1, (order.count + credit - 1) / credit)
        for id in order {
            guard members.count < perBatch else { break }
            guard let seq = sequences[id], !seq.inFlight else { continue }
            if seq.admitted == nil {
                // Admission: the whole request's KV cache (prompt + max tokens) must fit beside
                // the admitted ones on every stage with a memory budget; otherwise it waits.
                let verdict = admission(seq)
                if let never = verdict.never {
                    fail(id, code: .overloaded, message: "request too large for the cluster's KV memory: " + never)
                    continue
                }
                guard verdict.fits else { continue }
            }
            let row: BatchRow
            if seq.fed < seq.prompt.count {
                let n = min(options.prefillChunk, seq.prompt.count - seq.fed)
                if total > 0 && total + n > options.maxBatchRows { continue }
                let ends = seq.fed + n == seq.prompt.count
                // A replayed prompt whose first token is already known is not sampled again.
                let sample = ends && seq.generated.isEmpty
                row = BatchRow(
                    sequenceID: id, startPosition: UInt32(seq.fed), count: UInt32(n),
                    flags: sample ? [.promptEnds, .needLogits] : ends ? [.promptEnds] : [],
                    sampling: sample ? rowSampling(seq) : nil)
                tokens += seq.prompt[seq.fed..<seq.fed + n].map { UInt32(bitPattern: $0) }
                if seq.admitted == nil { seq.admitted = Monotonic.now() }
            } else if seq.fed < seq.history.count - 1 {
                // Replay of generated tokens after a new plan: into the caches, nothing sampled.
                // Past the first chunk a cache takes rows one position at a time, exactly as decode did.
                let n = min(options.prefillChunk, seq.history.count - 1 - seq.fed)
                if total > 0 && total + n > options.maxBatchRows { continue }
                row = BatchRow(sequenceID: id, startPosition: UInt32(seq.fed), count: UInt32(n))
                tokens += seq.history[seq.fed..<seq.fed + n].map { UInt32(bitPattern: $0) }
            } else {
                row = BatchRow(
                    sequenceID: id, startPosition: UInt32(seq.history.count - 1), count: 1, flags: [.needLogits],
                    sampling: rowSampling(seq))
                tokens.append(UInt32(bitPattern: seq.history.last!))
            }
            rows.append(row)
            members.append(id)
            total += Int(row.count)
        }
        guard !rows.isEmpty else { return false }
        let id = nextMicroBatch
        nextMicroBatch += 1
        let result = try firstStage.send(
            .stepBatch(StepBatch(epoch: epoch, microBatchID: id, rows: rows, tokenIDs: tokens)))
        guard result == .sent else {
            log.info("the first stage did not take micro-batch \(id); retrying")
            return false
        }
        for (row, m) in zip(rows, members) {
            guard let seq = sequences[m] else { continue }
            seq.inFlight = true
            seq.fed = Int(row.startPosition) + Int(row.count)
        }
        inFlight[id] = InFlightBatch(sequences: members, rows: rows.count, tokens: tokens.count, sent: Monotonic.now())
        stats.peakInFlight = max(stats.peakInFlight, UInt32(inFlight.count))
        return true
    }

    /// KV bytes a worker may give caches: its memory budget minus its share of the weights;
    /// nil without a budget.
    private func kvCapacity(_ w: WorkerEntry) -> UInt64? {
        guard w.register.memoryBudgetBytes > 0 else { return nil }
        let layers = UInt64(w.layers.end > w.layers.start ? w.layers.end - w.layers.start : 0)
        let weights = modelBytes / UInt64(max(1, files.config.layerCount)) * layers
        return w.register.memoryBudgetBytes > weights ? w.register.memoryBudgetBytes - weights : 0
    }

    private func kvNeed(_ seq: Sequence, _ w: WorkerEntry) -> UInt64 {
        let layers = w.layers.end > w.layers.start ? Int(w.layers.end - w.layers.start) : 0
        return footprint.bytes(
            tokens: min(seq.prompt.count + seq.maxTokens, files.config.contextLength), layers: layers)
    }

    /// Whether `seq` fits now beside the admitted sequences on every stage, and if it never can,
    /// why (naming the worker, the need and the room).
    private func admission(_ seq: Sequence) -> (fits: Bool, never: String?) {
        func mib(_ b: UInt64) -> String { String(format: "%.1f MiB", Double(b) / 1_048_576) }
        for identity in pipeline {
            guard let w = workers.first(where: { $0.identity == identity }), let capacity = kvCapacity(w) else {
                continue
            }
            let need = kvNeed(seq, w)
            if need > capacity {
                return (
                    false,
                    "\(seq.prompt.count) prompt + \(seq.maxTokens) max tokens need \(mib(need)) of KV cache on worker \(w.id) (layers \(w.layers)), whose --memory-budget leaves \(mib(capacity)) for caches"
                )
            }
            var reserved: UInt64 = 0
            for other in order where other != seq.id {
                if let o = sequences[other], o.admitted != nil { reserved += kvNeed(o, w) }
            }
            if reserved + need > capacity { return (false, nil) }
        }
        return (true, nil)
    }

    private func rowSampling(_ seq: Sequence) -> RowSampling {
        let p = seq.sampler.engineParameters
        let penalty =
            p.repetitionPenalty != 1 ? seq.history.suffix(p.repetitionWindow).map { UInt32(bitPattern: $0) } : []
        return RowSampling(sampler: seq.sampler, drawIndex: UInt32(seq.generated.count), penaltyTokens: penalty)
    }

    // MARK: - Ending

    private func fail(_ id: UInt64, code: ErrorCode, message: String) {
        guard let seq = sequences[id] else { return }
        send(.error(ErrorReply(requestID: seq.requestID, code: code, message: message)), to: seq.client)
        finish(id, reason: .error)
    }

    private func finish(_ id: UInt64, reason: Finished.Reason, notify: Bool = true) {
        guard let seq = sequences.removeValue(forKey: id) else { return }
        order.removeAll { $0 == id }
        let now = Monotonic.now()
        let admitted = seq.admitted ?? now
        let first = seq.firstToken ?? now
        if notify {
            send(
                .finished(
                    Finished(
                        requestID: seq.requestID, reason: reason,
                        usage: Usage(
                            promptTokens: UInt32(seq.prompt.count), completionTokens: UInt32(seq.generated.count)),
                        timings: Timings(
                            queuedMicroseconds: Monotonic.microseconds(admitted - seq.submitted),
                            prefillMicroseconds: Monotonic.microseconds(first - admitted),
                            decodeMicroseconds: Monotonic.microseconds(now - first),
                            totalMicroseconds: Monotonic.microseconds(now - seq.submitted)))),
                to: seq.client)
        }
        if seq.fed > 0, migration != nil {
            // Mid-move: a stage may be exporting or installing this cache; released after.
            migration?.release.append(id)
        } else if seq.fed > 0 {
            // A micro-batch still in the pipeline may hold rows of this sequence: a stage that
            // freed its cache first would drop the whole batch. Release after the answer.
            if let b = inFlight.first(where: { $0.value.sequences.contains(id) })?.key {
                inFlight[b]?.release.append(id)
            } else {
                release([id])
            }
        }
    }

    func release(_ ids: [UInt64]) {
        guard !ids.isEmpty else { return }
        for w in pipeline { send(.releaseSequence(ReleaseSequence(epoch: epoch, sequenceIDs: ids)), to: w) }
    }

    // MARK: - Status

    private func workerStatus(_ w: WorkerEntry) -> WorkerStatus {
        WorkerStatus(
            workerID: w.id, layers: w.layers, state: w.load?.state ?? .registered,
            kvBytesUsed: w.load?.kvBytesUsed ?? 0,
            kvBytesFree: w.load?.kvBytesFree ?? 0, tokensPerSecond: w.load?.tokensPerSecond ?? 0,
            dataEndpoint: w.register.dataEndpoint, droppedStale: w.load?.droppedStale ?? 0, cache: w.load?.cache ?? "")
    }

    private var pipelineStats: PipelineStats {
        var s = stats
        s.maxInFlight = UInt32(pipeline.isEmpty ? 0 : credit)
        s.replans = replans
        s.tokensReplayed = tokensReplayed
        s.holdReason = pipelineReady ? "" : holdReason
        return s
    }

    private func status(includeSequences: Bool) -> Status {
        let ws = workers.map(workerStatus)
        let ss: [SequenceStatus] = order.compactMap { id in
            guard let s = sequences[id] else { return nil }
            let state: SequenceState =
                !s.generated.isEmpty && s.fed < s.history.count - 1
                ? .replay : s.fed == 0 ? .queued : s.fed < s.prompt.count || s.generated.isEmpty ? .prefill : .decode
            return SequenceStatus(
                requestID: s.requestID, sequenceID: id, state: state, promptTokens: UInt32(s.prompt.count),
                generatedTokens: UInt32(s.generated.count))
        }
        var status = Status(
            epoch: epoch, modelFingerprint: fingerprint, workers: ws, sequences: includeSequences ? ss : [],
            droppedStale: droppedStale, droppedMalformed: droppedMalformed, pipeline: pipelineStats,
            lostWorkers: lostWorkers)
        status.security = options.security == nil ? "none" : "curve"
        status.authRejections = zap?.rejections ?? 0
        status.unauthorizedMessages = unauthorizedMessages
        return status
    }
}
