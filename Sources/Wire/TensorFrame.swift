/// A received raw tensor frame, already checked against its header: exactly
/// `product(header.shape)` little-endian elements of `header.dtype`, row-major.
///
/// Owns the ZeroMQ frame, so reading it copies nothing.
public struct TensorFrame: ~Copyable {
    /// The header the frame was validated against.
    public let header: TensorHeader
    private let frame: Message

    /// Pairs `frame` with `header`; `WireError.tensorMismatch` if the sizes disagree.
    public init(header: TensorHeader, frame: consuming Message) throws(WireError) {
        try header.validate(frameBytes: frame.count)
        self.header = header
        self.frame = frame
    }

    /// The frame's size in bytes.
    public var byteCount: Int { frame.count }

    /// The number of elements.
    public var elementCount: Int { header.shape.reduce(1) { $0 * Int($1) } }

    /// Calls `body` with the raw little-endian bytes (no alignment is guaranteed).
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try frame.withUnsafeBytes(body)
    }

    /// The elements converted to `Float` (f16 widened exactly).
    public func floats() -> [Float] {
        let count = elementCount
        return frame.withUnsafeBytes { raw in
            var out = [Float](repeating: 0, count: count)
            switch header.dtype {
            case .f32:
                for i in 0..<count {
                    out[i] = Float(
                        bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                }
            case .f16:
                for i in 0..<count {
                    out[i] = floatFromHalf(
                        UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                }
            default:
                break  // unreachable: the header was validated, and only f32/f16 have a width
            }
            return out
        }
    }

    /// Gives up the frame, e.g. to forward it unchanged.
    public consuming func takeMessage() -> Message {
        frame
    }
}

/// IEEE 754 binary16 → binary32, exact for every input (subnormals, infinities, NaN payloads).
func floatFromHalf(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h) & 0x3ff
    if exponent == 0x1f {  // infinity or NaN
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
        if mantissa == 0 { return Float(bitPattern: sign) }
        // Subnormal: mantissa × 2^-24, exact in binary32.
        let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)  // 2^-24
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}
