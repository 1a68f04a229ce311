import CZeroMQ

/// The outcome of a receive: a whole multipart message, or nothing within the timeout.
public enum Received: ~Copyable {
    /// All frames of one message.
    case message(Multipart)
    /// `ZMQ_RCVTIMEO` elapsed (or nothing was waiting, for a non-blocking receive).
    case timeout
}

/// The outcome of a send.
public enum SendResult: Sendable, Equatable {
    /// ZeroMQ accepted every frame.
    case sent
    /// `ZMQ_SNDTIMEO` elapsed (or the queue was full, for a non-blocking send) before the first
    /// frame was accepted; nothing was sent and the frames were released.
    case timeout
}

/// A ZeroMQ socket, owned by one thread at a time.
///
/// ZeroMQ sockets are not thread-safe, so `Socket` is not `Sendable`: it lives in one task or
/// thread (it may be handed over whole, with `sending`). It closes itself when released and
/// keeps its `Context` alive until then.
///
/// Defaults that differ from ZeroMQ's: linger is 1 s (ZeroMQ's infinite linger makes context
/// termination hang while a peer is gone), and a ROUTER has `ROUTER_MANDATORY` on, so sends to
/// unknown peers fail with `WireError.hostUnreachable` rather than vanish.
public final class Socket: CustomStringConvertible {
    /// The socket's pattern.
    public let type: SocketType
    /// The context the socket was made from.
    public let context: Context
    /// The endpoint of the last successful `bind` (as resolved) or `connect`, for diagnostics.
    public private(set) var endpoint: String?
    private var handle: UnsafeMutableRawPointer?

    /// The linger a new socket gets.
    public static let defaultLinger: Duration = .seconds(1)
    /// The most frames `receive` accepts in one message unless told otherwise.
    public static let defaultMaxFrames = 64

    /// Makes a socket of `type`, then applies the defaults and `options` in order.
    public init(_ context: Context, _ type: SocketType, options: [SocketOption] = []) throws(WireError) {
        guard let handle = zmq_socket(context.handle, type.rawValue) else {
            throw WireError.fromErrno("socket", socket: type, endpoint: nil)
        }
        self.type = type
        self.context = context
        self.handle = handle
        var all: [SocketOption] = [.linger(Socket.defaultLinger)]
        if type == .router { all.append(.routerMandatory(true)) }
        for option in all + options { try set(option) }
    }

    deinit {
        if let handle { zmq_close(handle) }
    }

    /// Closes the socket now; later calls fail with `WireError.socketClosed`. Unsent messages
    /// linger as configured. Calling it twice is harmless.
    public func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool { handle == nil }

    public var description: String {
        "\(type) socket" + (endpoint.map { " at \($0)" } ?? "")
    }

    // MARK: - Endpoints

    /// Binds to `endpoint` and returns the endpoint actually bound, from `ZMQ_LAST_ENDPOINT`:
    /// `tcp://127.0.0.1:0` comes back with the port the system chose.
    @discardableResult
    public func bind(_ endpoint: String) throws(WireError) -> String {
        let handle = try open("bind")
        guard zmq_bind(handle, endpoint) == 0 else {
            throw WireError.fromErrno("bind", socket: type, endpoint: endpoint)
        }
        let bound = (try? lastEndpoint) ?? endpoint
        self.endpoint = bound
        return bound
    }

    /// Starts connecting to `endpoint` (ZeroMQ connects, and reconnects, in the background).
    public func connect(_ endpoint: String) throws(WireError) {
        let handle = try open("connect")
        guard zmq_connect(handle, endpoint) == 0 else {
            throw WireError.fromErrno("connect", socket: type, endpoint: endpoint)
        }
        self.endpoint = endpoint
    }

    /// Stops listening on `endpoint` (as returned by `bind`).
    public func unbind(_ endpoint: String) throws(WireError) {
        let handle = try open("unbind")
        guard zmq_unbind(handle, endpoint) == 0 else {
            throw WireError.fromErrno("unbind", socket: type, endpoint: endpoint)
        }
    }

    /// Drops the connection to `endpoint`.
    public func disconnect(_ endpoint: String) throws(WireError) {
        let handle = try open("disconnect")
        guard zmq_disconnect(handle, endpoint) == 0 else {
            throw WireError.fromErrno("disconnect", socket: type, endpoint: endpoint)
        }
    }

    /// `ZMQ_LAST_ENDPOINT`: the last endpoint bound or connected, resolved (`tcp://*:0` gives
    /// the real address and port).
    public var lastEndpoint: String {
        get throws(WireError) {
            let handle = try open("getsockopt(ZMQ_LAST_ENDPOINT)")
            var buffer = [CChar](repeating: 0, count: 1024)
            var size = buffer.count
            let status = buffer.withUnsafeMutableBytes { raw in
                zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, raw.baseAddress, &size)
            }
            guard status == 0 else {
                throw WireError.fromErrno("getsockopt(ZMQ_LAST_ENDPOINT)", socket: type, endpoint: endpoint)
            }
            let bytes = buffer.prefix(min(size, buffer.count)).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    // MARK: - Options

    /// Sets `option`.
    public func set(_ option: SocketOption) throws(WireError) {
        let handle = try open("setsockopt")
        let (name, value) = option.raw
        let status: Int32
        switch value {
        case .int(var v):
            status = zmq_setsockopt(handle, name, &v, MemoryLayout<Int32>.size)
        case .int64(var v):
            status = zmq_setsockopt(handle, name, &v, MemoryLayout<Int64>.size)
        case .bytes(let bytes):
            status = bytes.withUnsafeBytes { zmq_setsockopt(handle, name, $0.baseAddress, $0.count) }
        }
        guard status == 0 else {
            throw WireError.fromErrno("setsockopt(\(option))", socket: type, endpoint: endpoint)
        }
    }

    /// Reads an `int` socket option (`ZMQ_RCVHWM`, `ZMQ_LINGER`, …) by its ZeroMQ number.
    public func intOption(_ name: Int32) throws(WireError) -> Int32 {
        let handle = try open("getsockopt")
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(handle, name, &value, &size) == 0 else {
            throw WireError.fromErrno("getsockopt(\(name))", socket: type, endpoint: endpoint)
        }
        return value
    }

    // MARK: - Send and receive

    /// Sends all frames of `message` as one multipart message.
    ///
    /// Retries on `EINTR`. Returns `.timeout` when the first frame is not accepted within
    /// `ZMQ_SNDTIMEO` (or at once with `dontWait`); a ROUTER with `ROUTER_MANDATORY` throws
    /// `hostUnreachable` for an unknown routing id. Frames not sent are released.
    public func send(_ message: consuming Multipart, dontWait: Bool = false) throws(WireError) -> SendResult {
        let handle = try open("send")
        let type = self.type
        let endpoint = self.endpoint
        // The frames are used inside this borrowing call, so `message` lives until it returns.
        return try message.withMessagePointers { frames throws(WireError) -> SendResult in
            guard !frames.isEmpty else { throw .unexpectedFrames(expected: "at least 1", received: 0) }
            for (i, frame) in frames.enumerated() {
                var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
                if i < frames.count - 1 { flags |= ZMQ_SNDMORE }
                while zmq_msg_send(frame, handle, flags) < 0 {
                    let code = zmq_errno()
                    if code == EINTR { continue }
                    if code == EAGAIN && i == 0 { return .timeout }
                    if code == EHOSTUNREACH {
                        let identity = Array(
                            UnsafeRawBufferPointer(start: zmq_msg_data(frame), count: zmq_msg_size(frame)))
                        throw .hostUnreachable(socket: type, identity: identity)
                    }
                    throw WireError.fromErrno(
                        "msg_send(frame \(i + 1) of \(frames.count))", socket: type, endpoint: endpoint, errno: code)
                }
            }
            return .sent
        }
    }

    /// Sends copies of `frames` as one multipart message; see `send(_:dontWait:)`.
    public func send(frames: [[UInt8]], dontWait: Bool = false) throws(WireError) -> SendResult {
        try send(Multipart(frames), dontWait: dontWait)
    }

    /// Receives one whole multipart message.
    ///
    /// Retries on `EINTR`. Returns `.timeout` when nothing arrives within `ZMQ_RCVTIMEO` (or at
    /// once with `dontWait`). A message of more than `maxFrames` frames is read to its end,
    /// dropped, and reported as `WireError.unexpectedFrames`.
    public func receive(dontWait: Bool = false, maxFrames: Int = Socket.defaultMaxFrames) throws(WireError)
        -> Received
    {
        let handle = try open("receive")
        var parts = Multipart()
        var received = 0
        while true {
            let frame = Message()
            // Only the first frame may wait: ZeroMQ delivers multipart messages whole.
            let flags: Int32 = dontWait || received > 0 ? ZMQ_DONTWAIT : 0
            while zmq_msg_recv(frame.pointer, handle, flags) < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                if code == EAGAIN && received == 0 { return .timeout }
                throw WireError.fromErrno(
                    "msg_recv(frame \(received + 1))", socket: type, endpoint: endpoint, errno: code)
            }
            received += 1
            let more = frame.hasMore
            if received <= maxFrames { parts.append(frame) }
            if !more { break }
        }
        guard received <= maxFrames else {
            throw .unexpectedFrames(expected: "at most \(maxFrames)", received: received)
        }
        return .message(parts)
    }

    // MARK: - Internals

    /// The live handle, or `socketClosed` naming `operation`.
    func open(_ operation: String) throws(WireError) -> UnsafeMutableRawPointer {
        guard let handle else { throw .socketClosed(operation: operation, socket: type) }
        return handle
    }
}

@available(*, unavailable, message: "ZeroMQ sockets are not thread-safe: keep each in one thread")
extension Socket: Sendable {}
