extension LlamaConfig {
    /// `model_type` values this engine runs from Hugging Face checkpoints.
    public static let huggingFaceModelTypes = ["llama", "mistral"]
    /// `architectures` entries this engine runs.
    public static let huggingFaceArchitectures = ["LlamaForCausalLM", "MistralForCausalLM"]

    /// Reads a Hugging Face `config.json` of a LLaMA-family model.
    ///
    /// Keys: `num_hidden_layers`, `hidden_size`, `intermediate_size`, `num_attention_heads`,
    /// `vocab_size` (required); `num_key_value_heads` (default: heads), `head_dim` (default:
    /// hidden / heads), `rope_theta` (10000), `rope_scaling` (none, or `llama3`), `rms_norm_eps`
    /// (1e-6), `tie_word_embeddings` (false), `max_position_embeddings` (2048). Newer configs'
    /// `rope_parameters` object is read the same way as `rope_theta` + `rope_scaling`.
    ///
    /// `tiedEmbeddings` reflects the config only; a loader that finds no `lm_head.weight`
    /// should tie them too (see `ModelLoader`). A Mistral `sliding_window` smaller than the
    /// context caps `contextLength` at the window: within it, sliding-window attention is
    /// full attention.
    public init(huggingFaceConfigAt path: String) throws(ModelFileError) {
        try self.init(huggingFaceConfig: try FileSystem.readJSON(path), file: path)
    }

    /// Reads a parsed `config.json` (see `init(huggingFaceConfigAt:)`); `file` names it in errors.
    public init(huggingFaceConfig json: JSONValue, file: String) throws(ModelFileError) {
        func fail(_ what: String) -> ModelFileError { ModelFileError(file: file, what: what) }
        guard let c = json.objectValue else { throw fail("config is \(json.brief), expected a JSON object") }
        /// A present, non-null value.
        func present(_ key: String, in o: JSONObject = c) -> JSONValue? {
            guard let v = o[key], !v.isNull else { return nil }
            return v
        }
        func int(_ key: String, in o: JSONObject = c, default d: Int? = nil, context: String = "") throws(ModelFileError) -> Int {
            guard let v = present(key, in: o) else {
                if let d { return d }
                throw fail("missing config key '\(context)\(key)'")
            }
            guard let i = v.intValue else { throw fail("config key '\(context)\(key)' is \(v.brief), expected an integer") }
            return i
        }
        func float(_ key: String, in o: JSONObject = c, default d: Float? = nil, context: String = "") throws(ModelFileError) -> Float {
            guard let v = present(key, in: o) else {
                if let d { return d }
                throw fail("missing config key '\(context)\(key)'")
            }
            guard let x = v.doubleValue, x.isFinite else {
                throw fail("config key '\(context)\(key)' is \(v.brief), expected a number")
            }
            return Float(x)
        }
        func bool(_ key: String, default d: Bool) throws(ModelFileError) -> Bool {
            guard let v = present(key) else { return d }
            guard let b = v.boolValue else { throw fail("config key '\(key)' is \(v.brief), expected true or false") }
            return b
        }

        // Family.
        let modelType = present("model_type")?.stringValue
        let architectures = present("architectures")?.arrayValue?.compactMap(\.stringValue) ?? []
        guard modelType != nil || !architectures.isEmpty else {
            throw fail("missing config keys 'model_type' and 'architectures': cannot tell whether this is a LLaMA-family model")
        }
        if let modelType, !Self.huggingFaceModelTypes.contains(modelType) {
            throw fail(
                "model_type '\(modelType)' is not LLaMA-family (supported: \(Self.huggingFaceModelTypes.joined(separator: ", ")))")
        }
        if !architectures.isEmpty, !architectures.contains(where: Self.huggingFaceArchitectures.contains) {
            throw fail(
                "architectures \(architectures) are not LLaMA-family (supported: \(Self.huggingFaceArchitectures.joined(separator: ", ")))")
        }
        if let act = present("hidden_act"), act.stringValue != "silu" {
            throw fail("hidden_act is \(act.brief); only \"silu\" (SwiGLU) is supported")
        }
        for key in ["attention_bias", "mlp_bias"] {
            if try bool(key, default: false) { throw fail("\(key) is true; projections with bias are not supported") }
        }

        // Shapes.
        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        let kvHeads = try int("num_key_value_heads", default: heads)
        let headDim = try int("head_dim", default: heads > 0 ? hidden / heads : 0)
        var context = try int("max_position_embeddings", default: 2048)
        if let window = present("sliding_window") {
            guard let w = window.intValue, w > 0 else {
                throw fail("config key 'sliding_window' is \(window.brief), expected a positive integer or null")
            }
            context = min(context, w)
        }

        // RoPE: `rope_theta` + `rope_scaling`, or the newer `rope_parameters` object.
        var theta = try float("rope_theta", default: 10000)
        var scalingObject: JSONObject? = nil
        var scalingKey = "rope_scaling"
        if let p = present("rope_parameters") {
            guard let o = p.objectValue else { throw fail("config key 'rope_parameters' is \(p.brief), expected an object") }
            theta = try float("rope_theta", in: o, default: theta, context: "rope_parameters.")
            scalingObject = o
            scalingKey = "rope_parameters"
        } else if let s = present("rope_scaling") {
            guard let o = s.objectValue else { throw fail("config key 'rope_scaling' is \(s.brief), expected an object or null") }
            scalingObject = o
        }
        var scaling: RopeScaling? = nil
        if let o = scalingObject {
            let type = present("rope_type", in: o)?.stringValue ?? present("type", in: o)?.stringValue ?? "default"
            let ctx = scalingKey + "."
            switch type {
            case "default":
                break
            case "llama3":
                let s = RopeScaling(
                    factor: try float("factor", in: o, context: ctx),
                    lowFrequencyFactor: try float("low_freq_factor", in: o, context: ctx),
                    highFrequencyFactor: try float("high_freq_factor", in: o, context: ctx),
                    originalContextLength: try int("original_max_position_embeddings", in: o, context: ctx))
                guard s.factor > 0, s.lowFrequencyFactor > 0, s.highFrequencyFactor > s.lowFrequencyFactor,
                    s.originalContextLength > 0
                else {
                    throw fail(
                        "llama3 \(scalingKey) needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0; got \(s)")
                }
                scaling = s
            default:
                throw fail("\(scalingKey) type '\(type)' is not supported (supported: llama3, or none)")
            }
        }

        self.init(
            layerCount: try int("num_hidden_layers"), hiddenSize: hidden, intermediateSize: try int("intermediate_size"),
            headCount: heads, kvHeadCount: kvHeads, headDim: headDim, ropeTheta: theta, ropeScaling: scaling,
            rmsEpsilon: try float("rms_norm_eps", default: 1e-6), vocabularySize: try int("vocab_size"),
            tiedEmbeddings: try bool("tie_word_embeddings", default: false), contextLength: context)
        try validate(file: file)
    }
}
