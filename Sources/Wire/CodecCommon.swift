import CProtobufC
import SquatProto

// C mirrors of common.proto.

extension SamplerParams: CMirror {
    static let protoName = "squat.v1.SamplerParams"
    static var cInit: (UnsafeMutablePointer<Squat__V1__SamplerParams>?) -> Void { squat__v1__sampler_params__init }

    func fill(_ c: inout Squat__V1__SamplerParams, _ arena: Arena) throws(WireError) {
        c.temperature = temperature
        c.top_k = topK
        c.top_p = topP
        c.min_p = minP
        c.repetition_penalty = repetitionPenalty
        c.repetition_window = repetitionWindow
        if let seed {
            c.seed_choice_case = SQUAT__V1__SAMPLER_PARAMS__SEED_CHOICE_SEED
            c.seed = seed
        }
    }

    init(c: Squat__V1__SamplerParams) throws(WireError) {
        self.init(
            temperature: c.temperature, topK: c.top_k, topP: c.top_p, minP: c.min_p,
            repetitionPenalty: c.repetition_penalty, repetitionWindow: c.repetition_window,
            seed: c.seed_choice_case == SQUAT__V1__SAMPLER_PARAMS__SEED_CHOICE_SEED ? c.seed : nil)
    }
}

extension LayerRange: CMirror {
    static let protoName = "squat.v1.LayerRange"
    static var cInit: (UnsafeMutablePointer<Squat__V1__LayerRange>?) -> Void { squat__v1__layer_range__init }

    func fill(_ c: inout Squat__V1__LayerRange, _ arena: Arena) throws(WireError) {
        c.start = start
        c.end = end
    }

    init(c: Squat__V1__LayerRange) throws(WireError) {
        self.init(start: c.start, end: c.end)
    }
}

extension CacheConfig: CMirror {
    static let protoName = "squat.v1.CacheConfig"
    static var cInit: (UnsafeMutablePointer<Squat__V1__CacheConfig>?) -> Void { squat__v1__cache_config__init }

    func fill(_ c: inout Squat__V1__CacheConfig, _ arena: Arena) throws(WireError) {
        c.kind = Squat__V1__CacheKind(rawValue: kind.rawValue)
        c.key_bits = keyBits
        c.value_bits = valueBits
        c.group_size = groupSize
        c.residual_length = residualLength
        c.quant_group_size = quantGroupSize
        c.subspace_dim = subspaceDim
        c.squat_lambda = squatLambda
        c.max_context_tokens = maxContextTokens
        c.key_rope = Squat__V1__RopePlacement(rawValue: keyRope.rawValue)
        c.subspace_rope = Squat__V1__RopePlacement(rawValue: subspaceRope.rawValue)
        c.scales = Squat__V1__ScaleStorage(rawValue: scales.rawValue)
    }

    init(c: Squat__V1__CacheConfig) throws(WireError) {
        self.init(
            kind: CacheKind(rawValue: c.kind.rawValue), keyBits: c.key_bits, valueBits: c.value_bits,
            groupSize: c.group_size, residualLength: c.residual_length, quantGroupSize: c.quant_group_size,
            subspaceDim: c.subspace_dim, squatLambda: c.squat_lambda, maxContextTokens: c.max_context_tokens,
            keyRope: RopePlacementWire(rawValue: c.key_rope.rawValue),
            subspaceRope: RopePlacementWire(rawValue: c.subspace_rope.rawValue),
            scales: ScaleStorage(rawValue: c.scales.rawValue))
    }
}

extension TensorHeader: CMirror {
    static let protoName = "squat.v1.TensorHeader"
    static var cInit: (UnsafeMutablePointer<Squat__V1__TensorHeader>?) -> Void { squat__v1__tensor_header__init }

    func fill(_ c: inout Squat__V1__TensorHeader, _ arena: Arena) throws(WireError) {
        c.dtype = Squat__V1__DType(rawValue: dtype.rawValue)
        (c.n_shape, c.shape) = arena.scalars(shape)
    }

    init(c: Squat__V1__TensorHeader) throws(WireError) {
        self.init(
            dtype: DType(rawValue: c.dtype.rawValue),
            shape: try CRead.scalars(c.n_shape, c.shape, Self.protoName, "shape"))
    }
}
