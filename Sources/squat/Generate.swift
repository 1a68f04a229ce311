import ArgumentParser
import Cluster
import Foundation
import KVCache
import LlamaModel
import Wire

/// Sampling flags shared by `generate` and `submit`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(help: "Top-k (0 disables).") var topK: Int = 40
    @Option(help: "Top-p (1 disables).") var topP: Float = 0.95
    @Option(help: "Min-p (0 disables).") var minP: Float = 0.05
    @Option(help: "Repetition penalty (1 disables).") var repeatPenalty: Float = 1.0
    @Option(help: "Tokens considered by the repetition penalty.") var repeatLastN: Int = 64
    @Option(help: "Random seed (same seed, same output).") var seed: UInt64 = 0
    @Option(help: "Maximum tokens to generate.") var maxTokens: Int = 256
    @Option(help: "Stop when this text appears (repeatable).") var stop: [String] = []
    @Flag(help: "Do not stop at end-of-generation tokens.") var ignoreEos = false

    var parameters: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repetitionPenalty = repeatPenalty
        p.repetitionWindow = repeatLastN
        p.seed = seed
        return p
    }
}

/// Prompt text from an argument or a file, optionally wrapped in the model's chat template.
struct PromptOptions: ParsableArguments {
    @Flag(help: "Apply the model's chat template to the prompt (as a user message).") var chat = false
    @Option(help: "System message for --chat (default: the template's own).") var system: String?
    @Option(help: "Read the prompt from this file.") var promptFile: String?
    @Argument(help: "The prompt.") var prompt: String?

    func validate() throws {
        if (prompt == nil) == (promptFile == nil) {
            throw ValidationError("give either a PROMPT argument or --prompt-file FILE")
        }
    }

    func text() throws -> String {
        if let promptFile {
            guard let data = FileManager.default.contents(atPath: promptFile) else {
                throw ValidationError("cannot read prompt file '\(promptFile)'")
            }
            return String(decoding: data, as: UTF8.self)
        }
        return prompt ?? ""
    }

    /// The prompt's token ids, as llama.cpp would feed them.
    func tokens(_ tokenizer: Tokenizer) throws -> [Int32] {
        var text = try text()
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: text))
            text = try tokenizer.applyChatTemplate(messages, addGenerationPrompt: true)
        }
        return tokenizer.encode(text)
    }
}

/// Engine flags: threads and activation precision.
struct EngineOptions: ParsableArguments {
    @Option(help: "Compute threads (default: all cores).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Activation precision: q8 (int8 per block of 32, like llama.cpp; about twice as fast) or f32 (matches a float32 reference).")
    var activations: String = "q8"

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1, got \(threads)") }
        guard ActivationPrecision(rawValue: activations) != nil else {
            throw ValidationError("--activations must be f32 or q8, got '\(activations)'")
        }
    }
    var activationPrecision: ActivationPrecision { ActivationPrecision(rawValue: activations) ?? .q8 }
}

/// `squat generate`: text for a prompt, streamed to stdout; statistics to stderr.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text for a prompt (streamed to stdout).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var cacheOptions: CacheOptions
    @Option(
        help: ArgumentHelp(
            "Run the model as a pipeline of N stages in this process: a coordinator and N workers over inproc://, the cluster's own code (0: the plain generator).",
            valueName: "N"))
    var stages = 0

    func validate() throws {
        guard stages >= 0 else { throw ValidationError("--stages must be ≥ 0, got \(stages)") }
        if stages > 0 && sampling.maxTokens < 1 { throw ValidationError("--max-tokens must be ≥ 1 with --stages") }
    }

    func run() throws {
        if stages > 0 { return try runStages() }
        let loaded = try LoadedModel.load(path: model.resolvedPath)
        let factory = try cacheOptions.factory(headDim: loaded.config.headDim, contextLength: loaded.config.contextLength)
        let tokens = try promptOptions.tokens(loaded.tokenizer)
        let stage = LlamaStage(weights: loaded.weights, threads: engine.threads, activations: engine.activationPrecision)
        let generator = Generator(stage: stage, tokenizer: loaded.tokenizer, cacheFactory: factory)
        let request = GenerationRequest(
            prompt: tokens, sampling: sampling.parameters, maxTokens: sampling.maxTokens, stopStrings: sampling.stop,
            ignoreEndOfGeneration: sampling.ignoreEos)
        let out = FileHandle.standardOutput
        let result = try generator.generate(request) { text in
            out.write(Data(text.utf8))
        }
        StandardError.write(
            String(
                format: "\n[%d prompt tokens, prefill %.1f tok/s; %d generated, decode %.1f tok/s; finish: %@]\n",
                result.promptTokens, result.prefillTokensPerSecond, result.tokens.count, result.decodeTokensPerSecond,
                result.finishReason.rawValue))
    }
}

extension Generate {
    /// The same request through an in-process cluster of `stages` pipeline stages.
    func runStages() throws {
        let path = model.resolvedPath
        let files = try ModelLoader.open(path: path)
        let config = files.config
        guard stages <= config.layerCount else {
            throw ValidationError("--stages \(stages) exceeds the model's \(config.layerCount) layers")
        }
        let factory = try cacheOptions.factory(headDim: config.headDim, contextLength: config.contextLength)
        let prompt = try promptOptions.tokens(try files.tokenizer())
        var coordinator = CoordinatorOptions(bind: "", modelPath: path)
        coordinator.cache = try cacheOptions.wireConfig(headDim: config.headDim)
        coordinator.cacheName = factory.name
        coordinator.quiet = true
        let flags = cacheOptions
        let workers = (0..<stages).map { i in
            var w = WorkerOptions(
                coordinator: "", modelPath: path, workerID: "stage\(i)", threads: max(1, engine.threads / stages)
            ) { config, llama in
                try flags.applying(config).factory(headDim: llama.headDim, contextLength: llama.contextLength)
            }
            w.activations = engine.activationPrecision
            w.quiet = true
            return w
        }
        let cluster = try LocalCluster(coordinator: coordinator, workers: workers)
        defer { cluster.shutdown() }
        let client = try ClusterClient(endpoint: cluster.endpoint, context: cluster.context)
        let submit = Submit(
            requestID: "generate", prompt: .tokens(prompt.map { UInt32(bitPattern: $0) }),
            sampling: Sampling(
                sampler: SamplerParams(sampling.parameters), maxTokens: UInt32(sampling.maxTokens), stop: sampling.stop,
                ignoreEndOfGeneration: sampling.ignoreEos))
        var printer = EventPrinter(json: false, stops: sampling.stop)
        let finished = try client.submit(submit) { printer.handle($0) }
        try printer.finish(finished)
    }
}

/// `squat tokenize`: the token ids llama.cpp would feed for a text.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids of a text (special tokens parsed).")

    @OptionGroup var model: ModelOptions
    @Flag(help: "Print each id with its piece.") var pieces = false
    @Flag(help: "Do not add BOS/EOS even if the model asks for them.") var noSpecial = false
    @Argument(help: "The text.") var text: String

    func run() throws {
        let tokenizer = try ModelLoader.open(path: model.resolvedPath).tokenizer()
        let ids = tokenizer.encode(text, addSpecial: !noSpecial)
        if pieces {
            for id in ids {
                let piece = String(decoding: tokenizer.pieceBytes(id), as: UTF8.self)
                print("\(id)\t\(piece.debugDescription)")
            }
        } else {
            print("[" + ids.map(String.init).joined(separator: ", ") + "]")
        }
    }
}
