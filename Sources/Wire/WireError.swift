import CZeroMQ

/// Everything that can go wrong in the wire layer, saying what failed and where.
///
/// Socket failures carry the ZeroMQ call, the socket type, the endpoint (when there is one)
/// and `errno` with its text. Codec failures say which message and field were at fault. A
/// timeout is not an error: `Socket.receive` and `Socket.send` report it as a result.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A ZeroMQ call failed: `operation` is the call (`"bind"`, `"send"`, …), `socket` the
    /// socket's type, `endpoint` the address involved or the socket's last bound/connected one.
    case zmq(operation: String, socket: SocketType?, endpoint: String?, errno: Int32, text: String)
    /// The socket was closed with `Socket.close()` and used afterwards.
    case socketClosed(operation: String, socket: SocketType)
    /// The context was shut down (`Context.shutdown()` or termination): the socket is unusable.
    case contextTerminated(operation: String, socket: SocketType?)
    /// A ROUTER with `ROUTER_MANDATORY` has no peer with this routing id.
    case hostUnreachable(socket: SocketType, identity: [UInt8])
    /// A frame (or encoded message) is larger than the limit in force.
    case frameTooLarge(size: Int, limit: Int)
    /// protobuf-c could not unpack the frame as an `Envelope`.
    case malformedFrame(size: Int)
    /// The peer speaks another protocol version.
    case unsupportedVersion(received: UInt32, supported: UInt32)
    /// The `Envelope` decoded but carries no body this build knows (`unknownFields` counts the
    /// fields protobuf-c kept as unknown: a newer peer's message type).
    case unknownMessageType(unknownFields: Int)
    /// A required field is absent.
    case missingField(message: String, field: String)
    /// A field holds a value the wire layer refuses (invalid UTF-8, embedded NUL, …).
    case invalidField(message: String, field: String, reason: String)
    /// A tensor frame does not match its header (size, dtype, shape or rows).
    case tensorMismatch(reason: String)
    /// A multipart message has a number of frames the protocol does not allow here.
    case unexpectedFrames(expected: String, received: Int)
    /// A frame index past the end of a `Multipart`.
    case missingFrame(index: Int, count: Int)
    /// The API was called in a way the socket or protocol does not allow (a ROUTER send
    /// without a routing id, …).
    case invalidUse(String)

    /// A failed ZeroMQ call, from `zmq_errno()` and `zmq_strerror`.
    static func fromErrno(
        _ operation: String, socket: SocketType?, endpoint: String?, errno code: Int32 = zmq_errno()
    ) -> WireError {
        if code == ETERM { return .contextTerminated(operation: operation, socket: socket) }
        return .zmq(operation: operation, socket: socket, endpoint: endpoint, errno: code, text: errnoText(code))
    }

    /// The message of `zmq_strerror` (which also covers the system's errno values).
    static func errnoText(_ code: Int32) -> String {
        guard let text = zmq_strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// The `errno` of a ZeroMQ failure, if this is one.
    public var errno: Int32? {
        if case .zmq(_, _, _, let code, _) = self { return code }
        return nil
    }

    public var description: String {
        switch self {
        case .zmq(let op, let socket, let endpoint, let code, let text):
            let socketText = socket.map { " on \($0)" } ?? ""
            let endpointText = endpoint.map { " (\($0))" } ?? ""
            return "zmq_\(op) failed\(socketText)\(endpointText): \(text) [errno \(code)]"
        case .socketClosed(let op, let socket):
            return "\(op) on a closed \(socket) socket"
        case .contextTerminated(let op, let socket):
            return "\(op) interrupted: the ZeroMQ context was terminated\(socket.map { " (\($0) socket)" } ?? "")"
        case .hostUnreachable(let socket, let identity):
            return "\(socket): no peer with routing id \(hex(identity)) (ROUTER_MANDATORY)"
        case .frameTooLarge(let size, let limit):
            return "frame of \(size) bytes exceeds the limit of \(limit) bytes"
        case .malformedFrame(let size):
            return "frame of \(size) bytes is not a valid squat.v1.Envelope"
        case .unsupportedVersion(let received, let supported):
            return "protocol version \(received) is not supported (this build speaks \(supported))"
        case .unknownMessageType(let unknown):
            return "envelope has no known body (\(unknown) unknown field(s))"
        case .missingField(let message, let field):
            return "\(message).\(field) is required"
        case .invalidField(let message, let field, let reason):
            return "\(message).\(field): \(reason)"
        case .tensorMismatch(let reason):
            return "tensor frame: \(reason)"
        case .unexpectedFrames(let expected, let received):
            return "expected \(expected) frame(s), received \(received)"
        case .missingFrame(let index, let count):
            return "frame \(index) requested from a message of \(count) frame(s)"
        case .invalidUse(let reason):
            return reason
        }
    }
}

/// Lower-case hex of a routing id, for messages.
func hex(_ bytes: [UInt8]) -> String {
    bytes.isEmpty ? "<empty>" : "0x" + bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
