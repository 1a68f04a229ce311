import CKernels
import Foundation
import Testing

@testable import LlamaModel

/// `SafetensorsFile` on small files written here: dtypes, shapes, and every kind of damage.
@Suite("Safetensors files")
struct SafetensorsTests {
    /// Dequantizes a whole view with the engine's kernels.
    static func floats(_ v: TensorView) -> [Float] {
        var out = [Float](repeating: 0, count: v.elementCount)
        let rc = out.withUnsafeMutableBufferPointer {
            sq_dequantize(Int32(v.type.rawValue), v.data, $0.baseAddress, Int64(v.elementCount))
        }
        return rc == 0 ? out : []
    }

    static func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }

    @Test("F32, F16 and BF16 read back exactly, zero-copy, with their metadata")
    func dtypesReadBackExactly() throws {
        var rng = SeededRandom(seed: 7)
        var f32 = (0..<997).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)) }.filter { !$0.isNaN }
        f32 += [0, -0.0, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, .infinity, 1, -1]
        // Every F16 and BF16 bit pattern except NaNs.
        let f16 = (0...UInt16.max).filter { ($0 >> 10) & 0x1F != 0x1F || $0 & 0x3FF == 0 }
        let bf16 = (0...UInt16.max).filter { ($0 >> 7) & 0xFF != 0xFF || $0 & 0x7F == 0 }
        let tensors: [STTensor] = [
            .f32("w.f32", [f32.count], f32), .f16("w.f16", [f16.count], bits: f16), .bf16("w.bf16", [bf16.count], bits: bf16),
        ]
        let dir = try TempDir()
        let path = try dir.write("t.safetensors", STWriter.file(tensors, metadata: ["format": "pt", "note": "α β"]))
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt", "note": "α β"])
        #expect(file.tensorNames == ["w.f32", "w.f16", "w.bf16"])

        let a = try file.tensor("w.f32")
        #expect(a.type == .f32 && a.shape == [f32.count] && a.byteCount == f32.count * 4)
        #expect(zip(Self.floats(a), f32).allSatisfy { Self.same($0, $1) } && Self.floats(a).count == f32.count)

        let b = try file.tensor("w.f16")
        #expect(b.type == .f16 && b.shape == [f16.count])
        let bf = Self.floats(b)
        #expect(bf.count == f16.count)
        let f16Bad = zip(bf, f16).filter { !Self.same($0, halfToFloat($1)) }.count
        #expect(f16Bad == 0, "\(f16Bad) F16 values differ")

        let c = try file.tensor("w.bf16")
        #expect(c.type == .bf16 && c.shape == [bf16.count])
        let cf = Self.floats(c)
        #expect(cf.count == bf16.count)
        #expect(zip(cf, bf16).allSatisfy { Self.same($0, Float(bitPattern: UInt32($1) << 16)) })

        // Zero-copy: the views point into the mapping, at the bytes that were written.
        for (t, v) in zip(tensors, [a, b, c]) {
            let offset = v.data - file.file.base
            #expect(offset >= file.dataStart && offset + v.byteCount <= file.file.count)
            #expect(Array(UnsafeRawBufferPointer(start: v.data, count: v.byteCount)) == t.bytes)
        }
    }

    @Test("PyTorch [out, in] shapes become GGML [in, out] over the same rows")
    func shapesReverse() throws {
        let values = (0..<15).map { Float($0) * 0.5 - 3 }
        let cube = (0..<24).map(Float.init)
        let dir = try TempDir()
        let path = try dir.write(
            "t.safetensors",
            STWriter.file([
                .f32("m", [3, 5], values), .f32("cube", [2, 3, 4], cube), .f32("scalar", [], [42]),
                .f32("empty", [0, 4], []),
            ]))
        let file = try SafetensorsFile(path: path)
        let m = try file.tensor("m", viewName: "blk.0.attn_q.weight")
        #expect(m.name == "blk.0.attn_q.weight")
        #expect(m.shape == [5, 3] && m.rowLength == 5 && m.rowCount == 3)
        let w = try WeightMatrix(m, cols: 5, rows: 3, file: path)
        var row = [Float](repeating: 0, count: 5)
        for r in 0..<3 {
            row.withUnsafeMutableBufferPointer { w.dequantizeRow(r, into: $0.baseAddress!) }
            #expect(row == Array(values[r * 5..<(r + 1) * 5]))
        }
        #expect(try file.tensor("cube").shape == [4, 3, 2])
        let s = try file.tensor("scalar")
        #expect(s.shape == [] && s.elementCount == 1 && Self.floats(s) == [42])
        #expect(try file.tensor("empty").shape == [4, 0])
        #expect(file.entries["cube"]?.shape == [2, 3, 4])
    }

    @Test("tensors at odd addresses (unpadded header) read and multiply correctly")
    func unalignedData() throws {
        var rng = SeededRandom(seed: 5)
        let cols = 44  // one 32-wide SIMD chunk and a scalar tail
        let values = (0..<3 * cols).map { _ in Float.random(in: -2...2, using: &rng) }
        // Small integers times powers of two: exact in F16 and BF16 too.
        let small = (0..<2 * cols).map { _ in Float(Int.random(in: -64...64, using: &rng)) / 16 }
        let tensors: [STTensor] = [
            .f32("w32", [3, cols], values),
            .bf16("wbf", [2, cols], bits: small.map { UInt16($0.bitPattern >> 16) }),
            .f16("wh", [2, cols], bits: small.map { floatToHalfExact($0) }),
        ]
        var header = STWriter.header(tensors)
        while (8 + header.utf8.count) % 4 != 1 { header += " " }
        let dir = try TempDir()
        let path = try dir.write("odd.safetensors", STWriter.file(header: header, data: tensors.flatMap(\.bytes), pad: false))
        let file = try SafetensorsFile(path: path)
        #expect(file.dataStart % 4 == 1)
        let x = (0..<cols).map { _ in Float.random(in: -1...1, using: &rng) }
        for (name, rows, expected) in [("w32", 3, values), ("wbf", 2, small), ("wh", 2, small)] {
            let view = try file.tensor(name)
            #expect(Int(bitPattern: view.data) % 2 == 1, "\(name) is not at an odd address")
            #expect(Self.floats(view) == expected, "\(name)")
            let w = try WeightMatrix(view, cols: cols, rows: rows, file: path)
            var y = [Float](repeating: 0, count: rows)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    sq_matmul(
                        Int32(w.type.rawValue), w.data, w.rowBytes, Int64(cols), xp.baseAddress, Int64(cols), 1,
                        yp.baseAddress, Int64(rows), 0, Int64(rows))
                }
            }
            for r in 0..<rows {
                let want = (0..<cols).reduce(0.0) { $0 + Double(expected[r * cols + $1]) * Double(x[$1]) }
                #expect(abs(Double(y[r]) - want) < 1e-4, "\(name) row \(r): \(y[r]) vs \(want)")
            }
        }
    }

    @Test("a valid dtype the engine cannot compute with fails only when asked for, naming it")
    func unsupportedDtype() throws {
        let dir = try TempDir()
        let ids = STTensor(name: "position_ids", dtype: "I64", shape: [3], bytes: [1, 2, 3].flatMap { le(Int64($0)) })
        let path = try dir.write("t.safetensors", STWriter.file([.f32("w", [2], [1, 2]), ids]))
        let file = try SafetensorsFile(path: path)
        #expect(try file.tensor("w").elementCount == 2)
        let e = modelFileError { _ = try file.tensor("position_ids") }
        #expect(e?.file == path)
        #expect(e?.what.contains("'position_ids'") == true && e?.what.contains("I64") == true, "\(String(describing: e))")
        let missing = modelFileError { _ = try file.tensor("nope") }
        #expect(missing?.what == "missing tensor 'nope'")
    }

    /// A damaged file and what its error must say.
    struct Damage: Sendable, CustomTestStringConvertible {
        let label: String
        let bytes: [UInt8]
        let mentions: [String]
        var testDescription: String { label }
    }

    static let tensorA = STTensor.f32("a", [2, 3], [1, 2, 3, 4, 5, 6])
    static let tensorB = STTensor.bf16("b", [4], bits: [0x3F80, 0x4000, 0x4040, 0x4080])
    static func entry(_ name: String, _ dtype: String, _ shape: String, _ offsets: String) -> String {
        "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }
    static let data = tensorA.bytes + tensorB.bytes  // 32 bytes

    static let damages: [Damage] = {
        let valid = STWriter.file([tensorA, tensorB])
        func h(_ entries: String...) -> [UInt8] { STWriter.file(header: "{" + entries.joined(separator: ",") + "}", data: data) }
        let a = entry("a", "F32", "[2,3]", "[0,24]")
        return [
            Damage(label: "empty file", bytes: [], mentions: ["empty"]),
            Damage(label: "shorter than the length field", bytes: [4, 0, 0], mentions: ["truncated", "8-byte header length"]),
            Damage(label: "header length past EOF", bytes: le(UInt64(1000)) + Array("{}".utf8), mentions: ["header length 1000", "past the end of the file"]),
            Damage(label: "header length 2^63", bytes: le(UInt64(1) << 63) + Array("{}      ".utf8), mentions: ["header length 9223372036854775808"]),
            Damage(label: "header length 0", bytes: le(UInt64(0)) + data, mentions: ["header length 0", "too small"]),
            Damage(label: "truncated header", bytes: Array(valid.prefix(40)), mentions: ["past the end of the file"]),
            Damage(label: "truncated data", bytes: Array(valid.dropLast(1)), mentions: ["'b'", "past the end of the data"]),
            Damage(label: "malformed JSON", bytes: STWriter.file(header: "{\"a\":{\"dtype\":\"F32\",", data: data), mentions: ["not valid JSON"]),
            Damage(label: "garbage after JSON", bytes: STWriter.file(header: "{} x", data: data), mentions: ["not valid JSON", "after the JSON value"]),
            Damage(label: "NUL padding", bytes: STWriter.file(header: "{}\0\0\0\0\0\0", data: data, pad: false), mentions: ["not valid JSON"]),
            Damage(label: "header is an array", bytes: STWriter.file(header: "[]", data: data), mentions: ["expected a JSON object"]),
            Damage(label: "tensor is a number", bytes: h("\"a\":5"), mentions: ["tensor 'a' is 5"]),
            Damage(label: "missing dtype", bytes: h("\"a\":{\"shape\":[2,3],\"data_offsets\":[0,24]}"), mentions: ["tensor 'a'", "dtype missing"]),
            Damage(label: "unknown dtype", bytes: h(entry("a", "Q9", "[2,3]", "[0,24]")), mentions: ["tensor 'a'", "unknown dtype 'Q9'"]),
            Damage(label: "shape not an array", bytes: h(entry("a", "F32", "6", "[0,24]")), mentions: ["tensor 'a'", "shape 6"]),
            Damage(label: "negative dimension", bytes: h(entry("a", "F32", "[-2,3]", "[0,24]")), mentions: ["tensor 'a'", "dimension 0 is -2"]),
            Damage(label: "fractional dimension", bytes: h(entry("a", "F32", "[2,3.5]", "[0,24]")), mentions: ["tensor 'a'", "dimension 1 is 3.5"]),
            Damage(label: "absurd shape", bytes: h(entry("a", "F32", "[4294967296,4294967296]", "[0,24]")), mentions: ["tensor 'a'", "absurdly large"]),
            Damage(label: "nine dimensions", bytes: h(entry("a", "F32", "[1,1,1,1,1,1,1,1,6]", "[0,24]")), mentions: ["tensor 'a'", "9 dimensions"]),
            Damage(label: "offsets past the data", bytes: h(entry("a", "F32", "[2,3]", "[24,48]")), mentions: ["tensor 'a'", "[24, 48]", "past the end of the data (32 bytes"]),
            Damage(label: "offsets huge", bytes: h(entry("a", "F32", "[2,3]", "[9223372036854775800,9223372036854775807]")), mentions: ["tensor 'a'", "past the end of the data"]),
            Damage(label: "offsets reversed", bytes: h(entry("a", "F32", "[2,3]", "[24,0]")), mentions: ["tensor 'a'", "begin ≤ end"]),
            Damage(label: "negative offset", bytes: h(entry("a", "F32", "[2,3]", "[-8,16]")), mentions: ["tensor 'a'", "begin ≤ end"]),
            Damage(label: "one offset", bytes: h(entry("a", "F32", "[2,3]", "[24]")), mentions: ["tensor 'a'", "data_offsets [24]"]),
            Damage(label: "shape/size mismatch", bytes: h(entry("a", "F32", "[2,3]", "[0,20]")), mentions: ["tensor 'a'", "20 bytes", "needs 24"]),
            Damage(label: "dtype/size mismatch", bytes: h(entry("a", "F16", "[2,3]", "[0,24]")), mentions: ["tensor 'a'", "F16", "needs 12"]),
            Damage(label: "overlapping tensors", bytes: h(a, entry("b", "BF16", "[4]", "[16,24]")), mentions: ["'a'", "'b'", "overlap"]),
            Damage(label: "duplicate tensor", bytes: h(a, a), mentions: ["duplicate key \"a\""]),
            Damage(label: "metadata not strings", bytes: h("\"__metadata__\":{\"n\":1}", a), mentions: ["'__metadata__' entry 'n'"]),
            Damage(label: "deep nesting", bytes: STWriter.file(header: String(repeating: "[", count: 100_000), data: data), mentions: ["not valid JSON", "nesting"]),
        ]
    }()

    @Test("damaged files give a ModelFileError naming the file, tensor and problem", arguments: damages)
    func damaged(_ d: Damage) throws {
        let dir = try TempDir()
        let path = try dir.write("bad.safetensors", d.bytes)
        let e = modelFileError { _ = try SafetensorsFile(path: path) }
        #expect(e?.file == path, "\(d.label): \(String(describing: e))")
        for m in d.mentions {
            #expect(e?.what.contains(m) == true, "\(d.label): '\(e?.what ?? "no error")' does not mention \(m)")
        }
    }

    @Test("thousands of mutated and random files never crash the reader")
    func fuzz() throws {
        var rng = SeededRandom(seed: 2024)
        let dir = try TempDir()
        let path = dir.url.appendingPathComponent("fuzz.safetensors").path
        let base = STWriter.file(
            [Self.tensorA, Self.tensorB, .f16("c", [2, 2], bits: [0x3C00, 0x4000, 0xC000, 0x0001])],
            metadata: ["format": "pt"])
        let headerLength = Int(base[0])
        let significant = Array("{}[]\":,0123456789-+eE. \\u".utf8)
        var opened = 0
        var rejected = 0
        for iteration in 0..<5000 {
            var bytes = base
            switch iteration % 7 {
            case 0:  // flip bytes in the header
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    bytes[Int.random(in: 8..<(8 + headerLength), using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
            case 1:  // put JSON punctuation and digits in the header
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    bytes[Int.random(in: 8..<(8 + headerLength), using: &rng)] = significant.randomElement(using: &rng) ?? 0
                }
            case 2:  // truncate anywhere
                bytes = Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &rng)))
            case 3:  // a different header length
                let n: UInt64 =
                    Bool.random(using: &rng)
                    ? UInt64(max(0, headerLength + Int.random(in: -16...16, using: &rng)))
                    : UInt64.random(in: 0...UInt64.max, using: &rng)
                bytes.replaceSubrange(0..<8, with: le(n))
            case 4:  // delete or insert a header byte, keeping the length field
                let at = Int.random(in: 8..<(8 + headerLength), using: &rng)
                if Bool.random(using: &rng) {
                    bytes.remove(at: at)
                } else {
                    bytes.insert(significant.randomElement(using: &rng) ?? 0, at: at)
                }
            case 5:  // change a number in the header to a random one
                if let header = String(bytes: bytes[8..<(8 + headerLength)], encoding: .utf8) {
                    var digits = header.indices.filter { header[$0].isNumber }
                    digits.shuffle(using: &rng)
                    if let i = digits.first {
                        let replacement = ["0", "99999999999", "-1", "24", "1e3", "18446744073709551616"].randomElement(using: &rng) ?? "0"
                        var h = header
                        h.replaceSubrange(i...i, with: replacement)
                        bytes = STWriter.file(header: h, data: Array(bytes[(8 + headerLength)...]))
                    }
                }
            default:  // random bytes, sometimes with a plausible length prefix
                let n = Int.random(in: 1..<200, using: &rng)
                bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if n > 8, Bool.random(using: &rng) { bytes.replaceSubrange(0..<8, with: le(UInt64(n - 8))) }
            }
            try writeFile(path, bytes)
            do throws(ModelFileError) {
                let file = try SafetensorsFile(path: path)
                opened += 1
                // Whatever opened must be readable in full.
                for name in file.tensorNames {
                    guard let view = try? file.tensor(name) else { continue }
                    #expect(view.byteCount == file.entries[name]?.byteRange.count)
                    _ = Self.floats(view)
                }
            } catch {
                rejected += 1
                #expect(error.file == path && !error.what.isEmpty)
            }
        }
        #expect(opened + rejected == 5000)
        #expect(rejected > 2000, "only \(rejected) of 5000 mutations were rejected")
        print("safetensors fuzz: \(opened) opened, \(rejected) rejected")
    }

    @Test("the JSON parser accepts RFC 8259 and rejects everything else without crashing")
    func jsonParser() throws {
        let ok = try JSONParser.parse(Array(#" {"a": [1, -2.5e3, true, false, null, "x\u00e9\ud83d\ude00\n"], "b": {}} "#.utf8))
        let o = try #require(ok.objectValue)
        #expect(o.keys == ["a", "b"])
        #expect(o["a"] == .array([.integer(1), .number(-2500), .bool(true), .bool(false), .null, .string("xé😀\n")]))
        #expect(try JSONParser.parse(Array("18446744073709551616".utf8)) == .number(18446744073709551616))
        #expect(try JSONParser.parse(Array(#"{"k":1,"k":2}"#.utf8)).objectValue?["k"] == .integer(2))
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(#"{"k":1,"k":2}"#.utf8), duplicateKeys: .reject) }
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\x\"", "\"a", "tru", "[1 2]", "{}{}", "\"\u{1}\"", "nul"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONParser.parse(Array(bad.utf8)) }
        }
        var rng = SeededRandom(seed: 99)
        let alphabet = Array("{}[]\":,0123456789-+eE.truefalsnl \\u".utf8)
        for _ in 0..<20000 {
            let n = Int.random(in: 0..<40, using: &rng)
            let bytes = (0..<n).map { _ in
                Bool.random(using: &rng) ? (alphabet.randomElement(using: &rng) ?? 0) : UInt8.random(in: 0...255, using: &rng)
            }
            _ = try? JSONParser.parse(bytes)
        }
    }
}
