/// A metadata value of a GGUF file (all GGUF v2/v3 value types, arrays of any of them).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// The value as an integer, if it is one of the integer types (or a bool).
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): Int(v)
        case .bool(let v): v ? 1 : 0
        default: nil
        }
    }
    /// The value as a floating-point number, if numeric.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: intValue.map(Double.init)
        }
    }
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var arrayValue: [GGUFValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// A short description for error messages: the type and the value, cut for long strings,
    /// the count and first element for arrays (a value can be as large as the file).
    public var brief: String {
        switch self {
        case .uint8(let v): "uint8 \(v)"
        case .int8(let v): "int8 \(v)"
        case .uint16(let v): "uint16 \(v)"
        case .int16(let v): "int16 \(v)"
        case .uint32(let v): "uint32 \(v)"
        case .int32(let v): "int32 \(v)"
        case .uint64(let v): "uint64 \(v)"
        case .int64(let v): "int64 \(v)"
        case .float32(let v): "float32 \(v)"
        case .float64(let v): "float64 \(v)"
        case .bool(let v): "bool \(v)"
        case .string(let s) where s.utf8.count > 40:
            "string \"\(String(s.unicodeScalars.prefix(32)))…\" (\(s.utf8.count) bytes)"
        case .string(let s): "string \"\(s)\""
        case .array(let a): a.first.map { "array of \(a.count), first \($0.brief)" } ?? "empty array"
        }
    }
}

/// The storage type of a tensor; raw values are GGML's type ids.
public enum TensorType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: 32
        case .q4_K, .q5_K, .q6_K: 256
        }
    }
    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        }
    }
    /// Bytes for one row of `n` elements, or nil when `n` is not a whole number of blocks.
    public func rowBytes(_ n: Int) -> Int? {
        n % blockSize == 0 ? n / blockSize * blockBytes : nil
    }
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        }
    }
}

/// A zero-copy view of a tensor's data inside a mapped file. `shape[0]` is the innermost
/// (contiguous) dimension, as in GGUF/GGML: a weight matrix is `shape = [inputs, outputs]`,
/// stored as `outputs` rows of `inputs` elements.
public struct TensorView: @unchecked Sendable {
    // @unchecked: points into a read-only mapping kept alive by `owner`.
    public let name: String
    public let type: TensorType
    public let shape: [Int]
    public let data: UnsafeRawPointer
    public let byteCount: Int
    let owner: AnyObject

    public var elementCount: Int { shape.reduce(1, *) }
    /// Elements per row (innermost dimension).
    public var rowLength: Int { shape.first ?? 1 }
    /// Number of rows (product of the outer dimensions).
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
    public var rowBytes: Int { byteCount / max(rowCount, 1) }
}

/// A parsed GGUF file (v2 or v3): metadata, tensor table, and zero-copy tensor views.
public final class GGUFFile: Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [String: TensorView]
    public let tensorNames: [String]
    public let alignment: Int
    let file: MappedFile

    public convenience init(path: String) throws(ModelFileError) {
        try self.init(file: try MappedFile(path: path))
    }

    public init(file: MappedFile) throws(ModelFileError) {
        self.file = file
        self.path = file.path
        var r = ByteReader(file: file)
        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else {
            throw ModelFileError(
                file: path, what: "not a GGUF file: magic is 0x\(String(magic, radix: 16)), expected 0x46554747 (\"GGUF\")")
        }
        version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw ModelFileError(file: path, what: "unsupported GGUF version \(version) (supported: 2, 3)")
        }
        let tensorCount = try r.u64("tensor_count")
        let kvCount = try r.u64("metadata_kv_count")
        // Every KV needs at least 12 bytes and every tensor info 24: reject absurd counts early.
        guard kvCount <= UInt64(file.count / 12), tensorCount <= UInt64(file.count / 24) else {
            throw ModelFileError(
                file: path, what: "header claims \(kvCount) metadata entries and \(tensorCount) tensors, more than the file can hold")
        }
        var meta: [String: GGUFValue] = [:]
        var keys: [String] = []
        for i in 0..<Int(kvCount) {
            let key = try r.string("key of metadata entry \(i)")
            let type = try r.u32("type of metadata '\(key)'")
            let value = try r.value(type: type, context: "metadata '\(key)'", depth: 0)
            if meta[key] == nil { keys.append(key) }
            meta[key] = value
        }
        metadata = meta
        metadataKeys = keys
        var align = 32
        if let a = meta["general.alignment"] {
            guard let v = a.intValue, v > 0, v.nonzeroBitCount == 1, v <= 1 << 20 else {
                throw ModelFileError(
                    file: path, what: "metadata 'general.alignment' is \(a.brief), expected a power of two")
            }
            align = v
        }
        alignment = align

        struct Info {
            let name: String
            let type: TensorType
            let shape: [Int]
            let offset: UInt64
        }
        var infos: [Info] = []
        infos.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let name = try r.string("name of tensor \(i)")
            let nDims = try r.u32("dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= 4 else {
                throw ModelFileError(file: path, what: "tensor '\(name)' has \(nDims) dimensions, expected 1 to 4")
            }
            var shape: [Int] = []
            for d in 0..<Int(nDims) {
                let v = try r.u64("dimension \(d) of tensor '\(name)'")
                guard v >= 1, v <= 1 << 40 else {
                    throw ModelFileError(file: path, what: "tensor '\(name)' dimension \(d) is \(v)")
                }
                shape.append(Int(v))
            }
            let rawType = try r.u32("type of tensor '\(name)'")
            guard let type = TensorType(rawValue: rawType) else {
                throw ModelFileError(
                    file: path,
                    what: "tensor '\(name)' has unsupported type id \(rawType) (supported: \(TensorType.allCases.map(\.name).joined(separator: ", ")))")
            }
            let offset = try r.u64("offset of tensor '\(name)'")
            infos.append(Info(name: name, type: type, shape: shape, offset: offset))
        }
        let dataStart = (r.offset + align - 1) / align * align
        var views: [String: TensorView] = [:]
        var names: [String] = []
        for info in infos {
            guard info.shape[0] % info.type.blockSize == 0 else {
                throw ModelFileError(
                    file: path,
                    what: "tensor '\(info.name)' row length \(info.shape[0]) is not a multiple of \(info.type.name)'s block size \(info.type.blockSize)")
            }
            let (elements, overflow) = info.shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d)
                return (p, acc.1 || o)
            }
            guard !overflow, elements <= Int.max / 8 else {
                throw ModelFileError(file: path, what: "tensor '\(info.name)' shape \(info.shape) is absurdly large")
            }
            let bytes = elements / info.type.blockSize * info.type.blockBytes
            guard info.offset % UInt64(align) == 0 else {
                throw ModelFileError(file: path, what: "tensor '\(info.name)' offset \(info.offset) is not aligned to \(align)")
            }
            guard info.offset <= UInt64(Int.max - dataStart),
                let buf = file.bytes(at: dataStart + Int(info.offset), length: bytes), let start = buf.baseAddress
            else {
                throw ModelFileError(
                    file: path,
                    what: "tensor '\(info.name)' (\(bytes) bytes at data offset \(info.offset)) extends past the end of the file (\(file.count) bytes): the file is truncated or corrupt")
            }
            guard views[info.name] == nil else {
                throw ModelFileError(file: path, what: "tensor '\(info.name)' appears twice")
            }
            views[info.name] = TensorView(
                name: info.name, type: info.type, shape: info.shape, data: start,
                byteCount: bytes, owner: file)
            names.append(info.name)
        }
        tensors = views
        tensorNames = names
    }

    /// A tensor by name, or an error naming the file and the missing tensor.
    public func tensor(_ name: String) throws(ModelFileError) -> TensorView {
        guard let t = tensors[name] else {
            throw ModelFileError(file: path, what: "missing tensor '\(name)'")
        }
        return t
    }
}

/// Bounds-checked little-endian reader over a mapped file.
struct ByteReader {
    let file: MappedFile
    var offset = 0

    init(file: MappedFile) { self.file = file }

    private mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws(ModelFileError) -> UnsafeRawBufferPointer {
        guard let b = file.bytes(at: offset, length: n) else {
            throw ModelFileError(
                file: file.path, what: "truncated: reading \(what()) needs \(n) bytes at offset \(offset), file has \(file.count)")
        }
        offset += n
        return b
    }
    mutating func u8(_ what: @autoclosure () -> String) throws(ModelFileError) -> UInt8 {
        try take(1, what())[0]
    }
    mutating func u16(_ what: @autoclosure () -> String) throws(ModelFileError) -> UInt16 {
        UInt16(littleEndian: try take(2, what()).loadUnaligned(as: UInt16.self))
    }
    mutating func u32(_ what: @autoclosure () -> String) throws(ModelFileError) -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }
    mutating func u64(_ what: @autoclosure () -> String) throws(ModelFileError) -> UInt64 {
        UInt64(littleEndian: try take(8, what()).loadUnaligned(as: UInt64.self))
    }
    mutating func string(_ what: @autoclosure () -> String) throws(ModelFileError) -> String {
        let n = try u64("length of \(what())")
        guard n <= UInt64(file.count) else {
            throw ModelFileError(file: file.path, what: "\(what()) claims length \(n), longer than the file")
        }
        let b = try take(Int(n), what())
        return String(decoding: b, as: UTF8.self)
    }

    mutating func value(type: UInt32, context: @autoclosure () -> String, depth: Int) throws(ModelFileError) -> GGUFValue {
        switch type {
        case 0: return .uint8(try u8(context()))
        case 1: return .int8(Int8(bitPattern: try u8(context())))
        case 2: return .uint16(try u16(context()))
        case 3: return .int16(Int16(bitPattern: try u16(context())))
        case 4: return .uint32(try u32(context()))
        case 5: return .int32(Int32(bitPattern: try u32(context())))
        case 6: return .float32(Float(bitPattern: try u32(context())))
        case 7:
            let b = try u8(context())
            guard b <= 1 else { throw ModelFileError(file: file.path, what: "\(context()): bool byte is \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string(context()))
        case 9:
            guard depth < 4 else { throw ModelFileError(file: file.path, what: "\(context()): arrays nested too deeply") }
            let elementType = try u32("element type of \(context())")
            let n = try u64("length of \(context())")
            guard n <= UInt64(file.count - offset) else {
                throw ModelFileError(file: file.path, what: "\(context()): array claims \(n) elements, more than the file holds")
            }
            var out: [GGUFValue] = []
            out.reserveCapacity(Int(n))
            for _ in 0..<Int(n) {
                out.append(try value(type: elementType, context: context(), depth: depth + 1))
            }
            return .array(out)
        case 10: return .uint64(try u64(context()))
        case 11: return .int64(Int64(bitPattern: try u64(context())))
        case 12: return .float64(Double(bitPattern: try u64(context())))
        default:
            throw ModelFileError(file: file.path, what: "\(context()): unknown value type \(type)")
        }
    }
}
