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

    public let stage: LlamaStage
    public let promptTokens: Int
    public let decodeTokens: Int

    public init(stage: LlamaStage, promptTokens: Int, decodeTokens: Int) {
        self.stage = stage
        self.promptTokens = promptTokens
        self.decodeTokens = decodeTokens
    }

    /// Runs the reference and every mode in lockstep (one step of each at a time, so no logits
    /// are stored). The first result is the reference itself. `progress(step)` after each step.
    public func run(
        ids: [Int32], modes: [(name: String, factory: any KVCacheFactory)], progress: (Int) -> Void = { _ in }
    ) throws(GenerationError) -> [Result] {
        let P = promptTokens, D = decodeTokens
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
        for c in [refCache] + caches {
            _ = stage.forward(.tokens(prompt), segments: [StageSegment(cache: c, rows: P)], logitRows: [P - 1])
        }
        var refNLL = 0.0
        var nll = [Double](repeating: 0, count: modes.count)
        var kl = [Double](repeating: 0, count: modes.count)
        var agree = [Int](repeating: 0, count: modes.count)
        for i in 0..<D {
            let next = ids[P + i]
            let refLogits = stage.forward(.tokens([next]), segments: [StageSegment(cache: refCache, rows: 1)], logitRows: [0])
            let refLog = Self.logSoftmax(refLogits)
            let refProb = refLog.map { exp($0) }
            let refArg = Sampler.argmax(refLogits)
            let target = i < D - 1 ? Int(ids[P + i + 1]) : nil
            if let target { refNLL -= refLog[target] }
            for m in 0..<modes.count {
                let logits = stage.forward(.tokens([next]), segments: [StageSegment(cache: caches[m], rows: 1)], logitRows: [0])
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
