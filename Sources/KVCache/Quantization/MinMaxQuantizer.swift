/// The asymmetric min/max quantizer of KIVI and SQuat, bit-exact with the reference
/// (`triton_quantize_and_pack_along_last_dim_with_dequant` in the authors' `quant/new_pack.py`).
///
/// For a group `x[0..<n]`:
/// - `mn = min x`, `mx = max x`, `scale = (mx − mn) / (2^b − 1)` (Float subtract, then Float divide);
/// - `q = roundHalfEven(clamp((x − mn) / scale, 0, 2^b − 1))`: subtract, then **divide** (not a
///   multiply by a reciprocal, which rounds differently), clamp, then round half to even as
///   torch's `round_` does (Swift's plain `.rounded()` rounds half away from zero);
/// - dequantized value `q·scale + mn`: a Float multiply, then a Float add (never fused: Swift
///   does not contract `a * b + c` into an FMA).
///
/// A constant group (`mx == mn`) gives `0/0 = NaN`; CUDA converts that NaN to code 0, which is
/// the rule here (the reference's CPU path yields INT_MIN and corrupts the packed word). Code 0
/// dequantizes to `0·0 + mn = mn`, the exact value. The same rule turns any NaN quotient into 0.
/// Inputs are expected to be finite.
public enum MinMaxQuantizer {
    /// Largest code for `bits`: 3, 15 or 255.
    @inlinable public static func maxCode(bits: Int) -> Int { (1 << bits) - 1 }

    /// The step between codes of a group with extremes `mn` ≤ `mx`.
    @inlinable public static func scale(min mn: Float, max mx: Float, bits: Int) -> Float {
        (mx - mn) / Float(maxCode(bits: bits))
    }

    /// The code of `x` in a group with minimum `mn` and step `scale`; `maxCode` as a Float.
    @inlinable public static func code(_ x: Float, min mn: Float, scale: Float, maxCode: Float) -> UInt8 {
        let v = (x - mn) / scale
        // NaN (a constant group: 0/0) and negative quotients give code 0, like CUDA.
        guard v > 0 else { return 0 }
        return UInt8((v < maxCode ? v : maxCode).rounded(.toNearestOrEven))
    }

    /// The value a code stands for: `q·scale + mn` (multiply, then add).
    @inlinable public static func dequantize(_ code: UInt8, scale: Float, min mn: Float) -> Float {
        Float(code) * scale + mn
    }

    /// Quantizes one group of `count` values at `x[i·stride]`, writing codes to `codes[i·codeStride]`
    /// and, if given, dequantized values to `dequantized[i·dequantizedStride]`.
    /// Returns the group's scale and minimum.
    @discardableResult
    public static func quantizeGroup(
        _ x: UnsafePointer<Float>, count: Int, stride: Int, bits: Int,
        codes: UnsafeMutablePointer<UInt8>, codeStride: Int,
        dequantized: UnsafeMutablePointer<Float>? = nil, dequantizedStride: Int = 1
    ) -> (scale: Float, min: Float) {
        precondition(count > 0, "empty quantization group")
        var mn = x[0]
        var mx = x[0]
        for i in 1..<count {
            let v = x[i * stride]
            if v < mn { mn = v }
            if v > mx { mx = v }
        }
        let s = scale(min: mn, max: mx, bits: bits)
        let top = Float(maxCode(bits: bits))
        for i in 0..<count {
            codes[i * codeStride] = code(x[i * stride], min: mn, scale: s, maxCode: top)
        }
        if let dequantized {
            for i in 0..<count {
                dequantized[i * dequantizedStride] = dequantize(codes[i * codeStride], scale: s, min: mn)
            }
        }
        return (s, mn)
    }

    /// KIVI key quantization: each channel of `tokens` keys (row `t` at `keys + t·rowStride`,
    /// `headDim` channels) is quantized over groups of `groupSize` consecutive tokens.
    /// `tokens` must be a multiple of `groupSize`; the block's first token starts a group.
    ///
    /// Writes unpacked codes token-major (`codes[t·codeRowStride + d]`), `scales`/`mins` per
    /// (token group, channel) at `[g·scaleRowStride + d]` (`scaleRowStride` defaults to
    /// `headDim`), and optionally the dequantized keys (`dequantized[t·dequantizedRowStride + d]`).
    public static func quantizeKeysPerChannel(
        _ keys: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int, bits: Int, groupSize: Int,
        codes: UnsafeMutablePointer<UInt8>, codeRowStride: Int,
        scales: UnsafeMutablePointer<Float>, mins: UnsafeMutablePointer<Float>, scaleRowStride: Int? = nil,
        dequantized: UnsafeMutablePointer<Float>? = nil, dequantizedRowStride: Int = 0
    ) {
        precondition(tokens % groupSize == 0, "key tokens (\(tokens)) must be a multiple of the group size (\(groupSize))")
        let sStride = scaleRowStride ?? headDim
        for g in 0..<(tokens / groupSize) {
            let t0 = g * groupSize
            for d in 0..<headDim {
                let r = quantizeGroup(
                    keys + t0 * rowStride + d, count: groupSize, stride: rowStride, bits: bits,
                    codes: codes + t0 * codeRowStride + d, codeStride: codeRowStride,
                    dequantized: dequantized.map { $0 + t0 * dequantizedRowStride + d },
                    dequantizedStride: dequantizedRowStride)
                scales[g * sStride + d] = r.scale
                mins[g * sStride + d] = r.min
            }
        }
    }

    /// KIVI value quantization: each token's `headDim` channels are quantized in groups of
    /// `groupSize` consecutive channels (`headDim` must be a multiple of `groupSize`).
    ///
    /// Writes unpacked codes token-major, `scales`/`mins` per (token, channel group) at
    /// `[t·(headDim/groupSize) + g]`, and optionally the dequantized values.
    public static func quantizeValuesPerToken(
        _ values: UnsafePointer<Float>, tokens: Int, headDim: Int, rowStride: Int, bits: Int, groupSize: Int,
        codes: UnsafeMutablePointer<UInt8>, codeRowStride: Int,
        scales: UnsafeMutablePointer<Float>, mins: UnsafeMutablePointer<Float>,
        dequantized: UnsafeMutablePointer<Float>? = nil, dequantizedRowStride: Int = 0
    ) {
        precondition(headDim % groupSize == 0, "head dimension (\(headDim)) must be a multiple of the group size (\(groupSize))")
        let groups = headDim / groupSize
        for t in 0..<tokens {
            for g in 0..<groups {
                let c0 = g * groupSize
                let r = quantizeGroup(
                    values + t * rowStride + c0, count: groupSize, stride: 1, bits: bits,
                    codes: codes + t * codeRowStride + c0, codeStride: 1,
                    dequantized: dequantized.map { $0 + t * dequantizedRowStride + c0 }, dequantizedStride: 1)
                scales[t * groups + g] = r.scale
                mins[t * groups + g] = r.min
            }
        }
    }
}
