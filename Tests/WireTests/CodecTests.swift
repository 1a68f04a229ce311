import SquatProto
import Testing

@testable import Wire

@Suite("Envelope codec", .timeLimit(.minutes(1)))
struct CodecTests {
    @Test("every message type survives encode → decode unchanged", arguments: sampleMessages())
    func roundTrip(_ message: WireMessage) throws {
        let bytes = try message.encoded()
        let decoded = try WireMessage.decode(bytes)
        #expect(decoded == message)
        // Encoding is deterministic: the decoded value packs to the same bytes.
        #expect(try decoded.encoded() == bytes)
    }

    @Test("the samples cover every body of the Envelope")
    func samplesCoverEveryType() {
        let names = Set(sampleMessages().map(\.name))
        // The Envelope's fields: protocol_version, then one per body.
        let bodies = Int(squat__v1__envelope__descriptor.n_fields) - 1
        #expect(names.count == bodies, "covered: \(names.sorted())")
    }

    @Test("a frame carries the protocol version in field 1")
    func versionOnTheWire() throws {
        let bytes = try WireMessage.cancel(Cancel(requestID: "r")).encoded()
        #expect(Array(bytes.prefix(2)) == [0x08, UInt8(WireMessage.protocolVersion)])
    }

    @Test("data and control messages expose their epoch")
    func epochs() {
        #expect(WireMessage.sampledTokens(SampledTokens(epoch: 9, microBatchID: 1, tokens: [])).epoch == 9)
        #expect(WireMessage.assign(Assign(epoch: 5, layers: LayerRange())).epoch == 5)
        #expect(WireMessage.cancel(Cancel(requestID: "r")).epoch == nil)
    }

    // MARK: - Typed errors

    @Test("another protocol version is unsupportedVersion")
    func wrongVersion() throws {
        var cancel = ProtoWriter()
        cancel.lengthDelimited(1, Array("r".utf8))
        let frame = ProtoWriter.envelope(version: 2, field: 14, body: cancel.bytes)
        #expect(throws: WireError.unsupportedVersion(received: 2, supported: 1)) { try WireMessage.decode(frame) }
    }

    @Test("an empty frame is refused (version 0)")
    func emptyFrame() {
        #expect(throws: WireError.unsupportedVersion(received: 0, supported: 1)) { try WireMessage.decode([]) }
    }

    @Test("an envelope with a body this build does not know is unknownMessageType")
    func unknownBody() {
        let frame = ProtoWriter.envelope(field: 99, body: [0x08, 0x01])
        #expect(throws: WireError.unknownMessageType(unknownFields: 1)) { try WireMessage.decode(frame) }
        var versionOnly = ProtoWriter()
        versionOnly.uint(1, 1)
        #expect(throws: WireError.unknownMessageType(unknownFields: 0)) { try WireMessage.decode(versionOnly.bytes) }
    }

    @Test("bytes that are not protobuf are malformedFrame")
    func garbage() {
        let frame: [UInt8] = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]  // field 1 length-delimited, absurd length
        #expect(throws: WireError.malformedFrame(size: 6)) { try WireMessage.decode(frame) }
        // The right field number with the wrong wire type.
        #expect(throws: WireError.malformedFrame(size: 2)) { try WireMessage.decode([0x0D, 0x01]) }
    }

    @Test("a Submit without a prompt is missingField")
    func submitWithoutPrompt() {
        var submit = ProtoWriter()
        submit.lengthDelimited(1, Array("req".utf8))
        let frame = ProtoWriter.envelope(field: 10, body: submit.bytes)
        #expect(throws: WireError.missingField(message: "squat.v1.Submit", field: "prompt")) {
            try WireMessage.decode(frame)
        }
    }

    @Test("Activations without a tensor header is missingField")
    func activationsWithoutTensor() {
        var activations = ProtoWriter()
        activations.uint(1, 3)
        let frame = ProtoWriter.envelope(field: 31, body: activations.bytes)
        #expect(throws: WireError.missingField(message: "squat.v1.Activations", field: "tensor")) {
            try WireMessage.decode(frame)
        }
    }

    @Test("a string that is not UTF-8 is invalidField")
    func invalidUTF8() {
        var cancel = ProtoWriter()
        cancel.lengthDelimited(1, [0x61, 0xFF, 0xFE])
        let frame = ProtoWriter.envelope(field: 14, body: cancel.bytes)
        #expect(
            throws: WireError.invalidField(message: "squat.v1.Cancel", field: "request_id", reason: "invalid UTF-8")
        ) {
            try WireMessage.decode(frame)
        }
    }

    @Test("a string with a NUL byte is refused when encoding, not silently cut")
    func embeddedNUL() {
        let message = WireMessage.submit(Submit(requestID: "r", prompt: .text("before\u{0}after")))
        #expect(
            throws: WireError.invalidField(
                message: "squat.v1.Submit", field: "text",
                reason: "contains a NUL byte (protobuf-c strings are C strings)")
        ) { try message.encoded() }
    }

    @Test("over-size frames are frameTooLarge on both sides")
    func sizeLimit() throws {
        let big = WireMessage.submit(Submit(requestID: "r", prompt: .tokens(Array(repeating: 300, count: 1000))))
        let bytes = try big.encoded()
        #expect(bytes.count > 1000)
        #expect(throws: WireError.frameTooLarge(size: bytes.count, limit: 1000)) { try big.encoded(maxSize: 1000) }
        #expect(throws: WireError.frameTooLarge(size: bytes.count, limit: 1000)) {
            try WireMessage.decode(bytes, maxSize: 1000)
        }
        #expect(try WireMessage.decode(bytes, maxSize: bytes.count) == big)
    }

    @Test("unknown enum values survive a round trip")
    func openEnums() throws {
        let message = WireMessage.error(ErrorReply(code: ErrorCode(rawValue: 4242), message: "future"))
        guard case .error(let reply) = try WireMessage.decode(message.encoded()) else {
            Issue.record("decoded to another type")
            return
        }
        #expect(reply.code.rawValue == 4242)
        #expect(!reply.code.isKnown)
        #expect(ErrorCode.overloaded.description == "overloaded")
    }

    @Test("WireError descriptions say what failed and where")
    func errorText() {
        let e = WireError.zmq(
            operation: "bind", socket: .router, endpoint: "tcp://1.2.3.4:5", errno: 98, text: "Address in use")
        #expect(e.description == "zmq_bind failed on ROUTER (tcp://1.2.3.4:5): Address in use [errno 98]")
        #expect(WireError.hostUnreachable(socket: .router, identity: [0xAB, 0x01]).description.contains("0xab01"))
    }
}

@Suite("Tensor headers", .timeLimit(.minutes(1)))
struct TensorHeaderTests {
    @Test("the frame size must equal shape × dtype")
    func sizes() throws {
        try TensorHeader(dtype: .f32, shape: [2, 3]).validate(frameBytes: 24)
        try TensorHeader(dtype: .f16, shape: [2, 3]).validate(frameBytes: 12)
        try TensorHeader(dtype: .f16, shape: [0, 576]).validate(frameBytes: 0)
        #expect(throws: WireError.self) { try TensorHeader(dtype: .f32, shape: [2, 3]).validate(frameBytes: 23) }
        #expect(throws: WireError.self) { try TensorHeader(dtype: .f16, shape: [2, 3]).validate(frameBytes: 24) }
    }

    @Test("unknown dtypes, empty and overflowing shapes are tensorMismatch")
    func refusals() {
        #expect(throws: WireError.tensorMismatch(reason: "unsupported dtype unspecified")) {
            try TensorHeader(dtype: .unspecified, shape: [1]).byteCount()
        }
        #expect(throws: WireError.tensorMismatch(reason: "empty shape (rank 0)")) {
            try TensorHeader(dtype: .f32, shape: []).byteCount()
        }
        #expect(throws: WireError.self) {
            try TensorHeader(dtype: .f32, shape: [.max, .max, .max, .max]).byteCount()
        }
    }

    @Test("Activations need shape[0] equal to the rows' token count")
    func activationRows() throws {
        let rows = [
            BatchRow(sequenceID: 1, startPosition: 0, count: 3), BatchRow(sequenceID: 2, startPosition: 9, count: 1),
        ]
        let good = WireMessage.activations(
            Activations(epoch: 1, microBatchID: 1, rows: rows, tensor: TensorHeader(dtype: .f32, shape: [4, 8])))
        try good.validateTensor(frameBytes: 128)
        let bad = WireMessage.activations(
            Activations(epoch: 1, microBatchID: 1, rows: rows, tensor: TensorHeader(dtype: .f32, shape: [5, 8])))
        #expect(throws: WireError.self) { try bad.validateTensor(frameBytes: 160) }
        #expect(throws: WireError.self) { try good.validateTensor(frameBytes: nil) }
        #expect(throws: WireError.self) {
            try WireMessage.cancel(Cancel(requestID: "r")).validateTensor(frameBytes: 4)
        }
    }

    @Test("hidden states travel as f32 or f16 only, a shipped cache layer as bytes only")
    func tensorKinds() throws {
        let rows = [BatchRow(sequenceID: 1, startPosition: 0, count: 4)]
        let asBytes = WireMessage.activations(
            Activations(epoch: 1, microBatchID: 1, rows: rows, tensor: TensorHeader(dtype: .u8, shape: [4, 8])))
        #expect(throws: WireError.tensorMismatch(reason: "squat.v1.Activations does not carry u8 tensors")) {
            try asBytes.validateTensor(frameBytes: 32)
        }
        let layer = WireMessage.cacheLayer(
            CacheLayer(epoch: 1, sequenceID: 1, layer: 0, tokenCount: 4, blob: TensorHeader(dtype: .u8, shape: [100])))
        try layer.validateTensor(frameBytes: 100)
        #expect(throws: WireError.self) { try layer.validateTensor(frameBytes: 99) }
        let asFloats = WireMessage.cacheLayer(
            CacheLayer(epoch: 1, sequenceID: 1, layer: 0, tokenCount: 4, blob: TensorHeader(dtype: .f32, shape: [25])))
        #expect(throws: WireError.tensorMismatch(reason: "squat.v1.CacheLayer does not carry f32 tensors")) {
            try asFloats.validateTensor(frameBytes: 100)
        }
        // An error report carries no frame.
        try WireMessage.cacheLayer(CacheLayer(epoch: 1, sequenceID: 1, layer: 0, error: "gone")).validateTensor(
            frameBytes: nil)
    }

    @Test(
        "f16 widening is exact",
        arguments: [
            (UInt16(0x0000), Float(0)), (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504), (0x0001, 5.9604645e-08),
            (0x03FF, 6.097555e-05), (0x7C00, .infinity), (0xFC00, -.infinity), (0x3555, 0.33325195),
        ])
    func half(_ bits: UInt16, _ expected: Float) {
        #expect(floatFromHalf(bits) == expected)
    }

    @Test("f16 NaN stays NaN")
    func halfNaN() {
        #expect(floatFromHalf(0x7E00).isNaN)
    }
}
