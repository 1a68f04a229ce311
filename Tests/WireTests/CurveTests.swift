import Foundation
import Synchronization
import Testing

@testable import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// CURVE keys, key files and the ZAP handler, over real tcp sockets on 127.0.0.1.
@Suite("CURVE and ZAP", .serialized, .timeLimit(.minutes(2)))
struct CurveTests {
    private func temporaryDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squat-curve-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("libzmq has CURVE; generated pairs are distinct Z85 keys whose public half derives from the secret")
    func keyPairs() throws {
        #expect(Curve.isAvailable)
        let a = try CurveKeyPair.generate()
        let b = try CurveKeyPair.generate()
        #expect(a != b)
        #expect(Curve.isKey(a.publicKey) && Curve.isKey(a.secretKey))
        #expect(CurveKeyPair(secretKey: a.secretKey) == a)
        #expect(CurveKeyPair(secretKey: "not a key") == nil)
        #expect(!Curve.isKey(String(a.publicKey.dropLast())))
        #expect(!Curve.isKey(String(a.publicKey.dropLast()) + "\""))  // '"' is not in the Z85 alphabet
        #expect(!"\(a)".contains(a.secretKey), "a printed pair must not show its secret")
    }

    @Test("key files: NAME.key is 0600, the pair loads back, and bad files are named with the reason")
    func keyFiles() throws {
        let dir = try temporaryDirectory()
        let pair = try CurveKeyPair.generate()
        let files = try Curve.write(pair, directory: dir, name: "node1")
        var info = stat()
        #expect(stat(files.secretFile, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let loaded = try Curve.loadPair(directory: dir)
        #expect(loaded.name == "node1" && loaded.pair == pair)
        #expect(try Curve.readKey(file: files.publicFile) == pair.publicKey)

        // Never overwritten.
        #expect(throws: CurveKeyError.self) { try Curve.write(pair, directory: dir, name: "node1") }

        // A secret others can read is refused, naming the file and the fix.
        chmod(files.secretFile, 0o644)
        let open = #expect(throws: CurveKeyError.self) { try Curve.loadPair(directory: dir) }
        #expect(open?.path == files.secretFile && open?.reason.contains("chmod 600") == true)
        chmod(files.secretFile, 0o600)

        // A .pub that belongs to another secret.
        let other = try CurveKeyPair.generate()
        try "\(other.publicKey)\n".write(toFile: files.publicFile, atomically: false, encoding: .utf8)
        let mismatch = #expect(throws: CurveKeyError.self) { try Curve.loadPair(directory: dir) }
        #expect(mismatch?.path == files.publicFile && mismatch?.reason.contains("does not match") == true)

        // Garbage in a key file, an empty directory, two secrets.
        let junk = (dir as NSString).appendingPathComponent("junk.pub")
        try "# a comment\nhello world\n".write(toFile: junk, atomically: false, encoding: .utf8)
        let bad = #expect(throws: CurveKeyError.self) { try Curve.readKey(file: junk) }
        #expect(bad?.path == junk && bad?.reason.contains("not a CURVE key") == true)
        let empty = try temporaryDirectory()
        let none = #expect(throws: CurveKeyError.self) { try Curve.loadPair(directory: empty) }
        #expect(none?.reason.contains("squat keygen") == true)
        try Curve.write(other, directory: empty, name: "a")
        try Curve.write(pair, directory: empty, name: "b")
        let two = #expect(throws: CurveKeyError.self) { try Curve.loadPair(directory: empty) }
        #expect(two?.reason.contains("a.key, b.key") == true)
    }

    @Test(
        "loopback-only endpoints",
        arguments: [
            ("tcp://127.0.0.1:5555", true), ("tcp://localhost:1", true), ("tcp://[::1]:9", true),
            ("ipc:///tmp/x", true),
            ("inproc://a", true), ("tcp://0.0.0.0:5555", false), ("tcp://*:5555", false),
            ("tcp://10.0.0.2:7000", false),
            ("tcp://eth0:5555", false), ("tcp://[::]:5555", false),
        ])
    func localOnly(endpoint: String, local: Bool) {
        #expect(Curve.isLocalOnly(endpoint) == local)
    }

    /// A CURVE server ROUTER on a free port with a ZAP handler admitting `admitted`.
    private func server(
        _ context: Context, _ pair: CurveKeyPair, admitted: [String: String], receiveTimeout: Duration = .seconds(5),
        onReject: @escaping @Sendable (ZAPRequest) -> Void = { _ in }
    ) throws -> (Socket, ZAPHandler, String) {
        let zap = try ZAPHandler(context: context, keys: admitted, onReject: onReject)
        let router = try Socket(context, .router, options: pair.serverOptions + [.receiveTimeout(receiveTimeout)])
        let endpoint = try router.bind("tcp://127.0.0.1:0")
        return (router, zap, endpoint)
    }

    @Test("an admitted key gets through, encrypted, with its user id on every message")
    func admitted() throws {
        let context = try Context()
        let serverPair = try CurveKeyPair.generate()
        let clientPair = try CurveKeyPair.generate()
        let (router, zap, endpoint) = try server(context, serverPair, admitted: [clientPair.publicKey: "client:alice"])
        defer {
            router.close()
            zap.stop()
        }
        let clientContext = try Context()
        let dealer = try Socket(
            clientContext, .dealer, options: clientPair.clientOptions(server: serverPair.publicKey) + [.linger(.zero)])
        defer { dealer.close() }
        try dealer.connect(endpoint)
        _ = try dealer.send(.statusRequest(StatusRequest(includeSequences: true)))
        let inbound = try router.receiveMessage()
        guard case .message(let incoming) = consume inbound else {
            Issue.record("the admitted client's message did not arrive")
            return
        }
        #expect(incoming.userID == "client:alice")
        #expect(incoming.message == .statusRequest(StatusRequest(includeSequences: true)))
        #expect(zap.admissions >= 1 && zap.rejections == 0)
    }

    @Test(
        "an unknown key is refused: its monitor sees the auth failure, the server sees nothing, the handler counts it")
    func refused() throws {
        let context = try Context()
        let serverPair = try CurveKeyPair.generate()
        let known = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let refusedPeers = Mutex<[ZAPRequest]>([])
        let (router, zap, endpoint) = try server(
            context, serverPair, admitted: [known.publicKey: "client:known"], receiveTimeout: .seconds(2)
        ) { request in
            refusedPeers.withLock { $0.append(request) }
        }
        defer {
            router.close()
            zap.stop()
        }
        let clientContext = try Context()
        let dealer = try Socket(
            clientContext, .dealer, options: stranger.clientOptions(server: serverPair.publicKey) + [.linger(.zero)])
        defer { dealer.close() }
        let monitor = try dealer.monitor(events: [.handshakeFailedAuth, .handshakeSucceeded])
        defer { monitor.close() }
        try dealer.connect(endpoint)
        _ = try dealer.send(.statusRequest(StatusRequest()))
        let event = try monitor.next(timeout: .seconds(5))
        #expect(event?.kind == .handshakeFailedAuth, "got \(String(describing: event))")
        #expect(event?.value == 400)
        let inbound = try router.receiveMessage()
        if case .message = consume inbound { Issue.record("a refused key's message reached the server") }
        #expect(zap.rejections >= 1)
        let first = refusedPeers.withLock { $0.first }
        #expect(first?.publicKey == stranger.publicKey && first?.address == "127.0.0.1" && first?.mechanism == "CURVE")

        // Admitted later (as a worker's handler does when an Assign names its sender): it gets in.
        zap.admit(stranger.publicKey, userID: "upstream")
        #expect(zap.userID(of: stranger.publicKey) == "upstream")
        let again = try Socket(
            clientContext, .dealer, options: stranger.clientOptions(server: serverPair.publicKey) + [.linger(.zero)])
        defer { again.close() }
        try again.connect(endpoint)
        _ = try again.send(.statusRequest(StatusRequest()))
        let later = try router.receiveMessage()
        guard case .message(let incoming) = consume later else {
            Issue.record("the key admitted later did not get through")
            return
        }
        #expect(incoming.userID == "upstream")
    }

    @Test(
        "with a grace period, a key admitted while its handshake waits gets in; one never admitted is refused after it")
    func grace() throws {
        let context = try Context()
        let serverPair = try CurveKeyPair.generate()
        let late = try CurveKeyPair.generate()
        let never = try CurveKeyPair.generate()
        let zap = try ZAPHandler(context: context, grace: .seconds(2))
        let pull = try Socket(context, .pull, options: serverPair.serverOptions + [.receiveTimeout(.seconds(5))])
        let endpoint = try pull.bind("tcp://127.0.0.1:0")
        defer {
            pull.close()
            zap.stop()
        }
        let clientContext = try Context()
        let lateSocket = try Socket(
            clientContext, .push, options: late.clientOptions(server: serverPair.publicKey) + [.linger(.zero)])
        let neverSocket = try Socket(
            clientContext, .push, options: never.clientOptions(server: serverPair.publicKey) + [.linger(.zero)])
        defer {
            lateSocket.close()
            neverSocket.close()
        }
        let neverMonitor = try neverSocket.monitor(events: [.handshakeFailedAuth])
        defer { neverMonitor.close() }
        try lateSocket.connect(endpoint)
        try neverSocket.connect(endpoint)
        _ = try lateSocket.send(.statusRequest(StatusRequest()), dontWait: true)
        _ = try neverSocket.send(.statusRequest(StatusRequest()), dontWait: true)
        Thread.sleep(forTimeInterval: 0.5)
        zap.admit(late.publicKey, userID: "upstream")
        let inbound = try pull.receiveMessage()
        guard case .message(let incoming) = consume inbound else {
            Issue.record("the key admitted during its grace did not get through")
            return
        }
        #expect(incoming.userID == "upstream")
        let start = ContinuousClock.now
        let event = try neverMonitor.next(timeout: .seconds(5))
        #expect(event?.kind == .handshakeFailedAuth)
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(zap.rejections == 1 && zap.admissions == 1)
    }

    @Test("a client without CURVE, or with the wrong server key, never reaches a CURVE server")
    func mismatchedSecurity() throws {
        let context = try Context()
        let serverPair = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let (router, zap, endpoint) = try server(context, serverPair, admitted: [client.publicKey: "client:c"])
        defer {
            router.close()
            zap.stop()
        }
        let clientContext = try Context()
        let plain = try Socket(clientContext, .dealer, options: [.linger(.zero)])
        defer { plain.close() }
        let plainMonitor = try plain.monitor(events: [
            .handshakeFailedProtocol, .handshakeFailedNoDetail, .handshakeFailedAuth,
        ])
        defer { plainMonitor.close() }
        try plain.connect(endpoint)
        _ = try plain.send(.statusRequest(StatusRequest()))

        let impostor = try CurveKeyPair.generate()  // not the server's key
        let wrong = try Socket(
            clientContext, .dealer, options: client.clientOptions(server: impostor.publicKey) + [.linger(.zero)])
        defer { wrong.close() }
        try wrong.connect(endpoint)
        _ = try wrong.send(.statusRequest(StatusRequest()))

        let inbound = try router.receiveMessage()
        if case .message = consume inbound { Issue.record("a peer without the right keys got a message through") }
        let event = try plainMonitor.next(timeout: .seconds(5))
        #expect(event != nil, "the plain client's monitor saw no handshake failure")
    }
}
