import Foundation
import Testing

@testable import KVCache

/// Exported cache layers (what a worker ships to the new owner of its layers) restore a cache
/// that continues bit for bit, and a blob that is truncated, corrupt or made by another kind of
/// cache is refused with an error naming the layer and field, leaving the cache unchanged.
@Suite("Cache shipping")
struct CacheShippingTests {
    static let shape = QuantizedCacheTests.shape
    static let rope = QuantizedCacheTests.rope

    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let make: @Sendable () -> KVCacheFactory
        var description: String { name }
    }
    static let cases: [Case] = [
        Case(name: "f16") { FullPrecisionCacheFactory(precision: .f16) },
        Case(name: "f32") { FullPrecisionCacheFactory(precision: .f32) },
        Case(name: "squat-k2v2") {
            QuantizedCacheFactory(method: .squat, params: QuantizationParameters(), contextLength: 1024)
        },
        Case(name: "squat-k4v4-f32scales") {
            QuantizedCacheFactory(
                method: .squat, params: QuantizationParameters(kBits: 4, vBits: 4), contextLength: 1024, scales: .f32)
        },
        Case(name: "kivi-post-k2v2") {
            QuantizedCacheFactory(method: .kivi, params: QuantizationParameters(keyRope: .post), contextLength: 1024)
        },
    ]

    /// Feeds `rows` random tokens through every layer of `cache`; returns the outputs.
    static func step(_ cache: any SequenceKVCache, layers: Int, rows: Int, rng: inout FullPrecisionCacheTests.LCG)
        -> [Float]
    {
        let s = shape
        var all: [Float] = []
        for l in 0..<layers {
            var q = (0..<rows * s.qDim).map { _ in rng.next() }
            var k = (0..<rows * s.kvDim).map { _ in rng.next() }
            var v = (0..<rows * s.kvDim).map { _ in rng.next() }
            var out = [Float](repeating: 0, count: rows * s.qDim)
            q.withUnsafeMutableBufferPointer { qp in
                k.withUnsafeMutableBufferPointer { kp in
                    v.withUnsafeMutableBufferPointer { vp in
                        out.withUnsafeMutableBufferPointer { op in
                            cache.forward(
                                layer: l, queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!,
                                rows: rows, output: op.baseAddress!, parallel: Parallel(threads: 2))
                        }
                    }
                }
            }
            all += out
        }
        cache.commit(rows: rows)
        return all
    }

    @Test("an imported cache continues bit for bit", arguments: cases)
    func roundTrip(c: Case) throws {
        let factory = c.make()
        for (prompt, decoded) in [(45, 20), (64, 0), (3, 40)] {
            let original = factory.makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
            var rng = FullPrecisionCacheTests.LCG(s: UInt64(prompt))
            _ = Self.step(original, layers: 2, rows: prompt, rng: &rng)
            for _ in 0..<decoded { _ = Self.step(original, layers: 2, rows: 1, rng: &rng) }
            let blobs = original.exportLayers()
            #expect(blobs.count == 2)
            let restored = factory.makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
            try restored.importLayers(blobs)
            #expect(restored.count == original.count)
            #expect(restored.byteCount == original.byteCount)
            let reexported = restored.exportLayers() == blobs
            #expect(reexported, "\(c): a re-export differs from the blobs imported")
            // Both continue with the same inputs across key flushes: identical outputs.
            var rngA = FullPrecisionCacheTests.LCG(s: 99)
            var rngB = FullPrecisionCacheTests.LCG(s: 99)
            for n in 0..<40 {
                let a = Self.step(original, layers: 2, rows: 1, rng: &rngA)
                let b = Self.step(restored, layers: 2, rows: 1, rng: &rngB)
                let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differing == 0, "\(c) prompt \(prompt): step \(n): \(differing) of \(a.count) outputs differ")
                if differing > 0 { break }
            }
        }
    }

    @Test("bad blobs are refused with the layer and field, and the cache stays empty", arguments: cases)
    func badBlobs(c: Case) throws {
        let factory = c.make()
        let source = factory.makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
        var rng = FullPrecisionCacheTests.LCG(s: 5)
        _ = Self.step(source, layers: 2, rows: 40, rng: &rng)
        let blobs = source.exportLayers()
        let target = factory.makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
        func refused(_ b: [[UInt8]], _ what: String) -> KVCacheImportError? {
            do {
                try target.importLayers(b)
                Issue.record("\(c): \(what) was accepted")
                return nil
            } catch {
                #expect(target.count == 0, "\(c): \(what) left \(target.count) tokens")
                return error
            }
        }
        // Truncated at every length of layer 1.
        for cut in stride(from: 0, to: blobs[1].count, by: max(1, blobs[1].count / 97)) {
            let e = refused([blobs[0], Array(blobs[1].prefix(cut))], "layer 1 cut at \(cut)")
            #expect(e?.layer == 1, "\(c): cut at \(cut): \(String(describing: e))")
        }
        var bad = blobs[0]
        bad[0] = UInt8(ascii: "X")
        #expect(refused([bad, blobs[1]], "bad magic")?.field == "magic")
        #expect(refused([blobs[0]], "one blob for two layers")?.field == "layer count")
        #expect(refused([blobs[0], blobs[1] + [0]], "a trailing byte")?.layer == 1)
        // Random byte flips: refused or accepted, never a crash; an accepted cache still runs.
        var flips = FullPrecisionCacheTests.LCG(s: 11)
        for _ in 0..<300 {
            var b = blobs
            let l = Int(flips.nextUInt() % 2)
            let i = Int(flips.nextUInt() % UInt64(b[l].count))
            b[l][i] ^= UInt8(truncatingIfNeeded: flips.nextUInt() | 1)
            let fresh = factory.makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
            if (try? fresh.importLayers(b)) != nil {
                var r = FullPrecisionCacheTests.LCG(s: 1)
                _ = Self.step(fresh, layers: 2, rows: 1, rng: &r)
            }
        }
        // Another kind or configuration of cache is refused, naming the setting.
        for other in Self.cases where other.name != c.name {
            let o = other.make().makeCache(layers: 2, shape: Self.shape, rope: Self.rope)
            do {
                try o.importLayers(blobs)
                Issue.record("\(other) accepted \(c)'s layers")
            } catch {
                #expect(o.count == 0)
                #expect(!error.field.isEmpty && !error.message.isEmpty)
            }
        }
        let wide = factory.makeCache(
            layers: 2, shape: AttentionShape(kvHeads: 3, groupSize: 2, headDim: 64), rope: Self.rope)
        #expect(throws: KVCacheImportError.self) { try wide.importLayers(blobs) }
        // A cache that already holds tokens refuses an import.
        #expect(throws: KVCacheImportError.self) { try source.importLayers(blobs) }
    }
}

extension FullPrecisionCacheTests.LCG {
    mutating func nextUInt() -> UInt64 {
        _ = next()
        return s >> 17
    }
}
