import Foundation
import KVCache
import Testing

@testable import LlamaModel

/// `LlamaStage.embedding` and the eval's input-perturbation probe (`squat eval --perturb`), on a
/// tiny model written by the test.
@Suite("Eval input perturbation")
struct EvalPerturbationTests {
    static let shape = SyntheticModelTests.Shape(layers: 2, hidden: 64, ffn: 96, heads: 2, kvHeads: 1, vocab: 40)

    /// The synthetic model (tied: without `output.weight`, so that every stage that holds the
    /// output head also holds the embedding matrix) over `layers`, and its file.
    static func stage(layers: Range<Int>? = nil, tied: Bool = false) throws -> (LlamaStage, String) {
        var m = SyntheticModelTests.makeModel(shape, seed: 7)
        if tied { m.tensors["output.weight"] = nil }
        let path = try SyntheticModelTests.write(m)
        let gguf = try GGUFFile(path: path)
        let config = try LlamaConfig(gguf: gguf)
        let weights = try LlamaWeights(
            source: gguf, config: config, layers: layers ?? 0..<shape.layers, qkInterleaved: true)
        return (LlamaStage(weights: weights, threads: 1), path)
    }

    @Test("embeddings fed as hidden states give the logits of the token ids; no embedding, nil")
    func embeddingMatchesTokens() throws {
        let (stage, path) = try Self.stage()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ids: [Int32] = [3, 1, 4, 1, 5, 9, 2, 39, 0]
        let e = try #require(stage.embedding(ids))
        #expect(e.count == ids.count * Self.shape.hidden)
        #expect(stage.embedding([]) == [])
        let factory = FullPrecisionCacheFactory(precision: .f32)
        let a = stage.forward(
            .tokens(ids), segments: [StageSegment(cache: stage.makeCache(factory), rows: ids.count)],
            logitRows: Array(ids.indices))
        let b = stage.forward(
            .hidden(e), segments: [StageSegment(cache: stage.makeCache(factory), rows: ids.count)],
            logitRows: Array(ids.indices))
        #expect(a == b)
        for tied in [false, true] {
            // A last stage has no embedding to offer, even when the tied output head holds its matrix.
            let (tail, tailPath) = try Self.stage(layers: 1..<Self.shape.layers, tied: tied)
            defer { try? FileManager.default.removeItem(atPath: tailPath) }
            #expect(tail.weights.config.tiedEmbeddings == tied)
            #expect(tail.embedding(ids) == nil, "tied: \(tied)")
        }
    }

    @Test("a perturbed full-precision mode moves off the reference, by seed, reproducibly")
    func perturbation() throws {
        let (stage, path) = try Self.stage()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var rng = SeededGenerator(seed: 11)
        let ids = (0..<24).map { _ in Int32(rng.next() % UInt64(Self.shape.vocab)) }
        let modes: [(name: String, factory: any KVCacheFactory)] = [
            ("full-f32", FullPrecisionCacheFactory(precision: .f32))
        ]
        func rows(_ p: CacheEvaluation.InputPerturbation?) throws -> [CacheEvaluation.Result] {
            try CacheEvaluation(stage: stage, promptTokens: 8, decodeTokens: 16, perturbation: p)
                .run(ids: ids, modes: modes)
        }
        func run(_ p: CacheEvaluation.InputPerturbation?) throws -> CacheEvaluation.Result { try rows(p)[1] }
        // The reference run is never perturbed.
        #expect(try rows(.init(epsilon: 1e-2, seed: 1))[0] == rows(nil)[0])
        let exact = try run(nil)
        #expect(exact.kl == 0 && exact.top1 == 1)
        #expect(try run(.init(epsilon: 0, seed: 1)) == exact)
        let a = try run(.init(epsilon: 1e-2, seed: 1))
        let b = try run(.init(epsilon: 1e-2, seed: 2))
        #expect(a.kl > 0 && b.kl > 0)
        #expect(a.kl != b.kl)
        #expect(try run(.init(epsilon: 1e-2, seed: 1)) == a)
        // A smaller perturbation moves the distributions less.
        let small = try run(.init(epsilon: 1e-4, seed: 1))
        #expect(small.kl > 0 && small.kl < a.kl)
    }

    @Test("the probe's noise is a standard normal, fixed by seed, token and element")
    func noise() {
        var sum = 0.0
        var squares = 0.0
        let n = 20_000
        for i in 0..<n {
            let x = CacheEvaluation.InputPerturbation.normal(seed: 5, token: Int32(i % 97), element: i / 97)
            sum += x
            squares += x * x
        }
        let mean = sum / Double(n)
        let variance = squares / Double(n) - mean * mean
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05, "mean \(mean), variance \(variance)")
        #expect(
            CacheEvaluation.InputPerturbation.normal(seed: 5, token: 3, element: 7)
                == CacheEvaluation.InputPerturbation.normal(seed: 5, token: 3, element: 7))
        #expect(
            CacheEvaluation.InputPerturbation.normal(seed: 5, token: 3, element: 7)
                != CacheEvaluation.InputPerturbation.normal(seed: 6, token: 3, element: 7))
        // Neighbouring tokens and elements draw independent values: E[n(t)²·n(t+1)²] = 1 (a
        // generator whose neighbours share a uniform gives about 1.13 here; the bound is ~4σ).
        var tokens = 0.0
        var elements = 0.0
        for i in 0..<n {
            let t = Int32(i % 97)
            let e = i / 97
            let x = CacheEvaluation.InputPerturbation.normal(seed: 5, token: t, element: e)
            let nextToken = CacheEvaluation.InputPerturbation.normal(seed: 5, token: t + 1, element: e)
            let nextElement = CacheEvaluation.InputPerturbation.normal(seed: 5, token: t, element: e + 1)
            tokens += x * x * nextToken * nextToken
            elements += x * x * nextElement * nextElement
        }
        #expect(abs(tokens / Double(n) - 1) < 0.08, "E[n(t)²n(t+1)²] = \(tokens / Double(n))")
        #expect(abs(elements / Double(n) - 1) < 0.08, "E[n(e)²n(e+1)²] = \(elements / Double(n))")
    }
}
