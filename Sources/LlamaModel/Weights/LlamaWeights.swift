/// A source of named tensors in GGUF naming (`blk.N.attn_q.weight`, ...), however stored.
public protocol TensorSource: AnyObject, Sendable {
    /// The file (or directory) the tensors come from, for error messages.
    var path: String { get }
    /// The tensor, or an error naming the file and the tensor.
    func tensorView(_ name: String) throws(ModelFileError) -> TensorView
    func hasTensor(_ name: String) -> Bool
}

extension GGUFFile: TensorSource {
    public func tensorView(_ name: String) throws(ModelFileError) -> TensorView { try tensor(name) }
    public func hasTensor(_ name: String) -> Bool { tensors[name] != nil }
}

/// The weights of one transformer block.
public struct LayerWeights: Sendable {
    public let attnNorm: [Float]
    public let wq, wk, wv, wo: WeightMatrix
    public let ffnNorm: [Float]
    public let gate, up, down: WeightMatrix
}

/// The weights a pipeline stage needs: its layers, plus the embedding (first stage) and the
/// final norm and output head (last stage). Only those tensors are touched.
public final class LlamaWeights: Sendable {
    public let config: LlamaConfig
    public let layerRange: Range<Int>
    public let layers: [LayerWeights]
    public let tokenEmbedding: WeightMatrix?
    /// This stage embeds token ids (it is the first stage).
    public let hasEmbedding: Bool
    public let outputNorm: [Float]?
    public let output: WeightMatrix?
    /// Q/K rows are in GGUF's interleaved RoPE order and need un-permuting to `halves` order.
    public let qkInterleaved: Bool
    /// Per-pair RoPE inverse frequencies.
    public let ropeInverseFrequencies: [Float]

    public init(
        source: TensorSource, config: LlamaConfig, layers range: Range<Int>, qkInterleaved: Bool,
        embedding: Bool? = nil, head: Bool? = nil
    ) throws(ModelFileError) {
        let file = source.path
        guard range.lowerBound >= 0, range.upperBound <= config.layerCount, !range.isEmpty else {
            throw ModelFileError(file: file, what: "layer range \(range) is outside 0..<\(config.layerCount)")
        }
        self.config = config
        self.layerRange = range
        self.qkInterleaved = qkInterleaved
        let c = config
        func matrix(_ name: String, cols: Int, rows: Int) throws(ModelFileError) -> WeightMatrix {
            let view = try source.tensorView(name)
            guard TensorType.allCases.contains(view.type) else {
                throw ModelFileError(file: file, what: "tensor '\(name)' has unsupported type \(view.type.name)")
            }
            return try WeightMatrix(view, cols: cols, rows: rows, file: file)
        }
        func vector(_ name: String, _ n: Int) throws(ModelFileError) -> [Float] {
            try loadVector(try source.tensorView(name), count: n, file: file)
        }
        var ls: [LayerWeights] = []
        for l in range {
            let p = "blk.\(l)."
            ls.append(
                LayerWeights(
                    attnNorm: try vector(p + "attn_norm.weight", c.hiddenSize),
                    wq: try matrix(p + "attn_q.weight", cols: c.hiddenSize, rows: c.qDim),
                    wk: try matrix(p + "attn_k.weight", cols: c.hiddenSize, rows: c.kvDim),
                    wv: try matrix(p + "attn_v.weight", cols: c.hiddenSize, rows: c.kvDim),
                    wo: try matrix(p + "attn_output.weight", cols: c.qDim, rows: c.hiddenSize),
                    ffnNorm: try vector(p + "ffn_norm.weight", c.hiddenSize),
                    gate: try matrix(p + "ffn_gate.weight", cols: c.hiddenSize, rows: c.intermediateSize),
                    up: try matrix(p + "ffn_up.weight", cols: c.hiddenSize, rows: c.intermediateSize),
                    down: try matrix(p + "ffn_down.weight", cols: c.intermediateSize, rows: c.hiddenSize)))
        }
        layers = ls
        let isFirst = embedding ?? (range.lowerBound == 0)
        let isLast = head ?? (range.upperBound == c.layerCount)
        tokenEmbedding =
            isFirst || (isLast && c.tiedEmbeddings)
            ? try matrix("token_embd.weight", cols: c.hiddenSize, rows: c.vocabularySize) : nil
        if isLast {
            outputNorm = try vector("output_norm.weight", c.hiddenSize)
            output =
                c.tiedEmbeddings
                ? tokenEmbedding : try matrix("output.weight", cols: c.hiddenSize, rows: c.vocabularySize)
        } else {
            outputNorm = nil
            output = nil
        }
        var factors: [Float]? = nil
        if source.hasTensor("rope_freqs.weight") {
            factors = try vector("rope_freqs.weight", c.headDim / 2)
        }
        ropeInverseFrequencies = c.ropeInverseFrequencies(factors: factors)
        hasEmbedding = isFirst
    }

    public var isLastStage: Bool { output != nil }

    /// The weight memory this stage maps: (data pointer, byte count) of each matrix it uses.
    public var tensorViews: [(data: UnsafeRawPointer, byteCount: Int)] {
        var out: [(UnsafeRawPointer, Int)] = []
        for l in layers {
            for m in [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down] { out.append((m.data, m.rows * m.rowBytes)) }
        }
        if let e = tokenEmbedding { out.append((e.data, e.rows * e.rowBytes)) }
        if let o = output, o.data != tokenEmbedding?.data { out.append((o.data, o.rows * o.rowBytes)) }
        return out
    }
}
