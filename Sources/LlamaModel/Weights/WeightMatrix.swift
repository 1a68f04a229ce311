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

    /// Dequantizes row `r` into `out` (`cols` floats).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        _ = sq_dequantize(Int32(type.rawValue), data + r * rowBytes, out, Int64(cols))
    }
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
