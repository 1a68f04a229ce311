/// Byte format of a cache's exported layers (`SequenceKVCache.exportLayers` /
/// `importLayers`): what a worker ships to the new owner of its layers so that a sequence
/// continues there bit for bit, without replay.
///
/// One blob per layer, little-endian: magic "SQKV", format version (u16), cache kind (u8),
/// a reserved byte, the attention shape (KV heads, query heads per KV head, head dim: u32 each)
/// and the token count (u64), then the kind's own sections. Every length in a blob is checked
/// against what its header implies before anything is installed, so a truncated, corrupt or
/// foreign blob is refused with an error that names the layer and the field.
enum CacheSnapshot {
    static let magic: [UInt8] = Array("SQKV".utf8)
    static let version: UInt16 = 1
    /// Largest token count a blob may declare (far above any context length; bounds allocations).
    static let maxTokens = 1 << 24

    enum Kind: UInt8 {
        case fullPrecision = 0
        case quantized = 1
    }

    /// Checks what an import needs before any blob is read: an empty cache, one blob per layer.
    static func checkTarget(count: Int, layers: Int, blobs: Int) throws(KVCacheImportError) {
        guard count == 0 else {
            throw KVCacheImportError(
                layer: 0, field: "cache", message: "import needs an empty cache, this one holds \(count) tokens")
        }
        guard blobs == layers else {
            throw KVCacheImportError(
                layer: 0, field: "layer count", message: "\(blobs) blobs for a cache of \(layers) layers")
        }
    }

    /// Reads a layer's header and checks that its token count is the first layer's (`tokens`, -1 for none yet).
    static func readTokens(
        _ r: inout ByteReader, kind: Kind, shape: AttentionShape, firstLayer tokens: Int
    ) throws(KVCacheImportError) -> Int {
        let t = try readHeader(&r, kind: kind, shape: shape)
        if tokens >= 0, t != tokens { throw r.mismatch("token count", expected: "\(tokens) in layer 0", found: "\(t)") }
        return t
    }

    /// Writes the common header.
    static func header(_ w: inout ByteWriter, kind: Kind, shape: AttentionShape, tokens: Int) {
        w.bytes(magic)
        w.u16(version)
        w.u8(kind.rawValue)
        w.u8(0)
        w.u32(shape.kvHeads)
        w.u32(shape.groupSize)
        w.u32(shape.headDim)
        w.u64(tokens)
    }

    /// Reads and checks the common header against the importing cache; returns the token count.
    static func readHeader(_ r: inout ByteReader, kind: Kind, shape: AttentionShape) throws(KVCacheImportError) -> Int {
        let m = try r.bytes(4, "magic")
        guard m == magic else { throw r.invalid("magic", "\(m), expected \"SQKV\"") }
        try r.expect(try r.u16("format version"), Int(version), "format version")
        let k = try r.u8("cache kind")
        guard k == kind.rawValue else {
            let name = Kind(rawValue: k).map { "\($0)" } ?? "unknown kind \(k)"
            throw r.mismatch("cache kind", expected: "\(kind)", found: name)
        }
        _ = try r.u8("reserved")
        try r.expect(try r.u32("KV heads"), shape.kvHeads, "KV heads")
        try r.expect(try r.u32("query heads per KV head"), shape.groupSize, "query heads per KV head")
        try r.expect(try r.u32("head dim"), shape.headDim, "head dim")
        let tokens = try r.u64("token count")
        guard tokens <= maxTokens else { throw r.invalid("token count", "\(tokens) exceeds \(maxTokens)") }
        return tokens
    }
}

/// Why exported cache layers could not be imported.
public struct KVCacheImportError: Error, Equatable, CustomStringConvertible {
    /// The layer (index in the importing cache) whose blob was refused.
    public let layer: Int
    /// The field that was wrong ("magic", "token count", "head 1 key codes", ...).
    public let field: String
    public let message: String

    public var description: String { "cache layer \(layer), \(field): \(message)" }
}

/// Appends little-endian values.
struct ByteWriter {
    private(set) var data: [UInt8] = []

    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { data += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    mutating func u32(_ v: Int) {
        let x = UInt32(truncatingIfNeeded: v)
        for i in 0..<4 { data.append(UInt8(truncatingIfNeeded: x >> (8 * i))) }
    }
    mutating func u64(_ v: Int) {
        let x = UInt64(truncatingIfNeeded: v)
        for i in 0..<8 { data.append(UInt8(truncatingIfNeeded: x >> (8 * i))) }
    }
    mutating func bytes(_ b: [UInt8]) { data += b }
    /// A length-prefixed byte array.
    mutating func array(_ b: [UInt8]) {
        u64(b.count)
        data += b
    }
    /// A length-prefixed Float array (bit patterns, exact).
    mutating func floats(_ f: [Float]) {
        u64(f.count)
        data.reserveCapacity(data.count + 4 * f.count)
        for v in f {
            let b = v.bitPattern
            for i in 0..<4 { data.append(UInt8(truncatingIfNeeded: b >> (8 * i))) }
        }
    }
    mutating func raw(_ p: UnsafeRawPointer, _ n: Int) {
        data += UnsafeRawBufferPointer(start: p, count: n)
    }
}

/// Reads little-endian values with bounds checks; every failure names the layer and field.
struct ByteReader {
    let data: [UInt8]
    let layer: Int
    private(set) var offset = 0

    init(_ data: [UInt8], layer: Int) {
        self.data = data
        self.layer = layer
    }

    var remaining: Int { data.count - offset }

    func invalid(_ field: String, _ message: String) -> KVCacheImportError {
        KVCacheImportError(layer: layer, field: field, message: message)
    }
    func mismatch(_ field: String, expected: String, found: String) -> KVCacheImportError {
        KVCacheImportError(layer: layer, field: field, message: "\(found), but this cache has \(expected)")
    }
    func expect(_ value: Int, _ expected: Int, _ field: String) throws(KVCacheImportError) {
        guard value == expected else { throw mismatch(field, expected: "\(expected)", found: "\(value)") }
    }

    private mutating func take(_ n: Int, _ field: String) throws(KVCacheImportError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else {
            throw invalid(field, "needs \(n) bytes at offset \(offset), the blob has \(remaining) left (truncated?)")
        }
        defer { offset += n }
        return data[offset..<offset + n]
    }
    private mutating func uint(_ n: Int, _ field: String) throws(KVCacheImportError) -> UInt64 {
        var x: UInt64 = 0
        for (i, b) in try take(n, field).enumerated() { x |= UInt64(b) << (8 * UInt64(i)) }
        return x
    }
    mutating func u8(_ field: String) throws(KVCacheImportError) -> UInt8 { UInt8(try uint(1, field)) }
    mutating func u16(_ field: String) throws(KVCacheImportError) -> Int { Int(try uint(2, field)) }
    mutating func u32(_ field: String) throws(KVCacheImportError) -> Int { Int(try uint(4, field)) }
    mutating func u64(_ field: String) throws(KVCacheImportError) -> Int {
        let x = try uint(8, field)
        guard x <= UInt64(Int.max) else { throw invalid(field, "\(x) is out of range") }
        return Int(x)
    }
    mutating func bytes(_ n: Int, _ field: String) throws(KVCacheImportError) -> [UInt8] { Array(try take(n, field)) }
    /// A length-prefixed byte array whose length must be `expected`.
    mutating func array(_ field: String, count expected: Int) throws(KVCacheImportError) -> [UInt8] {
        try expect(try u64(field + " length"), expected, field + " length")
        return try bytes(expected, field)
    }
    /// A length-prefixed Float array whose length must be `expected`.
    mutating func floats(_ field: String, count expected: Int) throws(KVCacheImportError) -> [Float] {
        try expect(try u64(field + " length"), expected, field + " length")
        let b = try take(4 * expected, field)
        return b.withUnsafeBytes { raw in
            (0..<expected).map {
                Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian)
            }
        }
    }
    /// Copies `n` raw bytes into `p`.
    mutating func raw(into p: UnsafeMutableRawPointer, _ n: Int, _ field: String) throws(KVCacheImportError) {
        let b = try take(n, field)
        b.withUnsafeBytes { src in
            if let base = src.baseAddress, n > 0 { p.copyMemory(from: base, byteCount: n) }
        }
    }
    func end() throws(KVCacheImportError) {
        guard remaining == 0 else { throw invalid("end", "\(remaining) unexpected trailing bytes") }
    }
}
