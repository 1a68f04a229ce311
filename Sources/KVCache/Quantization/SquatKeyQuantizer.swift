/// SQuat keys of one KV head: the packed block plus what the quantization saw and produced.
public struct SquatKeyQuantization: Sendable {
    /// Codes (packed, channel-major), scales and mins: see `QuantizedKeyBlock`.
    public var block: QuantizedKeyBlock
    /// Dequantized (pre-RoPE) keys, dense `tokens × headDim`.
    public var dequantized: [Float]
    /// The compensated keys each block actually quantized (block 0 = the input), dense
    /// `tokens × headDim`: the reference's `squat_key_target`.
    public var target: [Float]
}

extension SquatHeadState {
    /// SQuat key quantization (the reference's `new_quant`, README step 6) into caller buffers.
    ///
    /// `X` = the keys (row `t` at `keys + t·rowStride`, pre-RoPE for SQuat). For each channel
    /// block `i` of `qgs` channels: quantize `X[:, i·qgs ..< (i+1)·qgs]` per channel over groups
    /// of `groupSize` tokens; then, unless it is the last block, `d = dequant − X_block` (Float)
    /// and `X[:, (i+1)qgs:] += d · W_i` (the reference's `(d·mats[i]ᵀ)·P_inv[...]ᵀ`; accumulated
    /// in Double, rounded to Float, added in Float). Each block's scales and mins come from the
    /// compensated `X`.
    ///
    /// `tokens` must be a multiple of `groupSize` (and of `32/bits` to pack); the first token
    /// starts a token group. Outputs (`codeRowStride`, `dequantizedRowStride`, `targetRowStride`
    /// default to `headDim`): unpacked codes `codes[t·codeRowStride + d]`; `scales`/`mins` at
    /// `[g·headDim + d]`; optional dequantized keys and compensated target.
    public func quantizeKeys(
        _ keys: UnsafePointer<Float>, tokens: Int, rowStride: Int? = nil, bits: Int, groupSize: Int,
        codes: UnsafeMutablePointer<UInt8>, codeRowStride: Int? = nil,
        scales: UnsafeMutablePointer<Float>, mins: UnsafeMutablePointer<Float>,
        dequantized: UnsafeMutablePointer<Float>? = nil, target: UnsafeMutablePointer<Float>? = nil
    ) {
        let D = headDim
        let qgs = quantGroupSize
        let nb = blocks
        precondition(tokens % groupSize == 0, "key tokens (\(tokens)) must be a multiple of the group size (\(groupSize))")
        guard tokens > 0 else { return }
        let inStride = rowStride ?? D
        let cStride = codeRowStride ?? D
        // X, the compensated keys, and the dequantized keys: dense tokens × D.
        let x = UnsafeMutablePointer<Float>.allocate(capacity: tokens * D)
        let deq = UnsafeMutablePointer<Float>.allocate(capacity: tokens * D)
        let acc = UnsafeMutablePointer<Double>.allocate(capacity: D)
        defer {
            x.deallocate()
            deq.deallocate()
            acc.deallocate()
        }
        for t in 0..<tokens { (x + t * D).update(from: keys + t * inStride, count: D) }
        for i in 0..<nb {
            let c0 = i * qgs
            MinMaxQuantizer.quantizeKeysPerChannel(
                x + c0, tokens: tokens, headDim: qgs, rowStride: D, bits: bits, groupSize: groupSize,
                codes: codes + c0, codeRowStride: cStride, scales: scales + c0, mins: mins + c0, scaleRowStride: D,
                dequantized: deq + c0, dequantizedRowStride: D)
            guard i < nb - 1 else { break }
            let c = c0 + qgs
            let rest = D - c
            compensation[i].withUnsafeBufferPointer { wBuf in
                let w = wBuf.baseAddress!
                for t in 0..<tokens {
                    let row = x + t * D
                    let dqRow = deq + t * D
                    for b in 0..<rest { acc[b] = 0 }
                    for a in 0..<qgs {
                        let d = Double(dqRow[c0 + a] - row[c0 + a])
                        if d == 0 { continue }
                        let wa = w + a * rest
                        for b in 0..<rest { acc[b] += d * Double(wa[b]) }
                    }
                    for b in 0..<rest { row[c + b] = row[c + b] + Float(acc[b]) }
                }
            }
        }
        if let dequantized { dequantized.update(from: deq, count: tokens * D) }
        if let target { target.update(from: x, count: tokens * D) }
    }

    /// SQuat key quantization of `tokens` keys of this head (see the pointer variant):
    /// `params.kBits` bits, token groups of `params.groupSize`. The returned block's codes are
    /// packed (channel-major, reference layout); `dequantized` and `target` are dense.
    ///
    /// The cache calls this with `residualLength` (32) tokens at a time during decode and with
    /// `32·⌊T/32⌋` tokens at prefill; the state is the same for both.
    public func quantizeKeys(
        _ keys: UnsafePointer<Float>, tokens: Int, rowStride: Int? = nil, params: QuantizationParameters
    ) -> SquatKeyQuantization {
        let D = headDim
        let n = tokens * D
        let groups = tokens / params.groupSize
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
        defer { codes.deallocate() }
        var scales = [Float](repeating: 0, count: groups * D)
        var mins = [Float](repeating: 0, count: groups * D)
        var dequantized = [Float](repeating: 0, count: n)
        var target = [Float](repeating: 0, count: n)
        if n > 0 {
            scales.withUnsafeMutableBufferPointer { s in
                mins.withUnsafeMutableBufferPointer { m in
                    dequantized.withUnsafeMutableBufferPointer { dq in
                        target.withUnsafeMutableBufferPointer { tg in
                            quantizeKeys(
                                keys, tokens: tokens, rowStride: rowStride, bits: params.kBits, groupSize: params.groupSize,
                                codes: codes, scales: s.baseAddress!, mins: m.baseAddress!,
                                dequantized: dq.baseAddress!, target: tg.baseAddress!)
                        }
                    }
                }
            }
        }
        let block = QuantizedKeyBlock(
            tokens: tokens, headDim: D, bits: params.kBits, groupSize: params.groupSize,
            codes: QuantizedKeyBlock.pack(codes, tokens: tokens, headDim: D, bits: params.kBits),
            scales: scales, mins: mins)
        return SquatKeyQuantization(block: block, dequantized: dequantized, target: target)
    }
}

/// SQuat keys of one KV head: `state.quantizeKeys(keys, tokens:, rowStride:, params:)`.
public func quantizeKeysSquat(
    _ keys: UnsafePointer<Float>, tokens: Int, rowStride: Int? = nil, state: SquatHeadState, params: QuantizationParameters
) -> SquatKeyQuantization {
    state.quantizeKeys(keys, tokens: tokens, rowStride: rowStride, params: params)
}

/// KIVI keys of one KV head (per channel over token groups; pass pre- or post-RoPE keys as
/// `params.keyRope` says): `params.kBits` bits, groups of `params.groupSize` tokens.
public func quantizeKeysKIVI(
    _ keys: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int? = nil, params: QuantizationParameters
) -> QuantizedKeyBlock {
    QuantizedKeyBlock(quantizing: keys, tokens: tokens, headDim: headDim, rowStride: rowStride,
                      bits: params.kBits, groupSize: params.groupSize)
}

/// KIVI values of one KV head (per token over channel groups): `params.vBits` bits, groups of
/// `params.groupSize` channels. Any number of tokens.
public func quantizeValues(
    _ values: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int? = nil, params: QuantizationParameters
) -> QuantizedValueBlock {
    QuantizedValueBlock(quantizing: values, tokens: tokens, headDim: headDim, rowStride: rowStride,
                        bits: params.vBits, groupSize: params.groupSize)
}
