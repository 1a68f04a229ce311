import CKernels
import Foundation
import KVCache
import Testing

@testable import LlamaModel

/// The default GGUF model rewritten as a Hugging Face safetensors directory (float32 weights,
/// Q/K rows back in rotate-half order, BF16/F16 norms, two shards + index) by
/// Fixtures/make_hf_model.py, once per test process, then loaded through `ModelLoader`.
/// The directory is deleted right after loading: the mappings keep the data alive.
final class HFRoundTripModel: @unchecked Sendable {
    // @unchecked: immutable after init; each test makes its own stage and caches.
    let model: LoadedModelFiles
    let weights: LlamaWeights
    /// Seconds spent by the Python script, and loading.
    let generateSeconds: Double
    let loadSeconds: Double

    struct SetupFailure: Error, CustomStringConvertible {
        let description: String
    }

    static let shared: Result<HFRoundTripModel, any Error> = Result { try HFRoundTripModel() }
    static func get() throws -> HFRoundTripModel { try shared.get() }

    private init() throws {
        guard FileManager.default.fileExists(atPath: Golden.modelPath) else { throw Golden.MissingFile(path: Golden.modelPath) }
        let script = Golden.packageRoot.appendingPathComponent("Tests/LlamaModelTests/Fixtures/make_hf_model.py").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squat-hf-roundtrip-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }

        let start = Date()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, Golden.modelPath, dir.path, "--shards", "2"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            throw SetupFailure(description: "cannot run python3 (\(error)): run scripts/setup.sh to install python3 with gguf and numpy")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw SetupFailure(
                description: "make_hf_model.py exited with \(process.terminationStatus): \(text)\nThe Hugging Face round-trip test needs python3 with the PyPI packages gguf and numpy: run scripts/setup.sh")
        }
        generateSeconds = Date().timeIntervalSince(start)

        let loadStart = Date()
        model = try ModelLoader.open(path: dir.path)
        weights = try model.weights()
        loadSeconds = Date().timeIntervalSince(loadStart)
    }
}

@Suite("Hugging Face round trip of the default model", .serialized)
struct HuggingFaceRoundTripTests {
    @Test("the generated directory loads with the GGUF's configuration, dtypes and tensors")
    func structure() throws {
        let hf = try HFRoundTripModel.get()
        let m = hf.model
        #expect(m.format == .huggingFace && !m.qkInterleaved)
        let source = try #require(m.source as? HuggingFaceModel)
        #expect(source.files.count == 2)
        #expect(source.files.allSatisfy { $0.metadata["format"] == "pt" })
        let gguf = try SharedModel.get()
        #expect(m.config == gguf.config)
        #expect(try m.source.tensorView("blk.7.attn_norm.weight").type == .bf16)
        #expect(try m.source.tensorView("blk.7.ffn_norm.weight").type == .f16)
        #expect(try m.source.tensorView("blk.7.attn_q.weight").type == .f32)
        print("HF round trip: make_hf_model.py took \(hf.generateSeconds) s, loading \(hf.loadSeconds) s")
    }

    /// Row `r` of a weight matrix as floats.
    static func row(_ w: WeightMatrix, _ r: Int) -> [Float] {
        var out = [Float](repeating: 0, count: w.cols)
        out.withUnsafeMutableBufferPointer { w.dequantizeRow(r, into: $0.baseAddress!) }
        return out
    }

    @Test("every weight equals the GGUF's dequantized weight; Q/K rows are un-interleaved per head")
    func weightsMatchGGUF() throws {
        let hf = try HFRoundTripModel.get().weights
        let gg = try SharedModel.get().weights
        let c = gg.config
        let D = c.headDim
        func same(_ a: WeightMatrix, _ b: WeightMatrix, permuteHeads: Bool, _ what: String) {
            #expect(a.rows == b.rows && a.cols == b.cols, "\(what)")
            var mismatched = 0
            for r in 0..<a.rows {
                // GGUF row (head h, pair i, half k) at h*D + 2i + k is Hugging Face row h*D + k*D/2 + i.
                let ggufRow = permuteHeads ? (r / D) * D + 2 * (r % D % (D / 2)) + (r % D) / (D / 2) : r
                if Self.row(a, r) != Self.row(b, ggufRow) { mismatched += 1 }
            }
            #expect(mismatched == 0, "\(what): \(mismatched) of \(a.rows) rows differ")
        }
        for (l, (h, g)) in zip(hf.layers, gg.layers).enumerated() {
            same(h.wq, g.wq, permuteHeads: true, "layer \(l) q")
            same(h.wk, g.wk, permuteHeads: true, "layer \(l) k")
            same(h.wv, g.wv, permuteHeads: false, "layer \(l) v")
            same(h.wo, g.wo, permuteHeads: false, "layer \(l) o")
            same(h.gate, g.gate, permuteHeads: false, "layer \(l) gate")
            same(h.up, g.up, permuteHeads: false, "layer \(l) up")
            same(h.down, g.down, permuteHeads: false, "layer \(l) down")
            #expect(h.attnNorm == g.attnNorm && h.ffnNorm == g.ffnNorm, "layer \(l) norms")
        }
        if let he = hf.tokenEmbedding, let ge = gg.tokenEmbedding {
            same(he, ge, permuteHeads: false, "embedding")
        } else {
            Issue.record("missing embedding")
        }
        #expect(hf.outputNorm == gg.outputNorm)
        #expect(hf.ropeInverseFrequencies == gg.ropeInverseFrequencies)
    }

    /// Same check as GoldenLogitsTests (f32 cache, tolerance 1e-3), on the safetensors weights:
    /// every prompt, every teacher-forced step.
    @Test("logits from the safetensors weights match the float32 reference within 1e-3")
    func logitsMatchReference() throws {
        let hf = try HFRoundTripModel.get()
        let ref = try Golden.json("golden/fp32_reference_smollm2_q4_1.json")
        let chosen = try #require(ref["prompts"] as? [[String: Any]])
        #expect(chosen.count >= 5)
        let stage = LlamaStage(weights: hf.weights, threads: 2)
        let tolerance: Float = 1e-3
        var worstFull: Float = 0
        var worstStep: Float = 0
        var checked = 0
        let start = Date()
        for p in chosen {
            let name = p["name"] as? String ?? "?"
            let input = try #require(p["input_tokens"] as? [Any]).ints
            let teacher = try #require(p["teacher_tokens"] as? [Any]).ints
            let steps = try #require(p["steps"] as? [[String: Any]])
            let full = try #require(p["last_prompt_position_logits_full"] as? [Any]).floats
            #expect(full.count == hf.model.config.vocabularySize)

            let cache = stage.makeCache(FullPrecisionCacheFactory(precision: .f32))
            var logits = stage.forward(
                .tokens(input.map { Int32($0) }), segments: [StageSegment(cache: cache, rows: input.count)],
                logitRows: [input.count - 1])
            let dFull = zip(logits, full).map { abs($0 - $1) }.max() ?? .infinity
            worstFull = max(worstFull, dFull)
            #expect(dFull < tolerance, "\(name): all-logit max |Δ| \(dFull) after the prompt")

            for (i, step) in steps.enumerated() {
                if i > 0 {
                    logits = stage.forward(
                        .tokens([Int32(teacher[i - 1])]), segments: [StageSegment(cache: cache, rows: 1)], logitRows: [0])
                }
                let top = try #require(step["top_k"] as? [[Any]])
                var worst: (d: Float, id: Int, want: Float) = (0, -1, 0)
                for pair in top {
                    let id = try #require((pair[0] as? NSNumber)?.intValue)
                    let value = try #require((pair[1] as? NSNumber)?.floatValue)
                    let d = abs(logits[id] - value)
                    if !(d <= worst.d) { worst = (d, id, value) }
                    checked += 1
                }
                worstStep = max(worstStep, worst.d)
                #expect(
                    worst.d < tolerance,
                    "\(name) step \(i): token \(worst.id) logit \(worst.id >= 0 ? logits[worst.id] : .nan) vs \(worst.want)")
            }
        }
        #expect(checked >= 5 * 48 * 20)
        print(
            "HF round trip logits: worst all-logit |Δ| \(worstFull), worst top-20 |Δ| \(worstStep), \(checked) logits, forward passes \(Date().timeIntervalSince(start)) s"
        )
    }
}
