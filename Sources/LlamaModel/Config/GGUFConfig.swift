extension LlamaConfig {
    /// Reads the configuration of a LLaMA-family GGUF file (`{arch}.*` metadata keys).
    public init(gguf: GGUFFile) throws(ModelFileError) {
        let file = gguf.path
        guard let arch = gguf.metadata["general.architecture"]?.stringValue else {
            throw ModelFileError(file: file, what: "missing metadata key 'general.architecture'")
        }
        let supported = ["llama", "mistral", "granite"]
        guard supported.contains(arch) else {
            throw ModelFileError(
                file: file, what: "architecture '\(arch)' is not LLaMA-family (supported: \(supported.joined(separator: ", ")))")
        }
        func int(_ key: String) throws(ModelFileError) -> Int {
            guard let v = gguf.metadata["\(arch).\(key)"] else {
                throw ModelFileError(file: file, what: "missing metadata key '\(arch).\(key)'")
            }
            guard let i = v.intValue else {
                throw ModelFileError(
                    file: file, what: "metadata key '\(arch).\(key)' is \(v.brief), expected an integer")
            }
            return i
        }
        func float(_ key: String, default d: Float? = nil) throws(ModelFileError) -> Float {
            guard let v = gguf.metadata["\(arch).\(key)"] else {
                if let d { return d }
                throw ModelFileError(file: file, what: "missing metadata key '\(arch).\(key)'")
            }
            guard let f = v.doubleValue else {
                throw ModelFileError(
                    file: file, what: "metadata key '\(arch).\(key)' is \(v.brief), expected a number")
            }
            return Float(f)
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = gguf.metadata["\(arch).attention.head_count_kv"] == nil ? heads : try int("attention.head_count_kv")
        var headDim = heads > 0 ? hidden / heads : 0
        if gguf.metadata["\(arch).attention.key_length"] != nil { headDim = try int("attention.key_length") }
        let embd = try gguf.tensor("token_embd.weight")
        var vocab = embd.shape.count > 1 ? embd.shape[1] : 0
        if gguf.metadata["\(arch).vocab_size"] != nil { vocab = try int("vocab_size") }
        var scaling: RopeScaling? = nil
        if let type = gguf.metadata["\(arch).rope.scaling.type"]?.stringValue, type == "llama3" {
            scaling = RopeScaling(
                factor: try float("rope.scaling.factor"),
                lowFrequencyFactor: try float("rope.scaling.low_freq_factor", default: 1),
                highFrequencyFactor: try float("rope.scaling.high_freq_factor", default: 4),
                originalContextLength: try int("rope.scaling.original_context_length"))
        }
        self.init(
            layerCount: try int("block_count"), hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            headCount: heads, kvHeadCount: kvHeads, headDim: headDim,
            ropeTheta: try float("rope.freq_base", default: 10000), ropeScaling: scaling,
            rmsEpsilon: try float("attention.layer_norm_rms_epsilon", default: 1e-5),
            vocabularySize: vocab, tiedEmbeddings: gguf.tensors["output.weight"] == nil,
            contextLength: try int("context_length"))
        try validate(file: file)
    }
}
