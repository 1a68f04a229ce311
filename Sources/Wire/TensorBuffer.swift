/// Heap memory for a tensor frame, sent without copying by `Message(zeroCopy:)`.
///
/// Fill `bytes` (little-endian, row-major), then send. After the send ZeroMQ reads the bytes
/// from an I/O thread until it releases the buffer, so write no more to a buffer once sent.
// @unchecked Sendable: written by one owner before a send, only read after; freed once, in deinit.
public final class TensorBuffer: @unchecked Sendable {
    /// The buffer's memory, aligned to `alignment` bytes.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Uninitialised memory of `byteCount` bytes.
    public init(byteCount: Int, alignment: Int = 64) {
        bytes = .allocate(byteCount: max(byteCount, 0), alignment: alignment)
    }

    /// A copy of `values` as little-endian f32.
    public convenience init(floats values: [Float]) {
        self.init(byteCount: values.count * MemoryLayout<Float>.size)
        for (i, v) in values.enumerated() {
            bytes.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
        }
    }

    /// The number of bytes.
    public var count: Int { bytes.count }

    deinit {
        bytes.deallocate()
    }
}
