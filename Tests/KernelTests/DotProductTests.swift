import CKernels
import Foundation
import Testing

/// Row lengths exercised per type: whole blocks, several super-blocks, and for the float types
/// lengths that leave a tail after the 32-wide main loop.
func testLengths(_ t: QType) -> [Int] {
    switch t.blockSize {
    case 1: return [1, 37, 576, 1536]
    case 32: return [32, 576, 1536]
    default: return [256, 512, 1536]
    }
}

extension Kernels {
    @Suite("dot products") struct DotProducts {
        /// |sq_dot - sq_dot_ref| <= tolerance * sum |w_i x_i|: a float32 accumulation error bound that
        /// cannot be met by a wrong decode and does not blow up when the sum cancels.
        static let tolerance = 1e-6

        @Test("sq_dot is close to sq_dot_ref", arguments: QType.all, KernelPath.allCases)
        func dotMatchesReference(_ t: QType, _ path: KernelPath) {
            var rng = SplitMix64(seed: 0xD07 ^ UInt64(t.id))
            for n in testLengths(t) {
                let rows = 3
                let w = t.randomRows(rows, n, using: &rng)
                let x = randomFloats(n, using: &rng)
                for r in 0..<rows {
                    let rowBytes = Array(w[(r * t.rowBytes(n))..<((r + 1) * t.rowBytes(n))])
                    let (status, weights) = dequantize(t, rowBytes, n, reference: true)
                    #expect(status == 0)
                    var exact = 0.0, magnitude = 0.0
                    for i in 0..<n {
                        exact += Double(weights[i]) * Double(x[i])
                        magnitude += abs(Double(weights[i]) * Double(x[i]))
                    }
                    let (ref, got) = rowBytes.withUnsafeBytes { p in
                        (dotRef(t, p.baseAddress!, x, n), path.run { dot(t, p.baseAddress!, x, n) })
                    }
                    #expect(ref == exact, "\(t) n=\(n): sq_dot_ref \(ref) vs \(exact)")
                    let err = abs(Double(got) - ref)
                    #expect(err <= Self.tolerance * magnitude,
                            "\(t) \(path) n=\(n) row \(r): \(got) vs \(ref), error \(err / magnitude) of sum|wx|")
                }
            }
        }

        /// The scalar kernels repeat the AVX2 lane arithmetic: one answer whatever the CPU.
        @Test("scalar and AVX2 kernels give the same bits", arguments: QType.all)
        func scalarMatchesAVX2(_ t: QType) {
            var rng = SplitMix64(seed: 0x5CA1 ^ UInt64(t.id))
            for n in testLengths(t) {
                let w = t.randomRows(2, n, using: &rng)
                let x = randomFloats(n, using: &rng)
                w.withUnsafeBytes { p in
                    for r in 0..<2 {
                        let row = p.baseAddress! + r * t.rowBytes(n)
                        let a = KernelPath.avx2.run { dot(t, row, x, n) }
                        let s = KernelPath.scalar.run { dot(t, row, x, n) }
                        #expect(a.bitPattern == s.bitPattern, "\(t) n=\(n) row \(r): avx2 \(a) scalar \(s)")
                    }
                }
                let fast = KernelPath.avx2.run { dequantize(t, w, 2 * n) }
                let slow = KernelPath.scalar.run { dequantize(t, w, 2 * n) }
                let ref = dequantize(t, w, 2 * n, reference: true)
                #expect(bitMismatches(fast.values, ref.values).isEmpty, "\(t) n=\(n): AVX2 dequantize differs from the reference")
                #expect(bitMismatches(slow.values, ref.values).isEmpty, "\(t) n=\(n): scalar dequantize differs from the reference")
            }
        }

        /// The gguf-py fixture rows (realistic quantized data for the legacy formats).
        @Test("sq_dot on the gguf-py rows", arguments: QType.all, KernelPath.allCases)
        func fixtureRows(_ t: QType, _ path: KernelPath) throws {
            let e = try Fixtures.entry(t)
            let blocks = try Fixtures.bytes(e.blocks)
            let values = try Fixtures.floats(e.values)
            var rng = SplitMix64(seed: 0xF1C5)
            let x = randomFloats(e.cols, using: &rng)
            var checked = 0
            for r in 0..<e.rows {
                let w = values[(r * e.cols)..<((r + 1) * e.cols)]
                guard w.allSatisfy(\.isFinite) else { continue }  // the F16 row of special values holds infinities
                let magnitude = zip(w, x).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
                let (ref, got) = blocks.withUnsafeBytes { p in
                    let row = p.baseAddress! + r * blocks.count / e.rows
                    return (dotRef(t, row, x, e.cols), path.run { dot(t, row, x, e.cols) })
                }
                #expect(abs(Double(got) - ref) <= Self.tolerance * magnitude, "\(t) \(path) row \(r): \(got) vs \(ref)")
                checked += 1
            }
            #expect(checked >= 3)
        }
    }

    @Suite("CPU features") struct CPUFeatures {
        #if arch(x86_64) && os(Linux)
        /// Guards the AVX2 tests against silently running the scalar kernels.
        @Test func avx2DetectedWhenPresent() throws {
            let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
            let expected: Int32 = flags.isSuperset(of: ["avx2", "fma", "f16c"]) ? 1 : 0
            #expect(sq_have_avx2() == expected)
        }
        #endif

        @Test func forceScalarReturnsPreviousSetting() {
            let original = sq_force_scalar(1)
            #expect(sq_force_scalar(0) == 1)
            #expect(sq_force_scalar(original) == 0)
        }
    }
}
