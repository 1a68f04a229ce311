import Foundation
import Testing

@testable import KVCache

/// The quantized caches: attention on packed codes equals attention over the dequantized
/// cache, the residual windows follow the reference policy, and memory is what it should be.
@Suite("Quantized cache")
struct QuantizedCacheTests {
    static let shape = AttentionShape(kvHeads: 2, groupSize: 3, headDim: 64)
    static let rope = Rope(headDim: 64, inverseFrequencies: (0..<32).map { Float(pow(100000.0, -Double(2 * $0) / 64)) })

    struct Case: CustomStringConvertible, Sendable {
        let method: KeyQuantization
        let keyRope: RopePlacement
        let bits: Int
        var scales: FullPrecision = .f16
        var description: String { "\(method)-\(keyRope)-\(bits)bit-\(scales)" }
    }
    static let cases = [
        Case(method: .squat, keyRope: .pre, bits: 2), Case(method: .squat, keyRope: .pre, bits: 4, scales: .f32),
        Case(method: .kivi, keyRope: .post, bits: 2), Case(method: .kivi, keyRope: .pre, bits: 4),
        Case(method: .kivi, keyRope: .post, bits: 8, scales: .f32), Case(method: .squat, keyRope: .post, bits: 2),
    ]

    /// One forward call of `rows` rows (queries, keys and values copied; the cache rotates them),
    /// then the commit; returns the attention output.
    @discardableResult
    static func forward(
        _ cache: any SequenceKVCache, q: [Float], k: [Float], v: [Float], rows: Int, threads: Int = 2
    ) -> [Float] {
        var qc = q
        var kc = k
        var vc = v
        var out = [Float](repeating: 0, count: q.count)  // one output row per query row
        qc.withUnsafeMutableBufferPointer { qp in
            kc.withUnsafeMutableBufferPointer { kp in
                vc.withUnsafeMutableBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        cache.forward(
                            layer: 0, queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!,
                            rows: rows, output: op.baseAddress!, parallel: Parallel(threads: threads))
                    }
                }
            }
        }
        cache.commit(rows: rows)
        return out
    }

    /// Double-precision attention of one rotated query row over token-major rotated keys/values.
    static func attend(q: ArraySlice<Float>, keys: [[Float]], values: [[Float]], tokens T: Int) -> [Double] {
        let s = shape
        let D = s.headDim
        var out = [Double](repeating: 0, count: s.qDim)
        let qa = Array(q)
        for qh in 0..<s.queryHeads {
            let h = qh / s.groupSize
            var sc = (0..<T).map { t in
                (0..<D).reduce(0.0) { $0 + Double(qa[qh * D + $1]) * Double(keys[h][t * D + $1]) } / 8
            }
            let m = sc.max() ?? 0
            sc = sc.map { exp($0 - m) }
            let z = sc.reduce(0, +)
            for i in 0..<D { out[qh * D + i] = (0..<T).reduce(0.0) { $0 + sc[$1] * Double(values[h][$1 * D + i]) } / z }
        }
        return out
    }

    @Test("packed attention equals dequantize-then-attend, at every decode step", arguments: cases)
    func packedMatchesDequantized(c: Case) {
        let s = Self.shape
        let params = QuantizationParameters(kBits: c.bits, vBits: c.bits, keyRope: c.keyRope)
        let factory = QuantizedCacheFactory(method: c.method, params: params, contextLength: 2048, scales: c.scales)
        guard let cache = factory.makeCache(layers: 1, shape: s, rope: Self.rope) as? QuantizedCache else {
            Issue.record("not a QuantizedCache")
            return
        }
        var rng = FullPrecisionCacheTests.LCG(s: 3)
        let prompt = 77
        let steps = 470  // crosses key flushes and a 512-key chunk boundary
        func rows(_ n: Int, _ width: Int) -> [Float] { (0..<n * width).map { _ in rng.next() } }
        let q = rows(prompt, s.qDim)
        let k = rows(prompt, s.kvDim)
        let v = rows(prompt, s.kvDim)
        Self.forward(cache, q: q, k: k, v: v, rows: prompt)
        // After the prompt: keys quantized in whole windows, values all but the last window.
        let store0 = cache.dequantizedState(layer: 0)
        #expect(store0.keys[0].count == prompt * 64 && store0.values[0].count == prompt * 64)
        let R = params.residualLength
        let afterPrompt = cache.quantizedTokenCounts(layer: 0)
        #expect(afterPrompt.keys == prompt / R * R && afterPrompt.values == prompt - R, "\(c): \(afterPrompt)")
        var worst = 0.0
        for step in 0..<steps {
            let pos = prompt + step
            var state = cache.dequantizedState(layer: 0)
            let qr = rows(1, s.qDim)
            let kr = rows(1, s.kvDim)
            let vr = rows(1, s.kvDim)
            // The reference sees the new token in full precision, rotated.
            var kRot = kr
            kRot.withUnsafeMutableBufferPointer { Self.rope.apply($0.baseAddress!, heads: s.kvHeads, position: pos) }
            for h in 0..<s.kvHeads {
                state.keys[h] += kRot[h * 64..<(h + 1) * 64]
                state.values[h] += vr[h * 64..<(h + 1) * 64]
            }
            var qRot = qr
            qRot.withUnsafeMutableBufferPointer { Self.rope.apply($0.baseAddress!, heads: s.queryHeads, position: pos) }
            let ref = Self.attend(q: qRot[...], keys: state.keys, values: state.values, tokens: pos + 1)
            let o = Self.forward(cache, q: qr, k: kr, v: vr, rows: 1)
            for i in 0..<s.qDim { worst = max(worst, abs(Double(o[i]) - ref[i])) }
        }
        #expect(worst < 2e-4, "\(c): max |packed − dequantized| \(worst)")
        // Residual windows as the reference keeps them: keys flush R at a time once R are held
        // (total mod R left), values one at a time once more than R are held (R left).
        let total = prompt + steps
        let store = cache.dequantizedState(layer: 0)
        #expect(store.keys[0].count == total * 64)
        let counts = cache.quantizedTokenCounts(layer: 0)
        #expect(total - counts.keys == total % R, "\(c): keys in the full-precision window")
        #expect(total - counts.values == R, "\(c): values in the full-precision window")
        #expect(cache.byteCount > 0)
    }

    /// Rows after the first call go through the cache one at a time whatever the call's size: a
    /// call of many rows (scored against the packed keys 16 rows at a time, or fewer when the
    /// buffer bound says so) gives every row the bits it gets in a call of its own, across key
    /// flushes and 512-key chunk boundaries.
    @Test("a call of many rows equals one row per call, bit for bit", arguments: cases)
    func rowsMatchSingleRows(c: Case) {
        let s = Self.shape
        let params = QuantizationParameters(kBits: c.bits, vBits: c.bits, keyRope: c.keyRope)
        let factory = QuantizedCacheFactory(method: c.method, params: params, contextLength: 2048, scales: c.scales)
        let batched = factory.makeCache(layers: 1, shape: s, rope: Self.rope)
        // A bound of 7000 bytes (24 per packed key and row here): from 9 rows a pass down to 1.
        let bounded = factory.makeCache(layers: 1, shape: s, rope: Self.rope)
        (bounded as? QuantizedCache)?.packedScoreBytes = 7000
        #expect(bounded is QuantizedCache, "\(c): the bound is a QuantizedCache setting")
        let single = factory.makeCache(layers: 1, shape: s, rope: Self.rope)
        var rng = FullPrecisionCacheTests.LCG(s: 11)
        func rows(_ n: Int, _ width: Int) -> [Float] { (0..<n * width).map { _ in rng.next() } }
        let prompt = 45
        let total = 700
        let q = rows(total, s.qDim)
        let k = rows(total, s.kvDim)
        let v = rows(total, s.kvDim)
        func slice(_ x: [Float], _ width: Int, _ r: Range<Int>) -> [Float] {
            Array(x[(r.lowerBound * width)..<(r.upperBound * width)])
        }
        var a: [Float] = []
        var bound: [Float] = []
        var b: [Float] = []
        // Calls of uneven sizes (the prompt first), against the same rows one per call.
        var start = 0
        for n in [prompt, 1, 37, 300, 2, 16, 17, 1, 281] {
            let r = start..<(start + n)
            a += Self.forward(
                batched, q: slice(q, s.qDim, r), k: slice(k, s.kvDim, r), v: slice(v, s.kvDim, r), rows: n)
            bound += Self.forward(
                bounded, q: slice(q, s.qDim, r), k: slice(k, s.kvDim, r), v: slice(v, s.kvDim, r), rows: n)
            start += n
        }
        #expect(start == total)
        b += Self.forward(
            single, q: slice(q, s.qDim, 0..<prompt), k: slice(k, s.kvDim, 0..<prompt), v: slice(v, s.kvDim, 0..<prompt),
            rows: prompt)
        for t in prompt..<total {
            b += Self.forward(
                single, q: slice(q, s.qDim, t..<(t + 1)), k: slice(k, s.kvDim, t..<(t + 1)),
                v: slice(v, s.kvDim, t..<(t + 1)), rows: 1)
        }
        for (name, x) in [("16 rows a pass", a), ("bounded buffer", bound)] {
            let mismatched = zip(x, b).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
            #expect(
                x.count == b.count && mismatched.isEmpty,
                "\(c), \(name): \(mismatched.count) outputs differ, first at \(mismatched.first.map { $0.offset / s.qDim } ?? -1)"
            )
        }
    }

    /// Attention tasks go to whichever thread asks first (`Parallel.forEachDynamic`), so the
    /// thread that computes a chunk changes from run to run: the outputs must not.
    @Test("thread count changes nothing, bit for bit", arguments: [cases[0], cases[2]])
    func threadsChangeNothing(c: Case) {
        let s = Self.shape
        let params = QuantizationParameters(kBits: c.bits, vBits: c.bits, keyRope: c.keyRope)
        let factory = QuantizedCacheFactory(method: c.method, params: params, contextLength: 2048, scales: c.scales)
        var rng = FullPrecisionCacheTests.LCG(s: 5)
        let total = 1200  // three 512-key chunks by the end
        let q = (0..<total * s.qDim).map { _ in rng.next() }
        let k = (0..<total * s.kvDim).map { _ in rng.next() }
        let v = (0..<total * s.kvDim).map { _ in rng.next() }
        func run(threads: Int) -> [Float] {
            let cache = factory.makeCache(layers: 1, shape: s, rope: Self.rope)
            var out: [Float] = []
            var start = 0
            for n in [600, 1, 1, 300, 1, 297] {
                out += Self.forward(
                    cache, q: Array(q[start * s.qDim..<(start + n) * s.qDim]),
                    k: Array(k[start * s.kvDim..<(start + n) * s.kvDim]),
                    v: Array(v[start * s.kvDim..<(start + n) * s.kvDim]), rows: n, threads: threads)
                start += n
            }
            return out
        }
        let one = run(threads: 1)
        let three = run(threads: 3)
        let differing = zip(one, three).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(one.count == total * s.qDim && three.count == one.count)
        #expect(differing == 0, "\(c): \(differing) outputs differ between 1 and 3 threads")
    }

    /// `keyRope` decides where SQuat quantizes keys too: with one channel block (no compensation)
    /// SQuat is KIVI, so SQuat after RoPE must store exactly KIVI-after-RoPE's keys and differ
    /// from KIVI-before-RoPE's.
    @Test("SQuat quantizes keys before or after RoPE as keyRope says")
    func squatKeyPlacement() throws {
        let s = Self.shape
        var rng = FullPrecisionCacheTests.LCG(s: 11)
        let T = 96
        let q = (0..<T * s.qDim).map { _ in rng.next() }
        let k = (0..<T * s.kvDim).map { _ in rng.next() }
        let v = (0..<T * s.kvDim).map { _ in rng.next() }
        func storedKeys(_ method: KeyQuantization, _ rope: RopePlacement) throws -> [[Float]] {
            let params = QuantizationParameters(kBits: 2, vBits: 2, quantGroupSize: s.headDim, keyRope: rope)
            let factory = QuantizedCacheFactory(method: method, params: params, contextLength: 1024)
            let cache = try #require(factory.makeCache(layers: 1, shape: s, rope: Self.rope) as? QuantizedCache)
            Self.forward(cache, q: q, k: k, v: v, rows: T, threads: 1)
            #expect(cache.quantizedTokenCounts(layer: 0).keys == T)
            return cache.dequantizedState(layer: 0).keys
        }
        let squatPost = try storedKeys(.squat, .post)
        #expect(squatPost == (try storedKeys(.kivi, .post)), "SQuat with one block after RoPE is KIVI after RoPE")
        #expect(squatPost != (try storedKeys(.kivi, .pre)), "quantizing after RoPE changes the keys")
        #expect((try storedKeys(.squat, .pre)) == (try storedKeys(.kivi, .pre)), "and before RoPE, KIVI before RoPE")
    }

    /// At 8192 tokens the residual windows are amortised; at 4096 they add ~1% of the f16 size.
    @Test("memory: 2-bit KIVI/SQuat storage ≤ 0.21× the f16 cache at 4096 tokens")
    func memory() {
        let s = AttentionShape(kvHeads: 3, groupSize: 3, headDim: 64)
        let params = QuantizationParameters(kBits: 2, vBits: 2)
        let cache = QuantizedCache(
            layers: 1, shape: s, rope: Self.rope, method: .kivi, params: params,
            table: RopeTable(rope: Self.rope, positions: 8192))
        let full = FullPrecisionCache(layers: 1, shape: s, rope: Self.rope, precision: .f16)
        var rng = FullPrecisionCacheTests.LCG(s: 5)
        let T = 4096
        var q = (0..<T * s.qDim).map { _ in rng.next() }
        var k = (0..<T * s.kvDim).map { _ in rng.next() }
        var v = (0..<T * s.kvDim).map { _ in rng.next() }
        for c in [cache as any SequenceKVCache, full] { Self.forward(c, q: q, k: k, v: v, rows: T) }
        q = []
        k = []
        v = []
        let ratio = Double(cache.byteCount) / Double(full.byteCount)
        #expect(ratio <= 0.21, "ratio \(ratio)")
        #expect(ratio > 0.1)
    }
}
