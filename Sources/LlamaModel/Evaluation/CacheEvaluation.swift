import KVCache

/// Quality of KV-cache modes against a full-precision (f32) cache, by the SQuat authors'
/// protocol: prefill ids[0..<P] in one call, then decode step i feeds ids[P+i] alone (teacher
/// forcing) and its distribution predicts ids[P+i+1]. Perplexity over the D−1 targets; KL(full ‖
/// mode) in Double averaged over the D steps; top-1 = share of steps whose argmax equals the
/// full cache's.
public struct CacheEvaluation {
    public struct Result: Sendable, Codable, Equatable {
        public var mode: String
        public var ppl: Double
        public var kl: Double
        public var top1: Double
    }

    /// A sensitivity probe: every element e of a token's input embedding becomes
    /// e·(1 + epsilon·n) (in Double, rounded to Float), with n a standard normal fixed by (seed,
    /// token id, element), in the evaluated modes' runs; the full-precision reference run stays
    /// unperturbed. At epsilon near 1e-7 (Float rounding) the spread of a mode's metrics over
    /// seeds is the noise any two faithful implementations (different summation orders) can
    /// differ by.
    public struct InputPerturbation: Sendable, Equatable {
        public var epsilon: Float
        public var seed: UInt64
        public init(epsilon: Float, seed: UInt64) {
            self.epsilon = epsilon
            self.seed = seed
        }

        /// `embedding` (ids.count rows of `hidden` floats) perturbed.
        public func apply(_ embedding: [Float], ids: [Int32], hidden: Int) -> [Float] {
            var out = embedding
            for (r, id) in ids.enumerated() {
                for i in 0..<hidden {
                    let n = Self.normal(seed: seed, token: id, element: i)
                    out[r * hidden + i] = Float(Double(out[r * hidden + i]) * (1 + Double(epsilon) * n))
                }
            }
            return out
        }

        /// A standard normal by Box–Muller from two SplitMix64 draws of a state keyed by (seed,
        /// token, element), each part mixed in before the next so that different keys start
        /// from unrelated states.
        static func normal(seed: UInt64, token: Int32, element: Int) -> Double {
            var z = seed
            z = SeededGenerator.splitMix64(&z) ^ UInt64(UInt32(bitPattern: token))
            z = SeededGenerator.splitMix64(&z) ^ UInt64(truncatingIfNeeded: element)
            z = SeededGenerator.splitMix64(&z)
            let u1 = (Double(SeededGenerator.splitMix64(&z) >> 11) + 0.5) / 9_007_199_254_740_992
            let u2 = Double(SeededGenerator.splitMix64(&z) >> 11) / 9_007_199_254_740_992
            return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
        }
    }

    public let stage: LlamaStage
    public let promptTokens: Int
    public let decodeTokens: Int
    /// Applied to the evaluated modes' inputs, not the reference's (nil: none).
    public let perturbation: InputPerturbation?

    public init(stage: LlamaStage, promptTokens: Int, decodeTokens: Int, perturbation: InputPerturbation? = nil) {
        self.stage = stage
        self.promptTokens = promptTokens
        self.decodeTokens = decodeTokens
        self.perturbation = perturbation
    }

    /// What the evaluated modes are fed for `ids`: the tokens, or their perturbed embeddings.
    private func modeInput(_ ids: [Int32]) -> StageInput {
        guard let perturbation, let e = stage.embedding(ids) else { return .tokens(ids) }
        return .hidden(perturbation.apply(e, ids: ids, hidden: stage.weights.config.hiddenSize))
    }

    /// Runs the reference and every mode in lockstep (one step of each at a time, so no logits
    /// are stored). The first result is the reference itself. `progress(step)` after each step.
    public func run(
        ids: [Int32], modes: [(name: String, factory: any KVCacheFactory)], progress: (Int) -> Void = { _ in }
    ) throws(GenerationError) -> [Result] {
        let P = promptTokens
        let D = decodeTokens
        guard P >= 1, D >= 2 else { throw GenerationError("need at least 1 prompt token and 2 decode steps") }
        guard ids.count >= P + D else {
            throw GenerationError("the text has \(ids.count) tokens; \(P) prompt + \(D) decode tokens need \(P + D)")
        }
        let V = stage.weights.config.vocabularySize
        if let bad = ids.prefix(P + D).first(where: { $0 < 0 || Int($0) >= V }) {
            throw GenerationError("token id \(bad) is outside the vocabulary (0..<\(V))")
        }
        let prompt = Array(ids[0..<P])
        let refCache = stage.makeCache(FullPrecisionCacheFactory(precision: .f32))
        let caches = modes.map { stage.makeCache($0.factory) }
        _ = stage.forward(.tokens(prompt), segments: [StageSegment(cache: refCache, rows: P)], logitRows: [P - 1])
        let promptInput = modeInput(prompt)
        for c in caches {
            _ = stage.forward(promptInput, segments: [StageSegment(cache: c, rows: P)], logitRows: [P - 1])
        }
        var refNLL = 0.0
        var nll = [Double](repeating: 0, count: modes.count)
        var kl = [Double](repeating: 0, count: modes.count)
        var agree = [Int](repeating: 0, count: modes.count)
        for i in 0..<D {
            let next = ids[P + i]
            let refLogits = stage.forward(
                .tokens([next]), segments: [StageSegment(cache: refCache, rows: 1)], logitRows: [0])
            let refLog = Self.logSoftmax(refLogits)
            let refProb = refLog.map { exp($0) }
            let refArg = Sampler.argmax(refLogits)
            let target = i < D - 1 ? Int(ids[P + i + 1]) : nil
            if let target { refNLL -= refLog[target] }
            let stepInput = modeInput([next])
            for m in 0..<modes.count {
                let logits = stage.forward(
                    stepInput, segments: [StageSegment(cache: caches[m], rows: 1)], logitRows: [0])
                let lp = Self.logSoftmax(logits)
                var k = 0.0
                for v in 0..<V { k += refProb[v] * (refLog[v] - lp[v]) }
                kl[m] += k
                if Sampler.argmax(logits) == refArg { agree[m] += 1 }
                if let target { nll[m] -= lp[target] }
            }
            progress(i + 1)
        }
        var rows = [Result(mode: "full-f32", ppl: exp(refNLL / Double(D - 1)), kl: 0, top1: 1)]
        for m in 0..<modes.count {
            rows.append(
                Result(
                    mode: modes[m].name, ppl: exp(nll[m] / Double(D - 1)), kl: kl[m] / Double(D),
                    top1: Double(agree[m]) / Double(D)))
        }
        return rows
    }

    /// log-softmax in Double.
    static func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max() ?? 0)
        var s = 0.0
        for v in x { s += exp(Double(v) - m) }
        let l = m + log(s)
        return x.map { Double($0) - l }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
