import ArgumentParser
import Foundation
import KVCache
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Set by SIGINT/SIGTERM: long-running cluster commands finish their loop and clean up.
let stopRequested = Atomic<Bool>(false)

enum Signals {
    /// Routes SIGINT and SIGTERM to `stopRequested`.
    static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in stopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
        signal(SIGPIPE, SIG_IGN)
        // A parent may start us with these blocked (Foundation's Process inherits the spawning
        // thread's mask): unblock them, or a SIGTERM would wait forever.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
    static var stop: Bool { stopRequested.load(ordering: .relaxed) }
}

extension CacheOptions {
    /// The cache flags as the wire's cache configuration (sent to workers in Assign).
    func wireConfig(headDim: Int) throws -> CacheConfig {
        let base = kv.split(separator: ":").first.map(String.init) ?? kv
        guard kv.split(separator: ":").count == 1 else {
            throw ValidationError(
                "the cluster takes a plain --kv (full, full-f16, full-f32, kivi, squat) and bit flags, not '\(kv)'")
        }
        let kind: CacheKind
        switch base {
        case "full": kind = cache == "f32" ? .f32 : .f16
        case "full-f16": kind = .f16
        case "full-f32": kind = .f32
        case "kivi": kind = .kivi
        case "squat": kind = .squat
        default:
            throw ValidationError("--kv \(kv) is not available in the cluster (full, full-f16, full-f32, kivi, squat)")
        }
        // Every setting explicit, so that workers started with other flags still build this cache;
        // parsed as the cache factory parses them.
        func wire(_ r: RopePlacement) -> RopePlacementWire { r == .pre ? .pre : .post }
        let keyRope = try keyRopePlacement(default: kind == .kivi ? .post : .pre)
        return CacheConfig(
            kind: kind, keyBits: UInt32(kBits), valueBits: UInt32(vBits), groupSize: UInt32(groupSize),
            residualLength: UInt32(residualLength), quantGroupSize: UInt32(quantGroupSize ?? min(32, headDim)),
            subspaceDim: UInt32(subspaceDim), squatLambda: Float(squatLambda),
            keyRope: wire(keyRope), subspaceRope: wire(try subspacePlacement()),
            scales: try scaleStorage() == .f32 ? .f32 : .f16)
    }

    /// These flags overridden by an Assign's cache configuration (zero fields keep the flags).
    func applying(_ c: CacheConfig) -> CacheOptions {
        var o = self
        switch c.kind {
        case .f16:
            o.kv = "full"
            o.cache = "f16"
        case .f32:
            o.kv = "full"
            o.cache = "f32"
        case .kivi: o.kv = "kivi"
        case .squat: o.kv = "squat"
        case .unspecified: break
        default: o.kv = "kind \(c.kind.rawValue) (unknown here)"  // refused by name by the factory
        }
        if c.keyBits > 0 { o.kBits = Int(c.keyBits) }
        if c.valueBits > 0 { o.vBits = Int(c.valueBits) }
        if c.groupSize > 0 { o.groupSize = Int(c.groupSize) }
        if c.residualLength > 0 { o.residualLength = Int(c.residualLength) }
        if c.quantGroupSize > 0 { o.quantGroupSize = Int(c.quantGroupSize) }
        if c.subspaceDim > 0 { o.subspaceDim = Int(c.subspaceDim) }
        if c.squatLambda > 0 { o.squatLambda = Double(c.squatLambda) }
        // A value this build does not know becomes a setting the cache factory refuses by name.
        func name(_ names: [UInt32: String], _ raw: UInt32) -> String { names[raw] ?? "value \(raw) (unknown here)" }
        if c.keyRope != .unspecified { o.keyRope = name(RopePlacementWire.names, c.keyRope.rawValue) }
        if c.subspaceRope != .unspecified { o.subspaceRope = name(RopePlacementWire.names, c.subspaceRope.rawValue) }
        if c.scales != .unspecified { o.kvScales = name(ScaleStorage.names, c.scales.rawValue) }
        return o
    }
}

extension Finished.Reason {
    /// The name `squat generate` prints for the same ending.
    var generateName: String {
        switch self {
        case .endOfSequence: "stop"
        case .stopString: "stop_string"
        case .maxTokens: "length"
        case .contextFull: "context_full"
        case .cancelled: "cancelled"
        default: "error"
        }
    }
}
