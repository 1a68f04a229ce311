/// Where RoPE stands relative to an operation: before it (`pre`: the operation sees un-rotated
/// vectors) or after it (`post`: the operation sees rotated vectors).
public enum RopePlacement: String, Sendable, CaseIterable, Codable {
    case pre, post
}

/// Settings of a KIVI / SQuat quantized KV cache.
///
/// Defaults are the SQuat paper's settings on SmolLM2 (head dim 64) as measured best at 2 bits:
/// group size 32, residual length 32, subspace dimension 20, λ = 0.001, quant group size 32.
public struct QuantizationParameters: Sendable, Equatable, Codable {
    /// Bits per key code: 2, 4 or 8.
    public var kBits: Int
    /// Bits per value code: 2, 4 or 8.
    public var vBits: Int
    /// Keys: tokens per quantization group (per channel). Values: channels per group (per token).
    public var groupSize: Int
    /// Recent keys kept in full precision; flushed to the quantized store `residualLength` at a
    /// time, so it must be a multiple of `groupSize`.
    public var residualLength: Int
    /// SQuat: rank of the query subspace (`sd = min(subspaceDim, g·T)` at prefill).
    public var subspaceDim: Int
    /// SQuat: weight λ of the subspace term, `A = I + λ Q̂ᵀQ̂`.
    public var lambda: Double
    /// SQuat: channels per block of the sequential (error-compensating) key quantization. Equal
    /// to the head dimension, SQuat reduces to KIVI with pre-RoPE keys.
    public var quantGroupSize: Int
    /// Which queries build the subspace: `post` (the reference: `squat_query_subspace_prerope='after'`).
    public var subspaceRope: RopePlacement
    /// Whether keys are quantized before RoPE (`pre`: SQuat and KIVI-pre-RoPE) or after
    /// (`post`: original KIVI). SQuat's subspace is a subspace of the keys it quantizes.
    public var keyRope: RopePlacement

    public init(
        kBits: Int = 2, vBits: Int = 2, groupSize: Int = 32, residualLength: Int = 32,
        subspaceDim: Int = 20, lambda: Double = 0.001, quantGroupSize: Int = 32,
        subspaceRope: RopePlacement = .post, keyRope: RopePlacement = .pre
    ) {
        self.kBits = kBits
        self.vBits = vBits
        self.groupSize = groupSize
        self.residualLength = residualLength
        self.subspaceDim = subspaceDim
        self.lambda = lambda
        self.quantGroupSize = quantGroupSize
        self.subspaceRope = subspaceRope
        self.keyRope = keyRope
    }

    /// Bit widths the quantizer and the packing support.
    public static let supportedBits = [2, 4, 8]

    /// Number of SQuat channel blocks, `headDim / quantGroupSize`.
    public func channelBlocks(headDim: Int) -> Int { headDim / quantGroupSize }

    /// Checks the parameters against a head dimension; the error says which setting is wrong and why.
    public func validate(headDim: Int) throws(QuantizationParameterError) {
        func fail(_ parameter: String, _ why: String) -> QuantizationParameterError {
            QuantizationParameterError(parameter: parameter, message: why)
        }
        guard headDim > 0, headDim % 2 == 0 else {
            throw fail("headDim", "head dimension \(headDim) must be positive and even (RoPE pairs channel i with i + D/2)")
        }
        for (name, bits) in [("kBits", kBits), ("vBits", vBits)] where !Self.supportedBits.contains(bits) {
            throw fail(name, "\(bits) bits is not supported: codes are 2, 4 or 8 bits so that a whole number of them fills a 32-bit word")
        }
        guard groupSize > 0 else { throw fail("groupSize", "group size \(groupSize) must be positive") }
        guard headDim % groupSize == 0 else {
            throw fail("groupSize", "group size \(groupSize) does not divide the head dimension \(headDim): values are quantized per token in groups of groupSize channels")
        }
        let keysPerWord = 32 / kBits
        guard groupSize % keysPerWord == 0 else {
            throw fail("groupSize", "group size \(groupSize) is not a multiple of \(keysPerWord), the \(kBits)-bit key codes per 32-bit word: key words are packed along tokens, one token group at a time")
        }
        let valuesPerWord = 32 / vBits
        guard groupSize % valuesPerWord == 0 else {
            throw fail("groupSize", "group size \(groupSize) is not a multiple of \(valuesPerWord), the \(vBits)-bit value codes per 32-bit word: value words are packed along channels, one channel group at a time")
        }
        guard residualLength > 0, residualLength % groupSize == 0 else {
            throw fail("residualLength", "residual length \(residualLength) is not a positive multiple of the group size \(groupSize): recent keys are quantized residualLength at a time, in whole token groups")
        }
        guard quantGroupSize > 0, headDim % quantGroupSize == 0 else {
            throw fail("quantGroupSize", "quant group size \(quantGroupSize) does not divide the head dimension \(headDim): SQuat quantizes keys in blocks of quantGroupSize channels")
        }
        guard subspaceDim > 0 else {
            throw fail("subspaceDim", "subspace dimension \(subspaceDim) must be positive")
        }
        guard lambda.isFinite, lambda >= 0 else {
            throw fail("lambda", "λ = \(lambda) must be finite and non-negative: A = I + λQ̂ᵀQ̂ must stay positive definite")
        }
    }
}

/// A rejected `QuantizationParameters` setting.
public struct QuantizationParameterError: Error, Equatable, CustomStringConvertible {
    /// The offending property (`kBits`, `groupSize`, ...).
    public let parameter: String
    public let message: String
    public var description: String { "invalid \(parameter): \(message)" }
}
