import CZeroMQ
import Synchronization

/// A connection event reported by ZeroMQ's socket monitor (`zmq_socket_monitor`).
public struct MonitorEvent: Sendable, Equatable, CustomStringConvertible {
    /// What happened.
    public enum Kind: Sendable, Hashable {
        case connected
        case connectDelayed
        case connectRetried
        case listening
        case bindFailed
        case accepted
        case acceptFailed
        case closed
        case closeFailed
        case disconnected
        case monitorStopped
        case handshakeFailedNoDetail
        case handshakeSucceeded
        case handshakeFailedProtocol
        case handshakeFailedAuth
        /// An event this build does not name.
        case other(UInt16)

        init(code: UInt16) {
            switch Int32(code) {
            case ZMQ_EVENT_CONNECTED: self = .connected
            case ZMQ_EVENT_CONNECT_DELAYED: self = .connectDelayed
            case ZMQ_EVENT_CONNECT_RETRIED: self = .connectRetried
            case ZMQ_EVENT_LISTENING: self = .listening
            case ZMQ_EVENT_BIND_FAILED: self = .bindFailed
            case ZMQ_EVENT_ACCEPTED: self = .accepted
            case ZMQ_EVENT_ACCEPT_FAILED: self = .acceptFailed
            case ZMQ_EVENT_CLOSED: self = .closed
            case ZMQ_EVENT_CLOSE_FAILED: self = .closeFailed
            case ZMQ_EVENT_DISCONNECTED: self = .disconnected
            case ZMQ_EVENT_MONITOR_STOPPED: self = .monitorStopped
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: self = .handshakeFailedNoDetail
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: self = .handshakeSucceeded
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: self = .handshakeFailedProtocol
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: self = .handshakeFailedAuth
            default: self = .other(code)
            }
        }
    }

    /// What happened.
    public var kind: Kind
    /// The event's value: a file descriptor (connected, accepted, …), an `errno` (…Failed), a
    /// reconnect interval in ms (connectRetried), or a protocol/auth status code (handshake).
    public var value: UInt32
    /// The endpoint concerned.
    public var endpoint: String

    public var description: String { "\(kind) \(endpoint) (\(value))" }
}

/// Which monitor events to report.
public struct MonitorEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int32
    /// The set with these `ZMQ_EVENT_*` bits.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `ZMQ_EVENT_CONNECTED`.
    public static let connected = MonitorEvents(rawValue: ZMQ_EVENT_CONNECTED)
    /// `ZMQ_EVENT_CONNECT_DELAYED`.
    public static let connectDelayed = MonitorEvents(rawValue: ZMQ_EVENT_CONNECT_DELAYED)
    /// `ZMQ_EVENT_CONNECT_RETRIED`.
    public static let connectRetried = MonitorEvents(rawValue: ZMQ_EVENT_CONNECT_RETRIED)
    /// `ZMQ_EVENT_LISTENING`.
    public static let listening = MonitorEvents(rawValue: ZMQ_EVENT_LISTENING)
    /// `ZMQ_EVENT_BIND_FAILED`.
    public static let bindFailed = MonitorEvents(rawValue: ZMQ_EVENT_BIND_FAILED)
    /// `ZMQ_EVENT_ACCEPTED`.
    public static let accepted = MonitorEvents(rawValue: ZMQ_EVENT_ACCEPTED)
    /// `ZMQ_EVENT_ACCEPT_FAILED`.
    public static let acceptFailed = MonitorEvents(rawValue: ZMQ_EVENT_ACCEPT_FAILED)
    /// `ZMQ_EVENT_CLOSED`.
    public static let closed = MonitorEvents(rawValue: ZMQ_EVENT_CLOSED)
    /// `ZMQ_EVENT_CLOSE_FAILED`.
    public static let closeFailed = MonitorEvents(rawValue: ZMQ_EVENT_CLOSE_FAILED)
    /// `ZMQ_EVENT_DISCONNECTED`.
    public static let disconnected = MonitorEvents(rawValue: ZMQ_EVENT_DISCONNECTED)
    /// `ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL`.
    public static let handshakeFailedNoDetail = MonitorEvents(rawValue: ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    /// `ZMQ_EVENT_HANDSHAKE_SUCCEEDED`.
    public static let handshakeSucceeded = MonitorEvents(rawValue: ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
    /// `ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL`.
    public static let handshakeFailedProtocol = MonitorEvents(rawValue: ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
    /// `ZMQ_EVENT_HANDSHAKE_FAILED_AUTH`.
    public static let handshakeFailedAuth = MonitorEvents(rawValue: ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    /// Every event.
    public static let all = MonitorEvents(rawValue: ZMQ_EVENT_ALL)
}

/// Reads the connection events of one socket.
///
/// ZeroMQ publishes them on an inproc PAIR endpoint; this owns the PAIR socket that reads
/// them. Like `Socket`, it stays in one thread (which need not be the monitored socket's).
public final class SocketMonitor {
    /// The inproc endpoint ZeroMQ publishes the events on.
    public let endpoint: String
    private let socket: Socket

    private static let counter = Atomic<UInt64>(0)

    init(monitoring target: Socket, events: MonitorEvents) throws(WireError) {
        let n = SocketMonitor.counter.add(1, ordering: .relaxed).newValue
        endpoint = "inproc://squat-wire-monitor-\(n)"
        let handle = try target.open("socket_monitor")
        guard zmq_socket_monitor(handle, endpoint, events.rawValue) == 0 else {
            throw WireError.fromErrno("socket_monitor", socket: target.type, endpoint: endpoint)
        }
        socket = try Socket(target.context, .pair, options: [.linger(.zero)])
        try socket.connect(endpoint)
    }

    /// The next event, or nil if none arrives within `timeout` (nil waits forever). A
    /// malformed event message is `WireError.unexpectedFrames` or `.invalidField`.
    public func next(timeout: Duration?) throws(WireError) -> MonitorEvent? {
        try socket.set(.receiveTimeout(timeout))
        switch try socket.receive(maxFrames: 2) {
        case .timeout:
            return nil
        case .message(let parts):
            guard parts.count == 2 else {
                throw .unexpectedFrames(expected: "2 (monitor event)", received: parts.count)
            }
            // Frame 1: uint16 event, uint32 value, native byte order, unaligned.
            let (code, value) = try parts.withFrame(at: 0) { raw throws(WireError) -> (UInt16, UInt32) in
                guard raw.count == 6 else {
                    throw .invalidField(message: "monitor event", field: "header", reason: "\(raw.count) bytes, not 6")
                }
                return (raw.loadUnaligned(as: UInt16.self), raw.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            }
            let address = try parts.withFrame(at: 1) { raw throws(WireError) in String(decoding: raw, as: UTF8.self) }
            return MonitorEvent(kind: MonitorEvent.Kind(code: code), value: value, endpoint: address)
        }
    }

    /// Waits up to `timeout` for an event of `kind`, skipping others; nil if none came.
    public func wait(for kind: MonitorEvent.Kind, timeout: Duration) throws(WireError) -> MonitorEvent? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let left = clock.now.duration(to: deadline)
            if left <= .zero { return nil }
            guard let event = try next(timeout: left) else { return nil }
            if event.kind == kind { return event }
        }
    }

    /// Closes the reading socket. ZeroMQ stops publishing when the monitored socket closes
    /// (`monitorStopped` is the last event).
    public func close() {
        socket.close()
    }
}

@available(*, unavailable, message: "the monitor's PAIR socket is not thread-safe")
extension SocketMonitor: Sendable {}

extension Socket {
    /// Starts ZeroMQ's monitor on this socket and returns the reader of its events. Call it
    /// before `bind`/`connect` to see the first events. One monitor per socket.
    public func monitor(events: MonitorEvents = .all) throws(WireError) -> SocketMonitor {
        try SocketMonitor(monitoring: self, events: events)
    }
}
