import CProtobufC
import SquatProto

/// Every message of the squat wire protocol: the body of a `squat.v1.Envelope` frame.
///
/// `encoded()` packs one into an `Envelope` carrying `WireMessage.protocolVersion`;
/// `decode(_:)` turns any byte string into a message or a typed `WireError`, never a crash.
public enum WireMessage: Sendable, Hashable {
    // client ↔ coordinator
    case submit(Submit)
    case tokenEvent(TokenEvent)
    case finished(Finished)
    case error(ErrorReply)
    case cancel(Cancel)
    case statusRequest(StatusRequest)
    case status(Status)
    case drainRequest(DrainRequest)
    // worker ↔ coordinator control
    case register(Register)
    case registerReply(RegisterReply)
    case refuse(Refuse)
    case assign(Assign)
    case heartbeat(Heartbeat)
    case releaseSequence(ReleaseSequence)
    case drain(Drain)
    case exportCaches(ExportCaches)
    case cacheLayer(CacheLayer)
    case cachesImported(CachesImported)
    // data plane
    case stepBatch(StepBatch)
    case activations(Activations)
    case sampledTokens(SampledTokens)

    /// The protocol version this build speaks (`squat.v1.ProtocolVersion.PROTOCOL_VERSION_CURRENT`).
    public static let protocolVersion: UInt32 = 1

    /// The default limit on an encoded envelope: 4 MiB, far above any legitimate header (a
    /// 32k-token `StepBatch` is about 100 KB; tensors travel in their own frames). protobuf-c
    /// allocates 30–40× a frame's size while unpacking a run of empty sub-messages (two bytes
    /// each become a 56-byte struct plus a pointer), so this also bounds a hostile frame's memory.
    public static let defaultMaxSize = 4 << 20

    /// `ZMQ_MAXMSGSIZE` of sockets that carry no tensors (clients, control): libzmq drops a
    /// connection that sends a larger frame before it is ever buffered whole.
    public static let controlMaxSize = defaultMaxSize

    /// The proto name of the body, for logs.
    public var name: String {
        switch self {
        case .submit: Submit.protoName
        case .tokenEvent: TokenEvent.protoName
        case .finished: Finished.protoName
        case .error: ErrorReply.protoName
        case .cancel: Cancel.protoName
        case .statusRequest: StatusRequest.protoName
        case .status: Status.protoName
        case .drainRequest: DrainRequest.protoName
        case .register: Register.protoName
        case .registerReply: RegisterReply.protoName
        case .refuse: Refuse.protoName
        case .assign: Assign.protoName
        case .heartbeat: Heartbeat.protoName
        case .releaseSequence: ReleaseSequence.protoName
        case .drain: Drain.protoName
        case .exportCaches: ExportCaches.protoName
        case .cacheLayer: CacheLayer.protoName
        case .cachesImported: CachesImported.protoName
        case .stepBatch: StepBatch.protoName
        case .activations: Activations.protoName
        case .sampledTokens: SampledTokens.protoName
        }
    }

    /// The cluster epoch the message belongs to, for messages that carry one: frames of an
    /// old epoch are to be dropped, never applied.
    public var epoch: UInt64? {
        switch self {
        case .stepBatch(let m): m.epoch
        case .activations(let m): m.epoch
        case .sampledTokens(let m): m.epoch
        case .assign(let m): m.epoch
        case .heartbeat(let m): m.epoch
        case .releaseSequence(let m): m.epoch
        case .drain(let m): m.epoch
        case .exportCaches(let m): m.epoch
        case .cacheLayer(let m): m.epoch
        case .cachesImported(let m): m.epoch
        case .status(let m): m.epoch
        default: nil
        }
    }

    /// The header of the raw tensor frame that must follow this message, if any.
    public var tensorHeader: TensorHeader? {
        switch self {
        case .activations(let m): m.tensor
        case .stepBatch(let m): m.tensor
        case .cacheLayer(let m): m.blob
        default: nil
        }
    }

    // MARK: - Encode

    /// The message packed in an `Envelope`. Throws `frameTooLarge` beyond `maxSize` bytes and
    /// `invalidField` for strings protobuf-c cannot carry (an embedded NUL).
    public func encoded(maxSize: Int = WireMessage.defaultMaxSize) throws(WireError) -> [UInt8] {
        let arena = Arena()
        var envelope = Squat__V1__Envelope()
        squat__v1__envelope__init(&envelope)
        envelope.protocol_version = Self.protocolVersion
        switch self {
        case .submit(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_SUBMIT
            envelope.submit = try arena.message(m)
        case .tokenEvent(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_TOKEN_EVENT
            envelope.token_event = try arena.message(m)
        case .finished(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_FINISHED
            envelope.finished = try arena.message(m)
        case .error(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_ERROR
            envelope.error = try arena.message(m)
        case .cancel(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_CANCEL
            envelope.cancel = try arena.message(m)
        case .statusRequest(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_STATUS_REQUEST
            envelope.status_request = try arena.message(m)
        case .drainRequest(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_DRAIN_REQUEST
            envelope.drain_request = try arena.message(m)
        case .status(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_STATUS
            envelope.status = try arena.message(m)
        case .register(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_REGISTER
            envelope.register_ = try arena.message(m)
        case .registerReply(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_REGISTER_REPLY
            envelope.register_reply = try arena.message(m)
        case .refuse(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_REFUSE
            envelope.refuse = try arena.message(m)
        case .assign(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_ASSIGN
            envelope.assign = try arena.message(m)
        case .heartbeat(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_HEARTBEAT
            envelope.heartbeat = try arena.message(m)
        case .releaseSequence(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_RELEASE_SEQUENCE
            envelope.release_sequence = try arena.message(m)
        case .drain(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_DRAIN
            envelope.drain = try arena.message(m)
        case .exportCaches(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_EXPORT_CACHES
            envelope.export_caches = try arena.message(m)
        case .cacheLayer(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_CACHE_LAYER
            envelope.cache_layer = try arena.message(m)
        case .cachesImported(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_CACHES_IMPORTED
            envelope.caches_imported = try arena.message(m)
        case .stepBatch(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_STEP_BATCH
            envelope.step_batch = try arena.message(m)
        case .activations(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_ACTIVATIONS
            envelope.activations = try arena.message(m)
        case .sampledTokens(let m):
            envelope.body_case = SQUAT__V1__ENVELOPE__BODY_SAMPLED_TOKENS
            envelope.sampled_tokens = try arena.message(m)
        }
        // The C struct points into `arena`: keep it alive until packing is done.
        return try withExtendedLifetime(arena) { () throws(WireError) -> [UInt8] in
            let size = squat__v1__envelope__get_packed_size(&envelope)
            guard size <= maxSize else { throw .frameTooLarge(size: size, limit: maxSize) }
            var bytes = [UInt8](repeating: 0, count: size)
            let written = bytes.withUnsafeMutableBufferPointer { squat__v1__envelope__pack(&envelope, $0.baseAddress) }
            guard written == size else {
                throw .invalidField(
                    message: "squat.v1.Envelope", field: "body", reason: "packed \(written) of \(size) bytes")
            }
            return bytes
        }
    }

    // MARK: - Decode

    /// Decodes one `Envelope` frame. Every input gives a message or a typed error:
    /// `frameTooLarge` beyond `maxSize`, `malformedFrame` when protobuf-c cannot unpack it,
    /// `unsupportedVersion`, `unknownMessageType`, `missingField`, `invalidField`.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, maxSize: Int = WireMessage.defaultMaxSize
    ) throws(WireError) -> WireMessage {
        guard bytes.count <= maxSize else { throw .frameTooLarge(size: bytes.count, limit: maxSize) }
        var empty: UInt8 = 0
        let unpacked = withUnsafePointer(to: &empty) { emptyPointer in
            let data = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
            return squat__v1__envelope__unpack(nil, bytes.count, data)
        }
        guard let unpacked else { throw .malformedFrame(size: bytes.count) }
        defer { squat__v1__envelope__free_unpacked(unpacked, nil) }
        return try message(from: unpacked.pointee)
    }

    /// Decodes one `Envelope` frame; see `decode(_:maxSize:)` for the errors.
    public static func decode(_ bytes: [UInt8], maxSize: Int = WireMessage.defaultMaxSize) throws(WireError)
        -> WireMessage
    {
        let result: Result<WireMessage, WireError> = bytes.withUnsafeBytes { raw in
            do throws(WireError) {
                return .success(try decode(raw, maxSize: maxSize))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func message(from e: Squat__V1__Envelope) throws(WireError) -> WireMessage {
        guard e.protocol_version == protocolVersion else {
            throw .unsupportedVersion(received: e.protocol_version, supported: protocolVersion)
        }
        let name = "squat.v1.Envelope"
        switch e.body_case {
        case SQUAT__V1__ENVELOPE__BODY_SUBMIT: return .submit(try CRead.required(e.submit, name, "submit"))
        case SQUAT__V1__ENVELOPE__BODY_TOKEN_EVENT:
            return .tokenEvent(try CRead.required(e.token_event, name, "token_event"))
        case SQUAT__V1__ENVELOPE__BODY_FINISHED: return .finished(try CRead.required(e.finished, name, "finished"))
        case SQUAT__V1__ENVELOPE__BODY_ERROR: return .error(try CRead.required(e.error, name, "error"))
        case SQUAT__V1__ENVELOPE__BODY_CANCEL: return .cancel(try CRead.required(e.cancel, name, "cancel"))
        case SQUAT__V1__ENVELOPE__BODY_STATUS_REQUEST:
            return .statusRequest(try CRead.required(e.status_request, name, "status_request"))
        case SQUAT__V1__ENVELOPE__BODY_STATUS: return .status(try CRead.required(e.status, name, "status"))
        case SQUAT__V1__ENVELOPE__BODY_DRAIN_REQUEST:
            return .drainRequest(try CRead.required(e.drain_request, name, "drain_request"))
        case SQUAT__V1__ENVELOPE__BODY_REGISTER: return .register(try CRead.required(e.register_, name, "register"))
        case SQUAT__V1__ENVELOPE__BODY_REGISTER_REPLY:
            return .registerReply(try CRead.required(e.register_reply, name, "register_reply"))
        case SQUAT__V1__ENVELOPE__BODY_REFUSE: return .refuse(try CRead.required(e.refuse, name, "refuse"))
        case SQUAT__V1__ENVELOPE__BODY_ASSIGN: return .assign(try CRead.required(e.assign, name, "assign"))
        case SQUAT__V1__ENVELOPE__BODY_HEARTBEAT: return .heartbeat(try CRead.required(e.heartbeat, name, "heartbeat"))
        case SQUAT__V1__ENVELOPE__BODY_RELEASE_SEQUENCE:
            return .releaseSequence(try CRead.required(e.release_sequence, name, "release_sequence"))
        case SQUAT__V1__ENVELOPE__BODY_DRAIN: return .drain(try CRead.required(e.drain, name, "drain"))
        case SQUAT__V1__ENVELOPE__BODY_EXPORT_CACHES:
            return .exportCaches(try CRead.required(e.export_caches, name, "export_caches"))
        case SQUAT__V1__ENVELOPE__BODY_CACHE_LAYER:
            return .cacheLayer(try CRead.required(e.cache_layer, name, "cache_layer"))
        case SQUAT__V1__ENVELOPE__BODY_CACHES_IMPORTED:
            return .cachesImported(try CRead.required(e.caches_imported, name, "caches_imported"))
        case SQUAT__V1__ENVELOPE__BODY_STEP_BATCH:
            return .stepBatch(try CRead.required(e.step_batch, name, "step_batch"))
        case SQUAT__V1__ENVELOPE__BODY_ACTIVATIONS:
            return .activations(try CRead.required(e.activations, name, "activations"))
        case SQUAT__V1__ENVELOPE__BODY_SAMPLED_TOKENS:
            return .sampledTokens(try CRead.required(e.sampled_tokens, name, "sampled_tokens"))
        default:
            throw .unknownMessageType(unknownFields: Int(e.base.n_unknown_fields))
        }
    }
}
