import Foundation
import Wire

/// What a client sees of one request.
public enum ClientEvent: Sendable, Equatable {
    case token(TokenEvent)
    case finished(Finished)
    case error(ErrorReply)
}

/// A client of the coordinator: a DEALER that submits requests and reads their events.
///
/// Blocking and single-threaded (`submit(_:onEvent:)`), or as an `AsyncThrowingStream`
/// (`stream(_:)`, which runs the blocking call on a thread of its own).
public final class ClusterClient {
    public let endpoint: String
    /// The longest silence tolerated from the coordinator while a request is live.
    public var timeout: Duration
    private let context: Context
    private let socket: Socket
    /// Connection events of `socket`: a coordinator that goes away while a request is live
    /// ends the request with a clear error instead of a long silence.
    private let monitor: SocketMonitor

    private let curve: CurveClientKeys?

    /// Connects to `endpoint`; pass the cluster's `context` to reach an `inproc://` endpoint, and
    /// `curve` (this client's pair and the coordinator's public key) when the coordinator
    /// requires keys.
    public init(
        endpoint: String, timeout: Duration = .seconds(120), context: Context? = nil, curve: CurveClientKeys? = nil
    ) throws {
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = curve
        if let context { self.context = context } else { self.context = try Context() }
        socket = try Socket(
            self.context, .dealer,
            options: [.linger(.zero), .maxMessageSize(Int64(WireMessage.controlMaxSize))]
                + (curve.map { $0.pair.clientOptions(server: $0.serverKey) } ?? []))
        monitor = try socket.monitor(events: [
            .connected, .disconnected, .handshakeFailedAuth, .handshakeFailedProtocol, .handshakeFailedNoDetail,
        ])
        try socket.connect(endpoint)
    }

    /// Throws when the monitor saw the connection fail for good: a refused key or a handshake
    /// that cannot succeed. With `live`, a lost connection also ends the request.
    private func checkConnection(live requestID: String?) throws {
        while let event = try monitor.next(timeout: .zero) {
            switch event.kind {
            case .handshakeFailedAuth:
                throw ClusterError(
                    "the coordinator at \(endpoint) refused this client's CURVE key"
                        + (curve.map { " \($0.pair.publicKey)" } ?? "")
                        + " (ZAP status \(event.value)): its .pub must be in the coordinator's --authorized-keys DIR/clients/"
                )
            case .handshakeFailedProtocol, .handshakeFailedNoDetail:
                throw ClusterError(
                    "the security handshake with the coordinator at \(endpoint) failed (\(event.kind)): "
                        + (curve == nil
                            ? "the coordinator probably requires CURVE keys (--curve-secret, --curve-server-key)"
                            : "check --curve-server-key (the coordinator's .pub) and that the coordinator runs with keys")
                )
            case .disconnected:
                if let requestID {
                    throw ClusterError(
                        "lost the connection to the coordinator at \(endpoint) while request '\(requestID)' was live; it did not finish"
                    )
                }
            default:
                continue
            }
        }
    }

    /// Sends `submit` and calls `onEvent` for each event until the request finishes. An
    /// `ErrorReply` is followed by `Finished(error)` for admitted requests; a refused request
    /// ends with the error alone.
    @discardableResult
    public func submit(_ submit: Submit, onEvent: (ClientEvent) throws -> Void) throws -> Finished? {
        _ = try socket.send(.submit(submit))
        var deadline = Monotonic.now() + timeout
        var poller = Poller()
        poller.add(socket)
        while true {
            let left = deadline - Monotonic.now()
            guard left > .zero else {
                throw ClusterError("no answer from the coordinator at \(endpoint) for \(timeout)")
            }
            let ready = try poller.poll(timeout: min(left, .milliseconds(200)))
            guard ready[0].contains(.readable) else {
                try checkConnection(live: submit.requestID)
                continue
            }
            let inbound = try socket.receiveMessage(dontWait: true)
            switch consume inbound {
            case .timeout: continue
            case .rejected(_, let error): throw ClusterError("malformed answer from the coordinator: \(error)")
            case .message(let incoming):
                deadline = Monotonic.now() + timeout
                switch incoming.message {
                case .tokenEvent(let t) where t.requestID == submit.requestID:
                    try onEvent(.token(t))
                case .finished(let f) where f.requestID == submit.requestID:
                    try onEvent(.finished(f))
                    return f
                case .error(let e) where e.requestID == submit.requestID || e.requestID.isEmpty:
                    try onEvent(.error(e))
                    // An admitted request's Finished(error) follows; a refused one ends here.
                    if e.code != .unavailable && e.code != .internalError { return nil }
                default:
                    continue
                }
            }
        }
    }

    /// Asks the coordinator to stop a live request of this client; it answers `Finished(cancelled)`
    /// (read by the `submit` in progress) or, for an unknown id, an error.
    public func cancel(_ requestID: String) throws {
        _ = try socket.send(.cancel(Cancel(requestID: requestID)))
    }

    /// Asks the coordinator to move a worker's layers to the others and let it go; returns the
    /// cluster's status after the request was taken.
    public func drain(workerID: String) throws -> Status {
        _ = try socket.send(.drainRequest(DrainRequest(workerID: workerID)))
        return try awaitStatus(orErrorFor: "")
    }

    /// Asks for the cluster's status.
    public func status(includeSequences: Bool = true) throws -> Status {
        _ = try socket.send(.statusRequest(StatusRequest(includeSequences: includeSequences)))
        return try awaitStatus(orErrorFor: nil)
    }

    /// The next Status (an Error with request id `errorID` fails instead).
    private func awaitStatus(orErrorFor errorID: String?) throws -> Status {
        var poller = Poller()
        poller.add(socket)
        let deadline = Monotonic.now() + min(timeout, .seconds(5))
        while Monotonic.now() < deadline {
            let ready = try poller.poll(timeout: .milliseconds(200))
            guard ready[0].contains(.readable) else {
                try checkConnection(live: nil)
                continue
            }
            let inbound = try socket.receiveMessage(dontWait: true)
            if case .message(let incoming) = consume inbound {
                switch incoming.message {
                case .status(let s): return s
                case .error(let e) where errorID != nil && e.requestID == errorID:
                    throw ClusterError("the coordinator refused: \(e.message)")
                default: continue
                }
            }
        }
        throw ClusterError("no status from the coordinator at \(endpoint)")
    }

    /// The events of one request as an async stream (a new connection on a thread of its own).
    public static func stream(endpoint: String, submit: Submit, timeout: Duration = .seconds(120))
        -> AsyncThrowingStream<ClientEvent, Error>
    {
        AsyncThrowingStream { continuation in
            let thread = Thread {
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: timeout)
                    try client.submit(submit) { continuation.yield($0) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.start()
        }
    }
}
