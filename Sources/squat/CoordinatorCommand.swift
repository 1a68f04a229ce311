import ArgumentParser
import Cluster
import Foundation
import LlamaModel

/// `squat coordinator`: accept workers and clients, plan the pipeline, schedule requests.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Run the coordinator: workers register, clients submit prompts.")

    @Option(help: "Endpoint for clients and workers.") var bind = "tcp://127.0.0.1:5555"
    @OptionGroup var model: ModelOptions
    @Option(help: "Workers to wait for before planning the pipeline.") var workers: Int = 1
    @Option(help: "Tokens generated when a request does not say.") var defaultMaxTokens: Int = 256
    @Option(help: "Micro-batches the pipeline may hold at once (default: one per stage).") var maxInFlight: Int?
    @Option(help: "Live requests (queued or running) beyond which new ones are refused as busy.") var maxRequests = 256
    @Option(help: "Live requests one client connection may have.") var maxRequestsPerClient = 64
    @Flag(help: "Log every dropped frame and admitted request.") var verbose = false
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be ≥ 1") }
        if let m = maxInFlight, m < 1 { throw ValidationError("--max-in-flight must be ≥ 1, got \(m)") }
        guard maxRequests >= 1, maxRequestsPerClient >= 1 else {
            throw ValidationError("--max-requests and --max-requests-per-client must be ≥ 1")
        }
    }

    func run() throws {
        Signals.install()
        let path = model.resolvedPath
        let files = try ModelLoader.open(path: path)
        // Check the cache flags here, where a mistake is reported, rather than in every worker.
        _ = try cacheOptions.factory(headDim: files.config.headDim, contextLength: files.config.contextLength)
        var options = CoordinatorOptions(bind: bind, modelPath: path)
        options.minWorkers = workers
        options.cache = try cacheOptions.wireConfig(headDim: files.config.headDim)
        options.defaultMaxTokens = defaultMaxTokens
        options.maxInFlight = maxInFlight
        options.maxLiveRequests = maxRequests
        options.maxRequestsPerClient = maxRequestsPerClient
        options.verbose = verbose
        let coordinator = try Coordinator(options: options)
        try coordinator.run(shouldStop: { Signals.stop })
    }
}
