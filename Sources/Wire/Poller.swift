import CZeroMQ

/// What a poll waits for, and what it found.
public struct PollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// A message can be received without blocking (ZMQ_POLLIN).
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking (ZMQ_POLLOUT).
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits on several sockets at once (`zmq_poll`).
///
/// Holds its sockets, so like them it stays in one thread.
public struct Poller {
    private var sockets: [Socket] = []
    private var interests: [PollEvents] = []

    /// An empty poller.
    public init() {}

    /// Adds `socket`, watched for `events`; returns its index in `poll`'s result.
    @discardableResult
    public mutating func add(_ socket: Socket, events: PollEvents = .readable) -> Int {
        sockets.append(socket)
        interests.append(events)
        return sockets.count - 1
    }

    /// The number of sockets watched.
    public var count: Int { sockets.count }

    /// Waits until at least one socket is ready or `timeout` passes (nil waits forever,
    /// `.zero` only checks). Returns the ready events per socket, in the order added: all
    /// empty after a timeout. `EINTR` restarts the wait for the time left.
    public func poll(timeout: Duration?) throws(WireError) -> [PollEvents] {
        var items: [zmq_pollitem_t] = []
        items.reserveCapacity(sockets.count)
        for (socket, events) in zip(sockets, interests) {
            let handle = try socket.open("poll")
            items.append(zmq_pollitem_t(socket: handle, fd: -1, events: events.rawValue, revents: 0))
        }
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now.advanced(by: $0) }
        while true {
            let waitMs: Int
            if let deadline {
                let left = clock.now.duration(to: deadline)
                waitMs = left <= .zero ? 0 : Int(milliseconds(left))
            } else {
                waitMs = -1
            }
            let ready = items.withUnsafeMutableBufferPointer { buffer in
                zmq_poll(buffer.baseAddress, Int32(buffer.count), waitMs)
            }
            if ready >= 0 { break }
            let code = zmq_errno()
            if code == EINTR { continue }
            throw WireError.fromErrno(
                "poll(\(sockets.count) sockets)", socket: sockets.first?.type, endpoint: nil, errno: code)
        }
        return items.map { PollEvents(rawValue: $0.revents).intersection([.readable, .writable]) }
    }
}
