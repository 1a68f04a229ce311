/// A model's configuration and tensors, whatever files they came from.
public struct LoadedModelFiles: Sendable {
    public enum Format: String, Sendable {
        case gguf
        case huggingFace = "safetensors"
    }

    /// The path that was opened (file or directory).
    public let path: String
    public let format: Format
    public let config: LlamaConfig
    /// The tensors, under GGUF names.
    public let source: any TensorSource
    /// Q/K rows in GGUF's interleaved RoPE order (true for GGUF, false for Hugging Face).
    public let qkInterleaved: Bool
    /// The GGUF file itself, when the model is one (its metadata holds the tokenizer).
    public let gguf: GGUFFile?
    /// For Hugging Face models, the directory holding config.json and tokenizer files.
    public var directory: String? = nil

    /// The model's tokenizer: from the GGUF metadata, or `tokenizer.json` (and
    /// `tokenizer_config.json`, if present) beside a Hugging Face model.
    public func tokenizer() throws(ModelFileError) -> Tokenizer {
        if let gguf { return try Tokenizer(gguf: gguf) }
        let dir = directory ?? FileSystem.directory(of: path)
        let json = FileSystem.join(dir, "tokenizer.json")
        guard FileSystem.kind(json) == .file else {
            throw ModelFileError(file: json, what: "missing: a Hugging Face model needs its tokenizer.json")
        }
        let config = FileSystem.join(dir, "tokenizer_config.json")
        return try Tokenizer(
            tokenizerJSONAt: json, tokenizerConfigPath: FileSystem.kind(config) == .file ? config : nil)
    }

    /// The output head's decode cost in layers' worth, for balancing pipeline stages: the head
    /// matrix's bytes over the first layer's matrices' bytes, halved as in
    /// `LlamaConfig.outputHeadLayerEquivalents` (a layer also runs attention, norms and its
    /// cache). Decoding a few rows reads every weight once per step, so bytes set the time, and
    /// files often store the head at a higher precision than the layers (the default model: a
    /// Q8_0 head beside Q4_1 layers, 13.6 layers' bytes against 8.0 layers' multiply-adds).
    /// The multiply-add estimate when a tensor is missing.
    public var outputHeadLayerEquivalents: Double {
        let head = config.tiedEmbeddings || !source.hasTensor("output.weight") ? "token_embd.weight" : "output.weight"
        let layer = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map {
            "blk.0.\($0).weight"
        }
        guard let headBytes = try? source.tensorView(head).byteCount else { return config.outputHeadLayerEquivalents }
        var layerBytes = 0
        for name in layer {
            guard let bytes = try? source.tensorView(name).byteCount else { return config.outputHeadLayerEquivalents }
            layerBytes += bytes
        }
        return layerBytes > 0 ? 0.5 * Double(headBytes) / Double(layerBytes) : config.outputHeadLayerEquivalents
    }

    /// The weights of `layers` (default: all), embedding and head as `LlamaWeights` decides.
    public func weights(layers: Range<Int>? = nil) throws(ModelFileError) -> LlamaWeights {
        try LlamaWeights(
            source: source, config: config, layers: layers ?? 0..<config.layerCount, qkInterleaved: qkInterleaved)
    }
}

/// Opens any supported model: a `.gguf` file, a Hugging Face directory (`config.json` plus
/// `model.safetensors` or sharded `model.safetensors.index.json`), or a single `.safetensors`
/// file (or index) with `config.json` beside it.
public enum ModelLoader {
    public static func open(path: String) throws(ModelFileError) -> LoadedModelFiles {
        switch FileSystem.kind(path) {
        case .missing:
            throw ModelFileError(file: path, what: "no such file or directory")
        case .other:
            throw ModelFileError(file: path, what: "not a regular file or directory")
        case .directory:
            return try huggingFace(source: try HuggingFaceModel(directory: path), configDirectory: path)
        case .file:
            break
        }
        if path.hasSuffix(".safetensors") {
            let source = try HuggingFaceModel(files: [path], path: path)
            return try huggingFace(source: source, configDirectory: FileSystem.directory(of: path))
        }
        if path.hasSuffix(".safetensors.index.json") {
            let source = try HuggingFaceModel(indexAt: path)
            return try huggingFace(source: source, configDirectory: FileSystem.directory(of: path))
        }
        let file = try MappedFile(path: path)
        let isGGUF = file.bytes(at: 0, length: 4).map { Array($0) == Array("GGUF".utf8) } ?? false
        guard isGGUF || path.hasSuffix(".gguf") else {
            throw ModelFileError(
                file: path,
                what:
                    "not a model: expected a .gguf file, a .safetensors file or index, or a Hugging Face model directory"
            )
        }
        let gguf = try GGUFFile(file: file)
        return LoadedModelFiles(
            path: path, format: .gguf, config: try LlamaConfig(gguf: gguf), source: gguf, qkInterleaved: true,
            gguf: gguf)
    }

    private static func huggingFace(source: HuggingFaceModel, configDirectory dir: String) throws(ModelFileError)
        -> LoadedModelFiles
    {
        let configPath = FileSystem.join(dir, "config.json")
        guard FileSystem.kind(configPath) == .file else {
            throw ModelFileError(
                file: configPath, what: "missing: a Hugging Face model needs its config.json beside the weights")
        }
        var config = try LlamaConfig(huggingFaceConfigAt: configPath)
        // Checkpoints saved with tied embeddings usually omit lm_head.weight.
        if !source.hasTensor("output.weight") { config.tiedEmbeddings = true }
        var files = LoadedModelFiles(
            path: source.path, format: .huggingFace, config: config, source: source, qkInterleaved: false, gguf: nil)
        files.directory = dir
        return files
    }
}
