import Foundation
import KVCache
import Testing

@testable import LlamaModel

/// Tiny LLaMA models written by the test, in odd shapes, run by `LlamaStage` and by a plain
/// double-precision reference that follows llama.cpp's conventions (GGUF Q/K rows with
/// interleaved RoPE pairs (2i, 2i+1)), so the un-permutation and GQA mapping are checked too.
@Suite("Synthetic models")
struct SyntheticModelTests {
    struct Shape: CustomStringConvertible, Sendable {
        let layers, hidden, ffn, heads, kvHeads, vocab: Int
        var headDim: Int { hidden / heads }
        var description: String { "L\(layers) H\(hidden) heads \(heads)/\(kvHeads) D\(headDim)" }
    }

    struct Model {
        let shape: Shape
        var tensors: [String: (shape: [Int], data: [Float])] = [:]
        let theta: Float = 10000
    }

    static func makeModel(_ s: Shape, seed: UInt64) -> Model {
        var rng = SeededGenerator(seed: seed)
        func rand(_ n: Int, scale: Float) -> [Float] { (0..<n).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale } }
        var m = Model(shape: s)
        let D = s.headDim
        m.tensors["token_embd.weight"] = ([s.hidden, s.vocab], rand(s.hidden * s.vocab, scale: 1))
        m.tensors["output_norm.weight"] = ([s.hidden], rand(s.hidden, scale: 0.5).map { 1 + $0 })
        m.tensors["output.weight"] = ([s.hidden, s.vocab], rand(s.hidden * s.vocab, scale: 0.3))
        for l in 0..<s.layers {
            let p = "blk.\(l)."
            m.tensors[p + "attn_norm.weight"] = ([s.hidden], rand(s.hidden, scale: 0.5).map { 1 + $0 })
            m.tensors[p + "ffn_norm.weight"] = ([s.hidden], rand(s.hidden, scale: 0.5).map { 1 + $0 })
            m.tensors[p + "attn_q.weight"] = ([s.hidden, s.heads * D], rand(s.hidden * s.heads * D, scale: 0.3))
            m.tensors[p + "attn_k.weight"] = ([s.hidden, s.kvHeads * D], rand(s.hidden * s.kvHeads * D, scale: 0.3))
            m.tensors[p + "attn_v.weight"] = ([s.hidden, s.kvHeads * D], rand(s.hidden * s.kvHeads * D, scale: 0.3))
            m.tensors[p + "attn_output.weight"] = ([s.heads * D, s.hidden], rand(s.hidden * s.heads * D, scale: 0.3))
            m.tensors[p + "ffn_gate.weight"] = ([s.hidden, s.ffn], rand(s.hidden * s.ffn, scale: 0.3))
            m.tensors[p + "ffn_up.weight"] = ([s.hidden, s.ffn], rand(s.hidden * s.ffn, scale: 0.3))
            m.tensors[p + "ffn_down.weight"] = ([s.ffn, s.hidden], rand(s.hidden * s.ffn, scale: 0.3))
        }
        return m
    }

    /// The model as a GGUF file, every tensor f32 except those named in `f16` (stored as f16).
    static func write(_ m: Model, f16: Set<String> = []) throws -> String {
        let s = m.shape
        var w = GGUFWriter()
        w.metadata = [
            ("general.architecture", .string("llama")),
            ("llama.block_count", .u32(UInt32(s.layers))),
            ("llama.context_length", .u32(256)),
            ("llama.embedding_length", .u32(UInt32(s.hidden))),
            ("llama.feed_forward_length", .u32(UInt32(s.ffn))),
            ("llama.attention.head_count", .u32(UInt32(s.heads))),
            ("llama.attention.head_count_kv", .u32(UInt32(s.kvHeads))),
            ("llama.rope.freq_base", .f32(m.theta)),
            ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)),
        ]
        w.tensors = m.tensors.keys.sorted().map { name in
            let t = m.tensors[name]!
            guard f16.contains(name) else {
                return .init(name: name, type: .f32, shape: t.shape, bytes: t.data.f32Bytes)
            }
            var bytes: [UInt8] = []
            for v in t.data {
                let b = Float16(v).bitPattern
                bytes += [UInt8(b & 0xFF), UInt8(b >> 8)]
            }
            return .init(name: name, type: .f16, shape: t.shape, bytes: bytes)
        }
        return try w.write()
    }

    /// Plain causal forward pass over `tokens`, logits of every position.
    static func reference(_ m: Model, tokens: [Int]) -> [[Double]] {
        let s = m.shape
        let D = s.headDim
        let g = s.heads / s.kvHeads
        func W(_ n: String) -> [Float] { m.tensors[n]!.data }
        func matvec(_ w: [Float], rows: Int, cols: Int, _ x: [Double]) -> [Double] {
            (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(w[r * cols + $1]) * x[$1] } }
        }
        func rmsnorm(_ x: [Double], _ w: [Float]) -> [Double] {
            let ss = x.reduce(0) { $0 + $1 * $1 } / Double(x.count)
            let k = 1 / (ss + 1e-5).squareRoot()
            return x.indices.map { x[$0] * k * Double(w[$0]) }
        }
        // llama.cpp "normal" RoPE on GGUF rows: pairs (2i, 2i+1), theta_i = base^(-2i/D).
        func rope(_ v: inout [Double], heads: Int, pos: Int) {
            for h in 0..<heads {
                for i in 0..<D / 2 {
                    let a = Double(Float(pos) * Float(1.0 / pow(Double(m.theta), Double(2 * i) / Double(D))))
                    let (c, sn) = (cos(a), sin(a))
                    let x0 = v[h * D + 2 * i]
                    let x1 = v[h * D + 2 * i + 1]
                    v[h * D + 2 * i] = x0 * c - x1 * sn
                    v[h * D + 2 * i + 1] = x0 * sn + x1 * c
                }
            }
        }
        var keys = Array(repeating: [[Double]](), count: s.layers)
        var values = Array(repeating: [[Double]](), count: s.layers)
        var out: [[Double]] = []
        let emb = W("token_embd.weight")
        for (pos, tok) in tokens.enumerated() {
            var x = (0..<s.hidden).map { Double(emb[tok * s.hidden + $0]) }
            for l in 0..<s.layers {
                let p = "blk.\(l)."
                let xn = rmsnorm(x, W(p + "attn_norm.weight"))
                var q = matvec(W(p + "attn_q.weight"), rows: s.heads * D, cols: s.hidden, xn)
                var k = matvec(W(p + "attn_k.weight"), rows: s.kvHeads * D, cols: s.hidden, xn)
                let v = matvec(W(p + "attn_v.weight"), rows: s.kvHeads * D, cols: s.hidden, xn)
                rope(&q, heads: s.heads, pos: pos)
                rope(&k, heads: s.kvHeads, pos: pos)
                keys[l].append(k)
                values[l].append(v)
                var att = [Double](repeating: 0, count: s.heads * D)
                for h in 0..<s.heads {
                    let kh = h / g
                    var sc = (0...pos).map { t in
                        (0..<D).reduce(0.0) { $0 + q[h * D + $1] * keys[l][t][kh * D + $1] } / Double(D).squareRoot()
                    }
                    let mx = sc.max()!
                    sc = sc.map { exp($0 - mx) }
                    let z = sc.reduce(0, +)
                    for i in 0..<D {
                        att[h * D + i] = (0...pos).reduce(0.0) { $0 + sc[$1] * values[l][$1][kh * D + i] } / z
                    }
                }
                let o = matvec(W(p + "attn_output.weight"), rows: s.hidden, cols: s.heads * D, att)
                x = x.indices.map { x[$0] + o[$0] }
                let xn2 = rmsnorm(x, W(p + "ffn_norm.weight"))
                let gt = matvec(W(p + "ffn_gate.weight"), rows: s.ffn, cols: s.hidden, xn2)
                let up = matvec(W(p + "ffn_up.weight"), rows: s.ffn, cols: s.hidden, xn2)
                let hdn = gt.indices.map { gt[$0] / (1 + exp(-gt[$0])) * up[$0] }
                let d = matvec(W(p + "ffn_down.weight"), rows: s.hidden, cols: s.ffn, hdn)
                x = x.indices.map { x[$0] + d[$0] }
            }
            out.append(matvec(W("output.weight"), rows: s.vocab, cols: s.hidden, rmsnorm(x, W("output_norm.weight"))))
        }
        return out
    }

    static let shapes: [Shape] = [
        Shape(layers: 2, hidden: 64, ffn: 96, heads: 4, kvHeads: 2, vocab: 50),  // D 16, GQA 2
        Shape(layers: 1, hidden: 128, ffn: 64, heads: 2, kvHeads: 1, vocab: 33),  // D 64, MQA
        Shape(layers: 3, hidden: 96, ffn: 160, heads: 3, kvHeads: 3, vocab: 40),  // D 32, MHA
    ]

    @Test("forward pass equals a double-precision reference, split into stages or not", arguments: shapes)
    func forward(shape: Shape) throws {
        let m = Self.makeModel(shape, seed: UInt64(shape.hidden))
        let path = try Self.write(m)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let gguf = try GGUFFile(path: path)
        let config = try LlamaConfig(gguf: gguf)
        #expect(config.headDim == shape.headDim && !config.tiedEmbeddings)
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
        let ref = Self.reference(m, tokens: tokens)
        let factory = FullPrecisionCacheFactory(precision: .f32)

        // Whole model in one stage.
        let whole = LlamaStage(
            weights: try LlamaWeights(source: gguf, config: config, layers: 0..<shape.layers, qkInterleaved: true),
            threads: 2)
        let cache = whole.makeCache(factory)
        let logits = whole.forward(
            .tokens(tokens.map { Int32($0) }), segments: [StageSegment(cache: cache, rows: tokens.count)],
            logitRows: Array(tokens.indices))
        var worst = 0.0
        for (r, row) in ref.enumerated() {
            for (i, v) in row.enumerated() { worst = max(worst, abs(Double(logits[r * shape.vocab + i]) - v)) }
        }
        #expect(worst < 1e-3, "\(shape): max |Δ| \(worst)")

        // Split: first stage layer 0, last stage the rest (when there are two or more layers).
        if shape.layers >= 2 {
            let a = LlamaStage(
                weights: try LlamaWeights(source: gguf, config: config, layers: 0..<1, qkInterleaved: true), threads: 1)
            let b = LlamaStage(
                weights: try LlamaWeights(source: gguf, config: config, layers: 1..<shape.layers, qkInterleaved: true),
                threads: 1)
            #expect(a.weights.output == nil && b.weights.tokenEmbedding == nil)
            let ca = a.makeCache(factory)
            let cb = b.makeCache(factory)
            let hidden = a.forward(
                .tokens(tokens.map { Int32($0) }), segments: [StageSegment(cache: ca, rows: tokens.count)])
            #expect(hidden.count == tokens.count * shape.hidden)
            let split = b.forward(
                .hidden(hidden), segments: [StageSegment(cache: cb, rows: tokens.count)],
                logitRows: Array(tokens.indices))
            #expect(split == logits, "\(shape): split stages differ from one stage")
        }
    }

    @Test("missing tensors and bad shapes are named")
    func missing() throws {
        let s = Self.shapes[0]
        var m = Self.makeModel(s, seed: 1)
        m.tensors["blk.1.ffn_up.weight"] = nil
        var path = try Self.write(m)
        var gguf = try GGUFFile(path: path)
        var config = try LlamaConfig(gguf: gguf)
        do {
            _ = try LlamaWeights(source: gguf, config: config, layers: 0..<2, qkInterleaved: true)
            Issue.record("no error")
        } catch {
            #expect(error.what.contains("blk.1.ffn_up.weight"))
        }
        try? FileManager.default.removeItem(atPath: path)
        m = Self.makeModel(s, seed: 1)
        m.tensors["blk.0.attn_k.weight"] = ([s.hidden, 7], [Float](repeating: 0, count: s.hidden * 7))
        path = try Self.write(m)
        gguf = try GGUFFile(path: path)
        config = try LlamaConfig(gguf: gguf)
        do {
            _ = try LlamaWeights(source: gguf, config: config, layers: 0..<1, qkInterleaved: true)
            Issue.record("no error")
        } catch {
            #expect(error.what.contains("blk.0.attn_k.weight") && error.what.contains("expected"))
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}
