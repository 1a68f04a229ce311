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
/// An unknown key may be given a grace period: its handshake waits (up to `grace`) for the key
/// to be admitted before it is refused. A pipeline stage needs that: its sender's key arrives
/// with the stage's Assign, which may be read after the sender, told its own Assign, knocks
/// (and libzmq does not retry a connection refused by ZAP).
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
        context: Context, keys: [String: String] = [:], grace: Duration = .zero,
        onReject: @escaping @Sendable (ZAPRequest) -> Void = { _ in }
    ) throws(WireError) {
        self.keys = Mutex(keys)
        let ready = DispatchSemaphore(value: 0)
        let bindError = Mutex<WireError?>(nil)
        let thread = Thread { [self] in
            let socket: Socket
            do throws(WireError) {
                // A ROUTER rather than a REP: answers may wait (grace) while later requests are served.
                socket = try Socket(context, .router, options: [.linger(.zero), .receiveTimeout(.milliseconds(50))])
                try socket.bind(Self.endpoint)
            } catch {
                bindError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            serve(socket, grace: grace, onReject: onReject)
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

    /// A request whose answer waits for its key to be admitted.
    private struct Pending {
        var envelope: [[UInt8]]
        var requestID: [UInt8]
        var request: ZAPRequest
        var deadline: ContinuousClock.Instant
    }

    private func serve(_ socket: Socket, grace: Duration, onReject: @Sendable (ZAPRequest) -> Void) {
        var pending: [Pending] = []
        func answer(_ envelope: [[UInt8]], _ requestID: [UInt8], _ request: ZAPRequest, user: String?, reason: String) {
            if user != nil {
                admitted.add(1, ordering: .relaxed)
            } else {
                rejected.add(1, ordering: .relaxed)
                onReject(request)
            }
            let status = user == nil ? "400" : "200"
            let reply: [[UInt8]] =
                envelope + [
                    Array("1.0".utf8), requestID, Array(status.utf8), Array(reason.utf8), Array((user ?? "").utf8), [],
                ]
            _ = try? socket.send(frames: reply, dontWait: true)
        }
        while !stopping.load(ordering: .relaxed) {
            // Parked requests: admitted since, or out of time.
            let now = ContinuousClock.now
            pending.removeAll { p in
                if let key = p.request.publicKey, let user = keys.withLock({ $0[key] }) {
                    answer(p.envelope, p.requestID, p.request, user: user, reason: "OK")
                    return true
                }
                if now >= p.deadline {
                    answer(p.envelope, p.requestID, p.request, user: nil, reason: "key not authorized")
                    return true
                }
                return false
            }
            let received: Received
            do {
                received = try socket.receive(maxFrames: 16)
            } catch {
                if case .contextTerminated = error { return }
                continue
            }
            guard case .message(let parts) = consume received else { continue }
            var frames = parts.allBytes
            // The routing id and the empty delimiter of libzmq's REQ-style request.
            guard let split = frames.firstIndex(where: \.isEmpty) else { continue }
            let envelope = Array(frames[...split])
            frames.removeFirst(split + 1)
            // RFC 27: version, request id, domain, address, identity, mechanism, credentials…
            let requestID = frames.count > 1 ? frames[1] : []
            guard frames.count >= 6, frames[0] == Array("1.0".utf8) else {
                answer(
                    envelope, requestID, ZAPRequest(domain: "", address: "", mechanism: "", publicKey: nil), user: nil,
                    reason: "malformed ZAP request")
                continue
            }
            var request = ZAPRequest(
                domain: String(decoding: frames[2], as: UTF8.self), address: String(decoding: frames[3], as: UTF8.self),
                mechanism: String(decoding: frames[5], as: UTF8.self), publicKey: nil)
            if request.mechanism == "CURVE", frames.count >= 7 { request.publicKey = Curve.z85(frames[6]) }
            guard let key = request.publicKey else {
                answer(envelope, requestID, request, user: nil, reason: "no CURVE key")
                continue
            }
            if let user = keys.withLock({ $0[key] }) {
                answer(envelope, requestID, request, user: user, reason: "OK")
            } else if grace > .zero {
                pending.append(
                    Pending(envelope: envelope, requestID: requestID, request: request, deadline: .now + grace))
            } else {
                answer(envelope, requestID, request, user: nil, reason: "key not authorized")
            }
        }
    }
}
