import Foundation
import Testing

@testable import LlamaModel

@Suite("GGUF reader")
struct GGUFTests {
    func sample() -> GGUFWriter {
        var w = GGUFWriter()
        w.metadata = [
            ("a.u8", .u8(200)), ("a.i8", .i8(-5)), ("a.u16", .u16(60000)), ("a.i16", .i16(-30000)),
            ("a.u32", .u32(4_000_000_000)), ("a.i32", .i32(-2_000_000_000)), ("a.u64", .u64(1 << 40)),
            ("a.i64", .i64(-(1 << 40))), ("a.f32", .f32(1.5)), ("a.f64", .f64(-2.25)), ("a.bool", .bool(true)),
            ("a.str", .string("héllo")),
            ("a.arr", .array(elementType: 5, [.i32(1), .i32(-2), .i32(3)])),
            ("a.nested", .array(elementType: 9, [.array(elementType: 8, [.string("x"), .string("yz")])])),
            ("general.alignment", .u32(64)),
        ]
        w.alignment = 64
        w.tensors = [
            .init(name: "t.f32", type: .f32, shape: [3, 2], bytes: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6).f32Bytes),
            .init(name: "t.small", type: .f32, shape: [1], bytes: [Float](arrayLiteral: 7).f32Bytes),
        ]
        return w
    }

    @Test("every metadata type, arrays, alignment and tensors read back")
    func roundTrip() throws {
        let path = try sample().write()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try GGUFFile(path: path)
        #expect(f.version == 3)
        #expect(f.metadata["a.u8"] == .uint8(200))
        #expect(f.metadata["a.i8"] == .int8(-5))
        #expect(f.metadata["a.u16"] == .uint16(60000))
        #expect(f.metadata["a.i16"] == .int16(-30000))
        #expect(f.metadata["a.u32"] == .uint32(4_000_000_000))
        #expect(f.metadata["a.i32"] == .int32(-2_000_000_000))
        #expect(f.metadata["a.u64"]?.intValue == 1 << 40)
        #expect(f.metadata["a.i64"]?.intValue == -(1 << 40))
        #expect(f.metadata["a.f32"] == .float32(1.5))
        #expect(f.metadata["a.f64"] == .float64(-2.25))
        #expect(f.metadata["a.bool"] == .bool(true))
        #expect(f.metadata["a.str"] == .string("héllo"))
        #expect(f.metadata["a.arr"] == .array([.int32(1), .int32(-2), .int32(3)]))
        #expect(f.metadata["a.nested"] == .array([.array([.string("x"), .string("yz")])]))
        #expect(f.alignment == 64)
        let t = try f.tensor("t.f32")
        #expect(t.shape == [3, 2] && t.rowLength == 3 && t.rowCount == 2)
        #expect(Int(bitPattern: t.data) % 64 == 0)
        let values = (0..<6).map { t.data.load(fromByteOffset: $0 * 4, as: Float.self) }
        #expect(values == [1, 2, 3, 4, 5, 6])
        #expect(try f.tensor("t.small").data.load(as: Float.self) == 7)
        #expect(throws: ModelFileError.self) { try f.tensor("absent") }
    }

    /// Corruptions, each with the words its error must contain.
    @Test("corrupt files give errors naming the problem, never a crash")
    func corruptions() throws {
        let good = sample().encode()
        func check(_ bytes: [UInt8], _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-bad-\(UUID().uuidString).gguf")
            try Data(bytes).write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            do {
                _ = try GGUFFile(path: url.path)
                Issue.record("no error for \(words)", sourceLocation: sourceLocation)
            } catch {
                #expect(error.file == url.path, sourceLocation: sourceLocation)
                for w in words {
                    #expect(error.what.contains(w), "'\(error.what)' lacks '\(w)'", sourceLocation: sourceLocation)
                }
            }
        }
        var bad = good
        bad[0] = 0x00
        try check(bad, ["magic"])
        bad = good
        bad[4] = 9
        try check(bad, ["version 9"])
        try check(Array(good.prefix(20)), ["truncated"])
        // Data: t.f32 (24 bytes) at 0, t.small at 64, the file padded to 128 past the data start.
        try check(Array(good.prefix(good.count - 120)), ["t.f32", "past the end"])
        var w = sample()
        w.tensors[0] = .init(name: "t.q", type: .q4_1, shape: [33, 1], bytes: Array(repeating: 0, count: 40))
        try check(w.encode(), ["t.q", "block size"])
        // Unknown tensor type id: patch the type field of the first tensor info.
        w = sample()
        var bytes = w.encode()
        let name = Array("t.f32".utf8)
        if let idx = (0..<bytes.count - name.count).first(where: { Array(bytes[$0..<$0 + name.count]) == name }) {
            let typeOffset = idx + name.count + 4 + 2 * 8
            bytes[typeOffset] = 77
            try check(bytes, ["t.f32", "unsupported type id 77"])
        } else {
            Issue.record("tensor name not found in the encoded file")
        }
        w = sample()
        w.metadata.append(("bad.alignment", .u32(0)))
        w.metadata[14] = ("general.alignment", .u32(48))
        try check(w.encode(), ["general.alignment"])
        try check([], ["empty"])
    }

    @Test("random and mutated bytes never crash the parser")
    func fuzz() throws {
        let good = sample().encode()
        var rng = SeededGenerator(seed: 1)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-fuzz-\(UUID().uuidString).gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        var parsed = 0
        for i in 0..<400 {
            var bytes = good
            if i % 4 == 0 {
                bytes = (0..<Int(rng.next() % 256)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                }
                if i % 3 == 0 { bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count)))) }
            }
            try Data(bytes).write(to: url)
            if (try? GGUFFile(path: url.path)) != nil { parsed += 1 }
        }
        #expect(parsed < 400)
    }

    @Test("the default model's configuration")
    func defaultModelConfig() throws {
        let f = try Golden.openModel()
        let c = try LlamaConfig(gguf: f)
        #expect(c.layerCount == 30 && c.hiddenSize == 576 && c.intermediateSize == 1536)
        #expect(c.headCount == 9 && c.kvHeadCount == 3 && c.headDim == 64)
        #expect(c.vocabularySize == 49152 && c.contextLength == 8192 && c.tiedEmbeddings)
        #expect(c.ropeTheta == 100000 && c.rmsEpsilon == 1e-5)
    }
}
