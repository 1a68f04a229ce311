import CZeroMQ
import Foundation
import Synchronization
import Testing

@testable import Wire

/// Real sockets over inproc and tcp loopback (127.0.0.1 only). Every receive has a timeout, so
/// a broken transport fails a test instead of hanging it. Serialized: the timing checks should
/// not compete with each other for the two cores.
@Suite("Sockets", .serialized, .timeLimit(.minutes(1)))
struct SocketTests {
    let context: Context
    /// Generous bound on any single wait in these tests.
    let patience: SocketOption = .receiveTimeout(.seconds(5))

    init() throws {
        context = try Context()
    }

    @Test("multipart messages keep their frames and order over inproc")
    func multipartInproc() throws {
        let endpoint = uniqueInproc("multipart")
        let a = try Socket(context, .pair, options: [patience])
        let b = try Socket(context, .pair, options: [patience])
        try a.bind(endpoint)
        try b.connect(endpoint)
        let frames: [[UInt8]] = [Array("first".utf8), [], Array(repeating: 0xAB, count: 100_000), [0]]
        #expect(try a.send(frames: frames) == .sent)
        #expect(try receiveFrames(b) == frames)
    }

    @Test("binding tcp://127.0.0.1:0 reports the port the system chose")
    func bindPortZero() throws {
        let socket = try Socket(context, .pull)
        let bound = try socket.bind("tcp://127.0.0.1:0")
        #expect(bound.hasPrefix("tcp://127.0.0.1:"))
        let port = Int(bound.split(separator: ":").last ?? "") ?? 0
        #expect(port > 0 && port < 65536)
        #expect(try socket.lastEndpoint == bound)
        #expect(socket.endpoint == bound)
    }

    @Test("zero-copy tensor frames arrive intact over tcp and their owners are released")
    func zeroCopyOverTCP() throws {
        let pull = try Socket(context, .pull, options: [patience])
        let endpoint = try pull.bind("tcp://127.0.0.1:0")
        let push = try Socket(context, .push)
        try push.connect(endpoint)

        let counter = ReleaseCounter()
        var rng = SplitMix64(seed: 7)
        var sent: [[UInt8]] = []
        for i in 0..<3 {
            let words = (0..<(1 << 17) + 1).map { _ in rng.next() }
            let payload = words.withUnsafeBytes { Array($0.prefix((1 << 20) + i)) }
            sent.append(payload)
            let owner = CountedBuffer(bytes: payload, counter: counter)
            var parts = Multipart()
            parts.append(try Message(bytes: [UInt8(i)]))
            parts.append(try Message(zeroCopy: UnsafeRawBufferPointer(owner.buffer.bytes), owner: owner))
            #expect(try push.send(parts) == .sent)
        }
        for i in 0..<3 {
            let frames = try receiveFrames(pull)
            try #require(frames.count == 2)
            #expect(frames[0] == [UInt8(i)])
            #expect(frames[1] == sent[i], "frame \(i): bytes changed in transit")
        }
        // ZeroMQ releases each owner from its I/O thread once the bytes are written.
        #expect(counter.wait(for: 3) == 3)
    }

    @Test("a zero-copy frame that is never sent releases its owner exactly once")
    func unsentZeroCopy() throws {
        let counter = ReleaseCounter()
        do {
            let owner = CountedBuffer(bytes: [1, 2, 3], counter: counter)
            let message = try Message(zeroCopy: UnsafeRawBufferPointer(owner.buffer.bytes), owner: owner)
            #expect(message.bytes == [1, 2, 3])
            // Zero-copy: the frame's data is the owner's memory, not a copy.
            let frameAddress = message.withUnsafeBytes { UnsafeRawPointer($0.baseAddress) }
            #expect(frameAddress == UnsafeRawPointer(owner.buffer.bytes.baseAddress))
            #expect(counter.value == 0)
        }
        #expect(counter.wait(for: 1) == 1)
        usleep(20_000)
        #expect(counter.value == 1)
    }

    @Test("a WireMessage with an f32 tensor goes through send/receiveMessage over tcp")
    func messageWithTensor() throws {
        let pull = try Socket(context, .pull, options: [patience])
        let endpoint = try pull.bind("tcp://127.0.0.1:0")
        let push = try Socket(context, .push)
        try push.connect(endpoint)

        let values: [Float] = (0..<12).map { Float($0) * 0.5 - 2 }
        let rows = [
            BatchRow(sequenceID: 1, startPosition: 0, count: 2), BatchRow(sequenceID: 2, startPosition: 7, count: 1),
        ]
        let header = Activations(
            epoch: 5, microBatchID: 9, rows: rows, tensor: TensorHeader(dtype: .f32, shape: [3, 4]))
        let buffer = TensorBuffer(floats: values)
        #expect(try push.send(.activations(header), tensor: Message(zeroCopy: buffer)) == .sent)

        switch try pull.receiveMessage() {
        case .message(let incoming):
            #expect(incoming.identity == nil)
            #expect(incoming.message == .activations(header))
            let floats = incoming.withTensor { $0.floats() }
            let byteCount = incoming.withTensor { $0.byteCount }
            #expect(floats == values)
            #expect(byteCount == 48)
        case .rejected(_, let error):
            Issue.record("rejected: \(error)")
        case .timeout:
            Issue.record("timed out")
        }
    }

    @Test("an f16 tensor frame widens to the right floats")
    func halfTensor() throws {
        let endpoint = uniqueInproc("f16")
        let pull = try Socket(context, .pull, options: [patience])
        try pull.bind(endpoint)
        let push = try Socket(context, .push)
        try push.connect(endpoint)
        let halves: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x0000]  // 1, -2, 0.5, 0
        let bytes = halves.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let message = WireMessage.activations(
            Activations(epoch: 1, microBatchID: 1, rows: [], tensor: TensorHeader(dtype: .f16, shape: [2, 2])))
        #expect(try push.send(message, tensor: Message(bytes: bytes)) == .sent)
        switch try pull.receiveMessage() {
        case .message(var incoming):
            guard let tensor = incoming.takeTensor() else {
                Issue.record("no tensor frame")
                return
            }
            let stillThere = incoming.hasTensor
            #expect(!stillThere)
            let floats = tensor.floats()
            let header = tensor.header
            #expect(floats == [1, -2, 0.5, 0])
            #expect(header == TensorHeader(dtype: .f16, shape: [2, 2]))
        case .rejected(_, let error): Issue.record("rejected: \(error)")
        case .timeout: Issue.record("timed out")
        }
    }

    @Test("a tensor frame that does not match its header is refused on both sides")
    func tensorMismatch() throws {
        let endpoint = uniqueInproc("mismatch")
        let pull = try Socket(context, .pull, options: [.receiveTimeout(.milliseconds(300))])
        try pull.bind(endpoint)
        let push = try Socket(context, .push)
        try push.connect(endpoint)
        let message = WireMessage.activations(
            Activations(epoch: 1, microBatchID: 1, rows: [], tensor: TensorHeader(dtype: .f32, shape: [3, 4])))

        // The sender checks before sending anything.
        #expect(throws: WireError.tensorMismatch(reason: "f32[3, 4] needs 48 bytes, the frame has 40")) {
            try push.send(message, tensor: Message(bytes: [UInt8](repeating: 0, count: 40)))
        }
        #expect(throws: WireError.self) { try push.send(message) }
        switch try pull.receiveMessage() {
        case .timeout: break
        default: Issue.record("a refused send reached the receiver")
        }

        // Hand-made frames from a peer that does not check: the receiver refuses them.
        #expect(try push.send(frames: [try message.encoded(), [UInt8](repeating: 0, count: 40)]) == .sent)
        switch try pull.receiveMessage() {
        case .rejected(let identity, let error):
            #expect(identity == nil)
            #expect(error == .tensorMismatch(reason: "f32[3, 4] needs 48 bytes, the frame has 40"))
        default: Issue.record("expected a rejection")
        }
        // A tensor frame after a message without a header, and a missing frame, are refused too.
        #expect(
            try push.send(frames: [try WireMessage.cancel(Cancel(requestID: "r")).encoded(), [1, 2, 3, 4]]) == .sent)
        guard case .rejected(_, .tensorMismatch) = try pull.receiveMessage() else {
            Issue.record("expected a tensorMismatch rejection")
            return
        }
        #expect(try push.send(frames: [try message.encoded()]) == .sent)
        guard case .rejected(_, .tensorMismatch) = try pull.receiveMessage() else {
            Issue.record("expected a tensorMismatch rejection")
            return
        }
    }

    @Test("ROUTER/DEALER: the router sees each dealer's routing id and replies reach the right dealer")
    func routerDealer() throws {
        let router = try Socket(context, .router, options: [patience])
        let endpoint = try router.bind("tcp://127.0.0.1:0")
        let a = try Socket(context, .dealer, options: [patience, .routingID(Array("worker-A".utf8))])
        let b = try Socket(context, .dealer, options: [patience, .routingID(Array("worker-B".utf8))])
        try a.connect(endpoint)
        try b.connect(endpoint)

        #expect(try a.send(.register(Register(workerID: "A", modelFingerprint: "m"))) == .sent)
        #expect(try b.send(.register(Register(workerID: "B", modelFingerprint: "m"))) == .sent)

        var seen: [String: String] = [:]
        for _ in 0..<2 {
            switch try router.receiveMessage() {
            case .message(let incoming):
                guard case .register(let register) = incoming.message else {
                    Issue.record("unexpected \(incoming.message.name)")
                    continue
                }
                seen[String(decoding: incoming.identity ?? [], as: UTF8.self)] = register.workerID
            case .rejected(_, let error): Issue.record("rejected: \(error)")
            case .timeout: Issue.record("timed out")
            }
        }
        #expect(seen == ["worker-A": "A", "worker-B": "B"])

        // Replies addressed by routing id, in the opposite order.
        for (id, name) in [("worker-B", "B"), ("worker-A", "A")] {
            let reply = WireMessage.registerReply(RegisterReply(workerID: name, heartbeatIntervalMs: 1000))
            #expect(try router.send(reply, to: Array(id.utf8)) == .sent)
        }
        for (dealer, name) in [(a, "A"), (b, "B")] {
            switch try dealer.receiveMessage() {
            case .message(let incoming):
                #expect(incoming.message == .registerReply(RegisterReply(workerID: name, heartbeatIntervalMs: 1000)))
            case .rejected(_, let error): Issue.record("rejected: \(error)")
            case .timeout: Issue.record("\(name) timed out")
            }
        }
    }

    @Test("ROUTER_MANDATORY (on by default) makes a send to an unknown peer hostUnreachable")
    func routerMandatory() throws {
        let router = try Socket(context, .router)
        try router.bind(uniqueInproc("mandatory"))
        #expect(throws: WireError.hostUnreachable(socket: .router, identity: Array("nobody".utf8))) {
            try router.send(.cancel(Cancel(requestID: "r")), to: Array("nobody".utf8))
        }
        #expect(throws: WireError.invalidUse("a ROUTER send needs the peer's routing id")) {
            try router.send(.cancel(Cancel(requestID: "r")))
        }
    }

    @Test("a router answers undecodable frames with the sender's routing id")
    func routerRejectsGarbage() throws {
        let router = try Socket(context, .router, options: [patience])
        let endpoint = uniqueInproc("garbage")
        try router.bind(endpoint)
        let dealer = try Socket(context, .dealer, options: [.routingID(Array("bad".utf8))])
        try dealer.connect(endpoint)
        #expect(try dealer.send(frames: [[0x0A, 0xFF, 0xFF]]) == .sent)
        switch try router.receiveMessage() {
        case .rejected(let identity, let error):
            #expect(identity == Array("bad".utf8))
            #expect(error == .malformedFrame(size: 3))
        default: Issue.record("expected a rejection")
        }
    }

    @Test("poll returns nothing when its timeout passes, and reports the ready socket")
    func poll() throws {
        let first = uniqueInproc("poll-1")
        let second = uniqueInproc("poll-2")
        let a = try Socket(context, .pull)
        let b = try Socket(context, .pull)
        try a.bind(first)
        try b.bind(second)
        var poller = Poller()
        poller.add(a)
        poller.add(b)

        let clock = ContinuousClock()
        let start = clock.now
        let idle = try poller.poll(timeout: .milliseconds(150))
        let elapsed = clock.now - start
        #expect(idle == [[], []])
        #expect(elapsed >= .milliseconds(140), "returned early: \(elapsed)")
        #expect(elapsed < .seconds(2), "returned late: \(elapsed)")

        let push = try Socket(context, .push)
        try push.connect(second)
        #expect(try push.send(frames: [[1]]) == .sent)
        let readyStart = clock.now
        let ready = try poller.poll(timeout: .seconds(5))
        #expect(ready == [[], .readable])
        #expect(clock.now - readyStart < .seconds(2))
    }

    @Test("ZMQ_RCVTIMEO expiry is reported as .timeout, in time")
    func receiveTimeout() throws {
        let socket = try Socket(context, .pull, options: [.receiveTimeout(.milliseconds(200))])
        try socket.bind(uniqueInproc("rcvtimeo"))
        let clock = ContinuousClock()
        let start = clock.now
        let result = try socket.receive()
        let elapsed = clock.now - start
        guard case .timeout = consume result else {
            Issue.record("expected a timeout")
            return
        }
        #expect(elapsed >= .milliseconds(190), "returned early: \(elapsed)")
        #expect(elapsed < .seconds(2), "returned late: \(elapsed)")
        // Non-blocking receive: a timeout at once.
        guard case .timeout = try socket.receive(dontWait: true) else {
            Issue.record("expected a timeout")
            return
        }
        #expect(try socket.receiveMessage(dontWait: true).isTimeout)
    }

    @Test("ZMQ_MAXMSGSIZE drops an oversize message; smaller ones still arrive")
    func maxMessageSize() throws {
        let pull = try Socket(context, .pull, options: [.maxMessageSize(1024), .receiveTimeout(.milliseconds(500))])
        let endpoint = try pull.bind("tcp://127.0.0.1:0")
        let push = try Socket(context, .push, options: [.reconnectInterval(.milliseconds(20))])
        try push.connect(endpoint)

        #expect(try push.send(frames: [[UInt8](repeating: 7, count: 4096)]) == .sent)
        guard case .timeout = try pull.receive() else {
            Issue.record("the oversize message was delivered")
            return
        }
        // The receiver dropped the connection; the sender reconnects and a small frame passes.
        try pull.set(.receiveTimeout(.seconds(5)))
        #expect(try push.send(frames: [[UInt8](repeating: 8, count: 1000)]) == .sent)
        #expect(try receiveFrames(pull) == [[UInt8](repeating: 8, count: 1000)])
    }

    @Test("the monitor reports connected, then disconnected when the peer goes away")
    func monitor() throws {
        let router = try Socket(context, .router)
        let endpoint = try router.bind("tcp://127.0.0.1:0")
        let dealer = try Socket(context, .dealer, options: [.reconnectInterval(.milliseconds(50))])
        let monitor = try dealer.monitor()
        try dealer.connect(endpoint)

        let connected = try monitor.wait(for: .connected, timeout: .seconds(5))
        #expect(connected?.endpoint == endpoint)
        #expect(try monitor.wait(for: .handshakeSucceeded, timeout: .seconds(5)) != nil)

        router.close()
        let disconnected = try monitor.wait(for: .disconnected, timeout: .seconds(5))
        #expect(disconnected?.endpoint == endpoint)
        monitor.close()
    }

    @Test("the monitor reports a failed handshake with a non-ZMTP peer")
    func monitorHandshakeFailure() throws {
        // A ROUTER that speaks ZMTP to a plain TCP listener that answers garbage.
        let listener = try Socket(context, .router, options: [.handshakeInterval(.milliseconds(300))])
        let monitor = try listener.monitor()
        let endpoint = try listener.bind("tcp://127.0.0.1:0")
        let port = UInt16(endpoint.split(separator: ":").last ?? "") ?? 0
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { Foundation.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(status == 0)
        let junk = [UInt8](repeating: 0x42, count: 64)
        _ = junk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let accepted = try monitor.wait(for: .accepted, timeout: .seconds(5))
        #expect(accepted != nil)
        var failed: MonitorEvent? = nil
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        while failed == nil, clock.now < deadline, let event = try monitor.next(timeout: .seconds(1)) {
            if [.handshakeFailedProtocol, .handshakeFailedNoDetail].contains(event.kind) { failed = event }
        }
        #expect(failed != nil, "no handshake failure reported")
    }

    @Test("a closed socket says so; a failed bind names the socket, endpoint and errno")
    func errors() throws {
        let first = try Socket(context, .pull)
        let endpoint = try first.bind("tcp://127.0.0.1:0")
        let second = try Socket(context, .pull)
        do {
            try second.bind(endpoint)
            Issue.record("a second bind to \(endpoint) succeeded")
        } catch {
            #expect(error.errno == EADDRINUSE)
            if case .zmq(let operation, let socket, let where_, _, let text) = error {
                #expect(operation == "bind")
                #expect(socket == .pull)
                #expect(where_ == endpoint)
                #expect(!text.isEmpty)
            } else {
                Issue.record("unexpected \(error)")
            }
        }
        second.close()
        second.close()
        #expect(second.isClosed)
        #expect(throws: WireError.socketClosed(operation: "send", socket: .pull)) { try second.send(frames: [[1]]) }
        #expect(throws: WireError.socketClosed(operation: "receive", socket: .pull)) {
            _ = try second.receive().isTimeout
        }
        #expect(throws: WireError.self) { try Socket(context, .dealer).connect("nonsense://x") }
    }

    @Test("every socket option can be set, and reads back where ZeroMQ reports it")
    func options() throws {
        let router = try Socket(context, .router)
        let all: [SocketOption] = [
            .linger(.milliseconds(250)), .linger(nil), .linger(.zero), .sendHighWaterMark(10),
            .receiveHighWaterMark(20),
            .receiveTimeout(.milliseconds(1500)), .receiveTimeout(nil), .sendTimeout(.microseconds(1)),
            .routerMandatory(false), .maxMessageSize(1 << 20), .maxMessageSize(nil), .immediate(true),
            .heartbeatInterval(.seconds(1)), .heartbeatTimeout(.seconds(3)), .heartbeatTTL(.seconds(5)),
            .routingID([1, 2, 3]), .reconnectInterval(.milliseconds(100)), .reconnectIntervalMax(.seconds(5)),
            .connectTimeout(.seconds(2)), .handshakeInterval(.seconds(10)),
        ]
        for option in all { try router.set(option) }
        #expect(try router.intOption(ZMQ_SNDHWM) == 10)
        #expect(try router.intOption(ZMQ_RCVHWM) == 20)
        #expect(try router.intOption(ZMQ_RCVTIMEO) == -1)
        #expect(try router.intOption(ZMQ_SNDTIMEO) == 1)  // rounded up to a whole millisecond
        #expect(try router.intOption(ZMQ_LINGER) == 0)
        // ZeroMQ validates values: a routing id may not be empty.
        #expect(throws: WireError.self) { try router.set(.routingID([])) }
        // A new socket lingers 1 s, not forever.
        #expect(try Socket(context, .push).intOption(ZMQ_LINGER) == 1000)
    }

    @Test("a message with more frames than the protocol allows is drained and refused")
    func tooManyFrames() throws {
        let endpoint = uniqueInproc("frames")
        let pull = try Socket(context, .pull, options: [patience])
        try pull.bind(endpoint)
        let push = try Socket(context, .push)
        try push.connect(endpoint)
        #expect(try push.send(frames: [[1], [2], [3]]) == .sent)
        #expect(try push.send(frames: [try WireMessage.cancel(Cancel(requestID: "after")).encoded()]) == .sent)
        switch try pull.receiveMessage() {
        case .rejected(_, let error): #expect(error == .unexpectedFrames(expected: "at most 2", received: 3))
        default: Issue.record("expected a rejection")
        }
        // The next message is intact: the refused one was read to its end.
        switch try pull.receiveMessage() {
        case .message(let incoming): #expect(incoming.message == .cancel(Cancel(requestID: "after")))
        default: Issue.record("expected the next message")
        }
    }

    @Test("a blocked receive interrupted by signals (EINTR) retries and still gets its message")
    func interruptedReceive() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: blocking calls fail with EINTR
        sigaction(SIGUSR1, &action, nil)

        let endpoint = uniqueInproc("eintr")
        let outcome = Outcome()
        let received = Atomic<Int>(0)
        let receiverThread = Atomic<UInt>(0)
        let context = self.context
        let thread = Thread {
            do {
                let socket = try Socket(context, .pull, options: [.receiveTimeout(.seconds(10))])
                try socket.bind(endpoint)
                // The test runner's threads start with signals blocked: let SIGUSR1 in here.
                var mask = sigset_t()
                sigemptyset(&mask)
                sigaddset(&mask, SIGUSR1)
                pthread_sigmask(SIG_UNBLOCK, &mask, nil)
                receiverThread.store(UInt(pthread_self()), ordering: .releasing)
                switch try socket.receive() {
                case .message(let parts): received.store(parts.bytes(at: 0)?.count ?? -1, ordering: .releasing)
                case .timeout: break
                }
                outcome.finish(nil)
            } catch {
                outcome.finish(error as? WireError ?? .invalidUse("\(error)"))
            }
        }
        thread.start()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        while receiverThread.load(ordering: .acquiring) == 0 && clock.now < deadline { usleep(1000) }
        try #require(receiverThread.load(ordering: .acquiring) != 0)
        usleep(50_000)  // let it block in zmq_msg_recv
        for _ in 0..<5 {
            pthread_kill(pthread_t(receiverThread.load(ordering: .acquiring)), SIGUSR1)
            usleep(20_000)
        }
        let push = try Socket(context, .push)
        try push.connect(endpoint)
        #expect(try push.send(frames: [[UInt8](repeating: 1, count: 42)]) == .sent)
        #expect(outcome.wait(timeout: .seconds(5)) == .some(nil), "the receive did not finish cleanly")
        #expect(received.load(ordering: .acquiring) == 42)
    }

    @Test("Context.shutdown wakes a receive blocked in another thread with contextTerminated")
    func shutdownUnblocks() throws {
        let context = try Context()
        let outcome = Outcome()
        let endpoint = uniqueInproc("shutdown")
        let thread = Thread {
            do {
                let socket = try Socket(context, .pull)  // no receive timeout: blocks until shutdown
                try socket.bind(endpoint)
                _ = try socket.receive().isTimeout
                outcome.finish(nil)
            } catch {
                outcome.finish(error as? WireError ?? .invalidUse("\(error)"))
            }
        }
        thread.start()
        usleep(100_000)
        context.shutdown()
        #expect(outcome.wait(timeout: .seconds(5)) == .contextTerminated(operation: "msg_recv(frame 1)", socket: .pull))
    }
}

/// The result of a background receive, handed back across threads.
private final class Outcome: Sendable {
    private let state = Mutex<WireError?>(nil)
    private let done = Atomic<Bool>(false)

    func finish(_ error: WireError?) {
        state.withLock { $0 = error }
        done.store(true, ordering: .releasing)
    }

    /// The error the thread finished with: `.some(nil)` for success, nil if it did not finish.
    func wait(timeout: Duration) -> WireError?? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !done.load(ordering: .acquiring) && clock.now < deadline { usleep(1000) }
        guard done.load(ordering: .acquiring) else { return nil }
        return .some(state.withLock { $0 })
    }
}

extension Received {
    var isTimeout: Bool {
        switch self {
        case .timeout: true
        case .message: false
        }
    }
}

extension Inbound {
    var isTimeout: Bool {
        switch self {
        case .timeout: true
        default: false
        }
    }
}
