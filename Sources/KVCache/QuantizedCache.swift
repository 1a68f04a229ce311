import CKernels

/// How keys are quantized.
public enum KeyQuantization: String, Sendable, CaseIterable {
    /// KIVI: per channel over token groups, no compensation (after or before RoPE per `keyRope`).
    case kivi
    /// SQuat: KIVI's grouping with each channel block's error pushed into the later channels,
    /// orthogonal to the prompt's query subspace.
    case squat
}

/// Makes `QuantizedCache`s (KIVI or SQuat) with one configuration.
public struct QuantizedCacheFactory: KVCacheFactory {
    public let method: KeyQuantization
    public let params: QuantizationParameters
    /// Storage of scales and minimums: f16 (the memory target) or f32 (as the reference code).
    public let scales: FullPrecision
    /// RoPE angles up to the context length, shared by all caches of the factory.
    let table: RopeTableBox

    public init(
        method: KeyQuantization, params: QuantizationParameters, contextLength: Int, scales: FullPrecision = .f16
    ) {
        self.method = method
        self.params = params
        self.scales = scales
        self.table = RopeTableBox(positions: contextLength)
    }

    public var name: String {
        // Named where the key placement differs from the method's default.
        let rope =
            method == .kivi && params.keyRope == .pre
            ? "-prerope" : method == .squat && params.keyRope == .post ? "-postrope" : ""
        return "\(method.rawValue)\(rope)-k\(params.kBits)v\(params.vBits)\(scales == .f32 ? "-f32scales" : "")"
    }

    public func makeCache(layers: Int, shape: AttentionShape, rope: Rope) -> any SequenceKVCache {
        QuantizedCache(
            layers: layers, shape: shape, rope: rope, method: method, params: params, table: table.get(rope),
            scales: scales)
    }
}

/// Lazily builds the RoPE table once per factory (the rope comes with the first cache).
/// `@unchecked Sendable`: the table is created under a lock and immutable afterwards.
final class RopeTableBox: @unchecked Sendable {
    let positions: Int
    private var table: RopeTable?
    private let lock = NSLockLike()
    init(positions: Int) { self.positions = positions }
    func get(_ rope: Rope) -> RopeTable {
        lock.withLock {
            if let t = table, t.half == rope.headDim / 2 { return t }
            let t = RopeTable(rope: rope, positions: positions)
            table = t
            return t
        }
    }
}

/// A KV cache with 2/4/8-bit keys and values (KIVI or SQuat), the newest tokens in full
/// precision, as the SQuat authors' reference runs it:
/// - the first call (the prompt, or its first chunk) attends exactly, builds SQuat's subspace
///   from its queries, then quantizes `residualLength·⌊T/residualLength⌋` keys and all but the
///   last `residualLength` values;
/// - every later token is appended, attends over [quantized | full precision], then keys are
///   flushed `residualLength` at a time when the window fills and the oldest value is quantized
///   once more than `residualLength` are held.
/// Attention reads the packed codes directly (`sq_scores_packed_keys`, RoPE applied on the fly
/// to pre-RoPE keys as R(a)·R(p − a), a the key group's first position, so that only the anchor
/// rows and the group's first rows are read); no dequantized copy of the cache is ever built.
public final class QuantizedCache: SequenceKVCache {
    public let shape: AttentionShape
    public let rope: Rope
    public let method: KeyQuantization
    public let params: QuantizationParameters
    public let scales: FullPrecision
    let table: RopeTable
    /// The table's rows 0..<group size as the packed key kernel reads them (keys before RoPE).
    let ropeGroupRows: [Float]
    /// Bound (bytes) of the buffer that holds prompt rows' scores against the packed keys: at
    /// long contexts fewer than 16 rows share a pass, so that a prefill's peak memory stays low.
    var packedScoreBytes = 1 << 21
    public private(set) var count = 0
    private var layers: [LayerStore]

    /// One layer's storage, per KV head.
    final class LayerStore {
        var keyCodes: [[UInt8]]  // [head][token · kpb]
        var keyScale: [[UInt8]]  // [head][group · D] f16 or f32 bytes
        var keyMin: [[UInt8]]
        var keyTokens = 0  // quantized keys
        var residualKeys: [[Float]]  // [head][token · D] as quantized later (pre- or post-RoPE)
        var valueCodes: [[UInt8]]  // [head][token · vpb]
        var valueScale: [[UInt8]]  // [head][token · D/gs] f16 or f32 bytes
        var valueMin: [[UInt8]]
        var valueTokens = 0
        var residualValues: [[Float]]  // [head][token · D]
        var squat: SquatLayerState?

        init(heads: Int) {
            keyCodes = Array(repeating: [], count: heads)
            keyScale = Array(repeating: [], count: heads)
            keyMin = Array(repeating: [], count: heads)
            residualKeys = Array(repeating: [], count: heads)
            valueCodes = Array(repeating: [], count: heads)
            valueScale = Array(repeating: [], count: heads)
            valueMin = Array(repeating: [], count: heads)
            residualValues = Array(repeating: [], count: heads)
        }
    }

    public init(
        layers: Int, shape: AttentionShape, rope: Rope, method: KeyQuantization, params: QuantizationParameters,
        table: RopeTable, scales: FullPrecision = .f16
    ) {
        self.scales = scales
        self.shape = shape
        self.rope = rope
        self.method = method
        self.params = params
        self.table = table
        self.layers = (0..<layers).map { _ in LayerStore(heads: shape.kvHeads) }
        var rows = [Float]()
        if params.keyRope == .pre {
            rows = [Float](repeating: 0, count: params.groupSize * shape.headDim)
            sq_rope_group_rows(
                table.cos, table.sin, Int32(shape.headDim), Int32(params.groupSize),
                Int64(min(params.groupSize, table.positions)), &rows)
        }
        ropeGroupRows = rows
    }

    /// Keys are quantized (and kept in the residual window) as they were before RoPE: SQuat's
    /// default and KIVI-pre-RoPE; `params.keyRope == .post` (KIVI's default) stores rotated keys.
    var keysBeforeRope: Bool { params.keyRope == .pre }

    public var byteCount: Int {
        var total = 0
        for l in layers {
            for h in 0..<shape.kvHeads {
                total += l.keyCodes[h].count + l.keyScale[h].count + l.keyMin[h].count
                total += 4 * (l.residualKeys[h].count + l.residualValues[h].count)
                total += l.valueCodes[h].count + l.valueScale[h].count + l.valueMin[h].count
            }
            total += l.squat?.byteCount ?? 0
        }
        return total
    }

    public func commit(rows: Int) { count += rows }

    // MARK: quantization into the packed store

    /// Quantizes `tokens` keys of head `h` (rows of D floats) and appends them.
    private func appendQuantizedKeys(_ store: LayerStore, head h: Int, keys: UnsafePointer<Float>, tokens: Int) {
        let D = shape.headDim
        let gs = params.groupSize
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: tokens * D)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: tokens / gs * D)
        let mins = UnsafeMutablePointer<Float>.allocate(capacity: tokens / gs * D)
        defer {
            codes.deallocate()
            scales.deallocate()
            mins.deallocate()
        }
        if method == .squat, let state = store.squat?.heads[h] {
            state.quantizeKeys(
                keys, tokens: tokens, bits: params.kBits, groupSize: gs, codes: codes, scales: scales, mins: mins)
        } else {
            MinMaxQuantizer.quantizeKeysPerChannel(
                keys, tokens: tokens, headDim: D, rowStride: D, bits: params.kBits, groupSize: gs, codes: codes,
                codeRowStride: D, scales: scales, mins: mins)
        }
        let pb = D * params.kBits / 8
        var packed = [UInt8](repeating: 0, count: tokens * pb)
        packed.withUnsafeMutableBufferPointer { p in
            for t in 0..<tokens { sq_pack_codes(codes + t * D, Int32(D), Int32(params.kBits), p.baseAddress! + t * pb) }
        }
        store.keyCodes[h] += packed
        appendScales(&store.keyScale[h], scales, tokens / gs * D)
        appendScales(&store.keyMin[h], mins, tokens / gs * D)
    }

    /// Quantizes `tokens` values of head `h` and appends them.
    private func appendQuantizedValues(_ store: LayerStore, head h: Int, values: UnsafePointer<Float>, tokens: Int) {
        let D = shape.headDim
        let gs = params.groupSize
        let ng = D / gs
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: tokens * D)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: tokens * ng)
        let mins = UnsafeMutablePointer<Float>.allocate(capacity: tokens * ng)
        defer {
            codes.deallocate()
            scales.deallocate()
            mins.deallocate()
        }
        MinMaxQuantizer.quantizeValuesPerToken(
            values, tokens: tokens, headDim: D, rowStride: D, bits: params.vBits, groupSize: gs, codes: codes,
            codeRowStride: D, scales: scales, mins: mins)
        let pb = D * params.vBits / 8
        var packed = [UInt8](repeating: 0, count: tokens * pb)
        packed.withUnsafeMutableBufferPointer { p in
            for t in 0..<tokens { sq_pack_codes(codes + t * D, Int32(D), Int32(params.vBits), p.baseAddress! + t * pb) }
        }
        store.valueCodes[h] += packed
        appendScales(&store.valueScale[h], scales, tokens * ng)
        appendScales(&store.valueMin[h], mins, tokens * ng)
    }

    /// Appends `n` floats as f16 or f32 bytes.
    private func appendScales(_ out: inout [UInt8], _ x: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n {
            if scales == .f32 {
                let b = x[i].bitPattern
                out += [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)]
            } else {
                let h = sq_f32_to_f16(x[i])
                out += [UInt8(h & 0xFF), UInt8(h >> 8)]
            }
        }
    }

    /// Scale or minimum `i` of a byte store.
    func scale(_ bytes: [UInt8], _ i: Int) -> Float {
        bytes.withUnsafeBytes { raw in
            scales == .f32
                ? raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                : sq_f16_to_f32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }

    /// Keys flush when the window holds `residualLength`; values once it holds more.
    private func flush(_ store: LayerStore) {
        let D = shape.headDim
        let R = params.residualLength
        for h in 0..<shape.kvHeads {
            if store.residualKeys[h].count / D >= R {
                store.residualKeys[h].withUnsafeBufferPointer {
                    appendQuantizedKeys(store, head: h, keys: $0.baseAddress!, tokens: R)
                }
                store.residualKeys[h].removeFirst(R * D)
            }
            while store.residualValues[h].count / D > R {
                store.residualValues[h].withUnsafeBufferPointer {
                    appendQuantizedValues(store, head: h, values: $0.baseAddress!, tokens: 1)
                }
                store.residualValues[h].removeFirst(D)
            }
        }
        store.keyTokens = store.keyCodes[0].count / (D * params.kBits / 8)
        store.valueTokens = store.valueCodes[0].count / (D * params.vBits / 8)
    }

    // MARK: forward

    public func forward(
        layer: Int, queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>,
        values: UnsafeMutablePointer<Float>, rows: Int, output: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let s = shape
        let D = s.headDim
        let store = layers[layer]
        if count == 0 {
            prefill(store, queries: queries, keys: keys, values: values, rows: rows, output: output, parallel: parallel)
            return
        }
        if rows > 1 && keysBeforeRope {
            forwardRows(
                store, queries: queries, keys: keys, values: values, rows: rows, output: output, parallel: parallel)
            return
        }
        for r in 0..<rows {
            let pos = count + r
            let q = queries + r * s.qDim
            rope.apply(q, heads: s.queryHeads, position: pos)
            let k = keys + r * s.kvDim
            let kRot = UnsafeMutablePointer<Float>.allocate(capacity: s.kvDim)
            defer { kRot.deallocate() }
            kRot.update(from: k, count: s.kvDim)
            rope.apply(kRot, heads: s.kvHeads, position: pos)
            let stored = keysBeforeRope ? UnsafePointer(k) : UnsafePointer(kRot)
            for h in 0..<s.kvHeads {
                store.residualKeys[h] += UnsafeBufferPointer(start: stored + h * D, count: D)
                store.residualValues[h] += UnsafeBufferPointer(start: values + r * s.kvDim + h * D, count: D)
            }
            attend(store, query: q, position: pos, output: output + r * s.qDim, parallel: parallel)
            flush(store)
        }
    }

    /// Rows past the first call, keys stored before RoPE: the rows go into the cache one at a time
    /// exactly as below (append, then flush), each row noting what its attention sees; then every
    /// row attends as it would have, with its scores against the packed keys computed for up to
    /// 16 rows at once, as many as `packedScoreBytes` holds (`sq_scores_packed_keys_rows`: each
    /// block of keys dequantized and rotated once for the rows, each score with the one-row
    /// kernel's bits).
    private func forwardRows(
        _ store: LayerStore, queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>,
        values: UnsafeMutablePointer<Float>, rows: Int, output: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let s = shape
        let D = s.headDim
        let g = s.groupSize
        var window = window(store)
        var seen: [(keys: Int, values: Int)] = []
        for r in 0..<rows {
            rope.apply(queries + r * s.qDim, heads: s.queryHeads, position: count + r)
            for h in 0..<s.kvHeads {
                let k = UnsafeBufferPointer(start: keys + r * s.kvDim + h * D, count: D)
                let v = UnsafeBufferPointer(start: values + r * s.kvDim + h * D, count: D)
                store.residualKeys[h] += k
                store.residualValues[h] += v
                window.keys[h] += k
                window.values[h] += v
            }
            seen.append((store.keyTokens, store.valueTokens))
            flush(store)
        }
        let chunk = AttentionPlan.chunk
        let kb = params.kBits
        let kpb = D * kb / 8
        let f32Scales: Int32 = scales == .f32 ? 1 : 0
        let scale = 1 / Float(D).squareRoot()
        let table = self.table
        let groupRows = ropeGroupRows
        // One buffer for every group of rows, sized for the last (packed keys seen grow with the row).
        let perRow = s.kvHeads * g * (seen.last?.keys ?? 0)
        let group = max(1, min(16, packedScoreBytes / max(1, perRow * MemoryLayout<Float>.size)))
        let buffer = PageBuffer(floats: group * perRow)
        let packed = buffer.floats
        defer { buffer.release() }
        for b0 in stride(from: 0, to: rows, by: group) {
            let b1 = min(rows, b0 + group)
            let width = seen[b1 - 1].keys
            let rowStride = s.kvHeads * g * width
            let chunks = (width + chunk - 1) / chunk
            let ends = seen[b0..<b1].map { Int64($0.keys) }
            let H = s.kvHeads
            // Plain pointers in the tasks, as in `attend`: no retains of the store's arrays per task.
            withBaseAddresses(store.keyCodes + store.keyScale + store.keyMin) { keyBytes in
                groupRows.withUnsafeBufferPointer { gr in
                    parallel.forEach(H * chunks) { i in
                        let h = i / chunks
                        let c0 = i % chunks * chunk
                        let c1 = min(width, c0 + chunk)
                        let rowKeys = ends.map { max(0, min(Int64(c1), $0) - Int64(c0)) }
                        sq_scores_packed_keys_rows(
                            queries + b0 * s.qDim + h * g * D, Int64(s.qDim), Int32(b1 - b0), rowKeys, Int32(g),
                            Int32(D), keyBytes[h]! + c0 * kpb, Int32(kb), keyBytes[H + h]!, keyBytes[2 * H + h]!,
                            f32Scales, Int32(params.groupSize), Int64(c0), table.cos, table.sin, gr.baseAddress, scale,
                            packed + h * g * width + c0, Int64(rowStride), Int64(width))
                    }
                }
            }
            for r in b0..<b1 {
                attend(
                    store, query: queries + r * s.qDim, position: count + r, keys: seen[r].keys,
                    values: seen[r].values, window: window,
                    packedScores: PackedScores(base: packed + (r - b0) * rowStride, stride: width),
                    output: output + r * s.qDim, parallel: parallel)
            }
        }
    }

    /// Exact attention over the prompt, then the subspace and the first quantization.
    private func prefill(
        _ store: LayerStore, queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>,
        values: UnsafeMutablePointer<Float>, rows T: Int, output: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let s = shape
        let D = s.headDim
        let g = s.groupSize
        // Queries as the subspace wants them, then rotated for attention.
        var preRopeQueries: [Float] = []
        if method == .squat && params.subspaceRope == .pre {
            preRopeQueries = Array(UnsafeBufferPointer(start: queries, count: T * s.qDim))
        }
        // Head-major copies: pre-RoPE keys (for quantization), rotated keys, values.
        var kPre = [Float](repeating: 0, count: s.kvHeads * T * D)
        var kRot = [Float](repeating: 0, count: s.kvHeads * T * D)
        var vAll = [Float](repeating: 0, count: s.kvHeads * T * D)
        for t in 0..<T {
            for h in 0..<s.kvHeads {
                for i in 0..<D {
                    kPre[(h * T + t) * D + i] = keys[t * s.kvDim + h * D + i]
                    vAll[(h * T + t) * D + i] = values[t * s.kvDim + h * D + i]
                }
            }
            rope.apply(queries + t * s.qDim, heads: s.queryHeads, position: t)
        }
        kRot = kPre
        kRot.withUnsafeMutableBufferPointer { p in
            for h in 0..<s.kvHeads {
                for t in 0..<T { rope.apply(p.baseAddress! + (h * T + t) * D, heads: 1, position: t) }
            }
        }
        let scale = 1 / Float(D).squareRoot()
        kRot.withUnsafeBufferPointer { kp in
            vAll.withUnsafeBufferPointer { vp in
                let K = kp.baseAddress!
                let V = vp.baseAddress!
                let plan = AttentionPlan(rows: T, kvHeads: s.kvHeads, keysForRow: { $0 + 1 })
                plan.run(groupSize: g, headDim: D, output: output, qDim: s.qDim, parallel: parallel) {
                    task, out, ml, sc in
                    let t0 = task.keyRange.lowerBound
                    sq_attend_partial_f32(
                        queries + task.row * s.qDim + task.head * g * D, Int32(g), Int32(D),
                        K + (task.head * T + t0) * D, V + (task.head * T + t0) * D, Int64(D),
                        Int64(task.keyRange.count), scale, out, ml, sc)
                }
            }
        }
        if method == .squat {
            if preRopeQueries.isEmpty {
                store.squat = SquatLayerState(queries: queries, tokens: T, shape: s, params: params, parallel: parallel)
            } else {
                store.squat = preRopeQueries.withUnsafeBufferPointer {
                    SquatLayerState(queries: $0.baseAddress!, tokens: T, shape: s, params: params, parallel: parallel)
                }
            }
        }
        let R = params.residualLength
        let kq = T / R * R
        let vq = T > R ? T - R : 0
        let source = keysBeforeRope ? kPre : kRot
        // Serial over heads: each appends to the layer store.
        for h in 0..<s.kvHeads {
            source.withUnsafeBufferPointer { src in
                if kq > 0 { appendQuantizedKeys(store, head: h, keys: src.baseAddress! + h * T * D, tokens: kq) }
            }
            vAll.withUnsafeBufferPointer { vp in
                if vq > 0 { appendQuantizedValues(store, head: h, values: vp.baseAddress! + h * T * D, tokens: vq) }
            }
        }
        for h in 0..<s.kvHeads {
            store.residualKeys[h] = Array(source[(h * T + kq) * D..<(h + 1) * T * D])
            store.residualValues[h] = Array(vAll[(h * T + vq) * D..<(h + 1) * T * D])
        }
        store.keyTokens = kq
        store.valueTokens = vq
    }

    /// Attention of one (already rotated) query row at `position` over [packed | full] keys and values.
    private func attend(
        _ store: LayerStore, query: UnsafePointer<Float>, position: Int, output: UnsafeMutablePointer<Float>,
        parallel: Parallel
    ) {
        attend(
            store, query: query, position: position, keys: store.keyTokens, values: store.valueTokens,
            window: window(store),
            packedScores: nil, output: output, parallel: parallel)
    }

    /// Full-precision keys and values from positions keyBase and valueBase on, per KV head.
    struct Window {
        var keys: [[Float]]
        var keyBase: Int
        var values: [[Float]]
        var valueBase: Int
    }

    /// What attention sees in full precision now: the store's residual keys and values.
    private func window(_ store: LayerStore) -> Window {
        Window(
            keys: store.residualKeys, keyBase: store.keyTokens, values: store.residualValues,
            valueBase: store.valueTokens)
    }

    /// Scores of one row against the packed keys, computed beforehand: head h's query head j at
    /// base + (h·g + j)·stride + key.
    struct PackedScores {
        let base: UnsafePointer<Float>
        let stride: Int
    }

    /// Attention of one row that sees `kq` packed keys and `vq` packed values, the rest in `window`.
    private func attend(
        _ store: LayerStore, query: UnsafePointer<Float>, position: Int, keys kq: Int, values vq: Int,
        window: Window, packedScores: PackedScores?, output: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let s = shape
        let D = s.headDim
        let g = s.groupSize
        let T = position + 1
        let kb = params.kBits
        let vb = params.vBits
        let kpb = D * kb / 8
        let vpb = D * vb / 8
        let gs = params.groupSize
        let half = D / 2
        let scale = 1 / Float(D).squareRoot()
        let rotateKeys = keysBeforeRope
        let table = self.table
        let groupRows = ropeGroupRows
        let f32Scales: Int32 = scales == .f32 ? 1 : 0
        let sb = scales == .f32 ? 4 : 2
        let plan = AttentionPlan(rows: 1, kvHeads: s.kvHeads, keysForRow: { _ in T })
        let H = s.kvHeads
        // The tasks read plain pointers: taking each head's arrays from the store inside a task
        // retained and released them on every task, on a cache line both threads write.
        let storeArrays =
            store.keyCodes + store.keyScale + store.keyMin + store.valueCodes + store.valueScale + store.valueMin
        withBaseAddresses(storeArrays) { bytes in
            // Full-precision keys, then values, per head; then the in-group RoPE rows.
            withBaseAddresses(window.keys + window.values + [groupRows]) { full in
                plan.run(groupSize: g, headDim: D, output: output, qDim: s.qDim, parallel: parallel) {
                    task, out, ml, sc in
                    let h = task.head
                    let c0 = task.keyRange.lowerBound
                    let c1 = task.keyRange.upperBound
                    let n = c1 - c0
                    let q = query + h * g * D
                    // Scores: packed keys, then full-precision ones.
                    let pk1 = min(c1, kq)
                    if pk1 > c0, let packed = packedScores {
                        for j in 0..<g {
                            (sc + j * n).update(
                                from: packed.base + (h * g + j) * packed.stride + c0, count: pk1 - c0)
                        }
                    } else if pk1 > c0 {
                        sq_scores_packed_keys(
                            q, Int32(g), Int32(D), bytes[h]! + c0 * kpb, Int32(kb), bytes[H + h]!,
                            bytes[2 * H + h]!, f32Scales, Int32(gs), Int64(c0), rotateKeys ? table.cos : nil,
                            rotateKeys ? table.sin : nil, rotateKeys ? full[2 * H] : nil, Int64(pk1 - c0), scale, sc,
                            Int64(n))
                    }
                    let f0 = max(c0, kq)
                    if c1 > f0 {
                        // Full-precision keys, rotated here when they are stored before RoPE.
                        let m = c1 - f0
                        let rotated = UnsafeMutablePointer<Float>.allocate(capacity: m * D)
                        defer { rotated.deallocate() }
                        rotated.update(from: full[h]! + (f0 - window.keyBase) * D, count: m * D)
                        if rotateKeys {
                            for t in 0..<m {
                                sq_rope_table(
                                    rotated + t * D, Int32(D), table.cos + (f0 + t) * half,
                                    table.sin + (f0 + t) * half)
                            }
                        }
                        sq_scores_f32_keys(
                            q, Int32(g), Int32(D), rotated, Int64(m), scale, sc + (f0 - c0), Int64(n))
                    }
                    for j in 0..<g {
                        let row = sc + j * n
                        let m = sq_max(row, Int64(n))
                        ml[2 * j] = m
                        ml[2 * j + 1] = sq_exp_sum(row, Int64(n), m)
                    }
                    out.initialize(repeating: 0, count: g * D)
                    let pv1 = min(c1, vq)
                    if pv1 > c0 {
                        let ng = D / gs
                        sq_accumulate_packed_values(
                            sc, Int64(n), Int32(g), Int32(D), bytes[3 * H + h]! + c0 * vpb, Int32(vb),
                            bytes[4 * H + h]! + c0 * ng * sb, bytes[5 * H + h]! + c0 * ng * sb, f32Scales,
                            Int32(gs), Int64(pv1 - c0), out)
                    }
                    let v0 = max(c0, vq)
                    if c1 > v0 {
                        sq_accumulate_f32_values(
                            sc + (v0 - c0), Int64(n), Int32(g), Int32(D),
                            full[H + h]! + (v0 - window.valueBase) * D, Int64(c1 - v0), out)
                    }
                }
            }
        }
    }
}

/// Runs `body` with the base address of each array (nil for an empty one), all valid while
/// `body` runs, so that hot loops index plain pointers instead of retaining arrays on each access.
func withBaseAddresses<T, R>(_ arrays: [[T]], _ body: ([UnsafePointer<T>?]) -> R) -> R {
    var bases: [UnsafePointer<T>?] = []
    bases.reserveCapacity(arrays.count)
    func nest(_ i: Int) -> R {
        guard i < arrays.count else { return body(bases) }
        return arrays[i].withUnsafeBufferPointer { p in
            bases.append(p.baseAddress)
            return nest(i + 1)
        }
    }
    return nest(0)
}

extension QuantizedCache {
    /// Tokens of `layer` held as codes, keys and values; the rest wait in full precision.
    func quantizedTokenCounts(layer: Int) -> (keys: Int, values: Int) {
        (layers[layer].keyTokens, layers[layer].valueTokens)
    }

    /// What attention currently sees in `layer`, dequantized (for tests of the packed kernels):
    /// per KV head, rotated keys and values, token-major, `count` tokens each (as of the last
    /// commit). Built only on request; the attention path never makes this copy.
    func dequantizedState(layer: Int) -> (keys: [[Float]], values: [[Float]]) {
        let store = layers[layer]
        let D = shape.headDim
        let gs = params.groupSize
        var keys: [[Float]] = []
        var values: [[Float]] = []
        for h in 0..<shape.kvHeads {
            var k: [Float] = []
            var codes = [UInt8](repeating: 0, count: D)
            let kpb = D * params.kBits / 8
            for t in 0..<store.keyTokens {
                store.keyCodes[h].withUnsafeBufferPointer {
                    sq_unpack_codes($0.baseAddress! + t * kpb, Int32(D), Int32(params.kBits), &codes)
                }
                var row = (0..<D).map { i -> Float in
                    let g = t / gs
                    return Float(codes[i]) * scale(store.keyScale[h], g * D + i) + scale(store.keyMin[h], g * D + i)
                }
                if keysBeforeRope {
                    row.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 1, position: t) }
                }
                k += row
            }
            var residual = store.residualKeys[h]
            if keysBeforeRope {
                residual.withUnsafeMutableBufferPointer { p in
                    for t in 0..<(p.count / D) {
                        rope.apply(p.baseAddress! + t * D, heads: 1, position: store.keyTokens + t)
                    }
                }
            }
            k += residual
            keys.append(k)
            var v: [Float] = []
            let vpb = D * params.vBits / 8
            let ng = D / gs
            for t in 0..<store.valueTokens {
                store.valueCodes[h].withUnsafeBufferPointer {
                    sq_unpack_codes($0.baseAddress! + t * vpb, Int32(D), Int32(params.vBits), &codes)
                }
                v += (0..<D).map { i -> Float in
                    let g = i / gs
                    return Float(codes[i]) * scale(store.valueScale[h], t * ng + g)
                        + scale(store.valueMin[h], t * ng + g)
                }
            }
            v += store.residualValues[h]
            values.append(v)
        }
        return (keys, values)
    }
}

// MARK: shipping layers

extension QuantizedCache {
    public func exportLayers() -> [[UInt8]] {
        layers.map { store in
            var w = ByteWriter()
            CacheSnapshot.header(&w, kind: .quantized, shape: shape, tokens: count)
            writeSettings(&w)
            w.u64(store.keyTokens)
            w.u64(store.valueTokens)
            for h in 0..<shape.kvHeads {
                w.array(store.keyCodes[h])
                w.array(store.keyScale[h])
                w.array(store.keyMin[h])
                w.floats(store.residualKeys[h])
                w.array(store.valueCodes[h])
                w.array(store.valueScale[h])
                w.array(store.valueMin[h])
                w.floats(store.residualValues[h])
            }
            if let squat = store.squat {
                w.u8(1)
                for head in squat.heads {
                    w.u32(head.compensation.count)
                    for m in head.compensation { w.floats(m) }
                }
            } else {
                w.u8(0)
            }
            return w.data
        }
    }

    /// The settings a blob must share with the importing cache, in a fixed order.
    private func writeSettings(_ w: inout ByteWriter) {
        w.u8(method == .squat ? 1 : 0)
        w.u8(UInt8(params.kBits))
        w.u8(UInt8(params.vBits))
        w.u8(scales == .f16 ? 0 : 1)
        w.u8(keysBeforeRope ? 0 : 1)
        w.u32(params.groupSize)
        w.u32(params.residualLength)
        w.u32(params.quantGroupSize)
    }

    public func importLayers(_ blobs: [[UInt8]]) throws(KVCacheImportError) {
        try CacheSnapshot.checkTarget(count: count, layers: layers.count, blobs: blobs.count)
        var stores: [LayerStore] = []
        var tokens = -1
        for (l, blob) in blobs.enumerated() {
            var r = ByteReader(blob, layer: l)
            let t = try CacheSnapshot.readTokens(&r, kind: .quantized, shape: shape, firstLayer: tokens)
            tokens = t
            stores.append(try readLayer(&r, tokens: t))
            try r.end()
        }
        guard tokens > 0 else { return }
        layers = stores
        count = tokens
    }

    /// One layer's store from a blob positioned after the header; every size checked.
    private func readLayer(_ r: inout ByteReader, tokens: Int) throws(KVCacheImportError) -> LayerStore {
        let D = shape.headDim
        let gs = params.groupSize
        var expected = ByteWriter()
        writeSettings(&expected)
        let names = [
            "method (0 kivi, 1 squat)", "key bits", "value bits", "scale precision (0 f16, 1 f32)",
            "key RoPE (0 pre, 1 post)",
        ]
        for (i, name) in names.enumerated() { try r.expect(Int(try r.u8(name)), Int(expected.data[i]), name) }
        try r.expect(try r.u32("group size"), gs, "group size")
        try r.expect(try r.u32("residual length"), params.residualLength, "residual length")
        try r.expect(try r.u32("quant group size"), params.quantGroupSize, "quant group size")
        let keyTokens = try r.u64("quantized key tokens")
        let valueTokens = try r.u64("quantized value tokens")
        guard keyTokens <= tokens, keyTokens % params.residualLength == 0 else {
            throw r.invalid(
                "quantized key tokens",
                "\(keyTokens) must be a multiple of the residual length \(params.residualLength) and at most \(tokens)")
        }
        guard valueTokens <= tokens else {
            throw r.invalid("quantized value tokens", "\(valueTokens) exceeds the token count \(tokens)")
        }
        let sb = scales.bytes
        let kpb = D * params.kBits / 8
        let vpb = D * params.vBits / 8
        let store = LayerStore(heads: shape.kvHeads)
        for h in 0..<shape.kvHeads {
            store.keyCodes[h] = try r.array("head \(h) key codes", count: keyTokens * kpb)
            store.keyScale[h] = try r.array("head \(h) key scales", count: keyTokens / gs * D * sb)
            store.keyMin[h] = try r.array("head \(h) key minimums", count: keyTokens / gs * D * sb)
            store.residualKeys[h] = try r.floats("head \(h) full-precision keys", count: (tokens - keyTokens) * D)
            store.valueCodes[h] = try r.array("head \(h) value codes", count: valueTokens * vpb)
            store.valueScale[h] = try r.array("head \(h) value scales", count: valueTokens * (D / gs) * sb)
            store.valueMin[h] = try r.array("head \(h) value minimums", count: valueTokens * (D / gs) * sb)
            store.residualValues[h] = try r.floats("head \(h) full-precision values", count: (tokens - valueTokens) * D)
        }
        store.keyTokens = keyTokens
        store.valueTokens = valueTokens
        let hasSquat = try r.u8("SQuat state flag")
        let wantsSquat = method == .squat && tokens > 0
        try r.expect(Int(hasSquat), wantsSquat ? 1 : 0, "SQuat state flag")
        if wantsSquat {
            let qgs = params.quantGroupSize
            let nb = D / qgs
            var heads: [SquatHeadState] = []
            for h in 0..<shape.kvHeads {
                try r.expect(
                    try r.u32("head \(h) compensation matrices"), max(0, nb - 1), "head \(h) compensation matrices")
                var mats: [[Float]] = []
                for i in 0..<max(0, nb - 1) {
                    mats.append(try r.floats("head \(h) compensation matrix \(i)", count: qgs * (D - (i + 1) * qgs)))
                }
                heads.append(SquatHeadState(headDim: D, quantGroupSize: qgs, compensation: mats))
            }
            store.squat = SquatLayerState(heads: heads)
        }
        return store
    }
}
