import Foundation
import LlamaModel
import Wire

/// What a sequence's KV cache will take, from the cache configuration: the coordinator's
/// estimate for admission control (the workers report what their caches really hold).
public struct KVFootprint: Sendable, Equatable {
    /// Bytes per token per layer.
    public var perToken: Double
    /// Fixed bytes per sequence per layer (the full-precision residual window, SQuat's subspace).
    public var perSequence: Double

    public init(cache: CacheConfig, model: LlamaConfig) {
        let kvDim = Double(model.kvHeadCount * model.headDim)
        let headDim = Double(model.headDim)
        let heads = Double(model.kvHeadCount)
        switch cache.kind {
        case .f32:
            perToken = 2 * kvDim * 4
            perSequence = 0
        case .kivi, .squat:
            let kBits = Double(cache.keyBits == 0 ? 4 : cache.keyBits)
            let vBits = Double(cache.valueBits == 0 ? 4 : cache.valueBits)
            let group = Double(cache.groupSize == 0 ? 32 : cache.groupSize)
            let residual = Double(cache.residualLength == 0 ? 32 : cache.residualLength)
            // Codes, plus a scale and minimum (f16, or f32 with `scales`) per group of keys (per
            // channel over `group` tokens) and of values (per token over `group` channels).
            let scaleBytes: Double = cache.scales == .f32 ? 4 : 2
            perToken = kvDim * (kBits + vBits) / 8 + 2 * kvDim * (2 * scaleBytes) / group
            // The newest `residual` tokens in f32, and for SQuat Q̂ and A⁻¹ per KV head.
            var fixed = residual * 2 * kvDim * 4
            if cache.kind == .squat {
                let sd = Double(cache.subspaceDim == 0 ? 20 : cache.subspaceDim)
                fixed += heads * (sd * headDim + headDim * headDim) * 4
            }
            perSequence = fixed
        default:  // f16 and the cluster default's full precision
            perToken = 2 * kvDim * 2
            perSequence = 0
        }
    }

    /// Bytes for `tokens` tokens over `layers` layers.
    public func bytes(tokens: Int, layers: Int) -> UInt64 {
        UInt64(max(0, (perToken * Double(tokens) + perSequence) * Double(layers)).rounded(.up))
    }
}

/// Bytes the system could still give this process (`MemAvailable`), or nil where unknown.
func systemMemoryAvailable() -> UInt64? {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
        let kb = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return nil }
    return kb * 1024
}
