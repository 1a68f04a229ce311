import CZeroMQ

/// One ZeroMQ frame: the sole owner of a heap-allocated `zmq_msg_t`.
///
/// A `zmq_msg_t` must never be copied (two closes of one copy free its data twice), hence
/// `~Copyable`: the frame is closed exactly once, when its owner ends. Sending moves the
/// content out (ZeroMQ leaves the struct empty), so a sent `Message` closes as an empty one.
public struct Message: ~Copyable {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty frame.
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)  // cannot fail
    }

    /// A frame holding a copy of `bytes`.
    public init(bytes: UnsafeRawBufferPointer) throws(WireError) {
        let p = try Message.allocate(count: bytes.count)
        if let base = bytes.baseAddress, bytes.count > 0 {
            zmq_msg_data(p).copyMemory(from: base, byteCount: bytes.count)
        }
        pointer = p
    }

    /// A frame holding a copy of `bytes`.
    public init(bytes: [UInt8]) throws(WireError) {
        let p = try Message.allocate(count: bytes.count)
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress, raw.count > 0 {
                zmq_msg_data(p).copyMemory(from: base, byteCount: raw.count)
            }
        }
        pointer = p
    }

    /// A frame that sends `buffer` without copying it.
    ///
    /// `owner` is retained until ZeroMQ is done with the bytes, then released from ZeroMQ's
    /// free callback, which runs on one of its I/O threads (hence `Sendable`): `owner` must keep
    /// `buffer` valid and unchanged until then.
    public init(zeroCopy buffer: UnsafeRawBufferPointer, owner: some AnyObject & Sendable) throws(WireError) {
        let p = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        let hint = Unmanaged<AnyObject>.passRetained(owner).toOpaque()
        let data = UnsafeMutableRawPointer(mutating: buffer.baseAddress)
        // The free callback is capture-free (a C function pointer). It runs on a ZeroMQ I/O
        // thread, or on the closing thread if the frame is never sent.
        let status = zmq_msg_init_data(
            p, data, buffer.count,
            { _, hint in
                guard let hint else { return }
                Unmanaged<AnyObject>.fromOpaque(hint).release()
            }, hint)
        guard status == 0 else {
            // ZeroMQ does not call the callback when initialisation fails: release here.
            Unmanaged<AnyObject>.fromOpaque(hint).release()
            p.deallocate()
            throw WireError.fromErrno("msg_init_data(\(buffer.count) bytes)", socket: nil, endpoint: nil)
        }
        pointer = p
    }

    /// A heap `zmq_msg_t` initialised with room for `count` bytes.
    private static func allocate(count: Int) throws(WireError) -> UnsafeMutablePointer<zmq_msg_t> {
        let p = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        guard zmq_msg_init_size(p, count) == 0 else {
            p.deallocate()
            throw WireError.fromErrno("msg_init_size(\(count) bytes)", socket: nil, endpoint: nil)
        }
        return p
    }

    /// A frame that sends the bytes of `buffer` without copying them; see `TensorBuffer`.
    public init(zeroCopy buffer: TensorBuffer) throws(WireError) {
        try self.init(zeroCopy: UnsafeRawBufferPointer(buffer.bytes), owner: buffer)
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    /// The number of bytes in the frame.
    public var count: Int { zmq_msg_size(pointer) }

    /// Whether more frames of the same multipart message follow (valid after a receive).
    public var hasMore: Bool { zmq_msg_more(pointer) != 0 }

    /// Calls `body` with the frame's bytes, valid only during the call.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer)))
    }

    /// A copy of the frame's bytes.
    public var bytes: [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}
