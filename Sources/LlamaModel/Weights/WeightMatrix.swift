import CKernels

#if canImport(Glibc)
    import Glibc
#endif

/// A weight matrix of `rows` rows of `cols` elements, stored in `type` blocks, `rowBytes`
/// apart. Points into a mapped model file (zero-copy) or into memory it owns.
public struct WeightMatrix: @unchecked Sendable {
    // @unchecked: `data` is read-only and kept alive by `owner`.
    public let name: String
    public let type: TensorType
    public let rows: Int
    public let cols: Int
    public let rowBytes: Int
    public let data: UnsafeRawPointer
    let owner: AnyObject

    /// A matrix view of a 2-D tensor with the expected shape (cols = inputs, rows = outputs).
    public init(_ view: TensorView, cols: Int, rows: Int, file: String) throws(ModelFileError) {
        guard view.shape.count == 2, view.shape[0] == cols, view.shape[1] == rows else {
            throw ModelFileError(
                file: file, what: "tensor '\(view.name)' has shape \(view.shape), expected [\(cols), \(rows)]")
        }
        self.name = view.name
        self.type = view.type
        self.rows = rows
        self.cols = cols
        self.rowBytes = view.byteCount / rows
        self.data = view.data
        self.owner = view.owner
    }

    /// Lets the kernel drop this matrix's pages of a mapped file from resident memory (they are
    /// read again if touched), e.g. once a repacked copy is made. No effect on memory it owns.
    public func releaseMappedPages() {
        (owner as? MappedFile)?.dropResidentPages(data, count: rows * rowBytes)
    }

    /// Dequantizes row `r` into `out` (`cols` floats).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        _ = sq_dequantize(Int32(type.rawValue), data + r * rowBytes, out, Int64(cols))
    }
}

/// One region holding the repacked matrices of a stage, 2 MiB-aligned and marked for
/// transparent huge pages (Linux `MADV_HUGEPAGE`): decode streams every weight once per token,
/// and with 4 KiB pages the hardware prefetcher stops at each page boundary and every page costs
/// a TLB miss (`scripts/kernel-bench/matmul_bench.c`, one token over SmolLM2's shapes: median
/// 5.56 ms with huge pages against 5.99 ms, 6 interleaved runs each; `squat bench --kv full
/// --depths 0 --threads 1`: median decode 146.3 against 135.4 tokens per CPU-second, 5 each).
final class WeightArena {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var used = 0
    /// Whether `base` is a mapping of its own (else a heap block).
    private let mapped: Bool
    static let hugePage = 2 << 20

    /// Room for `bytes` (each slice is rounded up to 64 bytes, see `footprint`).
    init(bytes: Int) {
        let huge = Self.hugePage
        let size = max(huge, (bytes + huge - 1) / huge * huge)
        capacity = size
        #if os(Linux)
            // A mapping of its own (over-mapped by one huge page, then trimmed to the aligned
            // part), so that the huge-page advice never touches memory the heap hands out later.
            if let raw = mmap(nil, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                raw != MAP_FAILED
            {
                let start = UInt(bitPattern: raw)
                let aligned = (start + UInt(huge) - 1) & ~(UInt(huge) - 1)
                let head = Int(aligned - start)
                if head > 0 { _ = munmap(raw, head) }
                if huge - head > 0 { _ = munmap(raw + head + size, huge - head) }
                base = raw + head
                mapped = true
                _ = madvise(base, size, Int32(MADV_HUGEPAGE))
                return
            }
        #endif
        base = .allocate(byteCount: size, alignment: 64)
        mapped = false
    }

    /// The next `bytes` (64-byte aligned), nil when the arena is full.
    func slice(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let n = Self.footprint(bytes)
        guard n <= capacity - used else { return nil }
        defer { used += n }
        return base + used
    }

    /// Bytes `slice` takes for `bytes`.
    static func footprint(_ bytes: Int) -> Int { (bytes + 63) / 64 * 64 }

    deinit {
        #if os(Linux)
            if mapped {
                _ = munmap(base, capacity)
                return
            }
        #endif
        base.deallocate()
    }
}

/// A weight matrix repacked eight rows at a time for the int8-activation products
/// (`sq_matmul_q8_x8`, Q4_1 and Q8_0): each 32-byte vector holds four elements of eight rows.
public final class RepackedMatrix: @unchecked Sendable {
    // @unchecked: written once in init, read-only afterwards.
    public let data: UnsafeMutableRawPointer
    public let byteCount: Int
    /// The arena holding `data`; nil when the matrix owns its memory.
    private let arena: WeightArena?

    /// Bytes of the repacked form of `w` (0 when it has none).
    public static func byteCount(of w: WeightMatrix) -> Int {
        sq_repack_x8_bytes(Int32(w.type.rawValue), Int64(w.rows), Int64(w.cols))
    }

    /// Nil when the matrix's type or shape has no repacked form. `releasingMappedPages`: drop
    /// the source's pages of a mapped file as each slice is copied, so that the source and the
    /// copy are never both resident (the 30 MB output head of the default model would otherwise
    /// add its size to the peak resident memory). `arena`: where to put the copy (its own
    /// allocation when nil or full).
    init?(_ w: WeightMatrix, releasingMappedPages: Bool = false, arena: WeightArena?) {
        let type = Int32(w.type.rawValue)
        let bytes = Self.byteCount(of: w)
        guard bytes > 0 else { return nil }
        let inArena = arena?.slice(bytes)
        let p = inArena ?? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let groupBytes = bytes / ((w.rows + 7) / 8)
        let sliceRows = 1024  // a multiple of 8: slices start at group boundaries
        var row = 0
        while row < w.rows {
            let n = min(sliceRows, w.rows - row)
            let source = w.data + row * w.rowBytes
            guard sq_repack_x8(type, source, w.rowBytes, Int64(n), Int64(w.cols), p + row / 8 * groupBytes) == 0 else {
                if inArena == nil { p.deallocate() }
                return nil
            }
            if releasingMappedPages { (w.owner as? MappedFile)?.dropResidentPages(source, count: n * w.rowBytes) }
            row += n
        }
        if releasingMappedPages { w.releaseMappedPages() }
        data = p
        byteCount = bytes
        self.arena = inArena == nil ? nil : arena
    }

    deinit { if arena == nil { data.deallocate() } }
}

/// Reads a 1-D f32 (or f16/bf16) tensor of `count` elements into an array.
func loadVector(_ view: TensorView, count: Int, file: String) throws(ModelFileError) -> [Float] {
    guard view.elementCount == count else {
        throw ModelFileError(
            file: file, what: "tensor '\(view.name)' has \(view.elementCount) elements, expected \(count)")
    }
    var out = [Float](repeating: 0, count: count)
    let rc = out.withUnsafeMutableBufferPointer {
        sq_dequantize(Int32(view.type.rawValue), view.data, $0.baseAddress, Int64(count))
    }
    guard rc == 0 else {
        throw ModelFileError(
            file: file, what: "tensor '\(view.name)' of type \(view.type.name) cannot be read as a vector")
    }
    return out
}
