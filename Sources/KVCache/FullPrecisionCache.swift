import CKernels

/// Storage precision of the full-precision cache.
public enum FullPrecision: String, Sendable, CaseIterable {
    case f16, f32
    var bytes: Int { self == .f16 ? 2 : 4 }
}

/// Makes `FullPrecisionCache`s.
public struct FullPrecisionCacheFactory: KVCacheFactory {
    public let precision: FullPrecision
    public init(precision: FullPrecision = .f16) { self.precision = precision }
    public var name: String { precision.rawValue }
    public func makeCache(layers: Int, shape: AttentionShape, rope: Rope) -> any SequenceKVCache {
        FullPrecisionCache(layers: layers, shape: shape, rope: rope, precision: precision)
    }
}

/// A KV cache holding post-RoPE keys and values in f16 (like llama.cpp's default) or f32;
/// attention math in f32. Prompt tokens attend to the stored (rounded) keys, exactly as a
/// later decode step would, so prefill and decode give identical numbers.
public final class FullPrecisionCache: SequenceKVCache {
    public let shape: AttentionShape
    public let rope: Rope
    public let precision: FullPrecision
    public private(set) var count = 0
    private var capacity = 0
    /// Per layer: keys then values, each [kvHeads][capacity][headDim] of `precision`.
    private var keys: [UnsafeMutableRawPointer?]
    private var values: [UnsafeMutableRawPointer?]

    public init(layers: Int, shape: AttentionShape, rope: Rope, precision: FullPrecision) {
        self.shape = shape
        self.rope = rope
        self.precision = precision
        keys = Array(repeating: nil, count: layers)
        values = Array(repeating: nil, count: layers)
    }

    deinit {
        for p in keys { p?.deallocate() }
        for p in values { p?.deallocate() }
    }

    public var byteCount: Int { count * shape.kvDim * 2 * precision.bytes * keys.count }

    private func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let newCap = max(needed, capacity * 2, 256)
        let D = shape.headDim
        let eb = precision.bytes
        func grow(_ old: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer {
            let p = UnsafeMutableRawPointer.allocate(byteCount: shape.kvHeads * newCap * D * eb, alignment: 64)
            if let old {
                for h in 0..<shape.kvHeads {
                    (p + h * newCap * D * eb).copyMemory(from: old + h * capacity * D * eb, byteCount: count * D * eb)
                }
                old.deallocate()
            }
            return p
        }
        // Called before any layer of a step writes: every layer holds exactly `count` tokens.
        for l in 0..<keys.count {
            keys[l] = grow(keys[l])
            values[l] = grow(values[l])
        }
        capacity = newCap
    }

    public func forward(
        layer: Int, queries: UnsafeMutablePointer<Float>, keys newKeys: UnsafeMutablePointer<Float>,
        values newValues: UnsafeMutablePointer<Float>, rows: Int, output: UnsafeMutablePointer<Float>,
        parallel: Parallel
    ) {
        let s = shape
        let D = s.headDim
        reserve(count + rows)
        guard let kBase = keys[layer], let vBase = values[layer] else { return }
        // RoPE and store.
        for r in 0..<rows {
            let pos = count + r
            rope.apply(queries + r * s.qDim, heads: s.queryHeads, position: pos)
            rope.apply(newKeys + r * s.kvDim, heads: s.kvHeads, position: pos)
            for h in 0..<s.kvHeads {
                let off = (h * capacity + pos) * D
                let kSrc = newKeys + r * s.kvDim + h * D
                let vSrc = newValues + r * s.kvDim + h * D
                switch precision {
                case .f16:
                    sq_f32_to_f16_row(kSrc, kBase.assumingMemoryBound(to: UInt16.self) + off, Int64(D))
                    sq_f32_to_f16_row(vSrc, vBase.assumingMemoryBound(to: UInt16.self) + off, Int64(D))
                case .f32:
                    (kBase.assumingMemoryBound(to: Float.self) + off).update(from: kSrc, count: D)
                    (vBase.assumingMemoryBound(to: Float.self) + off).update(from: vSrc, count: D)
                }
            }
        }
        // Attention: one task per (row, KV head, chunk of keys); partials combined in order.
        let g = s.groupSize
        let scale = 1 / Float(D).squareRoot()
        let cap = capacity
        let start = count
        let precision = self.precision
        let plan = AttentionPlan(rows: rows, kvHeads: s.kvHeads, keysForRow: { start + $0 + 1 })
        plan.run(groupSize: g, headDim: D, output: output, qDim: s.qDim, parallel: parallel) { task, out, ml, scores in
            let q = queries + task.row * s.qDim + task.head * g * D
            let t0 = task.keyRange.lowerBound
            let T = Int64(task.keyRange.count)
            switch precision {
            case .f16:
                let K = kBase.assumingMemoryBound(to: UInt16.self) + (task.head * cap + t0) * D
                let V = vBase.assumingMemoryBound(to: UInt16.self) + (task.head * cap + t0) * D
                sq_attend_partial_f16(q, Int32(g), Int32(D), K, V, Int64(D), T, scale, out, ml, scores)
            case .f32:
                let K = kBase.assumingMemoryBound(to: Float.self) + (task.head * cap + t0) * D
                let V = vBase.assumingMemoryBound(to: Float.self) + (task.head * cap + t0) * D
                sq_attend_partial_f32(q, Int32(g), Int32(D), K, V, Int64(D), T, scale, out, ml, scores)
            }
        }
    }

    public func commit(rows: Int) { count += rows }
}

// MARK: shipping layers

extension FullPrecisionCache {
    public func exportLayers() -> [[UInt8]] {
        let D = shape.headDim
        let eb = precision.bytes
        return (0..<keys.count).map { l in
            var w = ByteWriter()
            CacheSnapshot.header(&w, kind: .fullPrecision, shape: shape, tokens: count)
            w.u8(precision == .f16 ? 0 : 1)
            for store in [keys[l], values[l]] {
                for h in 0..<shape.kvHeads {
                    if let base = store, count > 0 { w.raw(base + h * capacity * D * eb, count * D * eb) }
                }
            }
            return w.data
        }
    }

    public func importLayers(_ blobs: [[UInt8]]) throws(KVCacheImportError) {
        try CacheSnapshot.checkTarget(count: count, layers: keys.count, blobs: blobs.count)
        let D = shape.headDim
        let eb = precision.bytes
        // Check every blob first, so that a bad one leaves the cache untouched.
        var tokens = -1
        for (l, blob) in blobs.enumerated() {
            var r = ByteReader(blob, layer: l)
            let t = try CacheSnapshot.readTokens(&r, kind: .fullPrecision, shape: shape, firstLayer: tokens)
            tokens = t
            try r.expect(Int(try r.u8("precision")), precision == .f16 ? 0 : 1, "precision (0 f16, 1 f32)")
            try r.expect(r.remaining, 2 * shape.kvHeads * t * D * eb, "key and value bytes")
        }
        guard tokens > 0 else { return }
        reserve(tokens)
        for (l, blob) in blobs.enumerated() {
            var r = ByteReader(blob, layer: l)
            _ = try CacheSnapshot.readHeader(&r, kind: .fullPrecision, shape: shape)
            _ = try r.u8("precision")
            for (i, store) in [keys[l], values[l]].enumerated() {
                guard let base = store else { continue }
                for h in 0..<shape.kvHeads {
                    try r.raw(
                        into: base + h * capacity * D * eb, tokens * D * eb, "head \(h) \(i == 0 ? "keys" : "values")")
                }
            }
        }
        count = tokens
    }
}
