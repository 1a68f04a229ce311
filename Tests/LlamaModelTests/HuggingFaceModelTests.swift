import Foundation
import Testing

@testable import LlamaModel

/// `HuggingFaceModel` and `ModelLoader` on tiny model directories written here.
@Suite("Hugging Face model directories")
struct HuggingFaceModelTests {
    /// Writes a tiny model directory: config.json and the tensors in one file or `shards` files.
    static func writeTinyModel(
        _ dir: TempDir, tensors: [STTensor] = tinyModelTensors(), config: String = tinyConfigJSON(), shards: Int = 1
    ) throws {
        try dir.write("config.json", text: config)
        guard shards > 1 else {
            try dir.write("model.safetensors", STWriter.file(tensors))
            return
        }
        let per = (tensors.count + shards - 1) / shards
        var map: [String] = []
        for s in 0..<shards {
            let part = Array(tensors[min(s * per, tensors.count)..<min((s + 1) * per, tensors.count)])
            let name = "model-\(s + 1)-of-\(shards).safetensors"
            try dir.write(name, STWriter.file(part))
            map += part.map { "\"\($0.name)\": \"\(name)\"" }
        }
        try dir.write(
            "model.safetensors.index.json",
            text: "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {\(map.joined(separator: ", "))}}")
    }

    @Test("GGUF names map to Hugging Face names and back to nothing else")
    func nameMapping() {
        let expected = [
            "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight",
            "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
            "blk.12.attn_k.weight": "model.layers.12.self_attn.k_proj.weight",
            "blk.3.attn_v.weight": "model.layers.3.self_attn.v_proj.weight",
            "blk.3.attn_output.weight": "model.layers.3.self_attn.o_proj.weight",
            "blk.3.ffn_gate.weight": "model.layers.3.mlp.gate_proj.weight",
            "blk.3.ffn_up.weight": "model.layers.3.mlp.up_proj.weight",
            "blk.3.ffn_down.weight": "model.layers.3.mlp.down_proj.weight",
            "blk.3.attn_norm.weight": "model.layers.3.input_layernorm.weight",
            "blk.3.ffn_norm.weight": "model.layers.3.post_attention_layernorm.weight",
        ]
        for (gguf, hf) in expected { #expect(HuggingFaceModel.huggingFaceName(of: gguf) == hf) }
        for bad in ["blk.x.attn_q.weight", "blk.01.attn_q.weight", "blk.-1.attn_q.weight", "blk.1.attn_qkv.weight",
                    "blk.1.attn_q", "rope_freqs.weight", "", "blk..attn_q.weight"] {
            #expect(HuggingFaceModel.huggingFaceName(of: bad) == nil, "\(bad)")
        }
    }

    @Test("a directory with model.safetensors loads: GGUF-order shapes, same bytes, separate head")
    func singleFileDirectory() throws {
        let dir = try TempDir()
        let tensors = tinyModelTensors()
        try Self.writeTinyModel(dir, tensors: tensors)
        let m = try ModelLoader.open(path: dir.path)
        #expect(m.format == .huggingFace && !m.qkInterleaved && m.gguf == nil && m.path == dir.path)
        #expect(m.config.layerCount == 2 && m.config.hiddenSize == 8 && m.config.kvHeadCount == 1 && m.config.headDim == 4)
        #expect(!m.config.tiedEmbeddings)
        let byName = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
        for l in 0..<2 {
            for (gguf, hf) in HuggingFaceModel.layerTensors {
                let v = try m.source.tensorView("blk.\(l).\(gguf).weight")
                let t = try #require(byName["model.layers.\(l).\(hf).weight"])
                #expect(v.shape == Array(t.shape.reversed()), "\(gguf)")
                #expect(v.name == t.name)
                #expect(Array(UnsafeRawBufferPointer(start: v.data, count: v.byteCount)) == t.bytes, "\(gguf)")
            }
        }
        #expect(try m.source.tensorView("blk.0.attn_norm.weight").type == .bf16)
        #expect(try m.source.tensorView("blk.0.ffn_norm.weight").type == .f16)
        let w = try m.weights()
        #expect(w.layers.count == 2 && w.output?.name == "lm_head.weight" && w.tokenEmbedding?.name == "model.embed_tokens.weight")
        // A middle stage touches only its layers.
        let stage = try LlamaWeights(source: m.source, config: m.config, layers: 1..<2, qkInterleaved: false)
        #expect(!stage.hasEmbedding && stage.tokenEmbedding == nil && stage.output != nil && stage.layers.count == 1)
    }

    @Test("no lm_head.weight means tied embeddings, whatever the config says")
    func tiedWhenHeadMissing() throws {
        let dir = try TempDir()
        try Self.writeTinyModel(dir, tensors: tinyModelTensors(lmHead: false))
        let m = try ModelLoader.open(path: dir.path)
        #expect(m.config.tiedEmbeddings)
        let w = try m.weights()
        #expect(w.output?.name == "model.embed_tokens.weight")
    }

    @Test("sharded directories, a single .safetensors file and an index path all open")
    func shardsAndPaths() throws {
        let dir = try TempDir()
        try Self.writeTinyModel(dir, shards: 3)
        let m = try ModelLoader.open(path: dir.path)
        let hf = try #require(m.source as? HuggingFaceModel)
        #expect(hf.files.count == 3)
        #expect(Set(hf.tensorNames) == Set(tinyModelTensors().map(\.name)))
        _ = try m.weights()
        let viaIndex = try ModelLoader.open(path: dir.path + "/model.safetensors.index.json")
        #expect(viaIndex.config == m.config)

        let single = try TempDir()
        try Self.writeTinyModel(single)
        let viaFile = try ModelLoader.open(path: single.path + "/model.safetensors")
        #expect(viaFile.format == .huggingFace && viaFile.config == m.config)
        _ = try viaFile.weights()

        // No index and no model.safetensors: every *.safetensors file in the directory.
        let loose = try TempDir()
        try Self.writeTinyModel(loose, shards: 2)
        try FileManager.default.removeItem(atPath: loose.path + "/model.safetensors.index.json")
        _ = try ModelLoader.open(path: loose.path).weights()
    }

    @Test("the default GGUF opens through the same entry point")
    func ggufThroughLoader() throws {
        guard FileManager.default.fileExists(atPath: Golden.modelPath) else { throw Golden.MissingFile(path: Golden.modelPath) }
        let m = try ModelLoader.open(path: Golden.modelPath)
        #expect(m.format == .gguf && m.qkInterleaved && m.gguf != nil)
        #expect(m.config == (try LlamaConfig(gguf: try GGUFFile(path: Golden.modelPath))))
    }

    /// A broken directory and what its error must say.
    struct Broken: Sendable, CustomTestStringConvertible {
        let label: String
        /// File name → content (nil: remove it), applied over a valid 2-shard tiny model.
        let changes: [String: [UInt8]?]
        let errorFile: String
        let mentions: [String]
        let atWeights: Bool
        var testDescription: String { label }
    }

    static let broken: [Broken] = {
        let tensors = tinyModelTensors()
        // writeTinyModel(shards: 2) puts the second half of the tensors in the second file.
        let secondHalf = Array(tensors[((tensors.count + 1) / 2)...])
        func without(_ name: String) -> [UInt8] { STWriter.file(secondHalf.filter { $0.name != name }) }
        let second = "model-2-of-2.safetensors"
        let wrongShape = secondHalf.map { t in
            t.name == "model.layers.1.self_attn.k_proj.weight" ? .f32(t.name, [8, 4], Array(repeating: 0, count: 32)) : t
        }
        let config = "config.json"
        let index = "model.safetensors.index.json"
        func cfg(_ o: [String: String?]) -> [UInt8] { Array(tinyConfigJSON(o).utf8) }
        return [
            Broken(label: "missing tensor", changes: [second: without("model.layers.1.mlp.up_proj.weight")],
                   errorFile: index, mentions: ["model.layers.1.mlp.up_proj.weight", second], atWeights: false),
            Broken(label: "missing tensor, no index", changes: [index: nil, second: without("model.layers.1.mlp.up_proj.weight")],
                   errorFile: "", mentions: ["missing tensor 'model.layers.1.mlp.up_proj.weight'", "blk.1.ffn_up.weight"], atWeights: true),
            Broken(label: "wrong shape", changes: [second: STWriter.file(wrongShape)],
                   errorFile: "", mentions: ["model.layers.1.self_attn.k_proj.weight", "[4, 8]", "expected [8, 4]"], atWeights: true),
            Broken(label: "missing shard", changes: [second: nil], errorFile: index, mentions: ["shard '\(second)'", "missing"], atWeights: false),
            Broken(label: "index not JSON", changes: [index: Array("{\"weight_map\": {".utf8)], errorFile: index, mentions: ["not valid JSON"], atWeights: false),
            Broken(label: "index without weight_map", changes: [index: Array("{}".utf8)], errorFile: index, mentions: ["weight_map"], atWeights: false),
            Broken(label: "index escapes the directory", changes: [index: Array("{\"weight_map\": {\"x\": \"../x.safetensors\"}}".utf8)],
                   errorFile: index, mentions: ["'../x.safetensors'"], atWeights: false),
            Broken(label: "corrupt shard", changes: [second: Array(STWriter.file(tensors).prefix(30))],
                   errorFile: second, mentions: ["past the end of the file"], atWeights: false),
            Broken(label: "missing config.json", changes: [config: nil], errorFile: config, mentions: ["config.json"], atWeights: false),
            Broken(label: "config not JSON", changes: [config: Array("{\"hidden_size\": ".utf8)], errorFile: config, mentions: ["not valid JSON"], atWeights: false),
            Broken(label: "missing config key", changes: [config: cfg(["intermediate_size": nil])],
                   errorFile: config, mentions: ["missing config key 'intermediate_size'"], atWeights: false),
            Broken(label: "non-llama model_type", changes: [config: cfg(["model_type": "\"gpt2\"", "architectures": "[\"GPT2LMHeadModel\"]"])],
                   errorFile: config, mentions: ["model_type 'gpt2' is not LLaMA-family"], atWeights: false),
            Broken(label: "vocab_size disagrees with the embedding", changes: [config: cfg(["vocab_size": "11"])],
                   errorFile: "", mentions: ["model.embed_tokens.weight", "expected [8, 11]"], atWeights: true),
        ]
    }()

    @Test("broken directories give a ModelFileError naming the file, tensor and problem", arguments: broken)
    func brokenDirectory(_ b: Broken) throws {
        let dir = try TempDir()
        try Self.writeTinyModel(dir, shards: 2)
        for (name, content) in b.changes {
            let p = dir.path + "/" + name
            if let content { try dir.write(name, content) } else { try FileManager.default.removeItem(atPath: p) }
        }
        let e = modelFileError {
            let m = try ModelLoader.open(path: dir.path)
            if b.atWeights { _ = try m.weights() }
        }
        #expect(e != nil, "\(b.label): no error")
        #expect(e?.file == dir.path + (b.errorFile.isEmpty ? "" : "/" + b.errorFile), "\(b.label): \(String(describing: e))")
        for m in b.mentions {
            #expect(e?.what.contains(m) == true, "\(b.label): '\(e?.what ?? "no error")' does not mention \(m)")
        }
    }

    @Test("a tensor in two shards, paths that are not models")
    func otherErrors() throws {
        let dir = try TempDir()
        let t = tinyModelTensors()
        try dir.write("config.json", text: tinyConfigJSON())
        let a = try dir.write("a.safetensors", STWriter.file(t))
        let b = try dir.write("b.safetensors", STWriter.file([t[0]]))
        let e = modelFileError { _ = try ModelLoader.open(path: dir.path) }
        #expect(e?.file == b && e?.what == "tensor 'model.embed_tokens.weight' is also in \(a)")

        let missing = modelFileError { _ = try ModelLoader.open(path: dir.path + "/nothing") }
        #expect(missing?.what == "no such file or directory")
        let text = try dir.write("notes.txt", text: "hello")
        let notModel = modelFileError { _ = try ModelLoader.open(path: text) }
        #expect(notModel?.what.contains("not a model") == true)
        let empty = try TempDir()
        let none = modelFileError { _ = try ModelLoader.open(path: empty.path) }
        #expect(none?.file == empty.path && none?.what.contains("no model.safetensors") == true)
    }
}
