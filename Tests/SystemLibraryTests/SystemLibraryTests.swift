import CProtobufC
import CZeroMQ
import Testing

/// Proves that the system libraries are installed and link: a real ZeroMQ round trip and
/// protobuf-c's version.
@Suite("System libraries")
struct SystemLibraryTests {
    @Test("libzmq: a message goes through an inproc PAIR socket pair")
    func zeroMQRoundTrip() throws {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        #expect(major == 4)
        let ctx = try #require(zmq_ctx_new())
        defer { zmq_ctx_term(ctx) }
        let a = try #require(zmq_socket(ctx, ZMQ_PAIR))
        let b = try #require(zmq_socket(ctx, ZMQ_PAIR))
        defer {
            zmq_close(a)
            zmq_close(b)
        }
        #expect(zmq_bind(a, "inproc://system-library-test") == 0)
        #expect(zmq_connect(b, "inproc://system-library-test") == 0)
        let payload: [UInt8] = Array("squat".utf8)
        #expect(zmq_send(a, payload, payload.count, 0) == Int32(payload.count))
        var buf = [UInt8](repeating: 0, count: 16)
        let n = zmq_recv(b, &buf, buf.count, 0)
        #expect(n == Int32(payload.count))
        #expect(Array(buf.prefix(Int(max(n, 0)))) == payload)
    }

    @Test("libprotobuf-c: version 1.x is linked")
    func protobufCVersion() {
        let v = protobuf_c_version_number()
        #expect(v >= 1_000_000 && v < 2_000_000)
    }
}
