import CKernels

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

/// A weight matrix repacked eight rows at a time for the int8-activation products
/// (`sq_matmul_q8_x8`, Q4_1 and Q8_0): each 32-byte vector holds four elements of eight rows.
public final class RepackedMatrix: @unchecked Sendable {
    // @unchecked: written once in init, read-only afterwards.
    public let data: UnsafeMutableRawPointer
    public let byteCount: Int

    /// Nil when the matrix's type or shape has no repacked form. `releasingMappedPages`: drop
    /// the source's pages of a mapped file as each slice is copied, so that the source and the
    /// copy are never both resident (the 30 MB output head of the default model would otherwise
    /// add its size to the peak resident memory).
    public init?(_ w: WeightMatrix, releasingMappedPages: Bool = false) {
        let type = Int32(w.type.rawValue)
        let bytes = sq_repack_x8_bytes(type, Int64(w.rows), Int64(w.cols))
        guard bytes > 0 else { return nil }
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let groupBytes = bytes / ((w.rows + 7) / 8)
        let sliceRows = 1024  // a multiple of 8: slices start at group boundaries
        var row = 0
        while row < w.rows {
            let n = min(sliceRows, w.rows - row)
            let source = w.data + row * w.rowBytes
            guard sq_repack_x8(type, source, w.rowBytes, Int64(n), Int64(w.cols), p + row / 8 * groupBytes) == 0 else {
                p.deallocate()
                return nil
            }
            if releasingMappedPages { (w.owner as? MappedFile)?.dropResidentPages(source, count: n * w.rowBytes) }
            row += n
        }
        if releasingMappedPages { w.releaseMappedPages() }
        data = p
        byteCount = bytes
    }

    deinit { data.deallocate() }
}

/// Reads a 1-D f32 (or f16/bf16) tensor of `count` elements into an array.
func loadVector(_ view: TensorView, count: Int, file: String) throws(ModelFileError) -> [Float] {
    guard view.elementCount == count else {
        throw ModelFileError(file: file, what: "tensor '\(view.name)' has \(view.elementCount) elements, expected \(count)")
    }
    var out = [Float](repeating: 0, count: count)
    let rc = out.withUnsafeMutableBufferPointer { sq_dequantize(Int32(view.type.rawValue), view.data, $0.baseAddress, Int64(count)) }
    guard rc == 0 else {
        throw ModelFileError(file: file, what: "tensor '\(view.name)' of type \(view.type.name) cannot be read as a vector")
    }
    return out
}
