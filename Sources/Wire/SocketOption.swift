import CZeroMQ

/// A ZeroMQ socket option, set with `Socket.set(_:)` or at creation.
///
/// Durations are rounded up to whole milliseconds. `nil` means "no limit" where ZeroMQ has
/// one (-1).
public enum SocketOption: Sendable, Hashable, CustomStringConvertible {
    /// ZMQ_LINGER: how long `close` keeps unsent messages; nil waits forever (which makes
    /// context termination hang while a peer is gone), `.zero` drops them at once.
    case linger(Duration?)
    /// ZMQ_SNDHWM: messages queued per peer before sends block or fail; 0 means no limit.
    case sendHighWaterMark(Int32)
    /// ZMQ_RCVHWM: messages queued per peer on the receiving side; 0 means no limit.
    case receiveHighWaterMark(Int32)
    /// ZMQ_RCVTIMEO: how long a receive waits before reporting a timeout; nil blocks forever.
    case receiveTimeout(Duration?)
    /// ZMQ_SNDTIMEO: how long a send waits before reporting a timeout; nil blocks forever.
    case sendTimeout(Duration?)
    /// ZMQ_ROUTER_MANDATORY: a ROUTER fails sends to unknown routing ids (`hostUnreachable`)
    /// instead of dropping them silently.
    case routerMandatory(Bool)
    /// ZMQ_MAXMSGSIZE: a peer sending a larger frame is disconnected and the frame dropped;
    /// nil means no limit.
    case maxMessageSize(Int64?)
    /// ZMQ_IMMEDIATE: queue messages only to completed connections.
    case immediate(Bool)
    /// ZMQ_HEARTBEAT_IVL: interval of ZMTP PING frames; `.zero` turns them off.
    case heartbeatInterval(Duration)
    /// ZMQ_HEARTBEAT_TIMEOUT: how long to wait for any traffic after a PING before dropping
    /// the connection.
    case heartbeatTimeout(Duration)
    /// ZMQ_HEARTBEAT_TTL: the timeout the remote peer should apply to this side (100 ms steps).
    case heartbeatTTL(Duration)
    /// ZMQ_ROUTING_ID: the id a ROUTER peer sees for this socket (1–255 bytes, not starting
    /// with a zero byte).
    case routingID([UInt8])
    /// ZMQ_RECONNECT_IVL: first delay before reconnecting.
    case reconnectInterval(Duration)
    /// ZMQ_RECONNECT_IVL_MAX: cap of the exponential reconnect back-off (`.zero`: no back-off).
    case reconnectIntervalMax(Duration)
    /// ZMQ_CONNECT_TIMEOUT: give up a TCP connect attempt after this long (`.zero`: OS default).
    case connectTimeout(Duration)
    /// ZMQ_HANDSHAKE_IVL: the ZMTP handshake must complete within this long (`.zero`: no limit).
    case handshakeInterval(Duration)
    /// ZMQ_CURVE_SERVER: this socket is the CURVE server side (it needs its secret key; clients
    /// authenticate to it through the context's ZAP handler).
    case curveServer(Bool)
    /// ZMQ_CURVE_PUBLICKEY: this socket's long-term public key (Z85, 40 characters).
    case curvePublicKey(String)
    /// ZMQ_CURVE_SECRETKEY: this socket's long-term secret key (Z85, 40 characters; never printed).
    case curveSecretKey(String)
    /// ZMQ_CURVE_SERVERKEY: the public key (Z85) of the server this client socket connects to.
    case curveServerKey(String)
    /// ZMQ_ZAP_DOMAIN: the domain passed to the ZAP handler for this socket's peers.
    case zapDomain(String)

    public var description: String {
        switch self {
        case .linger(let d): "ZMQ_LINGER=\(d.map { "\($0)" } ?? "infinite")"
        case .sendHighWaterMark(let n): "ZMQ_SNDHWM=\(n)"
        case .receiveHighWaterMark(let n): "ZMQ_RCVHWM=\(n)"
        case .receiveTimeout(let d): "ZMQ_RCVTIMEO=\(d.map { "\($0)" } ?? "infinite")"
        case .sendTimeout(let d): "ZMQ_SNDTIMEO=\(d.map { "\($0)" } ?? "infinite")"
        case .routerMandatory(let b): "ZMQ_ROUTER_MANDATORY=\(b)"
        case .maxMessageSize(let n): "ZMQ_MAXMSGSIZE=\(n.map { "\($0)" } ?? "unlimited")"
        case .immediate(let b): "ZMQ_IMMEDIATE=\(b)"
        case .heartbeatInterval(let d): "ZMQ_HEARTBEAT_IVL=\(d)"
        case .heartbeatTimeout(let d): "ZMQ_HEARTBEAT_TIMEOUT=\(d)"
        case .heartbeatTTL(let d): "ZMQ_HEARTBEAT_TTL=\(d)"
        case .routingID(let id): "ZMQ_ROUTING_ID=\(hex(id))"
        case .reconnectInterval(let d): "ZMQ_RECONNECT_IVL=\(d)"
        case .reconnectIntervalMax(let d): "ZMQ_RECONNECT_IVL_MAX=\(d)"
        case .connectTimeout(let d): "ZMQ_CONNECT_TIMEOUT=\(d)"
        case .handshakeInterval(let d): "ZMQ_HANDSHAKE_IVL=\(d)"
        case .curveServer(let b): "ZMQ_CURVE_SERVER=\(b)"
        case .curvePublicKey(let k): "ZMQ_CURVE_PUBLICKEY=\(k)"
        case .curveSecretKey: "ZMQ_CURVE_SECRETKEY=(secret)"
        case .curveServerKey(let k): "ZMQ_CURVE_SERVERKEY=\(k)"
        case .zapDomain(let d): "ZMQ_ZAP_DOMAIN=\(d)"
        }
    }

    /// The option's name and value as `zmq_setsockopt` wants them.
    var raw: (name: Int32, value: RawValue) {
        switch self {
        case .linger(let d): (ZMQ_LINGER, .int(d.map(milliseconds) ?? -1))
        case .sendHighWaterMark(let n): (ZMQ_SNDHWM, .int(n))
        case .receiveHighWaterMark(let n): (ZMQ_RCVHWM, .int(n))
        case .receiveTimeout(let d): (ZMQ_RCVTIMEO, .int(d.map(milliseconds) ?? -1))
        case .sendTimeout(let d): (ZMQ_SNDTIMEO, .int(d.map(milliseconds) ?? -1))
        case .routerMandatory(let b): (ZMQ_ROUTER_MANDATORY, .int(b ? 1 : 0))
        case .maxMessageSize(let n): (ZMQ_MAXMSGSIZE, .int64(n ?? -1))
        case .immediate(let b): (ZMQ_IMMEDIATE, .int(b ? 1 : 0))
        case .heartbeatInterval(let d): (ZMQ_HEARTBEAT_IVL, .int(milliseconds(d)))
        case .heartbeatTimeout(let d): (ZMQ_HEARTBEAT_TIMEOUT, .int(milliseconds(d)))
        case .heartbeatTTL(let d): (ZMQ_HEARTBEAT_TTL, .int(milliseconds(d)))
        case .routingID(let id): (ZMQ_ROUTING_ID, .bytes(id))
        case .reconnectInterval(let d): (ZMQ_RECONNECT_IVL, .int(milliseconds(d)))
        case .reconnectIntervalMax(let d): (ZMQ_RECONNECT_IVL_MAX, .int(milliseconds(d)))
        case .connectTimeout(let d): (ZMQ_CONNECT_TIMEOUT, .int(milliseconds(d)))
        case .handshakeInterval(let d): (ZMQ_HANDSHAKE_IVL, .int(milliseconds(d)))
        case .curveServer(let b): (ZMQ_CURVE_SERVER, .int(b ? 1 : 0))
        // Z85 keys go in as 40 characters and a terminating NUL (41 bytes), as zmq_setsockopt wants.
        case .curvePublicKey(let k): (ZMQ_CURVE_PUBLICKEY, .bytes(Array(k.utf8) + [0]))
        case .curveSecretKey(let k): (ZMQ_CURVE_SECRETKEY, .bytes(Array(k.utf8) + [0]))
        case .curveServerKey(let k): (ZMQ_CURVE_SERVERKEY, .bytes(Array(k.utf8) + [0]))
        case .zapDomain(let d): (ZMQ_ZAP_DOMAIN, .bytes(Array(d.utf8)))
        }
    }

    /// The C types of option values.
    enum RawValue {
        case int(Int32)
        case int64(Int64)
        case bytes([UInt8])
    }
}

/// `duration` in whole milliseconds, rounded up, clamped to `0...Int32.max`.
func milliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
    let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
    if overflow { return Int32.max }
    let perMillisecond: Int64 = 1_000_000_000_000_000
    let total = ms + (attoseconds + perMillisecond - 1) / perMillisecond
    return Int32(clamping: total)
}
