import ArgumentParser
import Cluster
import Foundation
import Gateway
import LlamaModel
import Wire

/// `squat coordinator`: accept workers and clients, plan the pipeline, schedule requests.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Run the coordinator: workers register, clients submit prompts.")

    @Option(help: "Endpoint for clients and workers.") var bind = "tcp://127.0.0.1:5555"
    @OptionGroup var model: ModelOptions
    @Option(help: "Workers to wait for before planning the pipeline.") var workers: Int = 1
    @Option(help: "Tokens generated when a request does not say.") var defaultMaxTokens: Int = 256
    @Option(help: "Micro-batches the pipeline may hold at once (default: one per stage).") var maxInFlight: Int?
    @Flag(
        help:
            "On a re-plan, replay every live sequence into empty caches instead of shipping the moved layers' caches to their new owners."
    ) var replayOnly = false
    @Option(help: "Live requests (queued or running) beyond which new ones are refused as busy.") var maxRequests = 256
    @Option(help: "Live requests one client connection may have.") var maxRequestsPerClient = 64
    @Option(help: "The longest prompt accepted, in tokens (default: the context length − 1).") var maxPromptTokens: Int?
    @Option(help: "The most tokens one request may ask to generate (default: the context length).") var maxTokensLimit:
        Int?
    @Flag(help: "Log every dropped frame and admitted request.") var verbose = false
    @OptionGroup var cacheOptions: CacheOptions
    @Option(
        name: .customLong("http"),
        help: ArgumentHelp(
            "Also serve an OpenAI-compatible HTTP API, /metrics and /health on HOST:PORT (port 0: a free one).",
            valueName: "host:port"))
    var http: String?
    @Option(
        name: .customLong("http-token"),
        help: ArgumentHelp(
            "Bearer token required by /v1/* and /metrics (default: $SQUAT_HTTP_TOKEN; none: no authentication).",
            valueName: "token"))
    var httpToken: String?
    @Option(
        help: ArgumentHelp(
            "Directory holding the coordinator's CURVE key pair (NAME.key, NAME.pub), as `squat keygen` writes it.",
            valueName: "dir"))
    var curveSecret: String?
    @Option(
        help: ArgumentHelp(
            "Directory of admitted public keys: workers/*.pub may register as workers, clients/*.pub may submit.",
            valueName: "dir"))
    var authorizedKeys: String?
    @Flag(help: "Allow binding a non-loopback address without CURVE keys (or HTTP without a token).") var insecure =
        false

    func validate() throws {
        guard (curveSecret == nil) == (authorizedKeys == nil) else {
            throw ValidationError(
                "--curve-secret and --authorized-keys go together (the coordinator's keys and the keys it admits)")
        }
        try checkOpenBind(bind, what: "the coordinator", hasKeys: curveSecret != nil, insecure: insecure)
        guard workers >= 1 else { throw ValidationError("--workers must be ≥ 1") }
        if let m = maxInFlight, m < 1 { throw ValidationError("--max-in-flight must be ≥ 1, got \(m)") }
        if let m = maxPromptTokens, m < 1 { throw ValidationError("--max-prompt-tokens must be ≥ 1, got \(m)") }
        if let m = maxTokensLimit, m < 1 { throw ValidationError("--max-tokens-limit must be ≥ 1, got \(m)") }
        guard maxRequests >= 1, maxRequestsPerClient >= 1 else {
            throw ValidationError("--max-requests and --max-requests-per-client must be ≥ 1")
        }
        if let http, GatewayOptions.parseAddress(http) == nil {
            throw ValidationError("--http takes HOST:PORT (e.g. 127.0.0.1:8000), got '\(http)'")
        }
        if httpToken != nil && http == nil { throw ValidationError("--http-token needs --http") }
        if let t = httpToken, t.isEmpty { throw ValidationError("--http-token must not be empty") }
    }

    /// The HTTP gateway on a non-loopback address needs a token (or --insecure).
    private func checkHTTP(_ address: (host: String, port: Int), token: String?) throws {
        let local = ["127.0.0.1", "localhost", "::1", "[::1]"].contains(address.host) || address.host.hasPrefix("127.")
        guard token == nil, !local, !insecure else { return }
        throw ValidationError(
            "refusing to serve HTTP on \(address.host):\(address.port) without --http-token (or $SQUAT_HTTP_TOKEN): anyone who "
                + "can reach it could submit prompts. Give a token, bind a loopback address, or pass --insecure.")
    }

    func run() throws {
        Signals.install()
        let path = model.resolvedPath
        let files = try ModelLoader.open(path: path)
        // Check the cache flags here, where a mistake is reported, rather than in every worker.
        let factory = try cacheOptions.factory(headDim: files.config.headDim, contextLength: files.config.contextLength)
        var options = CoordinatorOptions(bind: bind, modelPath: path)
        options.minWorkers = workers
        options.cache = try cacheOptions.wireConfig(headDim: files.config.headDim)
        options.cacheName = factory.name
        options.defaultMaxTokens = defaultMaxTokens
        options.maxInFlight = maxInFlight
        options.shipCaches = !replayOnly
        options.maxLiveRequests = maxRequests
        options.maxRequestsPerClient = maxRequestsPerClient
        options.maxPromptTokens = maxPromptTokens
        options.maxTokensLimit = maxTokensLimit
        options.verbose = verbose
        if let curveSecret, let authorizedKeys {
            do {
                options.security = try AuthorizedKeys.load(
                    secretDirectory: curveSecret, authorizedDirectory: authorizedKeys)
            } catch {
                throw ValidationError("CURVE keys: \(error)")
            }
        }
        let token =
            httpToken ?? ProcessInfo.processInfo.environment["SQUAT_HTTP_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let http, let address = GatewayOptions.parseAddress(http) { try checkHTTP(address, token: token) }
        // The HTTP gateway is a client like any other, in this process: its ClusterClients reach
        // the coordinator's ROUTER over an extra inproc:// endpoint, so they share its context.
        var gatewayEndpoint: (endpoint: String, context: Context)?
        if http != nil {
            let context = try Context()
            let endpoint = "inproc://squat-gateway-\(UUID().uuidString)"
            options.context = context
            options.extraBinds = [endpoint]
            gatewayEndpoint = (endpoint, context)
        }
        let coordinator = try Coordinator(options: options)
        var gateway: Gateway?
        if let http, let address = GatewayOptions.parseAddress(http), let g = gatewayEndpoint {
            let created =
                (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
                .map { Int($0.timeIntervalSince1970) } ?? Int(Date().timeIntervalSince1970)
            let server = Gateway(
                options: GatewayOptions(
                    host: address.host, port: address.port, token: token, coordinatorEndpoint: g.endpoint,
                    context: g.context,
                    modelID: URL(fileURLWithPath: path).lastPathComponent, modelCreated: created))
            try server.start()
            gateway = server
        }
        defer { gateway?.stop() }
        try coordinator.run(shouldStop: { Signals.stop })
    }
}
