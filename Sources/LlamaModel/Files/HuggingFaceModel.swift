/// The tensors of a Hugging Face LLaMA-family checkpoint (`model.safetensors`, or shards listed
/// by `model.safetensors.index.json`), served under GGUF names so `LlamaWeights` can use them.
///
/// Shapes are reported in GGML order (`[in, out]` for a PyTorch `[out, in]` weight; the bytes
/// are the same). Hugging Face Q/K projections are already in `rotate_half` order, so weights
/// from this source are built with `qkInterleaved: false`.
public final class HuggingFaceModel: TensorSource {
    /// The directory (or single file) the model was opened from.
    public let path: String
    /// The files, in the order they were opened.
    public let files: [SafetensorsFile]
    /// Which file holds each Hugging Face tensor name.
    private let location: [String: SafetensorsFile]

    /// Opens a model directory: `model.safetensors.index.json` if present, else
    /// `model.safetensors`, else every `*.safetensors` file in it.
    public convenience init(directory: String) throws(ModelFileError) {
        let index = FileSystem.join(directory, "model.safetensors.index.json")
        let single = FileSystem.join(directory, "model.safetensors")
        if FileSystem.kind(index) == .file {
            try self.init(indexAt: index, path: directory)
        } else if FileSystem.kind(single) == .file {
            try self.init(files: [single], path: directory)
        } else {
            guard FileSystem.kind(directory) == .directory else {
                throw ModelFileError(file: directory, what: "not a directory")
            }
            let shards = try FileSystem.list(directory).filter { $0.hasSuffix(".safetensors") }
            guard !shards.isEmpty else {
                throw ModelFileError(
                    file: directory,
                    what: "no model.safetensors.index.json, model.safetensors or other *.safetensors file in this directory")
            }
            try self.init(files: shards.map { FileSystem.join(directory, $0) }, path: directory)
        }
    }

    /// Opens the shards named by a `model.safetensors.index.json` (its `weight_map` maps each
    /// tensor to a file in the same directory) and checks every listed tensor is where it says.
    public convenience init(indexAt indexPath: String, path: String? = nil) throws(ModelFileError) {
        let dir = FileSystem.directory(of: indexPath)
        let json = try FileSystem.readJSON(indexPath)
        guard let map = json.objectValue?["weight_map"]?.objectValue else {
            throw ModelFileError(file: indexPath, what: "no 'weight_map' object mapping tensor names to shard files")
        }
        var shardNames: [String] = []
        var expected: [(tensor: String, shard: String)] = []
        for tensor in map.keys {
            guard let shard = map[tensor]?.stringValue else {
                throw ModelFileError(
                    file: indexPath, what: "weight_map entry '\(tensor)' is \(map[tensor]?.brief ?? "?"), expected a file name")
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                throw ModelFileError(
                    file: indexPath, what: "weight_map entry '\(tensor)' names '\(shard)', expected a file in the same directory")
            }
            if !shardNames.contains(shard) { shardNames.append(shard) }
            expected.append((tensor, shard))
        }
        guard !shardNames.isEmpty else {
            throw ModelFileError(file: indexPath, what: "'weight_map' is empty")
        }
        for shard in shardNames where FileSystem.kind(FileSystem.join(dir, shard)) != .file {
            throw ModelFileError(
                file: indexPath, what: "shard '\(shard)' named in weight_map is missing from \(dir)")
        }
        try self.init(files: shardNames.map { FileSystem.join(dir, $0) }, path: path ?? dir)
        for (tensor, shard) in expected where location[tensor]?.path != FileSystem.join(dir, shard) {
            throw ModelFileError(
                file: indexPath, what: "weight_map puts tensor '\(tensor)' in '\(shard)', but that file does not hold it")
        }
    }

    /// Opens the given safetensors files as one model; a tensor may appear in only one.
    public init(files paths: [String], path: String) throws(ModelFileError) {
        self.path = path
        var files: [SafetensorsFile] = []
        var location: [String: SafetensorsFile] = [:]
        for p in paths {
            let f = try SafetensorsFile(path: p)
            for name in f.tensorNames {
                if let other = location[name] {
                    throw ModelFileError(file: p, what: "tensor '\(name)' is also in \(other.path)")
                }
                location[name] = f
            }
            files.append(f)
        }
        self.files = files
        self.location = location
    }

    /// The Hugging Face name of a GGUF tensor name, or nil if there is no such tensor.
    public static func huggingFaceName(of ggufName: String) -> String? {
        switch ggufName {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = ggufName.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1],
            let hf = layerTensors[String(parts[2])]
        else { return nil }
        return "model.layers.\(layer).\(hf).\(parts[3])"
    }

    /// GGUF block tensor → Hugging Face module path within a layer.
    static let layerTensors: [String: String] = [
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    ]

    /// A tensor by GGUF name (`blk.3.attn_q.weight`), read from its Hugging Face counterpart.
    /// The view is named with the Hugging Face name, so errors point at what is in the files.
    public func tensorView(_ name: String) throws(ModelFileError) -> TensorView {
        guard let hf = Self.huggingFaceName(of: name) else {
            throw ModelFileError(file: path, what: "no Hugging Face tensor corresponds to '\(name)'")
        }
        guard let file = location[hf] else {
            throw ModelFileError(file: path, what: "missing tensor '\(hf)' (needed as '\(name)')")
        }
        return try file.tensor(hf)
    }

    public func hasTensor(_ name: String) -> Bool {
        guard let hf = Self.huggingFaceName(of: name) else { return false }
        return location[hf] != nil
    }

    /// Every Hugging Face tensor name, across files.
    public var tensorNames: [String] { files.flatMap(\.tensorNames) }
}
