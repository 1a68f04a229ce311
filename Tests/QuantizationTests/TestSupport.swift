import Foundation
@testable import KVCache

/// Deterministic random numbers for tests.
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x2545_F491_4F6C_DD1D | 1 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u = max(uniform(), 1e-300)
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * Double.pi * uniform())
    }
    mutating func floats(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(normal() * scale) } }
}

/// Paths of the shared reference vectors, found from this file's location.
enum SharedVectors {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static var directory: URL { packageRoot.deletingLastPathComponent().appendingPathComponent("shared/squat-vectors") }
    static var manifest: String { directory.appendingPathComponent("manifest.json").path }
    static var caseIDs: [String] {
        (try? ReferenceManifest(path: manifest).cases.map(\.id)) ?? []
    }
}

/// Random keys with a few large channels (like real keys) and queries with a decaying spectrum,
/// for self-consistency tests on arbitrary shapes.
struct SyntheticHead {
    let tokens: Int
    let headDim: Int
    let groups: Int
    var keys: [Float]       // tokens × headDim
    var values: [Float]     // tokens × headDim
    var queries: [Float]    // groups × tokens × headDim (head-major)

    init(tokens T: Int, headDim D: Int, groups g: Int, seed: UInt64) {
        var rng = TestRNG(seed: seed)
        tokens = T
        headDim = D
        groups = g
        let channelScale = (0..<D).map { _ in Foundation.exp(rng.normal()) }
        keys = (0..<(T * D)).map { i in Float(rng.normal() * channelScale[i % D] + 0.5 * channelScale[i % D]) }
        values = rng.floats(T * D)
        // Queries: a random basis with decaying weights plus noise.
        let basis = (0..<D).map { _ in rng.floats(D) }
        queries = []
        for _ in 0..<(g * T) {
            var row = [Float](repeating: 0, count: D)
            for k in 0..<D {
                let w = rng.normal() * Foundation.pow(0.85, Double(k))
                for j in 0..<D { row[j] += Float(w) * basis[k][j] }
            }
            queries += row
        }
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0) { max($0, abs(Double($1.0) - Double($1.1))) }
}

func maxAbsDiff(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
