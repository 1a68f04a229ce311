import ArgumentParser
import Cluster
import Foundation
import LlamaModel

/// `squat worker`: serve a range of layers for a coordinator.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Serve a range of the model's layers for a coordinator.")

    @Option(help: "The coordinator's endpoint, e.g. tcp://127.0.0.1:5555.") var coordinator: String
    @OptionGroup var model: ModelOptions
    @Option(help: "Where this worker's data socket binds (port 0: any free port).") var dataBind = "tcp://127.0.0.1:0"
    @Option(help: "Worker id (default: host-pid).") var id: String?
    @Option(help: "Memory budget in MiB for weights and KV cache (0: no limit).") var memoryBudget: UInt64 = 0
    @Option(help: "Seconds to wait for the coordinator's answer to registration.") var registerTimeout: Int = 30
    @Flag(help: "Exit with status 3 when the coordinator is lost, instead of registering again with backoff.")
    var exitOnCoordinatorLoss = false
    @Flag(help: "Log every dropped frame.") var verbose = false
    @Flag(help: .hidden) var debugRefuseCacheImports = false  // fault injection for tests: shipped caches fail to import
    @OptionGroup var engine: EngineOptions
    @OptionGroup var cacheOptions: CacheOptions
    @OptionGroup var keys: ClientKeyOptions
    @Flag(help: "Allow binding the data socket on a non-loopback address without CURVE keys.") var insecure = false

    func validate() throws {
        try checkOpenBind(
            dataBind, what: "the worker's data socket", hasKeys: keys.curveSecret != nil, insecure: insecure)
    }

    func run() throws {
        Signals.install()
        let flags = cacheOptions
        let workerID = id ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        var options = WorkerOptions(
            coordinator: coordinator, modelPath: model.resolvedPath, workerID: workerID, threads: engine.threads
        ) { config, llama in
            try flags.applying(config).factory(headDim: llama.headDim, contextLength: llama.contextLength)
        }
        options.dataBind = dataBind
        options.memoryBudgetBytes = memoryBudget << 20
        options.activations = engine.activationPrecision
        options.registerTimeout = .seconds(registerTimeout)
        options.verbose = verbose
        options.refuseCacheImports = debugRefuseCacheImports
        options.rejoin = !exitOnCoordinatorLoss
        options.curve = try keys.keys()
        let worker = try Worker(options: options)
        switch try worker.run(shouldStop: { Signals.stop }) {
        case .drained:
            return
        case .coordinatorLost:
            StandardError.write("worker \(workerID): the coordinator is gone\n")
            throw ExitCode(3)
        case .refused(let why):
            StandardError.write("worker \(workerID): registration refused: \(why)\n")
            throw ExitCode(2)
        case .unusableAssign(let why):
            StandardError.write("worker \(workerID): \(why)\n")
            throw ExitCode(2)
        }
    }
}
