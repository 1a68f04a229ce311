/// How RoPE pairs channels within a head.
public enum RopeLayout: String, Sendable, Equatable {
    /// Channels (i, i + D/2) rotate together (Hugging Face `rotate_half`). Q and K rows from
    /// GGUF files are un-permuted into this order at load, so the KV cache always sees it.
    case halves
}

/// Llama 3-style RoPE frequency scaling.
public struct RopeScaling: Sendable, Equatable {
    public var factor: Float
    public var lowFrequencyFactor: Float
    public var highFrequencyFactor: Float
    public var originalContextLength: Int
    public init(factor: Float, lowFrequencyFactor: Float, highFrequencyFactor: Float, originalContextLength: Int) {
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalContextLength = originalContextLength
    }
}

/// The hyper-parameters of a LLaMA-family model.
public struct LlamaConfig: Sendable, Equatable {
    public var layerCount: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeTheta: Float
    public var ropeScaling: RopeScaling?
    public var rmsEpsilon: Float
    public var vocabularySize: Int
    public var tiedEmbeddings: Bool
    public var contextLength: Int

    public init(
        layerCount: Int, hiddenSize: Int, intermediateSize: Int, headCount: Int, kvHeadCount: Int,
        headDim: Int, ropeTheta: Float, ropeScaling: RopeScaling? = nil, rmsEpsilon: Float,
        vocabularySize: Int, tiedEmbeddings: Bool, contextLength: Int
    ) {
        self.layerCount = layerCount
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.rmsEpsilon = rmsEpsilon
        self.vocabularySize = vocabularySize
        self.tiedEmbeddings = tiedEmbeddings
        self.contextLength = contextLength
    }

    /// Query heads per KV head.
    public var groupSize: Int { headCount / kvHeadCount }
    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }
    /// Multiply-adds of one decoder layer's matrices per token.
    public var layerMatrixElements: Int {
        hiddenSize * (2 * qDim + 2 * kvDim) + 3 * hiddenSize * intermediateSize
    }
    /// The output head's cost in layers' worth, for balancing pipeline stages: its multiply-adds
    /// over a layer's, halved because a layer also runs attention, norms and its cache, which
    /// cost about as much as its matrix products when decoding a few sequences at once
    /// (profile of a 2-worker cluster with 8 sequences: matrix products 42%, attention 25%).
    public var outputHeadLayerEquivalents: Double {
        0.5 * Double(vocabularySize * hiddenSize) / Double(max(1, layerMatrixElements))
    }

    /// Checks the shape relations the forward pass relies on.
    public func validate(file: String) throws(ModelFileError) {
        func bad(_ what: String) -> ModelFileError { ModelFileError(file: file, what: "invalid model configuration: \(what)") }
        let positives: [(String, Int)] = [
            ("layer count", layerCount), ("hidden size", hiddenSize), ("intermediate size", intermediateSize),
            ("head count", headCount), ("KV head count", kvHeadCount), ("head dim", headDim),
            ("vocabulary size", vocabularySize), ("context length", contextLength),
        ]
        for (name, v) in positives where v <= 0 || v > 1 << 24 {
            throw bad("\(name) is \(v)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw bad("head count \(headCount) is not a multiple of KV head count \(kvHeadCount)")
        }
        guard headDim % 2 == 0 else { throw bad("head dim \(headDim) is odd; RoPE needs pairs") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw bad("RoPE theta is \(ropeTheta)") }
        guard rmsEpsilon > 0, rmsEpsilon.isFinite else { throw bad("RMS epsilon is \(rmsEpsilon)") }
    }

    /// Per-pair inverse frequencies (headDim/2 of them), with Llama 3 scaling when configured.
    public func ropeInverseFrequencies(factors: [Float]? = nil) -> [Float] {
        let half = headDim / 2
        // As Hugging Face computes it, in float32: 1 / base ** (float(2i) / D).
        var inv = (0..<half).map { i in
            Float(1) / powf(ropeTheta, Float(2 * i) / Float(headDim))
        }
        if let factors, factors.count == half {
            for i in 0..<half { inv[i] /= factors[i] }
        } else if let s = ropeScaling {
            let lowWavelen = Double(s.originalContextLength) / Double(s.lowFrequencyFactor)
            let highWavelen = Double(s.originalContextLength) / Double(s.highFrequencyFactor)
            for i in 0..<half {
                let f = Double(inv[i])
                let wavelen = 2 * Double.pi / f
                if wavelen < highWavelen { continue }
                if wavelen > lowWavelen {
                    inv[i] = Float(f / Double(s.factor))
                } else {
                    let smooth =
                        (Double(s.originalContextLength) / wavelen - Double(s.lowFrequencyFactor))
                        / Double(s.highFrequencyFactor - s.lowFrequencyFactor)
                    inv[i] = Float((1 - smooth) * f / Double(s.factor) + smooth * f)
                }
            }
        }
        return inv
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
