import CKernels
import Foundation
import Testing

/// `sq_rope` (halves layout) against a Double evaluation of the same rotation.
@Suite struct RopeKernelTests {
    @Test(arguments: [64, 128])
    func ropeMatchesDoubleReference(headDim D: Int) {
        let half = D / 2
        let inv = (0..<half).map { Float(1.0 / pow(100_000.0, Double(2 * $0) / Double(D))) }
        var rng = SplitMix64(seed: UInt64(D))
        let heads = 3
        let x0 = (0..<(heads * D)).map { _ in Float(rng.nextDouble() * 2 - 1) }
        for pos in [0, 1, 31, 95, 4095] {
            var x = x0
            x.withUnsafeMutableBufferPointer { p in
                inv.withUnsafeBufferPointer { sq_rope(p.baseAddress!, Int32(heads), Int32(D), Int64(pos), $0.baseAddress!) }
            }
            for h in 0..<heads {
                for i in 0..<half {
                    let angle = Double(Float(pos) * inv[i])
                    let a = Double(x0[h * D + i]), b = Double(x0[h * D + i + half])
                    #expect(abs(Double(x[h * D + i]) - (a * cos(angle) - b * sin(angle))) < 1e-5)
                    #expect(abs(Double(x[h * D + i + half]) - (a * sin(angle) + b * cos(angle))) < 1e-5)
                }
            }
        }
    }
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
