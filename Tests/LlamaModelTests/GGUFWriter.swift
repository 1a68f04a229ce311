import Foundation

@testable import LlamaModel

/// Writes GGUF v3 files (metadata of every value type, tensors with alignment) for tests.
struct GGUFWriter {
    indirect enum Value {
        case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
        case f32(Float), f64(Double), bool(Bool), string(String)
        case array(elementType: UInt32, [Value])
    }
    struct Tensor {
        let name: String
        let type: TensorType
        let shape: [Int]
        let bytes: [UInt8]
    }

    var metadata: [(String, Value)] = []
    var tensors: [Tensor] = []
    var alignment = 32
    var version: UInt32 = 3

    static func typeID(_ v: Value) -> UInt32 {
        switch v {
        case .u8: 0
        case .i8: 1
        case .u16: 2
        case .i16: 3
        case .u32: 4
        case .i32: 5
        case .f32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .u64: 10
        case .i64: 11
        case .f64: 12
        }
    }

    func encode() -> [UInt8] {
        var d: [UInt8] = []
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) {
            le(UInt64(s.utf8.count))
            d.append(contentsOf: Array(s.utf8))
        }
        func value(_ v: Value) {
            switch v {
            case .u8(let x): le(x)
            case .i8(let x): le(x)
            case .u16(let x): le(x)
            case .i16(let x): le(x)
            case .u32(let x): le(x)
            case .i32(let x): le(x)
            case .u64(let x): le(x)
            case .i64(let x): le(x)
            case .f32(let x): le(x.bitPattern)
            case .f64(let x): le(x.bitPattern)
            case .bool(let b): d.append(b ? 1 : 0)
            case .string(let s): str(s)
            case .array(let t, let items):
                le(t)
                le(UInt64(items.count))
                items.forEach(value)
            }
        }
        le(UInt32(0x4655_4747))
        le(version)
        le(UInt64(tensors.count))
        le(UInt64(metadata.count))
        for (k, v) in metadata {
            str(k)
            le(Self.typeID(v))
            value(v)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.bytes.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            str(t.name)
            le(UInt32(t.shape.count))
            for s in t.shape { le(UInt64(s)) }
            le(t.type.rawValue)
            le(UInt64(off))
        }
        while d.count % alignment != 0 { d.append(0) }
        for t in tensors {
            d.append(contentsOf: t.bytes)
            while d.count % alignment != 0 { d.append(0) }
        }
        return d
    }

    func write() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-test-\(UUID().uuidString).gguf")
        try Data(encode()).write(to: url)
        return url.path
    }
}

extension Array where Element == Float {
    /// Little-endian f32 bytes.
    var f32Bytes: [UInt8] {
        var out: [UInt8] = []
        for v in self {
            let b = v.bitPattern
            out += [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)]
        }
        return out
    }
}
