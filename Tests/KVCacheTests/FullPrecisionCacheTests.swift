import Foundation
import Testing

@testable import KVCache

/// The full-precision cache's attention against a plain double-precision reference, across
/// several key chunks, and its independence from the thread count.
@Suite("Full-precision cache")
struct FullPrecisionCacheTests {
    struct LCG {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
    }

    /// Naive causal attention with RoPE in Double: rows × (heads·D) outputs.
    func reference(q: [Float], k: [Float], v: [Float], rows: Int, shape s: AttentionShape, rope: Rope) -> [Double] {
        var q = q, k = k
        q.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows { rope.apply(p.baseAddress! + r * s.qDim, heads: s.queryHeads, position: r) }
        }
        k.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows { rope.apply(p.baseAddress! + r * s.kvDim, heads: s.kvHeads, position: r) }
        }
        let D = s.headDim
        var out = [Double](repeating: 0, count: rows * s.qDim)
        for r in 0..<rows {
            for qh in 0..<s.queryHeads {
                let h = qh / s.groupSize
                var scores = (0...r).map { t -> Double in
                    var dot = 0.0
                    for i in 0..<D { dot += Double(q[r * s.qDim + qh * D + i]) * Double(k[t * s.kvDim + h * D + i]) }
                    return dot / Double(D).squareRoot()
                }
                let m = scores.max() ?? 0
                scores = scores.map { exp($0 - m) }
                let z = scores.reduce(0, +)
                for i in 0..<D {
                    var acc = 0.0
                    for t in 0...r { acc += scores[t] * Double(v[t * s.kvDim + h * D + i]) }
                    out[r * s.qDim + qh * D + i] = acc / z
                }
            }
        }
        return out
    }

    func run(precision: FullPrecision, threads: Int, chunks: [Int], q: [Float], k: [Float], v: [Float],
             shape s: AttentionShape, rope: Rope) -> [Float] {
        let cache = FullPrecisionCache(layers: 1, shape: s, rope: rope, precision: precision)
        var out = [Float](repeating: 0, count: q.count)
        var q = q, k = k, v = v
        var r0 = 0
        for n in chunks {
            q.withUnsafeMutableBufferPointer { qp in
                k.withUnsafeMutableBufferPointer { kp in
                    v.withUnsafeMutableBufferPointer { vp in
                        out.withUnsafeMutableBufferPointer { op in
                            cache.forward(
                                layer: 0, queries: qp.baseAddress! + r0 * s.qDim, keys: kp.baseAddress! + r0 * s.kvDim,
                                values: vp.baseAddress! + r0 * s.kvDim, rows: n, output: op.baseAddress! + r0 * s.qDim,
                                parallel: Parallel(threads: threads))
                        }
                    }
                }
            }
            cache.commit(rows: n)
            r0 += n
        }
        #expect(cache.count == r0)
        return out
    }

    @Test("matches a double-precision reference over several chunks; thread count changes nothing",
          arguments: FullPrecision.allCases)
    func attention(precision: FullPrecision) {
        let s = AttentionShape(kvHeads: 2, groupSize: 3, headDim: 64)
        let rope = Rope(headDim: 64, inverseFrequencies: (0..<32).map { Float(pow(10000.0, -Double(2 * $0) / 64)) })
        let rows = 1100  // three key chunks for the last rows
        var g = LCG(s: 9)
        let q = (0..<rows * s.qDim).map { _ in g.next() }
        let k = (0..<rows * s.kvDim).map { _ in g.next() }
        let v = (0..<rows * s.kvDim).map { _ in g.next() }
        let ref = reference(q: q, k: k, v: v, rows: rows, shape: s, rope: rope)
        let a = run(precision: precision, threads: 2, chunks: [600, 400, 1, 99], q: q, k: k, v: v, shape: s, rope: rope)
        let b = run(precision: precision, threads: 1, chunks: [1100], q: q, k: k, v: v, shape: s, rope: rope)
        #expect(a == b, "results depend on chunking of rows or on threads")
        let worst = zip(a, ref).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(worst < (precision == .f32 ? 2e-5 : 2e-3), "max |Δ| \(worst)")
        #expect(worst > 0 || precision == .f32)
    }
}
