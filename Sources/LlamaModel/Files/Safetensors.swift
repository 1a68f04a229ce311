/// One tensor entry of a safetensors header, as stored: row-major shape (outermost dimension
/// first, as in PyTorch) and the byte range of its data within the file.
public struct SafetensorsEntry: Sendable, Equatable {
    public let name: String
    /// The dtype string as written in the header (`F32`, `BF16`, `I64`, ...).
    public let dtype: String
    /// Row-major shape, outermost first (PyTorch order). GGML order is this reversed.
    public let shape: [Int]
    /// Absolute byte offsets in the file.
    public let byteRange: Range<Int>

    /// The storage type, when this engine can read the dtype (F32, F16, BF16).
    public var type: TensorType? { SafetensorsFile.supportedTypes[dtype] }
}

/// A parsed `.safetensors` file: an 8-byte little-endian header length, a JSON header with
/// `dtype`, `shape` and `data_offsets` per tensor (and optional string `__metadata__`), then the
/// tensor bytes. The file is memory-mapped and tensors are zero-copy views into it.
///
/// Everything is validated when the file is opened — header bounds, JSON syntax, dtypes,
/// shapes, offsets against the data size and against each other — so corrupt files give a
/// `ModelFileError` naming the file, the tensor and what was expected, never a crash.
/// Tensors whose dtype is valid but not one this engine computes with (e.g. `I64`) are kept
/// in `entries` and only fail when asked for by `tensor(_:)`.
public final class SafetensorsFile: Sendable {
    /// Header lengths above this are refused (the reference implementation uses the same limit).
    public static let maxHeaderBytes = 100_000_000
    /// Tensors of more dimensions than this are refused.
    public static let maxRank = 8

    /// dtypes this engine reads, by header spelling.
    public static let supportedTypes: [String: TensorType] = ["F32": .f32, "F16": .f16, "BF16": .bf16]
    /// Bytes per element of every dtype the format defines (for validating sizes).
    static let dtypeBytes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]

    public let path: String
    /// The `__metadata__` strings (empty when absent).
    public let metadata: [String: String]
    /// Tensor names in header order.
    public let tensorNames: [String]
    public let entries: [String: SafetensorsEntry]
    /// Where the tensor data starts (8 + header length).
    public let dataStart: Int
    let file: MappedFile

    /// Maps and parses the file at `path`.
    public convenience init(path: String) throws(ModelFileError) {
        try self.init(file: try MappedFile(path: path))
    }

    /// Parses an already mapped file.
    public init(file: MappedFile) throws(ModelFileError) {
        self.file = file
        let path = file.path
        self.path = path
        func fail(_ what: String) -> ModelFileError { ModelFileError(file: path, what: what) }

        guard let lengthBytes = file.bytes(at: 0, length: 8) else {
            throw fail("truncated: \(file.count) bytes, but a safetensors file starts with an 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: lengthBytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(file.count - 8) else {
            throw fail(
                "header length \(headerLength) extends past the end of the file (\(file.count) bytes, so at most \(file.count - 8)): truncated, or not a safetensors file")
        }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw fail("header length \(headerLength) is larger than the \(Self.maxHeaderBytes)-byte limit")
        }
        guard headerLength >= 2, let header = file.bytes(at: 8, length: Int(headerLength)) else {
            throw fail("header length \(headerLength) is too small for a JSON object")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(header, duplicateKeys: .reject)
        } catch {
            throw fail("header is not valid JSON: \(error) of the header")
        }
        guard let top = json.objectValue else {
            throw fail("header is \(json.brief), expected a JSON object of tensors")
        }
        let dataStart = 8 + Int(headerLength)
        let dataBytes = file.count - dataStart
        self.dataStart = dataStart

        var metadata: [String: String] = [:]
        var names: [String] = []
        var entries: [String: SafetensorsEntry] = [:]
        var spans: [(begin: Int, end: Int, name: String)] = []
        for name in top.keys {
            guard let value = top[name] else { continue }
            if name == "__metadata__" {
                guard let m = value.objectValue else {
                    throw fail("'__metadata__' is \(value.brief), expected an object of strings")
                }
                for k in m.keys {
                    guard let s = m[k]?.stringValue else {
                        throw fail("'__metadata__' entry '\(k)' is \(m[k]?.brief ?? "?"), expected a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value.objectValue else {
                throw fail("tensor '\(name)' is \(value.brief), expected an object with dtype, shape and data_offsets")
            }
            guard let dtype = t["dtype"]?.stringValue else {
                throw fail("tensor '\(name)' has dtype \(t["dtype"]?.brief ?? "missing"), expected a string such as \"F32\"")
            }
            guard let elementBytes = Self.dtypeBytes[dtype] else {
                throw fail(
                    "tensor '\(name)' has unknown dtype '\(dtype)' (known: \(Self.dtypeBytes.keys.sorted().joined(separator: ", ")))")
            }
            guard let shapeValues = t["shape"]?.arrayValue else {
                throw fail("tensor '\(name)' has shape \(t["shape"]?.brief ?? "missing"), expected an array of integers")
            }
            guard shapeValues.count <= Self.maxRank else {
                throw fail("tensor '\(name)' has \(shapeValues.count) dimensions, more than \(Self.maxRank)")
            }
            var shape: [Int] = []
            var elements = 1
            for (d, v) in shapeValues.enumerated() {
                guard case .integer(let n) = v, n >= 0 else {
                    throw fail("tensor '\(name)' dimension \(d) is \(v.brief), expected a non-negative integer")
                }
                let (p, overflow) = elements.multipliedReportingOverflow(by: n)
                guard !overflow, p <= Int.max / 8 else {
                    throw fail("tensor '\(name)' shape \(shapeValues.map(\.brief)) is absurdly large")
                }
                elements = p
                shape.append(n)
            }
            guard let offsets = t["data_offsets"]?.arrayValue, offsets.count == 2,
                case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1]
            else {
                throw fail(
                    "tensor '\(name)' has data_offsets \(t["data_offsets"]?.brief ?? "missing"), expected [begin, end] integers")
            }
            guard begin >= 0, end >= begin else {
                throw fail("tensor '\(name)' has data_offsets [\(begin), \(end)], expected 0 ≤ begin ≤ end")
            }
            guard end <= dataBytes else {
                throw fail(
                    "tensor '\(name)' data_offsets [\(begin), \(end)] extend past the end of the data (\(dataBytes) bytes after the header): truncated or corrupt")
            }
            let expected = elements * elementBytes
            guard end - begin == expected else {
                throw fail(
                    "tensor '\(name)' has \(end - begin) bytes (data_offsets [\(begin), \(end)]), but \(dtype) shape \(shape) needs \(expected)")
            }
            entries[name] = SafetensorsEntry(
                name: name, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end))
            names.append(name)
            spans.append((begin, end, name))
        }
        // No two tensors may share bytes.
        spans.sort { $0.begin != $1.begin ? $0.begin < $1.begin : $0.end < $1.end }
        var previous: (begin: Int, end: Int, name: String)? = nil
        for s in spans where s.end > s.begin {
            if let p = previous, s.begin < p.end {
                throw fail(
                    "tensors '\(p.name)' (data_offsets [\(p.begin), \(p.end)]) and '\(s.name)' ([\(s.begin), \(s.end)]) overlap")
            }
            previous = s
        }
        self.metadata = metadata
        self.tensorNames = names
        self.entries = entries
    }

    public func hasTensor(_ name: String) -> Bool { entries[name] != nil }

    /// A zero-copy view of tensor `name` with its shape in GGML order (innermost first, the
    /// reverse of the header's), named `viewName` (default: its own name). A PyTorch weight
    /// `[out, in]` becomes `[in, out]`: the same bytes, `out` rows of `in` elements.
    public func tensor(_ name: String, viewName: String? = nil) throws(ModelFileError) -> TensorView {
        guard let e = entries[name] else {
            throw ModelFileError(file: path, what: "missing tensor '\(name)'")
        }
        guard let type = e.type else {
            throw ModelFileError(
                file: path,
                what: "tensor '\(name)' has dtype \(e.dtype), which this engine cannot use (supported: F32, F16, BF16)")
        }
        guard let bytes = file.bytes(at: e.byteRange.lowerBound, length: e.byteRange.count), let base = bytes.baseAddress
        else {
            throw ModelFileError(file: path, what: "tensor '\(name)' lies outside the file")
        }
        return TensorView(
            name: viewName ?? name, type: type, shape: e.shape.reversed(), data: base, byteCount: e.byteRange.count,
            owner: file)
    }
}
