import Foundation
import Prometheus
import Synchronization
import Wire

import enum CoreMetrics.MetricsSystem

/// The gateway's Prometheus metrics (swift-prometheus 2.x), rendered by `GET /metrics`.
///
/// Request metrics are recorded as requests run; cluster gauges and the coordinator's totals
/// are read from a `Status` on each scrape (`update(from:)`): counters follow the coordinator's
/// totals by their increase (a total that went down, e.g. when the pipeline's stage count
/// changed, restarts its counter, which Prometheus's `rate` treats as a counter reset).
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    let requests: @Sendable (String, String) -> Counter
    let authRejected: Counter
    let generatedTokens: Counter
    let promptTokens: Counter
    let timeToFirstToken: DurationHistogram
    let interTokenLatency: DurationHistogram
    let requestDuration: DurationHistogram
    let inFlight: Gauge

    let coordinatorUp: Gauge
    let serving: Gauge
    let epoch: Gauge
    let queued: Gauge
    let liveSequences: Gauge
    let workersUp: Gauge
    let replans: Counter
    let tokensReplayed: Counter
    let pipelineTokens: Counter
    let microBatches: Counter
    let cacheMigrations: Counter
    let cacheLayersShipped: Counter
    let cacheBytesShipped: Counter
    let cacheFallbacks: Counter
    let droppedFrames: @Sendable (String) -> Counter
    let rejectedPeers: @Sendable (String) -> Counter

    /// Per-worker and per-stage series come and go with the workers.
    private struct Scraped {
        var workers: [String: (used: Gauge, free: Gauge)] = [:]
        var workerStates: [String: Gauge] = [:]
        var stageBusy: [Int: Counter] = [:]
        var stageStep: [Int: Gauge] = [:]
        /// Coordinator totals at the last scrape, by series name.
        var last: [String: UInt64] = [:]
    }
    private let scraped = Mutex(Scraped())

    /// Buckets for time to first token (prefill included) and for the gap between tokens.
    static let firstTokenBuckets: [Duration] = [
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]
    static let tokenBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
        .milliseconds(100), .milliseconds(200), .milliseconds(500), .seconds(1), .seconds(2),
    ]
    static let requestBuckets: [Duration] = [
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "squat", metricName: metric, unitName: unit, helpText: help)
        }
        // MetricNameDescriptor is not Sendable: the @Sendable makers rebuild it from strings.
        requests = { endpoint, outcome in
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "squat", metricName: "http_requests", unitName: "total",
                    helpText:
                        "HTTP generation requests (/v1/completions, /v1/chat/completions) by endpoint and outcome: stop, length, error, bad_request, not_found, unavailable, overloaded, client_gone."
                ), labels: [("endpoint", endpoint), ("outcome", outcome)])
        }
        authRejected = registry.makeCounter(
            descriptor: name(
                "http_auth_rejected", "total", "Requests refused for a missing or wrong bearer token (--http-token)."))
        generatedTokens = registry.makeCounter(
            descriptor: name(
                "generated_tokens", "total", "Tokens generated for HTTP requests (their usage.completion_tokens)."))
        promptTokens = registry.makeCounter(
            descriptor: name("prompt_tokens", "total", "Prompt tokens of HTTP requests (their usage.prompt_tokens)."))
        timeToFirstToken = registry.makeDurationHistogram(
            descriptor: name(
                "time_to_first_token", "seconds", "HTTP request received → first token from the coordinator."),
            buckets: Self.firstTokenBuckets)
        interTokenLatency = registry.makeDurationHistogram(
            descriptor: name(
                "inter_token_latency", "seconds", "Time between consecutive tokens of one request (per-token latency)."),
            buckets: Self.tokenBuckets)
        requestDuration = registry.makeDurationHistogram(
            descriptor: name("http_request_duration", "seconds", "HTTP generation request received → finished."),
            buckets: Self.requestBuckets)
        inFlight = registry.makeGauge(
            descriptor: name("http_requests_in_flight", "", "HTTP generation requests being answered now."))

        coordinatorUp = registry.makeGauge(
            descriptor: name("coordinator_up", "", "1 if the coordinator answered the status asked for this scrape."))
        serving = registry.makeGauge(
            descriptor: name("pipeline_serving", "", "1 while a complete pipeline serves, 0 while requests are held."))
        epoch = registry.makeGauge(descriptor: name("epoch", "", "The coordinator's plan epoch."))
        queued = registry.makeGauge(
            descriptor: name("queue_length", "", "Sequences admitted but not started (state queued)."))
        liveSequences = registry.makeGauge(
            descriptor: name(
                "live_sequences", "", "Sequences the coordinator holds: queued, prefill, decode or replay."))
        workersUp = registry.makeGauge(descriptor: name("workers_up", "", "Workers in state ready."))
        replans = registry.makeCounter(
            descriptor: name("replans", "total", "Epochs planned: the first plan, then one per membership change."))
        tokensReplayed = registry.makeCounter(
            descriptor: name("tokens_replayed", "total", "Tokens fed again to rebuild caches after a new plan."))
        pipelineTokens = registry.makeCounter(
            descriptor: name("pipeline_tokens_sampled", "total", "Tokens sampled by the pipeline (all clients)."))
        microBatches = registry.makeCounter(
            descriptor: name("pipeline_micro_batches", "total", "Micro-batches the pipeline answered."))
        cacheMigrations = registry.makeCounter(
            descriptor: name(
                "cache_migrations", "total", "Re-plans that shipped the moved layers' KV caches instead of replaying."))
        cacheLayersShipped = registry.makeCounter(
            descriptor: name(
                "cache_layers_shipped", "total", "Layer caches moved between workers (per sequence and layer)."))
        cacheBytesShipped = registry.makeCounter(
            descriptor: name("cache_shipped", "bytes_total", "Bytes of the layer caches moved between workers."))
        cacheFallbacks = registry.makeCounter(
            descriptor: name(
                "cache_fallbacks", "total", "Cache moves that failed or timed out and fell back to replay."))
        droppedFrames = { reason in
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "squat", metricName: "dropped_frames", unitName: "total",
                    helpText: "Frames the coordinator dropped, by reason (stale: of an old epoch; malformed)."),
                labels: [("reason", reason)])
        }
        rejectedPeers = { reason in
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "squat", metricName: "rejected_connections", unitName: "total",
                    helpText:
                        "Peers the coordinator refused, by reason (key: CURVE key not admitted by ZAP; role: a message its key may not send)."
                ),
                labels: [("reason", reason)])
        }
        for reason in ["key", "role"] { _ = rejectedPeers(reason) }
        for outcome in ["stop", "length"] {
            for endpoint in [GenerationRequest.Kind.completion, .chat] { _ = requests(endpoint.rawValue, outcome) }
        }
    }

    /// Records a finished HTTP request.
    func request(_ endpoint: GenerationRequest.Kind, outcome: String) {
        requests(endpoint.rawValue, outcome).increment()
    }

    /// The coordinator did not answer a status: cluster gauges keep their last values.
    func coordinatorDown() { coordinatorUp.set(Double(0)) }

    /// Cluster gauges and coordinator totals from a fresh status.
    func update(from s: Status) {
        coordinatorUp.set(Double(1))
        let p = s.pipeline
        serving.set(p.holdReason.isEmpty ? Double(1) : Double(0))
        epoch.set(Double(s.epoch))
        queued.set(Double(s.sequences.filter { $0.state == .queued }.count))
        liveSequences.set(Double(s.sequences.count))
        workersUp.set(Double(s.workers.filter { $0.state == .ready }.count))
        let registry = registry
        scraped.withLock { st in
            // The previous totals, for the mean step time of each stage since the last scrape.
            let lastBatches = st.last["stage_busy_micro_batches"]
            let lastBusy = p.stageBusyMicroseconds.indices.map { st.last["stage_busy_\($0)"] }
            func follow(_ key: String, _ counter: Counter, _ total: UInt64, scale: Double = 1) {
                let last = st.last[key] ?? 0
                if total < last { counter.reset() }
                let delta = total < last ? total : total - last
                if delta > 0 {
                    if scale == 1 {
                        counter.increment(by: Int64(clamping: delta))
                    } else {
                        counter.increment(by: Double(delta) * scale)
                    }
                }
                st.last[key] = total
            }
            follow("replans", replans, p.replans)
            follow("tokens_replayed", tokensReplayed, p.tokensReplayed)
            follow("tokens_out", pipelineTokens, p.tokensOut)
            follow("micro_batches", microBatches, p.microBatches)
            follow("cache_migrations", cacheMigrations, p.cacheMigrations)
            follow("cache_layers_shipped", cacheLayersShipped, p.cacheLayersShipped)
            follow("cache_bytes_shipped", cacheBytesShipped, p.cacheBytesShipped)
            follow("cache_fallbacks", cacheFallbacks, p.cacheFallbacks)
            follow("dropped_stale", droppedFrames("stale"), s.droppedStale)
            follow("dropped_malformed", droppedFrames("malformed"), s.droppedMalformed)
            follow("rejected_key", rejectedPeers("key"), s.authRejections)
            follow("rejected_role", rejectedPeers("role"), s.unauthorizedMessages)

            let busyName = MetricNameDescriptor(
                namespace: "squat", metricName: "stage_busy", unitName: "seconds_total",
                helpText: "Compute time of each pipeline stage (in pipeline order), summed over micro-batches.")
            for (i, us) in p.stageBusyMicroseconds.enumerated() {
                let counter =
                    st.stageBusy[i] ?? registry.makeCounter(descriptor: busyName, labels: [("stage", String(i))])
                st.stageBusy[i] = counter
                follow("stage_busy_\(i)", counter, us, scale: 1e-6)
            }
            for (i, counter) in st.stageBusy where i >= p.stageBusyMicroseconds.count {
                registry.unregisterCounter(counter)
                st.stageBusy[i] = nil
                st.last["stage_busy_\(i)"] = nil
            }
            // Every micro-batch passes every stage once: a stage's mean step time over the scrape
            // interval is its busy time's increase over the micro-batches'.
            let stepName = MetricNameDescriptor(
                namespace: "squat", metricName: "stage_step_latency", unitName: "seconds",
                helpText:
                    "Mean compute time of one micro-batch in each pipeline stage (in pipeline order) since the previous scrape."
            )
            // The busy totals restart with the batch count when the stage count changes: then
            // (or at the first scrape) the mean is over everything since.
            let restarted = lastBatches.map { p.stageBusyMicroBatches < $0 } ?? true
            for (i, us) in p.stageBusyMicroseconds.enumerated() {
                let gauge = st.stageStep[i] ?? registry.makeGauge(descriptor: stepName, labels: [("stage", String(i))])
                st.stageStep[i] = gauge
                let previousBusy = restarted ? 0 : lastBusy[i] ?? 0
                let previousBatches = restarted ? 0 : lastBatches ?? 0
                guard p.stageBusyMicroBatches > previousBatches, us >= previousBusy else { continue }
                gauge.set(Double(us - previousBusy) * 1e-6 / Double(p.stageBusyMicroBatches - previousBatches))
            }
            st.last["stage_busy_micro_batches"] = p.stageBusyMicroBatches
            for (i, gauge) in st.stageStep where i >= p.stageBusyMicroseconds.count {
                registry.unregisterGauge(gauge)
                st.stageStep[i] = nil
            }

            let usedName = MetricNameDescriptor(
                namespace: "squat", metricName: "worker_kv_used", unitName: "bytes",
                helpText: "KV-cache bytes a worker uses.")
            let freeName = MetricNameDescriptor(
                namespace: "squat", metricName: "worker_kv_free", unitName: "bytes",
                helpText: "KV-cache bytes a worker has left under its memory budget.")
            let stateName = MetricNameDescriptor(
                namespace: "squat", metricName: "worker_state", unitName: "",
                helpText: "1 for each worker, labelled with its state (registered, loading, ready, draining, lost).")
            var seen: Set<String> = []
            for w in s.workers {
                seen.insert(w.workerID)
                let gauges =
                    st.workers[w.workerID]
                    ?? (
                        registry.makeGauge(descriptor: usedName, labels: [("worker", w.workerID)]),
                        registry.makeGauge(descriptor: freeName, labels: [("worker", w.workerID)])
                    )
                st.workers[w.workerID] = gauges
                gauges.used.set(Double(w.kvBytesUsed))
                gauges.free.set(Double(w.kvBytesFree))
                let state = WorkerState.names[w.state.rawValue] ?? "\(w.state.rawValue)"
                let key = "\(w.workerID)\u{0}\(state)"
                if st.workerStates[key] == nil {
                    // A worker has one state series at a time: drop its old one.
                    for (k, g) in st.workerStates where k.hasPrefix(w.workerID + "\u{0}") {
                        registry.unregisterGauge(g)
                        st.workerStates[k] = nil
                    }
                    let g = registry.makeGauge(
                        descriptor: stateName, labels: [("worker", w.workerID), ("state", state)])
                    g.set(Double(1))
                    st.workerStates[key] = g
                }
            }
            for (id, gauges) in st.workers where !seen.contains(id) {
                registry.unregisterGauge(gauges.used)
                registry.unregisterGauge(gauges.free)
                st.workers[id] = nil
            }
            for (k, g) in st.workerStates {
                guard let id = k.split(separator: "\u{0}", maxSplits: 1).first.map(String.init), !seen.contains(id)
                else { continue }
                registry.unregisterGauge(g)
                st.workerStates[k] = nil
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    public func render() -> String { registry.emitToString() }

    /// Sends swift-metrics (e.g. Hummingbird's `MetricsMiddleware`: request counts and
    /// durations by route) to `registry`, with names and labels made Prometheus-safe. The
    /// metrics system is process-wide and takes one factory: only the first call has an effect.
    static func bootstrapMetricsSystem(into registry: PrometheusCollectorRegistry) -> Bool {
        guard !bootstrapped.exchange(true, ordering: .relaxed) else { return false }
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { name, labels in
            (sanitize(name), labels.map { (sanitize($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        return true
    }

    private static let bootstrapped = Atomic<Bool>(false)

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`: every other character becomes `_`.
    static func sanitize(_ name: String) -> String {
        var out = ""
        for (i, c) in name.unicodeScalars.enumerated() {
            let ok =
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":"
                || (i > 0 && c >= "0" && c <= "9")
            out.unicodeScalars.append(ok ? c : "_")
        }
        return out
    }
}
