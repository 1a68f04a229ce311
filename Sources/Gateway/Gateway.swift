import Cluster
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Wire

/// Settings of the HTTP gateway.
public struct GatewayOptions: Sendable {
    /// Address to listen on; port 0 picks a free one (see `Gateway.start()`'s result).
    public var host: String
    public var port: Int
    /// Bearer token for `/v1/*` and `/metrics`; nil: no authentication.
    public var token: String?
    /// The coordinator's endpoint the gateway's clients connect to (an `inproc://` one of
    /// `context`).
    public var coordinatorEndpoint: String
    public var context: Context
    /// The model's id in the API (`GET /v1/models`): its file name.
    public var modelID: String
    /// `created` of the model object (seconds since the Unix epoch).
    public var modelCreated: Int
    /// Longest silence of the coordinator while a request is live.
    public var requestTimeout: Duration = .seconds(120)
    /// Largest request body accepted.
    public var maxBodyBytes = 4 << 20

    public init(
        host: String, port: Int, token: String?, coordinatorEndpoint: String, context: Context, modelID: String,
        modelCreated: Int
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.coordinatorEndpoint = coordinatorEndpoint
        self.context = context
        self.modelID = modelID
        self.modelCreated = modelCreated
    }

    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6).
    public static func parseAddress(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }
}

/// An OpenAI-compatible HTTP API and Prometheus metrics in front of a coordinator, on
/// Hummingbird (SwiftNIO event loops and Swift concurrency threads of its own). It is a client
/// of the coordinator like any other: each request gets a `ClusterClient` on a thread of its own
/// (`CoordinatorLink`), so the coordinator's loop stays single-threaded and no socket is shared.
public final class Gateway: Sendable {
    public let options: GatewayOptions
    public let metrics: GatewayMetrics
    let link: CoordinatorLink
    let log = ClusterLog("http")
    private let state = Mutex(RunState())
    private let stopped = DispatchSemaphore(value: 0)

    private struct RunState {
        var task: Task<Void, Never>?
        var group: ServiceGroup?
        var address: String?
        var failure: String?
    }

    public init(options: GatewayOptions) {
        self.options = options
        metrics = GatewayMetrics()
        link = CoordinatorLink(
            endpoint: options.coordinatorEndpoint, context: options.context, timeout: options.requestTimeout)
    }

    /// Starts serving and waits until the listening socket is bound; returns its address
    /// (`http://HOST:PORT`, with the real port when 0 was asked).
    @discardableResult
    public func start(timeout: Duration = .seconds(30)) throws -> String {
        let bound = DispatchSemaphore(value: 0)
        let router = makeRouter()
        var logger = Logger(label: "squat.http") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                let host = self.options.host.contains(":") ? "[\(self.options.host)]" : self.options.host
                self.state.withLock { $0.address = "http://\(host):\(port)" }
                bound.signal()
            },
            logger: logger)
        let stopped = stopped
        // Our own service group: no signal handlers (the coordinator has its own), and a
        // graceful shutdown that `stop()` triggers.
        let group = ServiceGroup(services: [app], logger: logger)
        let task = Task.detached {
            do {
                try await group.run()
            } catch {
                self.state.withLock { $0.failure = "\(error)" }
            }
            bound.signal()
            stopped.signal()
        }
        state.withLock {
            $0.task = task
            $0.group = group
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        guard bound.wait(timeout: .now() + seconds) == .success else {
            throw ClusterError(
                "the HTTP gateway did not start listening on \(options.host):\(options.port) within \(timeout)")
        }
        let (address, failure) = state.withLock { ($0.address, $0.failure) }
        guard let address, failure == nil else {
            throw ClusterError(
                "the HTTP gateway cannot listen on \(options.host):\(options.port): \(failure ?? "unknown error")")
        }
        if GatewayMetrics.bootstrapMetricsSystem(into: metrics.registry) == false {
            log.info(
                "swift-metrics was already bootstrapped in this process: Hummingbird's own request metrics are not in /metrics"
            )
        }
        log.info(
            "HTTP gateway on \(address) (OpenAI API under /v1, /metrics, /health); model id '\(options.modelID)'"
                + (options.token == nil ? "; no authentication" : "; bearer token required"))
        return address
    }

    /// Stops the server: no new connections, requests in progress may finish (they fail
    /// quickly once the coordinator has stopped); after 5 s, whatever is left is cancelled.
    public func stop() {
        let (task, group) = state.withLock { s in
            defer {
                s.task = nil
                s.group = nil
            }
            return (s.task, s.group)
        }
        guard let task, let group else { return }
        Task.detached { await group.triggerGracefulShutdown() }
        if stopped.wait(timeout: .now() + 5) == .timedOut {
            task.cancel()
            _ = stopped.wait(timeout: .now() + 2)
        }
    }

    // MARK: Routes

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        // Middleware applies to the routes added after it: add it first. Hummingbird's request
        // metrics (swift-metrics) outermost, so that they see the error responses' statuses.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: OpenAIErrorMiddleware())
        if let token = options.token { router.add(middleware: BearerAuthMiddleware(token: token, metrics: metrics)) }

        router.get("/health") { _, _ in try await self.health() }
        router.get("/metrics") { _, _ in try await self.scrape() }
        router.get("/v1/models") { _, _ in
            self.json(["object": "list", "data": [self.modelObject]])
        }
        router.get("/v1/models/:model") { _, context in
            guard context.parameters.get("model") == self.options.modelID else {
                throw APIError.notFound(
                    "the model '\(context.parameters.get("model") ?? "")' does not exist", code: "model_not_found",
                    param: "model")
            }
            return self.json(self.modelObject)
        }
        router.post("/v1/completions") { request, context in
            try await self.generate(request, context: context, kind: .completion)
        }
        router.post("/v1/chat/completions") { request, context in
            try await self.generate(request, context: context, kind: .chat)
        }
        return router
    }

    var modelObject: JSONValue {
        [
            "id": JSONValue(options.modelID), "object": "model", "created": JSONValue(options.modelCreated),
            "owned_by": "squat",
        ]
    }

    func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: value.encoded())))
    }

    /// 200 while a pipeline serves, else 503 with the coordinator's reason (a readiness check).
    func health() async throws -> Response {
        do {
            let s = try await link.status(includeSequences: false)
            let ready = s.workers.filter { $0.state == .ready }.count
            if s.pipeline.holdReason.isEmpty {
                return json(["status": "ok", "model": JSONValue(options.modelID), "workers_ready": JSONValue(ready)])
            }
            return json(
                [
                    "status": "unavailable", "reason": JSONValue(s.pipeline.holdReason),
                    "workers_ready": JSONValue(ready),
                ],
                status: .serviceUnavailable)
        } catch {
            return json(
                ["status": "unavailable", "reason": JSONValue("the coordinator does not answer: \(error)")],
                status: .serviceUnavailable)
        }
    }

    /// Refreshes the cluster gauges from the coordinator's status, then renders every metric.
    func scrape() async throws -> Response {
        do {
            metrics.update(from: try await link.status(includeSequences: true))
        } catch {
            metrics.coordinatorDown()
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
}
