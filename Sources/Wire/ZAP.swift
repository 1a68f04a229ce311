import Foundation
import Synchronization

/// One ZAP request (RFC 27): who is knocking on a CURVE server socket of this context.
public struct ZAPRequest: Sendable, Equatable {
    /// The server socket's `ZMQ_ZAP_DOMAIN`.
    public var domain: String
    /// The peer's address (IP, as libzmq gives it).
    public var address: String
    /// The security mechanism ("CURVE", "NULL", "PLAIN").
    public var mechanism: String
    /// The peer's long-term CURVE public key, Z85; nil for other mechanisms.
    public var publicKey: String?
}

/// The ZAP handler of a context: admits the CURVE keys it was given and refuses everyone else.
///
/// Without a handler bound at `inproc://zeromq.zap.01`, libzmq lets any client key through
/// (CURVE then encrypts but does not authenticate), so the handler must be running before a
/// server socket of the context binds: `init` returns once it is.
///
/// Each admitted key carries a user id, which ZeroMQ attaches to the peer's messages as the
/// "User-Id" property (`Incoming.userID`): the coordinator tells workers from clients by it.
///
/// The handler's thread keeps it (and its context) alive until `stop()`.
public final class ZAPHandler: Sendable {
    /// The endpoint ZeroMQ sends ZAP requests to.
    public static let endpoint = "inproc://zeromq.zap.01"

    private let keys: Mutex<[String: String]>
    private let rejected = Atomic<UInt64>(0)
    private let admitted = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts the handler on `context` with `keys` (Z85 public key → user id). `onReject` runs
    /// on the handler's thread for each refused peer (to log it).
    public init(
        context: Context, keys: [String: String] = [:], onReject: @escaping @Sendable (ZAPRequest) -> Void = { _ in }
    ) throws(WireError) {
        self.keys = Mutex(keys)
        let ready = DispatchSemaphore(value: 0)
        let bindError = Mutex<WireError?>(nil)
        let thread = Thread { [self] in
            let socket: Socket
            do throws(WireError) {
                socket = try Socket(context, .rep, options: [.linger(.zero), .receiveTimeout(.milliseconds(100))])
                try socket.bind(Self.endpoint)
            } catch {
                bindError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            serve(socket, onReject: onReject)
            socket.close()
            finished.signal()
        }
        thread.name = "zap"
        thread.start()
        ready.wait()
        if let error = bindError.withLock({ $0 }) { throw error }
    }

    /// Stops the handler (waits up to a fraction of a second for its thread). Later peers get no
    /// answer, so their handshakes fail: call it only when the context's sockets are done.
    public func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        _ = finished.wait(timeout: .now() + .seconds(2))
    }

    /// Admits `publicKey` from now on, its messages labelled `userID`.
    public func admit(_ publicKey: String, userID: String) {
        keys.withLock { $0[publicKey] = userID }
    }

    /// The user id `publicKey` is admitted as, or nil.
    public func userID(of publicKey: String) -> String? {
        keys.withLock { $0[publicKey] }
    }

    /// Peers refused so far.
    public var rejections: UInt64 { rejected.load(ordering: .relaxed) }
    /// Peers admitted so far.
    public var admissions: UInt64 { admitted.load(ordering: .relaxed) }

    private func serve(_ socket: Socket, onReject: @Sendable (ZAPRequest) -> Void) {
        while !stopping.load(ordering: .relaxed) {
            let received: Received
            do {
                received = try socket.receive(maxFrames: 16)
            } catch {
                if case .contextTerminated = error { return }
                continue
            }
            guard case .message(let parts) = consume received else { continue }
            let frames = parts.allBytes
            // RFC 27: version, request id, domain, address, identity, mechanism, credentials…
            let requestID = frames.count > 1 ? frames[1] : []
            var request = ZAPRequest(domain: "", address: "", mechanism: "", publicKey: nil)
            var status = ("400", "malformed ZAP request", "")
            if frames.count >= 6, frames[0] == Array("1.0".utf8) {
                request.domain = String(decoding: frames[2], as: UTF8.self)
                request.address = String(decoding: frames[3], as: UTF8.self)
                request.mechanism = String(decoding: frames[5], as: UTF8.self)
                if request.mechanism == "CURVE", frames.count >= 7 { request.publicKey = Curve.z85(frames[6]) }
                if let key = request.publicKey, let user = keys.withLock({ $0[key] }) {
                    status = ("200", "OK", user)
                } else {
                    status = ("400", request.publicKey == nil ? "no CURVE key" : "key not authorized", "")
                }
            }
            if status.0 == "200" {
                admitted.add(1, ordering: .relaxed)
            } else {
                rejected.add(1, ordering: .relaxed)
                onReject(request)
            }
            let reply: [[UInt8]] = [
                Array("1.0".utf8), requestID, Array(status.0.utf8), Array(status.1.utf8), Array(status.2.utf8), [],
            ]
            _ = try? socket.send(frames: reply)
        }
    }
}
