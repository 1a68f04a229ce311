// Swift mirrors of proto/squat/v1/common.proto. Proto3 semantics: zero is the default of
// every field; where zero means "off" or "use the default", the field says so.
//
// Proto enums are open (a newer peer may send a value this build does not name), so they are
// `RawRepresentable` structs with named constants rather than closed Swift enums: an unknown
// value survives a decode/encode round trip unchanged.

/// A proto enum mirrored as an open set of named `UInt32` values.
public protocol WireEnum: RawRepresentable, Hashable, Sendable, CustomStringConvertible
where RawValue == UInt32 {
    init(rawValue: UInt32)
    /// The names of the values this build knows.
    static var names: [UInt32: String] { get }
}

extension WireEnum {
    public var description: String { Self.names[rawValue] ?? "\(Self.self)(\(rawValue))" }
    /// Whether this build names the value.
    public var isKnown: Bool { Self.names[rawValue] != nil }
}

/// Token-level sampling knobs. Zero means "off" for every field except `temperature`, where
/// zero means greedy decoding.
public struct SamplerParams: Sendable, Hashable {
    /// `squat.v1.SamplerParams.temperature`.
    public var temperature: Float
    /// 0: no top-k cut.
    public var topK: UInt32
    /// 0 or 1: no nucleus cut.
    public var topP: Float
    /// 0: no min-p cut.
    public var minP: Float
    /// 0 or 1: no penalty.
    public var repetitionPenalty: Float
    /// The last N tokens the penalty looks at; 0: the coordinator's default.
    public var repetitionWindow: UInt32
    /// nil: the coordinator picks a seed.
    public var seed: UInt64?

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        temperature: Float = 0, topK: UInt32 = 0, topP: Float = 0, minP: Float = 0,
        repetitionPenalty: Float = 0, repetitionWindow: UInt32 = 0, seed: UInt64? = nil
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.repetitionWindow = repetitionWindow
        self.seed = seed
    }
}

/// Half-open range `[start, end)` of transformer layers.
public struct LayerRange: Sendable, Hashable, CustomStringConvertible {
    /// `squat.v1.LayerRange.start`.
    public var start: UInt32
    /// `squat.v1.LayerRange.end`.
    public var end: UInt32

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(start: UInt32 = 0, end: UInt32 = 0) {
        self.start = start
        self.end = end
    }

    /// The number of layers (0 if `end <= start`).
    public var count: Int { end > start ? Int(end - start) : 0 }

    public var description: String { "[\(start), \(end))" }
}

/// Which key/value cache a stage keeps.
public struct CacheKind: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The cluster's default.
    public static let unspecified = CacheKind(rawValue: 0)
    /// Full precision, half floats.
    public static let f16 = CacheKind(rawValue: 1)
    /// Full precision, single floats.
    public static let f32 = CacheKind(rawValue: 2)
    /// KIVI: per-channel keys, per-token values.
    public static let kivi = CacheKind(rawValue: 3)
    /// SQuat: KIVI plus query-subspace error compensation.
    public static let squat = CacheKind(rawValue: 4)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [0: "unspecified", 1: "f16", 2: "f32", 3: "kivi", 4: "squat"]
}

/// `squat.v1.RopePlacement`: before or after the rotary position embedding (named apart from
/// `KVCache.RopePlacement`, which the cache uses).
public struct RopePlacementWire: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Not set.
    public static let unspecified = RopePlacementWire(rawValue: 0)
    public static let pre = RopePlacementWire(rawValue: 1)
    public static let post = RopePlacementWire(rawValue: 2)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [0: "unspecified", 1: "pre", 2: "post"]
}

/// Storage of a quantized cache's scales and minimums.
public struct ScaleStorage: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Not set.
    public static let unspecified = ScaleStorage(rawValue: 0)
    public static let f16 = ScaleStorage(rawValue: 1)
    public static let f32 = ScaleStorage(rawValue: 2)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [0: "unspecified", 1: "f16", 2: "f32"]
}

/// The cache configuration of a stage.
public struct CacheConfig: Sendable, Hashable {
    /// `squat.v1.CacheConfig.kind`.
    public var kind: CacheKind
    /// `squat.v1.CacheConfig.key_bits`.
    public var keyBits: UInt32
    /// `squat.v1.CacheConfig.value_bits`.
    public var valueBits: UInt32
    /// `squat.v1.CacheConfig.group_size`.
    public var groupSize: UInt32
    /// `squat.v1.CacheConfig.residual_length`.
    public var residualLength: UInt32
    /// SQuat channel block size.
    public var quantGroupSize: UInt32
    /// SQuat query-subspace rank.
    public var subspaceDim: UInt32
    /// `squat.v1.CacheConfig.squat_lambda`.
    public var squatLambda: Float
    /// Per sequence; 0: the model's context length.
    public var maxContextTokens: UInt32
    /// Keys quantized before or after RoPE; unspecified: the worker's own setting.
    public var keyRope: RopePlacementWire
    /// SQuat: the subspace's queries before or after RoPE; unspecified: the worker's own setting.
    public var subspaceRope: RopePlacementWire
    /// Quantization scales and minimums; unspecified: the worker's own setting (admission counts f16).
    public var scales: ScaleStorage

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        kind: CacheKind = .unspecified, keyBits: UInt32 = 0, valueBits: UInt32 = 0, groupSize: UInt32 = 0,
        residualLength: UInt32 = 0, quantGroupSize: UInt32 = 0, subspaceDim: UInt32 = 0, squatLambda: Float = 0,
        maxContextTokens: UInt32 = 0, keyRope: RopePlacementWire = .unspecified,
        subspaceRope: RopePlacementWire = .unspecified, scales: ScaleStorage = .unspecified
    ) {
        self.kind = kind
        self.keyBits = keyBits
        self.valueBits = valueBits
        self.groupSize = groupSize
        self.residualLength = residualLength
        self.quantGroupSize = quantGroupSize
        self.subspaceDim = subspaceDim
        self.squatLambda = squatLambda
        self.maxContextTokens = maxContextTokens
        self.keyRope = keyRope
        self.subspaceRope = subspaceRope
        self.scales = scales
    }
}

/// Element type of a raw tensor frame (little-endian, row-major).
public struct DType: WireEnum {
    public var rawValue: UInt32
    /// The value numbered `rawValue` on the wire, named or not.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `DTYPE_UNSPECIFIED`.
    public static let unspecified = DType(rawValue: 0)
    /// IEEE 754 binary32.
    public static let f32 = DType(rawValue: 1)
    /// IEEE 754 binary16.
    public static let f16 = DType(rawValue: 2)
    /// Opaque bytes (a shipped cache layer).
    public static let u8 = DType(rawValue: 3)

    /// The names of the values this build knows.
    public static let names: [UInt32: String] = [0: "unspecified", 1: "f32", 2: "f16", 3: "u8"]

    /// Bytes per element, or nil for a type that cannot travel in a tensor frame.
    public var byteWidth: Int? {
        switch self {
        case .f32: 4
        case .f16: 2
        case .u8: 1
        default: nil
        }
    }
}

/// Describes the raw frame after a data-plane header: exactly `shape.product` elements of
/// `dtype`, row-major.
public struct TensorHeader: Sendable, Hashable, CustomStringConvertible {
    /// `squat.v1.TensorHeader.dtype`.
    public var dtype: DType
    /// `squat.v1.TensorHeader.shape`.
    public var shape: [UInt32]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(dtype: DType = .unspecified, shape: [UInt32] = []) {
        self.dtype = dtype
        self.shape = shape
    }

    /// The frame size the header promises, checked: a known dtype, at least one dimension, and
    /// no overflow; otherwise `WireError.tensorMismatch`.
    public func byteCount() throws(WireError) -> Int {
        guard let width = dtype.byteWidth else { throw .tensorMismatch(reason: "unsupported dtype \(dtype)") }
        guard !shape.isEmpty else { throw .tensorMismatch(reason: "empty shape (rank 0)") }
        var total = width
        for dim in shape {
            let (product, overflow) = total.multipliedReportingOverflow(by: Int(dim))
            guard !overflow else { throw .tensorMismatch(reason: "shape \(shape) overflows") }
            total = product
        }
        return total
    }

    /// Checks that a frame of `frameBytes` bytes is what the header describes.
    public func validate(frameBytes: Int) throws(WireError) {
        let expected = try byteCount()
        guard expected == frameBytes else {
            throw .tensorMismatch(
                reason: "\(self) needs \(expected) bytes, the frame has \(frameBytes)")
        }
    }

    public var description: String { "\(dtype)\(shape)" }
}
