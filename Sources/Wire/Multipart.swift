import CZeroMQ

/// The frames of one multipart ZeroMQ message, owned: each frame is closed exactly once.
///
/// `Message` is `~Copyable`, so frames cannot sit in an `Array`; `Multipart` keeps the
/// `zmq_msg_t`s itself. Read frames in place with `withFrame(at:_:)` (no copy), take them out
/// with `removeFirst()`, add them with `append(_:)`.
public struct Multipart: ~Copyable {
    private var frames: [UnsafeMutablePointer<zmq_msg_t>] = []

    /// No frames.
    public init() {}

    /// Copies of `frames`.
    public init(_ frames: [[UInt8]]) throws(WireError) {
        for frame in frames { append(try Message(bytes: frame)) }
    }

    deinit {
        for frame in frames {
            zmq_msg_close(frame)
            frame.deallocate()
        }
    }

    /// The number of frames.
    public var count: Int { frames.count }

    /// Whether there are no frames.
    public var isEmpty: Bool { frames.isEmpty }

    /// The size in bytes of each frame.
    public var frameSizes: [Int] { frames.map { zmq_msg_size($0) } }

    /// Moves `message` in as the last frame.
    public mutating func append(_ message: consuming Message) {
        frames.append(Multipart.adopt(message))
    }

    /// Moves `message` in as the first frame (a routing id in front of a ROUTER's reply).
    public mutating func prepend(_ message: consuming Message) {
        frames.insert(Multipart.adopt(message), at: 0)
    }

    /// Takes out the first frame, or returns nil if there is none.
    public mutating func removeFirst() -> Message? {
        guard !frames.isEmpty else { return nil }
        let first = frames.removeFirst()
        let message = Message()
        zmq_msg_move(message.pointer, first)
        zmq_msg_close(first)
        first.deallocate()
        return message
    }

    /// Calls `body` with the bytes of frame `index`, valid only during the call; a missing
    /// frame is `WireError.missingFrame`.
    public func withFrame<R>(
        at index: Int, _ body: (UnsafeRawBufferPointer) throws(WireError) -> R
    ) throws(WireError) -> R {
        guard frames.indices.contains(index) else { throw .missingFrame(index: index, count: frames.count) }
        let frame = frames[index]
        return try body(UnsafeRawBufferPointer(start: zmq_msg_data(frame), count: zmq_msg_size(frame)))
    }

    /// A metadata property of frame `index` (`zmq_msg_gets`): "User-Id" (what the ZAP handler
    /// said of the sender), "Peer-Address", "Socket-Type"…; nil when absent (no such frame, or
    /// a transport such as `inproc://` that carries no metadata).
    public func property(_ name: String, at index: Int) -> String? {
        guard frames.indices.contains(index), let value = zmq_msg_gets(frames[index], name) else { return nil }
        return String(cString: value)
    }

    /// A copy of frame `index`, or nil if there is no such frame.
    public func bytes(at index: Int) -> [UInt8]? {
        guard frames.indices.contains(index) else { return nil }
        let frame = frames[index]
        return Array(UnsafeRawBufferPointer(start: zmq_msg_data(frame), count: zmq_msg_size(frame)))
    }

    /// Copies of all frames.
    public var allBytes: [[UInt8]] {
        frames.indices.compactMap { bytes(at: $0) }
    }

    /// Calls `body` with the frames' `zmq_msg_t`s in order, for sending. Sending empties each
    /// one (ZeroMQ moves the content out), so `deinit` then closes empty messages.
    func withMessagePointers<R>(
        _ body: ([UnsafeMutablePointer<zmq_msg_t>]) throws(WireError) -> R
    ) throws(WireError) -> R {
        try body(frames)
    }

    /// A new heap `zmq_msg_t` holding the content of `message`, which is left empty.
    private static func adopt(_ message: consuming Message) -> UnsafeMutablePointer<zmq_msg_t> {
        let frame = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        zmq_msg_init(frame)
        zmq_msg_move(frame, message.pointer)
        return frame
    }
}
