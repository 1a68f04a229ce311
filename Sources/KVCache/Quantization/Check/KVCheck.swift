import Foundation

/// Pass/fail limits of `KVCheck` (README "Suggested tolerances").
public struct KVCheckTolerances: Sendable {
    /// Cases with λ ≤ this (or a single channel block) must reproduce the SQuat codes from our
    /// own subspace and matrices up to rounding ties; larger λ (ill-conditioned `A`) get `budgetFraction`.
    public var strictLambdaMax = 0.01
    /// Strict cases: share of SQuat key codes allowed to differ (rounding ties).
    public var tieFraction = 0.001
    /// λ = 1-like cases: share of SQuat key codes allowed to differ.
    public var budgetFraction = 0.015
    /// Dequantized keys/values (where codes agree): max |Δ| / range of the reference data.
    public var dequantRelative = 1e-4
    /// Singular values: max |Δσ| / σ_max.
    public var singularValueRelative = 5e-6
    /// `Q̂ᵀQ̂`: max |Δ| / max |ref|.
    public var gramRelative = 2e-5
    /// Strict cases: our `mats`/`P_inv` against the stored ones, max |Δ| / max |ref|.
    public var matrixRelative = 1e-4
    /// Attention logits: max |Δ| / max |ref|.
    public var attentionRelative = 1e-4
    /// Our SQuat `rel_err_in_subspace` may exceed the reference's by at most this factor.
    public var subspaceErrorFactor = 1.1

    public init() {}
}

/// Our quantization of one kind of tensor against the reference's.
public struct KVCheckQuantComparison: Sendable {
    /// Codes that differ, and all codes.
    public var codeMismatches = 0
    public var codes = 0
    /// Of the differing codes, those where the reference's quotient `(x−mn)/scale` lies within
    /// 0.01 of a rounding boundary (x.5).
    public var nearTies = 0
    /// Dequantized values: max |Δ| over all, and over the positions where the codes agree.
    public var dequantMaxAbs = 0.0
    public var dequantMaxAbsAgreeing = 0.0
    /// max − min of the reference's dequantized values.
    public var range = 0.0
    /// Our packing of the reference's codes equals the reference's packed words.
    public var packingLayoutMatches = true
    /// Our packed words equal the reference's (meaningful when the codes agree).
    public var packedMatches = true
    /// SQuat only: compensated target, max |Δ| / range of the reference target.
    public var targetRelative: Double? = nil

    public var mismatchFraction: Double { codes == 0 ? 0 : Double(codeMismatches) / Double(codes) }
    public var dequantRelative: Double { range > 0 ? dequantMaxAbs / range : dequantMaxAbs }
    public var dequantRelativeAgreeing: Double { range > 0 ? dequantMaxAbsAgreeing / range : dequantMaxAbsAgreeing }
}

/// Everything `squat kvcheck` measures on one case.
public struct KVCheckCaseResult: Sendable {
    public var id: String
    public var summary: String
    public var lambda: Double
    /// Whether our own subspace/matrices must reproduce the codes (see `KVCheckTolerances.strictLambdaMax`).
    public var strict: Bool
    public var squat = KVCheckQuantComparison()
    public var squatStored = KVCheckQuantComparison()
    public var kiviKeys = KVCheckQuantComparison()
    public var values = KVCheckQuantComparison()
    /// max |Δσ| / σ_max over heads.
    public var singularValueError = 0.0
    /// max |ΔQ̂ᵀQ̂| / max |Q̂ᵀQ̂_ref|.
    public var gramError = 0.0
    /// Our `mats` (worst of all) and `P_inv` against the stored ones: max |Δ| / max |ref|.
    public var matsError = 0.0
    public var pInvError = 0.0
    /// Attention logits `q_decode · RoPE(k̂)ᵀ`: max |Δ| / max |ref|.
    public var attSquat = 0.0
    public var attSquatStored = 0.0
    public var attKivi = 0.0
    public var attFp32 = 0.0
    /// `‖Q̂(k̂−k)ᵀ‖ / ‖Q̂kᵀ‖`: ours (our Q̂ᵀQ̂ and our keys) and the reference's stats.
    public var relErrSubspaceSquat = 0.0
    public var relErrSubspaceSquatRef: Double?
    public var relErrSubspaceKivi = 0.0
    public var relErrSubspaceKiviRef: Double?
    /// QL iterations of the eigen-solver (max over heads).
    public var solverIterations = 0
    /// `Q̂ᵀQ̂` from cyclic Jacobi against the default Householder+QL: max |Δ| / max.
    public var jacobiAgreement = 0.0
    public var failures: [String] = []

    public var passed: Bool { failures.isEmpty }
}

/// Runs reference-vector cases through our quantization code from their inputs and compares
/// every output with the reference's (the logic behind `squat kvcheck`).
public enum KVCheck {
    /// Loads a manifest and checks every case. Load errors (a bad manifest or `.bin`) throw.
    public static func run(
        manifestPath: String, tolerances: KVCheckTolerances = KVCheckTolerances()
    ) throws(ReferenceVectorError) -> [KVCheckCaseResult] {
        let manifest = try ReferenceManifest(path: manifestPath)
        var results: [KVCheckCaseResult] = []
        for c in manifest.cases {
            let data = try manifest.load(c)
            results.append(try check(data, ropeTheta: manifest.ropeTheta, tolerances: tolerances))
        }
        return results
    }

    /// Checks one loaded case.
    public static func check(
        _ data: ReferenceCaseData, ropeTheta: Double, tolerances tol: KVCheckTolerances = KVCheckTolerances()
    ) throws(ReferenceVectorError) -> KVCheckCaseResult {
        let c = data.info
        let kv = c.kvHeads, g = c.groups, D = c.headDim, T = c.tokens, p = c.params
        let params = p.quantization
        let nb = c.blocks, qgs = p.quantGroupSize, gs = p.groupSize
        let strict = nb == 1 || p.lambda <= tol.strictLambdaMax
        var r = KVCheckCaseResult(
            id: c.id,
            summary: "kv \(kv), g \(g), D \(D), T \(T), k\(p.kBits)v\(p.vBits), qgs \(qgs), sd \(p.subspaceDim), λ \(p.lambda)",
            lambda: p.lambda, strict: strict)

        let q = try data.floats("q_states")
        let k = try data.floats("k_states")
        let v = try data.floats("v_states")
        let qDecode = try data.floats("q_decode")
        let svRef = try data.floats("singular_values")
        let qHat = try data.floats("query_subspace")
        let pInvRef = try data.floats("P_inv")
        let matsRef = try (0..<nb).map { i throws(ReferenceVectorError) in try data.floats("Ainv_t_\(i)") }

        let n = kv * T * D
        var squatCodes = [UInt8](repeating: 0, count: n), squatDeq = [Float](repeating: 0, count: n)
        var squatTarget = [Float](repeating: 0, count: n), squatPacked: [UInt32] = []
        var storedCodes = [UInt8](repeating: 0, count: n), storedDeq = [Float](repeating: 0, count: n)
        var storedTarget = [Float](repeating: 0, count: n), storedPacked: [UInt32] = []
        var kiviCodes = [UInt8](repeating: 0, count: n), kiviDeq = [Float](repeating: 0, count: n), kiviPacked: [UInt32] = []
        var valCodes = [UInt8](repeating: 0, count: n), valDeq = [Float](repeating: 0, count: n), valPacked: [UInt32] = []
        var grams: [[Double]] = []
        let nsv = min(g * T, D), sd = c.subspaceDimUsed

        for h in 0..<kv {
            let base = h * T * D
            // KIVI keys (pre-RoPE) and values.
            let kivi = k.withUnsafeBufferPointer { kp in
                kiviDeq.withUnsafeMutableBufferPointer { out in
                    QuantizedKeyBlock(quantizing: kp.baseAddress! + base, tokens: T, headDim: D, bits: p.kBits,
                                      groupSize: gs, dequantizedInto: out.baseAddress! + base)
                }
            }
            kiviCodes.replaceSubrange(base..<(base + T * D), with: kivi.unpackedCodes())
            kiviPacked += kivi.codes
            let vals = v.withUnsafeBufferPointer { vp in
                valDeq.withUnsafeMutableBufferPointer { out in
                    QuantizedValueBlock(quantizing: vp.baseAddress! + base, tokens: T, headDim: D, bits: p.vBits,
                                        groupSize: gs, dequantizedInto: out.baseAddress! + base)
                }
            }
            valCodes.replaceSubrange(base..<(base + T * D), with: vals.unpackedCodes())
            valPacked += vals.codes

            // Query subspace from the post-RoPE queries [g, T, D] of this KV head.
            let subspace = q.withUnsafeBufferPointer { qp in
                QuerySubspace(queries: qp.baseAddress! + h * g * T * D, heads: g, tokens: T, headStride: T * D,
                              tokenStride: D, headDim: D, subspaceDim: p.subspaceDim)
            }
            grams.append(subspace.projectedGram)
            var gRef = [Double](repeating: 0, count: D * D)
            for s in 0..<sd {
                let row = (h * sd + s) * D
                for i in 0..<D {
                    let a = Double(qHat[row + i])
                    for j in 0..<D { gRef[i * D + j] += a * Double(qHat[row + j]) }
                }
            }
            r.gramError = max(r.gramError, maxAbsDiff(subspace.projectedGram, gRef) / max(maxAbs(gRef), .leastNormalMagnitude))
            let svr = (0..<nsv).map { Double(svRef[h * nsv + $0]) }
            let svMax = max(svr.max() ?? 0, .leastNormalMagnitude)
            r.singularValueError = max(r.singularValueError, maxAbsDiff(Array(subspace.singularValues.prefix(nsv)), svr) / svMax)
            r.solverIterations = max(r.solverIterations, subspace.solverIterations)
            let viaJacobi = QuerySubspace(gram: subspace.gram, rows: g * T, headDim: D, subspaceDim: p.subspaceDim, method: .jacobi)
            r.jacobiAgreement = max(r.jacobiAgreement, maxAbsDiff(viaJacobi.projectedGram, subspace.projectedGram)
                                    / max(maxAbs(subspace.projectedGram), .leastNormalMagnitude))

            // Our matrices vs the stored ones.
            let own = SquatMatrices(projectedGram: subspace.projectedGram, headDim: D, quantGroupSize: qgs, lambda: p.lambda)
            var storedMats: [[Double]] = []
            for i in 0..<nb {
                let rows = i < nb - 1 ? (i + 1) * qgs : D
                let cols = i < nb - 1 ? qgs : D
                let ref = matsRef[i][(h * rows * cols)..<((h + 1) * rows * cols)].map { Double($0) }
                storedMats.append(ref)
                r.matsError = max(r.matsError, maxAbsDiff(own.mats[i], ref) / max(maxAbs(ref), .leastNormalMagnitude))
            }
            let pRef = pInvRef[(h * D * D)..<((h + 1) * D * D)].map { Double($0) }
            r.pInvError = max(r.pInvError, maxAbsDiff(own.pInv, pRef) / max(maxAbs(pRef), .leastNormalMagnitude))

            // SQuat keys with our matrices, and with the stored ones.
            for (state, stored) in [(SquatHeadState(matrices: own), false),
                                    (SquatHeadState(matrices: SquatMatrices(mats: storedMats, pInv: pRef, headDim: D, quantGroupSize: qgs)), true)] {
                let out = k.withUnsafeBufferPointer { kp in
                    quantizeKeysSquat(kp.baseAddress! + base, tokens: T, state: state, params: params)
                }
                let codes = out.block.unpackedCodes()
                if stored {
                    storedCodes.replaceSubrange(base..<(base + T * D), with: codes)
                    storedDeq.replaceSubrange(base..<(base + T * D), with: out.dequantized)
                    storedTarget.replaceSubrange(base..<(base + T * D), with: out.target)
                    storedPacked += out.block.codes
                } else {
                    squatCodes.replaceSubrange(base..<(base + T * D), with: codes)
                    squatDeq.replaceSubrange(base..<(base + T * D), with: out.dequantized)
                    squatTarget.replaceSubrange(base..<(base + T * D), with: out.target)
                    squatPacked += out.block.codes
                }
            }
        }

        // Codes, dequantized values, packing.
        let refTarget = try data.floats("squat_key_target")
        r.squat = try compare(data, prefix: "squat_key", codes: squatCodes, deq: squatDeq, packed: squatPacked,
                              tokens: T, headDim: D, kvHeads: kv, bits: p.kBits, keys: true)
        r.squat.targetRelative = maxAbsDiff(squatTarget, refTarget) / range(refTarget)
        r.squat.nearTies = try nearTies(data, ours: squatCodes, target: refTarget, tokens: T, headDim: D, kvHeads: kv, groupSize: gs)
        r.squatStored = try compare(data, prefix: "squat_key", codes: storedCodes, deq: storedDeq, packed: storedPacked,
                                    tokens: T, headDim: D, kvHeads: kv, bits: p.kBits, keys: true)
        r.squatStored.targetRelative = maxAbsDiff(storedTarget, refTarget) / range(refTarget)
        r.kiviKeys = try compare(data, prefix: "kivi_key", codes: kiviCodes, deq: kiviDeq, packed: kiviPacked,
                                 tokens: T, headDim: D, kvHeads: kv, bits: p.kBits, keys: true)
        r.values = try compare(data, prefix: "value", codes: valCodes, deq: valDeq, packed: valPacked,
                               tokens: T, headDim: D, kvHeads: kv, bits: p.vBits, keys: false)

        // Attention logits q_decode · RoPE(k̂)ᵀ at key positions 0..<T.
        let rope = referenceRope(headDim: D, theta: ropeTheta)
        func att(_ keys: [Float]) -> [Float] { attentionLogits(qDecode, keys: keys, kvHeads: kv, groups: g, tokens: T, rope: rope) }
        func attErr(_ ours: [Float], _ name: String) throws(ReferenceVectorError) -> Double {
            let ref = try data.floats(name)
            return maxAbsDiff(ours, ref) / max(maxAbs(ref.map(Double.init)), .leastNormalMagnitude)
        }
        r.attSquat = try attErr(att(squatDeq), "att_qk_squat")
        r.attSquatStored = try attErr(att(storedDeq), "att_qk_squat")
        r.attKivi = try attErr(att(kiviDeq), "att_qk_kivi")
        r.attFp32 = try attErr(att(k), "att_qk_fp32")

        // ‖Q̂(k̂−k)ᵀ‖ / ‖Q̂kᵀ‖ with our Q̂ᵀQ̂.
        r.relErrSubspaceSquat = subspaceError(squatDeq, k, grams: grams, tokens: T, headDim: D)
        r.relErrSubspaceKivi = subspaceError(kiviDeq, k, grams: grams, tokens: T, headDim: D)
        r.relErrSubspaceSquatRef = c.stat("rel_err_in_subspace_squat")
        r.relErrSubspaceKiviRef = c.stat("rel_err_in_subspace_kivi")

        r.failures = failures(r, tolerances: tol)
        return r
    }

    // MARK: Verdict

    static func failures(_ r: KVCheckCaseResult, tolerances tol: KVCheckTolerances) -> [String] {
        var f: [String] = []
        func fmt(_ x: Double) -> String { String(format: "%.3g", x) }
        for (name, cmp) in [("KIVI key", r.kiviKeys), ("value", r.values), ("SQuat key (stored Ainv_t/P_inv)", r.squatStored)] {
            if cmp.codeMismatches > 0 { f.append("\(name) codes: \(cmp.codeMismatches) of \(cmp.codes) differ (must be exact)") }
            if cmp.dequantRelative > tol.dequantRelative {
                f.append("\(name) dequantized: max |Δ|/range \(fmt(cmp.dequantRelative)) > \(fmt(tol.dequantRelative))")
            }
            if !cmp.packingLayoutMatches { f.append("\(name) packing: our packing of the reference codes differs from the reference's words") }
            if cmp.codeMismatches == 0, !cmp.packedMatches { f.append("\(name) packed words differ although the codes agree") }
        }
        if let t = r.squatStored.targetRelative, t > tol.dequantRelative {
            f.append("SQuat target (stored Ainv_t/P_inv): max |Δ|/range \(fmt(t)) > \(fmt(tol.dequantRelative))")
        }
        if !r.squat.packingLayoutMatches { f.append("SQuat key packing: our packing of the reference codes differs from the reference's words") }
        let budget = r.strict ? tol.tieFraction : tol.budgetFraction
        if r.squat.mismatchFraction > budget {
            f.append("SQuat key codes (own subspace): \(r.squat.codeMismatches) of \(r.squat.codes) differ (\(fmt(100 * r.squat.mismatchFraction))% > \(fmt(100 * budget))%)")
        }
        if r.squat.codeMismatches == 0, !r.squat.packedMatches { f.append("SQuat packed words differ although the codes agree") }
        if r.singularValueError > tol.singularValueRelative {
            f.append("singular values: max |Δ|/σmax \(fmt(r.singularValueError)) > \(fmt(tol.singularValueRelative))")
        }
        if r.gramError > tol.gramRelative { f.append("Q̂ᵀQ̂: max |Δ|/max \(fmt(r.gramError)) > \(fmt(tol.gramRelative))") }
        if r.strict {
            if r.squat.dequantRelativeAgreeing > tol.dequantRelative {
                f.append("SQuat dequantized keys (own subspace, agreeing codes): max |Δ|/range \(fmt(r.squat.dequantRelativeAgreeing)) > \(fmt(tol.dequantRelative))")
            }
            if r.squat.codeMismatches == 0, r.attSquat > tol.attentionRelative {
                f.append("attention logits (SQuat, own subspace): \(fmt(r.attSquat)) > \(fmt(tol.attentionRelative))")
            }
        }
        // The matrices themselves only where A is well conditioned (with one block they are unused).
        if r.lambda <= tol.strictLambdaMax {
            if r.matsError > tol.matrixRelative { f.append("Ainv_t (own): max |Δ|/max \(fmt(r.matsError)) > \(fmt(tol.matrixRelative))") }
            if r.pInvError > tol.matrixRelative { f.append("P_inv (own): max |Δ|/max \(fmt(r.pInvError)) > \(fmt(tol.matrixRelative))") }
        }
        if let ref = r.relErrSubspaceSquatRef, r.relErrSubspaceSquat > ref * tol.subspaceErrorFactor {
            f.append("rel_err_in_subspace (SQuat): ours \(fmt(r.relErrSubspaceSquat)) > \(tol.subspaceErrorFactor) × reference \(fmt(ref))")
        }
        for (name, e) in [("SQuat, stored matrices", r.attSquatStored), ("KIVI", r.attKivi), ("fp32", r.attFp32)]
        where e > tol.attentionRelative {
            f.append("attention logits (\(name)): max |Δ|/max \(fmt(e)) > \(fmt(tol.attentionRelative))")
        }
        return f
    }

    // MARK: Pieces

    private static func compare(
        _ data: ReferenceCaseData, prefix: String, codes: [UInt8], deq: [Float], packed: [UInt32],
        tokens T: Int, headDim D: Int, kvHeads kv: Int, bits: Int, keys: Bool
    ) throws(ReferenceVectorError) -> KVCheckQuantComparison {
        let refCodes = try data.uint8s("\(prefix)_codes")
        let refDeq = try data.floats("\(prefix)_dequant")
        let refPacked = try data.int32s("\(prefix)_codes_packed_ref").map { UInt32(bitPattern: $0) }
        var cmp = KVCheckQuantComparison()
        cmp.codes = codes.count
        for i in 0..<codes.count {
            let d = abs(Double(deq[i]) - Double(refDeq[i]))
            cmp.dequantMaxAbs = max(cmp.dequantMaxAbs, d)
            if codes[i] != refCodes[i] {
                cmp.codeMismatches += 1
            } else {
                cmp.dequantMaxAbsAgreeing = max(cmp.dequantMaxAbsAgreeing, d)
            }
        }
        cmp.range = range(refDeq)
        var refPackedByUs: [UInt32] = []
        for h in 0..<kv {
            let slice = Array(refCodes[(h * T * D)..<((h + 1) * T * D)])
            refPackedByUs += keys ? CodePacking.packKeys(slice, tokens: T, channels: D, bits: bits)
                : CodePacking.packValues(slice, tokens: T, channels: D, bits: bits)
        }
        cmp.packingLayoutMatches = refPackedByUs == refPacked
        cmp.packedMatches = packed == refPacked
        return cmp
    }

    /// Differing SQuat codes whose reference quotient `(target − mn)/scale` is within 0.01 of x.5.
    private static func nearTies(
        _ data: ReferenceCaseData, ours: [UInt8], target: [Float], tokens T: Int, headDim D: Int, kvHeads kv: Int, groupSize gs: Int
    ) throws(ReferenceVectorError) -> Int {
        let refCodes = try data.uint8s("squat_key_codes")
        let scale = try data.floats("squat_key_scale")
        let mn = try data.floats("squat_key_min")
        var count = 0
        for h in 0..<kv {
            for t in 0..<T {
                for d in 0..<D {
                    let i = (h * T + t) * D + d
                    guard ours[i] != refCodes[i] else { continue }
                    let s = (h * (T / gs) + t / gs) * D + d
                    let quotient = Double((target[i] - mn[s]) / scale[s])
                    if abs(quotient - quotient.rounded(.down) - 0.5) < 0.01 { count += 1 }
                }
            }
        }
        return count
    }

    /// RoPE as the reference builds it: `inv_freq = 1 / θ^(2i/D)` in Float.
    public static func referenceRope(headDim D: Int, theta: Double) -> Rope {
        let inv = (0..<(D / 2)).map { i in Float(1) / Foundation.pow(Float(theta), Float(2 * i) / Float(D)) }
        return Rope(headDim: D, inverseFrequencies: inv)
    }

    /// `q · RoPE(k_t)ᵀ` for each query head (`q`: `[kv·g, D]`) and key position `t < T`
    /// (`keys`: pre-RoPE `[kv, T, D]`), unscaled: `[kv·g, T]`.
    public static func attentionLogits(_ q: [Float], keys: [Float], kvHeads kv: Int, groups g: Int, tokens T: Int, rope: Rope) -> [Float] {
        let D = rope.headDim
        var rotated = keys
        rotated.withUnsafeMutableBufferPointer { p in
            for h in 0..<kv {
                for t in 0..<T { rope.apply(p.baseAddress! + (h * T + t) * D, heads: 1, position: t) }
            }
        }
        var out = [Float](repeating: 0, count: kv * g * T)
        for hq in 0..<(kv * g) {
            let h = hq / g
            for t in 0..<T {
                var s = 0.0
                for d in 0..<D { s += Double(q[hq * D + d]) * Double(rotated[(h * T + t) * D + d]) }
                out[hq * T + t] = Float(s)
            }
        }
        return out
    }

    /// `‖Q̂(k̂−k)ᵀ‖_F / ‖Q̂kᵀ‖_F` over all heads, from `Q̂ᵀQ̂` per head: `‖Q̂xᵀ‖² = Σ_t x_t·Q̂ᵀQ̂·x_tᵀ`.
    public static func subspaceError(_ approx: [Float], _ exact: [Float], grams: [[Double]], tokens T: Int, headDim D: Int) -> Double {
        var num = 0.0, den = 0.0
        for (h, gm) in grams.enumerated() {
            for t in 0..<T {
                let row = (h * T + t) * D
                for i in 0..<D {
                    let ei = Double(approx[row + i]) - Double(exact[row + i])
                    let ki = Double(exact[row + i])
                    var se = 0.0, sk = 0.0
                    for j in 0..<D {
                        se += gm[i * D + j] * (Double(approx[row + j]) - Double(exact[row + j]))
                        sk += gm[i * D + j] * Double(exact[row + j])
                    }
                    num += ei * se
                    den += ki * sk
                }
            }
        }
        return den > 0 ? (max(num, 0) / den).squareRoot() : 0
    }

    static func maxAbsDiff(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0) { max($0, abs(Double($1.0) - Double($1.1))) }
    }

    static func maxAbs(_ a: [Double]) -> Double { a.reduce(0) { max($0, abs($1)) } }

    static func range(_ a: [Float]) -> Double {
        guard let lo = a.min(), let hi = a.max(), hi > lo else { return 1 }
        return Double(hi) - Double(lo)
    }
}
