import Foundation

/// A reference-vector problem: which file, which array (if any) and what is wrong.
public struct ReferenceVectorError: Error, CustomStringConvertible {
    public let file: String
    public let array: String?
    public let message: String

    public init(file: String, array: String? = nil, _ message: String) {
        self.file = file
        self.array = array
        self.message = message
    }

    public var description: String {
        if let array { return "\(file): array '\(array)': \(message)" }
        return "\(file): \(message)"
    }
}

/// A scalar of a case's `stats` object.
public enum ReferenceStat: Sendable, Decodable, CustomStringConvertible {
    case number(Double), bool(Bool), text(String), null

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .text(s)
        } else {
            self = .null
        }
    }

    public var number: Double? { if case .number(let d) = self { return d } else { return nil } }

    public var description: String {
        switch self {
        case .number(let d): return "\(d)"
        case .bool(let b): return "\(b)"
        case .text(let s): return s
        case .null: return "null"
        }
    }
}

/// One array of a case's `.bin` file.
public struct ReferenceArray: Sendable, Decodable, Equatable {
    public enum DType: String, Sendable, Decodable {
        case f32, i32, u8
        public var size: Int { self == .u8 ? 1 : 4 }
    }
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let offset: Int
    public let nbytes: Int
    public var count: Int { shape.reduce(1, *) }
}

/// The quantization parameters of a case (`params`).
public struct ReferenceParams: Sendable, Decodable, Equatable {
    public let kBits: Int
    public let vBits: Int
    public let groupSize: Int
    public let quantGroupSize: Int
    public let subspaceDim: Int
    public let lambda: Double

    enum CodingKeys: String, CodingKey {
        case kBits = "k_bits", vBits = "v_bits", groupSize = "group_size", quantGroupSize = "quant_group_size"
        case subspaceDim = "subspace_dim", lambda = "squat_lambda"
    }

    /// As cache parameters (residual length = group size; keys and subspace as in the reference).
    public var quantization: QuantizationParameters {
        QuantizationParameters(
            kBits: kBits, vBits: vBits, groupSize: groupSize, residualLength: groupSize, subspaceDim: subspaceDim,
            lambda: lambda, quantGroupSize: quantGroupSize, subspaceRope: .post, keyRope: .pre)
    }
}

/// One case of a manifest.
public struct ReferenceCase: Sendable, Decodable {
    public let id: String
    public let file: String
    public let sha256: String
    public let kvHeads: Int
    /// Query heads per KV head.
    public let groups: Int
    public let headDim: Int
    public let tokens: Int
    public let params: ReferenceParams
    public let stats: [String: ReferenceStat]
    public let arrays: [ReferenceArray]

    enum CodingKeys: String, CodingKey {
        case id, file, sha256, kvHeads = "kv_heads", groups, headDim = "head_dim", tokens = "T", params, stats, arrays
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        file = try c.decode(String.self, forKey: .file)
        sha256 = try c.decode(String.self, forKey: .sha256)
        kvHeads = try c.decode(Int.self, forKey: .kvHeads)
        groups = try c.decode(Int.self, forKey: .groups)
        headDim = try c.decode(Int.self, forKey: .headDim)
        tokens = try c.decode(Int.self, forKey: .tokens)
        params = try c.decode(ReferenceParams.self, forKey: .params)
        stats = try c.decodeIfPresent([String: ReferenceStat].self, forKey: .stats) ?? [:]
        arrays = try c.decode([ReferenceArray].self, forKey: .arrays)
    }

    /// A number from `stats`.
    public func stat(_ name: String) -> Double? { stats[name]?.number }

    /// SQuat channel blocks.
    public var blocks: Int { headDim / params.quantGroupSize }
    /// `sd = min(subspace_dim, g·T)`.
    public var subspaceDimUsed: Int { min(params.subspaceDim, groups * tokens) }

    /// The arrays every case must hold, with dtype and shape (README table).
    public var expectedArrays: [(name: String, dtype: ReferenceArray.DType, shape: [Int])] {
        let kv = kvHeads, g = groups, D = headDim, T = tokens, p = params
        let qgs = p.quantGroupSize, gs = p.groupSize
        var list: [(String, ReferenceArray.DType, [Int])] = [
            ("q_states", .f32, [1, kv * g, T, D]),
            ("k_states", .f32, [1, kv, T, D]),
            ("v_states", .f32, [1, kv, T, D]),
            ("q_decode", .f32, [1, kv * g, 1, D]),
            ("singular_values", .f32, [1, kv, min(g * T, D)]),
            ("query_subspace", .f32, [1, kv, subspaceDimUsed, D]),
            ("P_inv", .f32, [1, kv, D, D]),
        ]
        for i in 0..<blocks {
            list.append(("Ainv_t_\(i)", .f32, i < blocks - 1 ? [1, kv, (i + 1) * qgs, qgs] : [1, kv, D, D]))
        }
        for prefix in ["squat_key", "kivi_key"] {
            list.append(("\(prefix)_codes", .u8, [1, kv, T, D]))
            list.append(("\(prefix)_scale", .f32, [1, kv, T / gs, D]))
            list.append(("\(prefix)_min", .f32, [1, kv, T / gs, D]))
            list.append(("\(prefix)_dequant", .f32, [1, kv, T, D]))
            list.append(("\(prefix)_codes_packed_ref", .i32, [1, kv, D, T / (32 / p.kBits)]))
        }
        list.append(("squat_key_target", .f32, [1, kv, T, D]))
        list += [
            ("value_codes", .u8, [1, kv, T, D]),
            ("value_scale", .f32, [1, kv, T, D / gs]),
            ("value_min", .f32, [1, kv, T, D / gs]),
            ("value_dequant", .f32, [1, kv, T, D]),
            ("value_codes_packed_ref", .i32, [1, kv, T, D / (32 / p.vBits)]),
            ("att_qk_squat", .f32, [1, kv * g, 1, T]),
            ("att_qk_kivi", .f32, [1, kv * g, 1, T]),
            ("att_qk_fp32", .f32, [1, kv * g, 1, T]),
        ]
        return list.map { (name: $0.0, dtype: $0.1, shape: $0.2) }
    }
}

/// A reference-vector manifest (`manifest.json`, README "Unit vectors: format").
public struct ReferenceManifest: Sendable {
    public let path: String
    /// Directory of the `.bin` files (the manifest's).
    public let directory: String
    public let formatVersion: Int
    public let referenceCommit: String?
    public let ropeTheta: Double
    public let groupSize: Int?
    public let cases: [ReferenceCase]

    private struct Raw: Decodable {
        let format_version: Int
        let reference_commit: String?
        let rope_theta: Double
        let group_size: Int?
        let cases: [ReferenceCase]
    }

    public init(path: String) throws(ReferenceVectorError) {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReferenceVectorError(file: path, "cannot read the manifest")
        }
        let raw: Raw
        do {
            raw = try JSONDecoder().decode(Raw.self, from: data)
        } catch let error as DecodingError {
            throw ReferenceVectorError(file: name, Self.describe(error))
        } catch {
            throw ReferenceVectorError(file: name, "\(error)")
        }
        guard raw.format_version == 1 else {
            throw ReferenceVectorError(file: name, "format_version \(raw.format_version) is not supported (expected 1)")
        }
        guard raw.rope_theta.isFinite, raw.rope_theta > 0 else {
            throw ReferenceVectorError(file: name, "rope_theta \(raw.rope_theta) must be positive")
        }
        var ids = Set<String>()
        for c in raw.cases where !ids.insert(c.id).inserted {
            throw ReferenceVectorError(file: name, "case id '\(c.id)' appears twice")
        }
        self.path = path
        directory = (path as NSString).deletingLastPathComponent
        formatVersion = raw.format_version
        referenceCommit = raw.reference_commit
        ropeTheta = raw.rope_theta
        groupSize = raw.group_size
        cases = raw.cases
    }

    static func describe(_ error: DecodingError) -> String {
        func where_(_ path: [CodingKey]) -> String {
            let s = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return s.isEmpty ? "top level" : String(s.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            return "\(where_(ctx.codingPath)): missing key '\(key.stringValue)'"
        case .typeMismatch(let type, let ctx):
            return "\(where_(ctx.codingPath)): expected \(type)"
        case .valueNotFound(let type, let ctx):
            return "\(where_(ctx.codingPath)): missing \(type) value"
        case .dataCorrupted(let ctx):
            return "\(where_(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    /// Loads and validates one case's `.bin` file.
    public func load(_ c: ReferenceCase) throws(ReferenceVectorError) -> ReferenceCaseData {
        try ReferenceCaseData(case: c, path: (directory as NSString).appendingPathComponent(c.file))
    }
}

/// The arrays of one case, validated: sizes, offsets, dtypes and shapes against the case's
/// dimensions, and the file's SHA-256.
public struct ReferenceCaseData: Sendable {
    public let info: ReferenceCase
    public let path: String
    private let bytes: [UInt8]
    private let index: [String: ReferenceArray]

    public init(case c: ReferenceCase, path: String) throws(ReferenceVectorError) {
        let file = (path as NSString).lastPathComponent
        try Self.validateCase(c, file: file)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReferenceVectorError(file: file, "cannot read \(path)")
        }
        let bytes = [UInt8](data)
        // Layout of every listed array.
        var index: [String: ReferenceArray] = [:]
        for a in c.arrays {
            guard index[a.name] == nil else { throw ReferenceVectorError(file: file, array: a.name, "listed twice") }
            guard a.shape.allSatisfy({ $0 >= 0 }) else {
                throw ReferenceVectorError(file: file, array: a.name, "negative dimension in shape \(a.shape)")
            }
            guard a.nbytes == a.count * a.dtype.size else {
                throw ReferenceVectorError(
                    file: file, array: a.name,
                    "nbytes \(a.nbytes) does not match shape \(a.shape) of \(a.dtype.rawValue) (\(a.count * a.dtype.size) bytes)")
            }
            guard a.offset >= 0, a.offset % 16 == 0 else {
                throw ReferenceVectorError(file: file, array: a.name, "offset \(a.offset) is not a non-negative multiple of 16")
            }
            guard a.offset + a.nbytes <= bytes.count else {
                throw ReferenceVectorError(
                    file: file, array: a.name,
                    "bytes \(a.offset)..<\(a.offset + a.nbytes) run past the end of the file (\(bytes.count) bytes)")
            }
            index[a.name] = a
        }
        let sorted = c.arrays.filter { $0.nbytes > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.nbytes > b.offset {
            throw ReferenceVectorError(file: file, array: b.name, "overlaps array '\(a.name)'")
        }
        self.info = c
        self.path = path
        self.bytes = bytes
        self.index = index
        // Checksum; on a mismatch, point at arrays whose contents look damaged.
        let digest = SHA256.hex(bytes)
        guard digest == c.sha256.lowercased() else {
            let suspects = suspiciousArrays()
            let hint = suspects.isEmpty ? "" : "; suspicious arrays: " + suspects.joined(separator: ", ")
            throw ReferenceVectorError(file: file, "sha256 mismatch: manifest says \(c.sha256), file has \(digest)\(hint)")
        }
        for e in c.expectedArrays {
            guard let a = index[e.name] else {
                throw ReferenceVectorError(file: file, array: e.name, "missing (case \(c.id) needs it)")
            }
            guard a.dtype == e.dtype else {
                throw ReferenceVectorError(file: file, array: e.name, "dtype \(a.dtype.rawValue), expected \(e.dtype.rawValue)")
            }
            guard a.shape == e.shape else {
                throw ReferenceVectorError(file: file, array: e.name, "shape \(a.shape), expected \(e.shape) for case \(c.id)")
            }
        }
    }

    static func validateCase(_ c: ReferenceCase, file: String) throws(ReferenceVectorError) {
        func bad(_ m: String) -> ReferenceVectorError { ReferenceVectorError(file: file, "case \(c.id): \(m)") }
        guard c.kvHeads > 0, c.groups > 0, c.tokens > 0 else { throw bad("kv_heads, groups and T must be positive") }
        do {
            try c.params.quantization.validate(headDim: c.headDim)
        } catch {
            throw bad("\(error)")
        }
        guard c.tokens % c.params.groupSize == 0 else {
            throw bad("T = \(c.tokens) is not a multiple of group_size \(c.params.groupSize)")
        }
    }

    /// Arrays (named with a reason) whose contents cannot be right: non-finite floats, codes above the bit width.
    private func suspiciousArrays() -> [String] {
        var out: [String] = []
        for a in info.arrays.sorted(by: { $0.offset < $1.offset }) {
            switch a.dtype {
            case .f32:
                let bad = raw(a, as: Float.self).filter { !$0.isFinite }.count
                if bad > 0 { out.append("\(a.name) (\(bad) non-finite values)") }
            case .u8:
                let bits = a.name.hasPrefix("value") ? info.params.vBits : info.params.kBits
                let bad = raw(a, as: UInt8.self).filter { Int($0) > (1 << bits) - 1 }.count
                if bad > 0 { out.append("\(a.name) (\(bad) codes above \((1 << bits) - 1))") }
            case .i32:
                break
            }
        }
        return out
    }

    private func raw<T>(_ a: ReferenceArray, as: T.Type) -> [T] {
        bytes.withUnsafeBytes { buf in
            (0..<a.count).map { buf.loadUnaligned(fromByteOffset: a.offset + $0 * MemoryLayout<T>.size, as: T.self) }
        }
    }

    private func entry(_ name: String, _ dtype: ReferenceArray.DType) throws(ReferenceVectorError) -> ReferenceArray {
        let file = (path as NSString).lastPathComponent
        guard let a = index[name] else { throw ReferenceVectorError(file: file, array: name, "missing") }
        guard a.dtype == dtype else {
            throw ReferenceVectorError(file: file, array: name, "dtype \(a.dtype.rawValue), expected \(dtype.rawValue)")
        }
        return a
    }

    /// Shape of an array.
    public func shape(_ name: String) -> [Int]? { index[name]?.shape }

    /// An `f32` array, flattened (C order).
    public func floats(_ name: String) throws(ReferenceVectorError) -> [Float] { raw(try entry(name, .f32), as: Float.self) }
    /// An `i32` array, flattened.
    public func int32s(_ name: String) throws(ReferenceVectorError) -> [Int32] { raw(try entry(name, .i32), as: Int32.self) }
    /// A `u8` array, flattened.
    public func uint8s(_ name: String) throws(ReferenceVectorError) -> [UInt8] { raw(try entry(name, .u8), as: UInt8.self) }
}
