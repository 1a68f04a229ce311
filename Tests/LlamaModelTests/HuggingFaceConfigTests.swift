import Foundation
import Testing

@testable import LlamaModel

/// `LlamaConfig(huggingFaceConfig:)`: published configs, defaults, RoPE scaling and errors.
@Suite("Hugging Face config.json")
struct HuggingFaceConfigTests {
    static func parse(_ text: String) throws -> LlamaConfig {
        try LlamaConfig(huggingFaceConfig: try JSONParser.parse(Array(text.utf8)), file: "config.json")
    }

    /// The config.json of SmolLM2-135M-Instruct as published.
    static let smolLM2 = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
         "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
         "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
         "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 9,
         "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
         "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
         "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
         "transformers.js_config": {"kv_cache_dtype": {"q4f16": "float16", "fp16": "float16"}},
         "use_cache": true, "vocab_size": 49152}
        """

    /// The config.json of Llama-3.2-1B-Instruct as published (llama3 RoPE scaling).
    static let llama32 = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
         "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
         "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
         "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
         "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
         "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
         "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256}
        """

    @Test("SmolLM2's config matches the GGUF's")
    func smolLM2() throws {
        let c = try Self.parse(Self.smolLM2)
        #expect(
            c == LlamaConfig(
                layerCount: 30, hiddenSize: 576, intermediateSize: 1536, headCount: 9, kvHeadCount: 3, headDim: 64,
                ropeTheta: 100000, ropeScaling: nil, rmsEpsilon: 1e-5, vocabularySize: 49152, tiedEmbeddings: true,
                contextLength: 8192))
    }

    @Test("optional keys take transformers' defaults")
    func defaults() throws {
        let c = try Self.parse(
            tinyConfigJSON([
                "num_key_value_heads": nil, "rope_theta": nil, "rms_norm_eps": nil, "max_position_embeddings": nil,
                "tie_word_embeddings": nil, "architectures": nil, "hidden_act": nil,
            ]))
        #expect(c.kvHeadCount == 2 && c.headDim == 4 && c.ropeTheta == 10000 && c.rmsEpsilon == 1e-6)
        #expect(c.contextLength == 2048 && !c.tiedEmbeddings && c.ropeScaling == nil)
        let nulls = try Self.parse(tinyConfigJSON(["num_key_value_heads": "null", "head_dim": "null", "rope_scaling": "null"]))
        #expect(nulls.kvHeadCount == 2 && nulls.headDim == 4)
        // head_dim wins over hidden / heads (Mistral-Nemo style), and a RoPE type of "default" is none.
        let nemo = try Self.parse(tinyConfigJSON(["head_dim": "6", "rope_scaling": "{\"rope_type\": \"default\"}"]))
        #expect(nemo.headDim == 6 && nemo.qDim == 12 && nemo.ropeScaling == nil)
    }

    /// Llama 3 inverse frequencies from the published formula, in double precision.
    static func llama3InverseFrequencies(
        theta: Double, headDim: Int, factor: Double, low: Double, high: Double, original: Double
    ) -> [Double] {
        (0..<headDim / 2).map { i in
            let f = 1 / pow(theta, Double(2 * i) / Double(headDim))
            let wavelength = 2 * Double.pi / f
            if wavelength < original / high { return f }
            if wavelength > original / low { return f / factor }
            let smooth = (original / wavelength - low) / (high - low)
            return (1 - smooth) * f / factor + smooth * f
        }
    }

    @Test("llama3 RoPE scaling: parsed, and inverse frequencies follow the published formula")
    func llama3Rope() throws {
        let c = try Self.parse(Self.llama32)
        #expect(c.ropeScaling == RopeScaling(factor: 32, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContextLength: 8192))
        #expect(c.ropeTheta == 500000 && c.headDim == 64 && c.kvHeadCount == 8 && c.contextLength == 131072 && c.tiedEmbeddings)
        let ours = c.ropeInverseFrequencies()
        let plain = (0..<32).map { 1 / pow(500000.0, Double(2 * $0) / 64) }
        let want = Self.llama3InverseFrequencies(theta: 500000, headDim: 64, factor: 32, low: 1, high: 4, original: 8192)
        #expect(ours.count == 32)
        for (i, (o, w)) in zip(ours, want).enumerated() {
            #expect(abs(Double(o) - w) <= 1e-6 * w, "pair \(i): \(o) vs \(w)")
        }
        // All three regimes occur: kept (high frequency), divided by the factor, and blended.
        let kept = zip(want, plain).filter { $0 == $1 }.count
        let scaled = zip(want, plain).filter { abs($0 - $1 / 32) < 1e-15 }.count
        #expect(kept == 15 && scaled == 14 && kept + scaled < 32)

        // The older "type" spelling and transformers 5's rope_parameters object read the same.
        let old = try Self.parse(
            Self.llama32.replacingOccurrences(of: "\"rope_type\": \"llama3\"", with: "\"type\": \"llama3\""))
        #expect(old == c)
        let v5 = try Self.parse(
            tinyConfigJSON([
                "rope_theta": nil, "head_dim": "64", "num_attention_heads": "2", "num_key_value_heads": "2",
                "rope_parameters": """
                    {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
                    """,
            ]))
        #expect(v5.ropeTheta == 500000 && v5.ropeScaling == c.ropeScaling && v5.ropeInverseFrequencies() == ours)
    }

    @Test("Mistral: accepted, a sliding window caps the context at the window")
    func mistral() throws {
        let windowed = try Self.parse(
            tinyConfigJSON([
                "model_type": "\"mistral\"", "architectures": "[\"MistralForCausalLM\"]",
                "max_position_embeddings": "32768", "sliding_window": "4096",
            ]))
        #expect(windowed.contextLength == 4096)
        let full = try Self.parse(
            tinyConfigJSON(["model_type": "\"mistral\"", "max_position_embeddings": "32768", "sliding_window": "null"]))
        #expect(full.contextLength == 32768)
    }

    /// A config change and what its error must say.
    struct Bad: Sendable, CustomTestStringConvertible {
        let label: String
        let overrides: [String: String?]
        let mentions: [String]
        var testDescription: String { label }
    }

    static let bad: [Bad] = [
        Bad(label: "missing hidden_size", overrides: ["hidden_size": nil], mentions: ["missing config key 'hidden_size'"]),
        Bad(label: "missing vocab_size", overrides: ["vocab_size": nil], mentions: ["missing config key 'vocab_size'"]),
        Bad(label: "missing num_hidden_layers", overrides: ["num_hidden_layers": nil], mentions: ["'num_hidden_layers'"]),
        Bad(label: "string size", overrides: ["hidden_size": "\"576\""], mentions: ["'hidden_size' is \"576\"", "integer"]),
        Bad(label: "fractional size", overrides: ["intermediate_size": "12.5"], mentions: ["'intermediate_size' is 12.5"]),
        Bad(label: "qwen2", overrides: ["model_type": "\"qwen2\"", "architectures": "[\"Qwen2ForCausalLM\"]"],
            mentions: ["model_type 'qwen2' is not LLaMA-family"]),
        Bad(label: "foreign architecture only", overrides: ["model_type": nil, "architectures": "[\"GPT2LMHeadModel\"]"],
            mentions: ["GPT2LMHeadModel", "not LLaMA-family"]),
        Bad(label: "no family at all", overrides: ["model_type": nil, "architectures": nil], mentions: ["model_type", "architectures"]),
        Bad(label: "yarn", overrides: ["rope_scaling": "{\"rope_type\": \"yarn\", \"factor\": 4.0}"],
            mentions: ["rope_scaling type 'yarn' is not supported"]),
        Bad(label: "linear", overrides: ["rope_scaling": "{\"type\": \"linear\", \"factor\": 2.0}"], mentions: ["'linear'"]),
        Bad(label: "llama3 without factor",
            overrides: ["rope_scaling": "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"],
            mentions: ["missing config key 'rope_scaling.factor'"]),
        Bad(label: "llama3 with equal factors",
            overrides: ["rope_scaling": "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"],
            mentions: ["low_freq_factor < high_freq_factor"]),
        Bad(label: "rope_scaling not an object", overrides: ["rope_scaling": "3"], mentions: ["'rope_scaling' is 3"]),
        Bad(label: "attention bias", overrides: ["attention_bias": "true"], mentions: ["attention_bias is true"]),
        Bad(label: "gelu", overrides: ["hidden_act": "\"gelu\""], mentions: ["hidden_act is \"gelu\""]),
        Bad(label: "heads not a multiple of KV heads", overrides: ["num_key_value_heads": "3"], mentions: ["not a multiple of KV head count 3"]),
        Bad(label: "zero heads", overrides: ["num_attention_heads": "0"], mentions: ["head count is 0"]),
        Bad(label: "odd head dim", overrides: ["head_dim": "5"], mentions: ["head dim 5 is odd"]),
        Bad(label: "zero sliding window", overrides: ["sliding_window": "0"], mentions: ["'sliding_window' is 0"]),
    ]

    @Test("bad configs give a ModelFileError naming the key and the problem", arguments: bad)
    func badConfig(_ b: Bad) throws {
        let e = modelFileError { _ = try Self.parse(tinyConfigJSON(b.overrides)) }
        #expect(e?.file == "config.json", "\(b.label): \(String(describing: e))")
        for m in b.mentions {
            #expect(e?.what.contains(m) == true, "\(b.label): '\(e?.what ?? "no error")' does not mention \(m)")
        }
    }

    @Test("config.json on disk: read, and errors name the file")
    func fromFile() throws {
        let dir = try TempDir()
        let good = try dir.write("config.json", text: Self.smolLM2)
        #expect(try LlamaConfig(huggingFaceConfigAt: good).hiddenSize == 576)
        let broken = try dir.write("broken.json", text: "{\"hidden_size\": 576,")
        let e = modelFileError { _ = try LlamaConfig(huggingFaceConfigAt: broken) }
        #expect(e?.file == broken && e?.what.contains("not valid JSON") == true)
        let notObject = try dir.write("list.json", text: "[1, 2]")
        #expect(modelFileError { _ = try LlamaConfig(huggingFaceConfigAt: notObject) }?.what.contains("expected a JSON object") == true)
    }

    @Test("thousands of mutated configs never crash the parser")
    func fuzz() {
        var rng = SeededRandom(seed: 31337)
        let keys = [
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "rope_theta", "rms_norm_eps", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "model_type",
            "rope_scaling", "sliding_window", "architectures", "rope_parameters",
        ]
        let values = [
            "0", "-1", "1", "2", "3", "64", "9223372036854775807", "-9223372036854775808", "1e308", "-1e308", "1e-320",
            "0.5", "true", "null", "\"llama\"", "[]", "{}", "[\"LlamaForCausalLM\"]", "\"x\"",
            "{\"rope_type\": \"llama3\", \"factor\": 0, \"low_freq_factor\": 1e308, \"high_freq_factor\": -1, \"original_max_position_embeddings\": -5}",
            "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 9223372036854775807}",
        ]
        var accepted = 0
        for _ in 0..<3000 {
            var o: [String: String?] = [:]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let k = keys.randomElement(using: &rng) ?? "hidden_size"
                o[k] = Bool.random(using: &rng) ? values.randomElement(using: &rng) : nil
            }
            if let c = try? Self.parse(tinyConfigJSON(o)) {
                accepted += 1
                _ = c.ropeInverseFrequencies()
            }
        }
        #expect(accepted > 0 && accepted < 3000)
    }
}
