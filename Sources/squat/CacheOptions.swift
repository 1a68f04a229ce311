import ArgumentParser
import KVCache

/// KV-cache flags shared by generate, eval, bench (and later worker/coordinator).
struct CacheOptions: ParsableArguments {
    @Option(help: "KV cache: full, kivi or squat.") var kv: String = "squat"
    @Option(help: "Full-precision cache storage (with --kv full): f16 or f32.") var cache: String = "f16"
    @Option(help: "Bits per key code: 2, 4 or 8.") var kBits: Int = 4
    @Option(help: "Bits per value code: 2, 4 or 8.") var vBits: Int = 4
    @Option(help: "Tokens per key group / channels per value group.") var groupSize: Int = 32
    @Option(help: "Newest tokens kept in full precision.") var residualLength: Int = 32
    @Option(help: "SQuat: rank of the query subspace.") var subspaceDim: Int = 20
    @Option(help: "SQuat: λ in A = I + λ·Q̂ᵀQ̂.") var squatLambda: Double = 0.001
    @Option(
        help:
            "SQuat: channels per compensation block (must divide the head dim; default 32, or the head dim if smaller)."
    )
    var quantGroupSize: Int?
    @Option(help: "SQuat: queries for the subspace, pre or post RoPE.") var subspaceRope: String = "post"
    @Option(help: "Quantize keys pre or post RoPE (default: pre for squat, post for kivi).") var keyRope: String?
    @Option(help: "Storage of quantization scales and minimums: f16 (smaller) or f32 (as the reference code).")
    var kvScales: String = "f16"

    /// A cache specification: `base[:k2v2][:qgs32][:sd20]`, the base one of `full`, `full-f16`,
    /// `full-f32`, `kivi`, `kivi-prerope`, `squat`; unspecified settings come from the flags.
    func factory(spec: String? = nil, headDim: Int, contextLength: Int) throws -> any KVCacheFactory {
        let parts = (spec ?? kv).split(separator: ":").map(String.init)
        guard let base = parts.first else { throw ValidationError("empty cache specification") }
        var p = QuantizationParameters(
            kBits: kBits, vBits: vBits, groupSize: groupSize, residualLength: residualLength, subspaceDim: subspaceDim,
            lambda: squatLambda, quantGroupSize: quantGroupSize ?? min(32, headDim))
        for opt in parts.dropFirst() {
            if opt.hasPrefix("qgs"), let v = Int(opt.dropFirst(3)) {
                p.quantGroupSize = v
            } else if opt.hasPrefix("sd"), let v = Int(opt.dropFirst(2)) {
                p.subspaceDim = v
            } else if opt.hasPrefix("k"), let vi = opt.firstIndex(of: "v"),
                let k = Int(opt[opt.index(after: opt.startIndex)..<vi]),
                let v = Int(opt[opt.index(after: vi)...])
            {
                p.kBits = k
                p.vBits = v
            } else {
                throw ValidationError("cache option '\(opt)' in '\(spec ?? kv)' is not kNvM, qgsN or sdN")
            }
        }
        let method: KeyQuantization
        switch base {
        case "full", "full-f16": return FullPrecisionCacheFactory(precision: base == "full" ? fullPrecision() : .f16)
        case "full-f32": return FullPrecisionCacheFactory(precision: .f32)
        case "kivi":
            method = .kivi
            p.keyRope = try keyRopePlacement(default: .post)
        case "kivi-prerope":
            method = .kivi
            p.keyRope = .pre
        case "squat":
            method = .squat
            p.keyRope = try keyRopePlacement(default: .pre)
        default:
            throw ValidationError("unknown cache '\(base)' (full, full-f16, full-f32, kivi, kivi-prerope, squat)")
        }
        // Quantized caches only (a full-precision cache has no subspace).
        p.subspaceRope = try subspacePlacement()
        do {
            try p.validate(headDim: headDim)
        } catch {
            throw ValidationError("\(error)")
        }
        return QuantizedCacheFactory(
            method: method, params: p, contextLength: contextLength, scales: try scaleStorage())
    }

    private func fullPrecision() -> FullPrecision { FullPrecision(rawValue: cache) ?? .f16 }

    /// `--subspace-rope`, checked.
    func subspacePlacement() throws -> RopePlacement {
        guard let r = RopePlacement(rawValue: subspaceRope) else {
            throw ValidationError("--subspace-rope must be pre or post, got '\(subspaceRope)'")
        }
        return r
    }

    /// `--kv-scales`, checked.
    func scaleStorage() throws -> FullPrecision {
        guard let s = FullPrecision(rawValue: kvScales) else {
            throw ValidationError("--kv-scales must be f16 or f32, got '\(kvScales)'")
        }
        return s
    }

    /// `--key-rope`, checked; `d` when not given (the cache kind's default).
    func keyRopePlacement(default d: RopePlacement) throws -> RopePlacement {
        guard let keyRope else { return d }
        guard let r = RopePlacement(rawValue: keyRope) else {
            throw ValidationError("--key-rope must be pre or post, got '\(keyRope)'")
        }
        return r
    }

    func validate() throws {
        guard FullPrecision(rawValue: cache) != nil else {
            throw ValidationError("--cache must be f16 or f32, got '\(cache)'")
        }
    }
}

extension CacheOptions {
    /// These options as command-line flags (to start cluster processes with the same cache).
    var commandLineFlags: [String] {
        var f = [
            "--kv", kv, "--cache", cache, "--k-bits", "\(kBits)", "--v-bits", "\(vBits)", "--group-size",
            "\(groupSize)",
            "--residual-length", "\(residualLength)", "--subspace-dim", "\(subspaceDim)", "--squat-lambda",
            "\(squatLambda)",
            "--subspace-rope", subspaceRope, "--kv-scales", kvScales,
        ]
        if let quantGroupSize { f += ["--quant-group-size", "\(quantGroupSize)"] }
        if let keyRope { f += ["--key-rope", keyRope] }
        return f
    }
}
