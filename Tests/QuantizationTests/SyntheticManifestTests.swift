import Foundation
import Testing
@testable import KVCache

/// Writes reference-vector cases of shapes the shared manifest does not have, with our own
/// outputs as the "reference", and runs them through the loader and the kvcheck logic: nothing
/// in either may depend on the shared cases' shapes.
enum SyntheticManifest {
    struct Spec: Sendable {
        var kv: Int, g: Int, D: Int, T: Int, qgs: Int, kBits: Int, vBits: Int, sd: Int, lambda: Double
        var id: String { "synthetic_kv\(kv)_g\(g)_hd\(D)_T\(T)_qgs\(qgs)_k\(kBits)v\(vBits)_sd\(sd)_lam\(lambda)" }
    }

    /// Builds one case: manifest entry and `.bin` bytes.
    static func build(_ s: Spec, seed: UInt64, theta: Double) -> (entry: [String: Any], bin: [UInt8]) {
        let kv = s.kv, g = s.g, D = s.D, T = s.T
        var rng = TestRNG(seed: seed)
        var heads: [SyntheticHead] = []
        for h in 0..<kv { heads.append(SyntheticHead(tokens: T, headDim: D, groups: g, seed: seed &+ UInt64(h))) }
        let q = heads.flatMap(\.queries)  // [kv·g, T, D]
        let k = heads.flatMap(\.keys)
        let v = heads.flatMap(\.values)
        let qDecode = rng.floats(kv * g * D)
        let params = QuantizationParameters(kBits: s.kBits, vBits: s.vBits, subspaceDim: s.sd, lambda: s.lambda, quantGroupSize: s.qgs)
        let nb = D / s.qgs
        let sdUsed = min(s.sd, g * T), nsv = min(g * T, D)

        var arrays: [(String, String, [Int], [UInt8])] = []
        func f32(_ name: String, _ shape: [Int], _ x: [Float]) { arrays.append((name, "f32", shape, x.withUnsafeBytes { Array($0) })) }
        func i32(_ name: String, _ shape: [Int], _ x: [UInt32]) { arrays.append((name, "i32", shape, x.withUnsafeBytes { Array($0) })) }
        func u8(_ name: String, _ shape: [Int], _ x: [UInt8]) { arrays.append((name, "u8", shape, x)) }

        var sv: [Float] = [], qHat: [Float] = [], mats = [[Float]](repeating: [], count: nb), pInv: [Float] = []
        var sq: [QuantizedKeyBlock] = [], sqDeq: [Float] = [], sqTarget: [Float] = []
        var kivi: [QuantizedKeyBlock] = [], vals: [QuantizedValueBlock] = [], grams: [[Double]] = []
        for h in 0..<kv {
            let sub = heads[h].queries.withUnsafeBufferPointer {
                QuerySubspace(queries: $0.baseAddress!, heads: g, tokens: T, headStride: T * D, tokenStride: D, headDim: D, subspaceDim: s.sd)
            }
            grams.append(sub.projectedGram)
            sv += sub.singularValues.map { Float($0) }
            let eig = SymmetricEigendecomposition(symmetric: sub.gram, n: D)
            for r in 0..<sdUsed {
                let sr = max(eig.values[r], 0).squareRoot()
                qHat += (0..<D).map { Float(sr * eig.vectors[r * D + $0]) }
            }
            let m = SquatMatrices(projectedGram: sub.projectedGram, headDim: D, quantGroupSize: s.qgs, lambda: s.lambda)
            for i in 0..<nb { mats[i] += m.mats[i].map { Float($0) } }
            pInv += m.pInv.map { Float($0) }
            // "Reference" SQuat keys: from the Float-stored matrices, as kvcheck's stored path.
            let stored = SquatMatrices(
                mats: m.mats.map { $0.map { Double(Float($0)) } }, pInv: m.pInv.map { Double(Float($0)) }, headDim: D, quantGroupSize: s.qgs)
            let out = heads[h].keys.withUnsafeBufferPointer {
                quantizeKeysSquat($0.baseAddress!, tokens: T, state: SquatHeadState(matrices: stored), params: params)
            }
            sq.append(out.block)
            sqDeq += out.dequantized
            sqTarget += out.target
            kivi.append(heads[h].keys.withUnsafeBufferPointer { quantizeKeysKIVI($0.baseAddress!, tokens: T, headDim: D, params: params) })
            vals.append(heads[h].values.withUnsafeBufferPointer { quantizeValues($0.baseAddress!, tokens: T, headDim: D, params: params) })
        }
        f32("q_states", [1, kv * g, T, D], q)
        f32("k_states", [1, kv, T, D], k)
        f32("v_states", [1, kv, T, D], v)
        f32("q_decode", [1, kv * g, 1, D], qDecode)
        f32("singular_values", [1, kv, nsv], sv)
        f32("query_subspace", [1, kv, sdUsed, D], qHat)
        f32("P_inv", [1, kv, D, D], pInv)
        for i in 0..<nb { f32("Ainv_t_\(i)", i < nb - 1 ? [1, kv, (i + 1) * s.qgs, s.qgs] : [1, kv, D, D], mats[i]) }
        for (prefix, blocks) in [("squat_key", sq), ("kivi_key", kivi)] {
            u8("\(prefix)_codes", [1, kv, T, D], blocks.flatMap { $0.unpackedCodes() })
            f32("\(prefix)_scale", [1, kv, T / 32, D], blocks.flatMap(\.scales))
            f32("\(prefix)_min", [1, kv, T / 32, D], blocks.flatMap(\.mins))
            f32("\(prefix)_dequant", [1, kv, T, D], prefix == "squat_key" ? sqDeq : blocks.flatMap { $0.dequantized() })
            i32("\(prefix)_codes_packed_ref", [1, kv, D, T / (32 / s.kBits)], blocks.flatMap(\.codes))
        }
        f32("squat_key_target", [1, kv, T, D], sqTarget)
        u8("value_codes", [1, kv, T, D], vals.flatMap { $0.unpackedCodes() })
        f32("value_scale", [1, kv, T, D / 32], vals.flatMap(\.scales))
        f32("value_min", [1, kv, T, D / 32], vals.flatMap(\.mins))
        f32("value_dequant", [1, kv, T, D], vals.flatMap { $0.dequantized() })
        i32("value_codes_packed_ref", [1, kv, T, D / (32 / s.vBits)], vals.flatMap(\.codes))
        let rope = KVCheck.referenceRope(headDim: D, theta: theta)
        let kiviDeq = kivi.flatMap { $0.dequantized() }
        for (name, keys) in [("att_qk_squat", sqDeq), ("att_qk_kivi", kiviDeq), ("att_qk_fp32", k)] {
            f32(name, [1, kv * g, 1, T], KVCheck.attentionLogits(qDecode, keys: keys, kvHeads: kv, groups: g, tokens: T, rope: rope))
        }

        var bin: [UInt8] = []
        var entries: [[String: Any]] = []
        for (name, dtype, shape, bytes) in arrays {
            while bin.count % 16 != 0 { bin.append(0) }
            entries.append(["name": name, "dtype": dtype, "shape": shape, "offset": bin.count, "nbytes": bytes.count])
            bin += bytes
        }
        let entry: [String: Any] = [
            "id": s.id, "file": s.id + ".bin", "sha256": SHA256.hex(bin),
            "source": ["kind": "synthetic", "seed": Int(seed)],
            "kv_heads": kv, "groups": g, "head_dim": D, "T": T,
            "params": ["k_bits": s.kBits, "v_bits": s.vBits, "group_size": 32, "quant_group_size": s.qgs,
                       "subspace_dim": s.sd, "squat_lambda": s.lambda],
            "stats": ["rel_err_in_subspace_squat": KVCheck.subspaceError(sqDeq, k, grams: grams, tokens: T, headDim: D),
                      "rel_err_in_subspace_kivi": KVCheck.subspaceError(kiviDeq, k, grams: grams, tokens: T, headDim: D),
                      "squat_equals_kivi_codes": s.qgs == D],
            "arrays": entries,
        ]
        return (entry, bin)
    }

    /// Writes a manifest of `specs` into a new temporary directory; returns the manifest path.
    static func write(_ specs: [Spec], theta: Double = 100_000, edit: ((inout [UInt8], [String: Any]) -> Void)? = nil) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthetic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var cases: [[String: Any]] = []
        for (i, s) in specs.enumerated() {
            var (entry, bin) = build(s, seed: UInt64(7919 * (i + 1)), theta: theta)
            if let edit {
                edit(&bin, entry)
                entry["sha256"] = SHA256.hex(bin)
            }
            try Data(bin).write(to: dir.appendingPathComponent(entry["file"] as! String))
            cases.append(entry)
        }
        let manifest: [String: Any] = ["format_version": 1, "reference_commit": "synthetic", "rope_theta": theta, "group_size": 32, "cases": cases]
        let path = dir.appendingPathComponent("manifest.json")
        try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted]).write(to: path)
        return path.path
    }
}

@Suite struct SyntheticManifestTests {
    static let specs: [SyntheticManifest.Spec] = [
        .init(kv: 1, g: 1, D: 128, T: 32, qgs: 32, kBits: 2, vBits: 2, sd: 40, lambda: 0.001),   // g·T < D, sd = g·T
        .init(kv: 4, g: 2, D: 64, T: 160, qgs: 16, kBits: 4, vBits: 8, sd: 20, lambda: 0.001),
        .init(kv: 3, g: 4, D: 128, T: 96, qgs: 64, kBits: 8, vBits: 4, sd: 5, lambda: 1),
        .init(kv: 2, g: 3, D: 64, T: 224, qgs: 64, kBits: 2, vBits: 2, sd: 20, lambda: 1),      // one block
    ]

    @Test func unseenShapesPassKVCheck() throws {
        let path = try SyntheticManifest.write(Self.specs, theta: 500_000)
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let results = try KVCheck.run(manifestPath: path)
        #expect(results.count == Self.specs.count)
        for r in results {
            #expect(r.failures.isEmpty, "\(r.id): \(r.failures)")
            #expect(r.squatStored.codeMismatches == 0 && r.kiviKeys.codeMismatches == 0 && r.values.codeMismatches == 0)
            #expect(r.squatStored.dequantMaxAbs == 0 && r.kiviKeys.dequantMaxAbs == 0 && r.values.dequantMaxAbs == 0)
            #expect(r.attFp32 < 1e-6 && r.attSquatStored < 1e-6 && r.attKivi < 1e-6)
            #expect(r.singularValueError < 1e-6 && r.gramError < 1e-6)  // Float storage of the "reference"
        }
    }

    @Test func wrongReferenceCodeFailsTheCheck() throws {
        // One KIVI code changed in a consistent file (checksum updated): a tolerance failure, not a load error.
        let path = try SyntheticManifest.write([Self.specs[1]]) { bin, entry in
            let a = (entry["arrays"] as! [[String: Any]]).first { ($0["name"] as! String) == "kivi_key_codes" }!
            let o = a["offset"] as! Int
            bin[o + 5] = bin[o + 5] == 0 ? 1 : 0
        }
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let r = try #require(try KVCheck.run(manifestPath: path).first)
        #expect(!r.passed)
        #expect(r.kiviKeys.codeMismatches == 1)
        #expect(r.failures.contains { $0.contains("KIVI key codes: 1 of") })
        #expect(r.failures.contains { $0.contains("KIVI key packing") })
    }
}
