import KVCache

/// What to generate for one request.
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var sampling: SamplingParameters
    public var maxTokens: Int
    public var stopStrings: [String]
    /// Keep going past end-of-generation tokens (for benchmarks and reference comparisons).
    public var ignoreEndOfGeneration: Bool

    public init(
        prompt: [Int32], sampling: SamplingParameters = .greedy, maxTokens: Int = 256, stopStrings: [String] = [],
        ignoreEndOfGeneration: Bool = false
    ) {
        self.prompt = prompt
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stopStrings = stopStrings
        self.ignoreEndOfGeneration = ignoreEndOfGeneration
    }
}

/// Why generation ended.
public enum FinishReason: String, Sendable, Codable {
    /// An end-of-generation token was produced.
    case endOfGeneration = "stop"
    /// A stop string appeared in the text.
    case stopString = "stop_string"
    /// `maxTokens` were generated.
    case length
    /// The model's context is full.
    case contextFull = "context_full"
}

/// The outcome of a generation, with timings.
public struct GenerationResult: Sendable {
    public var tokens: [Int32] = []
    public var text = ""
    public var finishReason: FinishReason = .length
    public var promptTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode speed over the tokens after the first (the first comes from the prefill).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(tokens.count - 1, 0)) / decodeSeconds : 0
    }
}

/// An error in a generation request: what was wrong with it.
public struct GenerationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Runs prefill and token-by-token decode of one request on a whole-model stage, streaming
/// text as it is made (whole UTF-8 characters; text that may start a stop string is held back).
public final class Generator {
    public let stage: LlamaStage
    public let tokenizer: Tokenizer
    public let cacheFactory: any KVCacheFactory
    /// Largest number of prompt rows per forward call.
    public let prefillChunk: Int

    public init(stage: LlamaStage, tokenizer: Tokenizer, cacheFactory: any KVCacheFactory, prefillChunk: Int = 512) {
        precondition(stage.weights.hasEmbedding && stage.weights.isLastStage, "the generator needs the whole model")
        self.stage = stage
        self.tokenizer = tokenizer
        self.cacheFactory = cacheFactory
        self.prefillChunk = max(1, prefillChunk)
    }

    /// Generates for `request`, calling `onText` with each new piece of text.
    public func generate(_ request: GenerationRequest, onText: (String) -> Void) throws(GenerationError) -> GenerationResult {
        let context = stage.weights.config.contextLength
        let vocab = stage.weights.config.vocabularySize
        guard !request.prompt.isEmpty else { throw GenerationError("the prompt is empty (no tokens)") }
        guard request.prompt.count < context else {
            throw GenerationError("the prompt has \(request.prompt.count) tokens; the context holds \(context)")
        }
        if let bad = request.prompt.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw GenerationError("prompt token id \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        guard request.maxTokens >= 0 else { throw GenerationError("max tokens must be ≥ 0, got \(request.maxTokens)") }
        do { try request.sampling.validate() } catch { throw GenerationError(error.description) }

        var result = GenerationResult()
        result.promptTokens = request.prompt.count
        let cache = stage.makeCache(cacheFactory)
        var sampler = Sampler(request.sampling)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var stops = StopMatcher(stops: request.stopStrings)
        var history = request.prompt

        let t0 = Clock.now()
        var logits: [Float] = []
        var i = 0
        while i < request.prompt.count {
            let n = min(prefillChunk, request.prompt.count - i)
            let last = i + n == request.prompt.count
            logits = stage.forward(
                .tokens(Array(request.prompt[i..<i + n])), segments: [StageSegment(cache: cache, rows: n)],
                logitRows: last ? [n - 1] : [])
            i += n
        }
        result.prefillSeconds = Clock.now() - t0
        let t1 = Clock.now()
        func emit(_ text: String) -> Bool {
            let (out, stopped) = stops.feed(text)
            if !out.isEmpty {
                onText(out)
                result.text += out
            }
            return stopped
        }
        var finished = false
        while !finished {
            if result.tokens.count >= request.maxTokens {
                result.finishReason = .length
                break
            }
            let token = sampler.sample(logits: logits, history: history)
            if !request.ignoreEndOfGeneration && tokenizer.isEndOfGeneration(token) {
                result.finishReason = .endOfGeneration
                break
            }
            result.tokens.append(token)
            history.append(token)
            if emit(decoder.append(token)) {
                result.finishReason = .stopString
                finished = true
                break
            }
            if history.count >= context {
                result.finishReason = .contextFull
                break
            }
            if result.tokens.count >= request.maxTokens {
                result.finishReason = .length
                break
            }
            logits = stage.forward(.tokens([token]), segments: [StageSegment(cache: cache, rows: 1)], logitRows: [0])
        }
        if !finished {
            _ = emit(decoder.flush())
            let rest = stops.flush()
            if !rest.isEmpty {
                onText(rest)
                result.text += rest
            }
        }
        result.decodeSeconds = Clock.now() - t1
        return result
    }
}

/// Monotonic seconds.
enum Clock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
