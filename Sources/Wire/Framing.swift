/// A decoded message taken off a socket.
public struct Incoming: ~Copyable {
    /// The sender's routing id on a ROUTER socket; nil on other types.
    public let identity: [UInt8]?
    /// The decoded envelope body.
    public let message: WireMessage
    /// What the ZAP handler said of the sender ("User-Id"), on a CURVE server socket; nil
    /// without ZAP or over `inproc://`.
    public let userID: String?
    private var tensor: TensorFrame?

    init(identity: [UInt8]?, message: WireMessage, tensor: consuming TensorFrame?, userID: String? = nil) {
        self.identity = identity
        self.userID = userID
        self.message = message
        self.tensor = tensor
    }

    /// Whether a validated tensor frame came with the message (and has not been taken).
    public var hasTensor: Bool { tensor != nil }

    /// Moves the tensor frame out (to keep it, or forward it), leaving none behind.
    public mutating func takeTensor() -> TensorFrame? {
        tensor.take()
    }

    /// Calls `body` with the tensor frame, if there is one, without copying it.
    public func withTensor<R, E: Error>(_ body: (borrowing TensorFrame) throws(E) -> R) throws(E) -> R? {
        switch tensor {
        case .some(let frame): return try body(frame)
        case .none: return nil
        }
    }
}

/// The outcome of `Socket.receiveMessage()`.
public enum Inbound: ~Copyable {
    /// A well-formed message.
    case message(Incoming)
    /// Frames arrived but were refused (malformed envelope, wrong protocol version, tensor
    /// frame not matching its header, wrong frame count). They were read to the end and
    /// dropped; `identity` says whom to answer on a ROUTER.
    case rejected(identity: [UInt8]?, error: WireError)
    /// Nothing arrived within the receive timeout.
    case timeout
}

// Framing of the squat protocol over ZeroMQ, one message per multipart:
//
//     [routing id]  [Envelope]  [tensor]
//      ROUTER only   protobuf    raw, only after a header that describes one
//
// No empty delimiter frame: every peer is a DEALER, PUSH, PULL or PAIR that we write.

extension WireMessage {
    /// Checks a tensor frame of `frameBytes` bytes (nil: no frame) against this message: a
    /// frame exactly when there is a header, of the size the header promises, and for
    /// `Activations` with `shape[0]` equal to the rows' total token count.
    public func validateTensor(frameBytes: Int?) throws(WireError) {
        switch (tensorHeader, frameBytes) {
        case (nil, nil):
            return
        case (nil, let bytes?):
            throw .tensorMismatch(reason: "\(name) has no tensor header but a \(bytes)-byte frame follows")
        case (let header?, nil):
            throw .tensorMismatch(reason: "\(name) announces tensor \(header) but no frame follows")
        case (let header?, let bytes?):
            // Hidden states are f32 or f16; a shipped cache layer is opaque bytes.
            let allowed: [DType] = if case .cacheLayer = self { [.u8] } else { [.f32, .f16] }
            guard allowed.contains(header.dtype) else {
                throw .tensorMismatch(reason: "\(name) does not carry \(header.dtype) tensors")
            }
            try header.validate(frameBytes: bytes)
            if case .activations(let m) = self, !m.rows.isEmpty {
                let tokens = tokenCount(m.rows)
                guard UInt64(header.shape[0]) == tokens else {
                    throw .tensorMismatch(
                        reason: "shape \(header.shape) has \(header.shape[0]) rows, the batch \(tokens) tokens")
                }
            }
        }
    }
}

extension Socket {
    /// Encodes and sends `message`, then the raw `tensor` frame if given.
    ///
    /// A ROUTER needs the peer's routing id in `identity`; other types must not get one. The
    /// tensor is checked against the message's header before anything is sent
    /// (`tensorMismatch`). Zero-copy tensors: build `tensor` with `Message(zeroCopy:)`.
    public func send(
        _ message: WireMessage, tensor: consuming Message? = nil, to identity: [UInt8]? = nil,
        dontWait: Bool = false, maxSize: Int = WireMessage.defaultMaxSize
    ) throws(WireError) -> SendResult {
        switch (type, identity) {
        case (.router, nil): throw .invalidUse("a ROUTER send needs the peer's routing id")
        case (.router, _?), (_, nil): break
        case (_, _?): throw .invalidUse("only a ROUTER send takes a routing id (this is \(type))")
        }
        var parts = Multipart()
        if let identity { parts.append(try Message(bytes: identity)) }
        parts.append(try Message(bytes: try message.encoded(maxSize: maxSize)))
        switch consume tensor {
        case .some(let frame):
            try message.validateTensor(frameBytes: frame.count)
            parts.append(frame)
        case .none:
            try message.validateTensor(frameBytes: nil)
        }
        return try send(parts, dontWait: dontWait)
    }

    /// Receives one message and decodes it. Socket failures throw; a peer's bad frames come
    /// back as `.rejected`, so a server can count them and answer the sender.
    public func receiveMessage(dontWait: Bool = false, maxSize: Int = WireMessage.defaultMaxSize) throws(WireError)
        -> Inbound
    {
        let routed = type == .router
        let maxFrames = routed ? 3 : 2
        let received: Received
        do {
            received = try receive(dontWait: dontWait, maxFrames: maxFrames)
        } catch {
            if case .unexpectedFrames = error { return .rejected(identity: nil, error: error) }
            throw error
        }
        switch consume received {
        case .timeout:
            return .timeout
        case .message(let parts):
            return Inbound.assemble(parts, routed: routed, maxSize: maxSize)
        }
    }
}

extension Inbound {
    /// Turns the frames of one multipart message, as received, into a message or a rejection:
    /// the routing id first when `routed` (a ROUTER), then the `Envelope` (at most `maxSize`
    /// bytes), then a tensor frame exactly when the envelope's header announces one, of the
    /// size it promises (`WireMessage.validateTensor`). More frames than that are
    /// `unexpectedFrames` without an identity, as `Socket.receive` reports them.
    static func assemble(_ parts: consuming Multipart, routed: Bool, maxSize: Int) -> Inbound {
        let maxFrames = routed ? 3 : 2
        guard parts.count <= maxFrames else {
            return .rejected(
                identity: nil, error: .unexpectedFrames(expected: "at most \(maxFrames)", received: parts.count))
        }
        var identity: [UInt8]? = nil
        if routed { identity = parts.removeFirst()?.bytes ?? [] }
        guard parts.count >= 1 else {
            return .rejected(
                identity: identity, error: .unexpectedFrames(expected: "1 or 2 after the routing id", received: 0))
        }
        let userID = parts.property("User-Id", at: 0).flatMap { $0.isEmpty ? nil : $0 }
        let decoded: WireMessage
        do {
            decoded = try parts.withFrame(at: 0) { raw throws(WireError) in
                try WireMessage.decode(raw, maxSize: maxSize)
            }
        } catch {
            return .rejected(identity: identity, error: error)
        }
        let tensorBytes: Int? = parts.count == 2 ? parts.frameSizes[1] : nil
        do {
            try decoded.validateTensor(frameBytes: tensorBytes)
        } catch {
            return .rejected(identity: identity, error: error)
        }
        guard let header = decoded.tensorHeader else {
            return .message(Incoming(identity: identity, message: decoded, tensor: nil, userID: userID))
        }
        _ = parts.removeFirst()  // the envelope, already decoded
        guard let frame = parts.removeFirst() else {
            return .rejected(identity: identity, error: .tensorMismatch(reason: "tensor frame vanished"))
        }
        do {
            let tensor = try TensorFrame(header: header, frame: frame)
            return .message(Incoming(identity: identity, message: decoded, tensor: tensor, userID: userID))
        } catch {
            return .rejected(identity: identity, error: error)
        }
    }
}
