import Foundation
import Testing
@testable import KVCache

/// Shapes no reference case has: odd multiples of 32 tokens, head dims 64/128, 1–4 query heads
/// per KV head, 1–4 KV heads, every quant group size.
struct Shape: CustomTestStringConvertible, Sendable {
    let kv: Int, g: Int, D: Int, T: Int, qgs: Int, kBits: Int, vBits: Int, lambda: Double
    var testDescription: String { "kv\(kv) g\(g) D\(D) T\(T) qgs\(qgs) k\(kBits)v\(vBits) λ\(lambda)" }
    var params: QuantizationParameters {
        QuantizationParameters(kBits: kBits, vBits: vBits, subspaceDim: 20, lambda: lambda, quantGroupSize: qgs)
    }
    static let all: [Shape] = [
        Shape(kv: 1, g: 1, D: 64, T: 32, qgs: 16, kBits: 2, vBits: 2, lambda: 0.001),
        Shape(kv: 2, g: 3, D: 64, T: 160, qgs: 32, kBits: 4, vBits: 2, lambda: 0.001),
        Shape(kv: 4, g: 2, D: 128, T: 96, qgs: 32, kBits: 2, vBits: 4, lambda: 0.001),
        Shape(kv: 3, g: 4, D: 128, T: 224, qgs: 64, kBits: 8, vBits: 8, lambda: 1),
        Shape(kv: 1, g: 4, D: 128, T: 32, qgs: 128, kBits: 2, vBits: 2, lambda: 0.001),
        Shape(kv: 4, g: 1, D: 64, T: 96, qgs: 16, kBits: 4, vBits: 4, lambda: 1),
    ]
}

@Suite struct SelfConsistencyTests {
    /// The reference's `new_quant` written out directly: per block, quantize, then
    /// `X[:, c:] += (d·mats[i]ᵀ)·P_inv[c:, :c]ᵀ` with two Double products (no precomputed `W_i`).
    static func directNewQuant(_ keys: [Float], tokens T: Int, matrices m: SquatMatrices, bits: Int) -> (codes: [UInt8], target: [Float]) {
        let D = m.headDim, qgs = m.quantGroupSize, nb = m.blocks
        var x = keys
        var codes = [UInt8](repeating: 0, count: T * D)
        var deq = [Float](repeating: 0, count: T * D)
        for i in 0..<nb {
            let c0 = i * qgs
            for g in 0..<(T / 32) {
                for d in c0..<(c0 + qgs) {
                    x.withUnsafeBufferPointer { xp in
                        codes.withUnsafeMutableBufferPointer { cp in
                            deq.withUnsafeMutableBufferPointer { dp in
                                _ = MinMaxQuantizer.quantizeGroup(
                                    xp.baseAddress! + g * 32 * D + d, count: 32, stride: D, bits: bits,
                                    codes: cp.baseAddress! + g * 32 * D + d, codeStride: D,
                                    dequantized: dp.baseAddress! + g * 32 * D + d, dequantizedStride: D)
                            }
                        }
                    }
                }
            }
            guard i < nb - 1 else { break }
            let c = c0 + qgs
            for t in 0..<T {
                let dv = (0..<qgs).map { Double(deq[t * D + c0 + $0] - x[t * D + c0 + $0]) }
                // y = d · mats[i]ᵀ  (length c), then update = y · P_inv[c:, :c]ᵀ.
                let y = (0..<c).map { k in (0..<qgs).reduce(0.0) { $0 + dv[$1] * m.mats[i][k * qgs + $1] } }
                for b in c..<D {
                    let u = (0..<c).reduce(0.0) { $0 + y[$1] * m.pInv[b * D + $1] }
                    x[t * D + b] = x[t * D + b] + Float(u)
                }
            }
        }
        return (codes, x)
    }

    @Test(arguments: Shape.all)
    func squatIsConsistent(shape s: Shape) throws {
        try s.params.validate(headDim: s.D)
        for h in 0..<s.kv {
            let head = SyntheticHead(tokens: s.T, headDim: s.D, groups: s.g, seed: UInt64(1000 * s.D + 10 * s.T + h))
            let sub = head.queries.withUnsafeBufferPointer {
                QuerySubspace(queries: $0.baseAddress!, heads: s.g, tokens: s.T, headStride: s.T * s.D, tokenStride: s.D,
                              headDim: s.D, subspaceDim: 20)
            }
            #expect(sub.subspaceDim == min(20, s.g * s.T))
            let matrices = SquatMatrices(projectedGram: sub.projectedGram, headDim: s.D, quantGroupSize: s.qgs, lambda: s.lambda)
            let state = SquatHeadState(matrices: matrices)
            #expect(state.compensation.count == s.D / s.qgs - 1)
            let whole = head.keys.withUnsafeBufferPointer { quantizeKeysSquat($0.baseAddress!, tokens: s.T, state: state, params: s.params) }

            // The packed block dequantizes to the returned keys.
            #expect(whole.block.dequantized() == whole.dequantized)

            // 32 tokens at a time (decode flushes) equals all at once, bit for bit.
            var codes: [UInt8] = [], deq: [Float] = [], target: [Float] = [], scales: [Float] = [], mins: [Float] = []
            for start in stride(from: 0, to: s.T, by: 32) {
                let part = head.keys.withUnsafeBufferPointer {
                    quantizeKeysSquat($0.baseAddress! + start * s.D, tokens: 32, state: state, params: s.params)
                }
                codes += part.block.unpackedCodes()
                deq += part.dequantized
                target += part.target
                scales += part.block.scales
                mins += part.block.mins
            }
            #expect(codes == whole.block.unpackedCodes())
            #expect(deq == whole.dequantized && target == whole.target)
            #expect(scales == whole.block.scales && mins == whole.block.mins)

            // Strided input (a token-major cache row of several heads) gives the same result.
            let stride = s.D * 3
            var wide = [Float](repeating: 0, count: s.T * stride)
            for t in 0..<s.T { for d in 0..<s.D { wide[t * stride + s.D + d] = head.keys[t * s.D + d] } }
            let strided = wide.withUnsafeBufferPointer {
                quantizeKeysSquat($0.baseAddress! + s.D, tokens: s.T, rowStride: stride, state: state, params: s.params)
            }
            #expect(strided.block == whole.block && strided.target == whole.target)

            // The reference's two-product formula gives the same codes up to rounding ties.
            let direct = Self.directNewQuant(head.keys, tokens: s.T, matrices: matrices, bits: s.kBits)
            let mismatches = zip(direct.codes, whole.block.unpackedCodes()).filter { $0 != $1 }.count
            #expect(Double(mismatches) <= 0.001 * Double(s.T * s.D), "\(mismatches) codes differ from the direct formula")
            if mismatches == 0 {
                let range = Double(head.keys.max()! - head.keys.min()!)
                #expect(maxAbsDiff(direct.target, whole.target) <= 1e-5 * range)
            }

            // Matrices stored as Float (as in a reference file) reproduce the codes up to ties.
            let stored = SquatMatrices(
                mats: matrices.mats.map { $0.map { Double(Float($0)) } }, pInv: matrices.pInv.map { Double(Float($0)) },
                headDim: s.D, quantGroupSize: s.qgs)
            let fromStored = head.keys.withUnsafeBufferPointer {
                quantizeKeysSquat($0.baseAddress!, tokens: s.T, state: SquatHeadState(matrices: stored), params: s.params)
            }
            let storedMismatches = zip(fromStored.block.unpackedCodes(), whole.block.unpackedCodes()).filter { $0 != $1 }.count
            let budget = s.lambda <= 0.01 ? 0.001 : 0.015
            #expect(Double(storedMismatches) <= budget * Double(s.T * s.D))

            // One block, or λ = 0: SQuat is KIVI on the same keys.
            let kivi = head.keys.withUnsafeBufferPointer { quantizeKeysKIVI($0.baseAddress!, tokens: s.T, headDim: s.D, params: s.params) }
            if s.qgs == s.D { #expect(whole.block == kivi) }
            let zeroLambda = SquatHeadState(matrices: SquatMatrices(projectedGram: sub.projectedGram, headDim: s.D, quantGroupSize: s.qgs, lambda: 0))
            let plain = head.keys.withUnsafeBufferPointer { quantizeKeysSquat($0.baseAddress!, tokens: s.T, state: zeroLambda, params: s.params) }
            #expect(plain.block == kivi)
            #expect(plain.target == head.keys)

            // SQuat lowers the error inside the query subspace (its objective) in multi-block cases.
            if s.qgs < s.D {
                let eS = KVCheck.subspaceError(whole.dequantized, head.keys, grams: [sub.projectedGram], tokens: s.T, headDim: s.D)
                let eK = KVCheck.subspaceError(kivi.dequantized(), head.keys, grams: [sub.projectedGram], tokens: s.T, headDim: s.D)
                #expect(eS < eK, "SQuat \(eS) vs KIVI \(eK)")
            }
        }
    }

    @Test(arguments: Shape.all)
    func valuesAnyTokenCount(shape s: Shape) {
        let head = SyntheticHead(tokens: s.T, headDim: s.D, groups: 1, seed: UInt64(s.T + s.D))
        let all = head.values.withUnsafeBufferPointer { quantizeValues($0.baseAddress!, tokens: s.T, headDim: s.D, params: s.params) }
        // One token at a time (decode) gives the same codes, scales and mins.
        var codes: [UInt32] = [], scales: [Float] = [], mins: [Float] = []
        for t in 0..<s.T {
            let one = head.values.withUnsafeBufferPointer {
                quantizeValues($0.baseAddress! + t * s.D, tokens: 1, headDim: s.D, params: s.params)
            }
            codes += one.codes
            scales += one.scales
            mins += one.mins
        }
        #expect(codes == all.codes && scales == all.scales && mins == all.mins)
        let deq = all.dequantized()
        for t in [0, s.T - 1] {
            for d in 0..<s.D { #expect(all.value(token: t, channel: d) == deq[t * s.D + d]) }
        }
    }
}
