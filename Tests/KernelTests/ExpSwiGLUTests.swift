import CKernels
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Kernels {
    /// `sq_expf` (glibc's expf method, vectorised in SwiGLU) against libm and a Double reference,
    /// and SwiGLU's AVX2 path against its scalar twin and the libm formula it replaced.
    @Suite("expf and SwiGLU") struct ExpSwiGLU {
        /// Every 997th float bit pattern (4.3 million, all exponents and signs) and the edges of
        /// the range checks.
        static let inputs: [Float] = {
            var xs: [Float] = []
            var bits: UInt64 = 0
            while bits <= UInt64(UInt32.max) {
                xs.append(Float(bitPattern: UInt32(bits)))
                bits += 997
            }
            let edges: [Float] = [
                0, -0.0, 1, -1, .infinity, -.infinity, .nan, 88, -88, 0x1.62e42ep6, 0x1.62e430p6, -0x1.9fe368p6,
                -0x1.9fe36ap6, -87.9, 87.9, -104, 89, .leastNonzeroMagnitude, .greatestFiniteMagnitude,
                -.greatestFiniteMagnitude, 1e-30, -1e-30, 0.5 * Float(M_LN2), -0.5 * Float(M_LN2),
            ]
            return xs + edges
        }()

        @Test("sq_expf is within one ulp of exp, and equals libm's expf")
        func expMatchesReference() {
            var worstUlps = 0.0
            var libmMismatches: [String] = []
            for x in Self.inputs {
                let e = sq_expf(x)
                if x.isNaN {
                    #expect(e.isNaN)
                    continue
                }
                let ref = Foundation.exp(Double(x))
                if ref > Double(Float.greatestFiniteMagnitude) {
                    #expect(e == .infinity, "expf(\(x)) = \(e), expected +inf")
                } else if ref >= Double(Float.leastNormalMagnitude) {
                    worstUlps = max(worstUlps, abs(Double(e) - ref) / Double(Float(ref).ulp))
                } else {
                    // Subnormal results: within one subnormal step.
                    #expect(abs(Double(e) - ref) <= Double(Float.leastNonzeroMagnitude), "expf(\(x))")
                }
                #if canImport(Glibc)
                    let l = Glibc.expf(x)
                    if l.bitPattern != e.bitPattern, libmMismatches.count < 5 {
                        libmMismatches.append("\(x): libm \(l), sq_expf \(e)")
                    }
                #endif
            }
            #expect(worstUlps < 1, "worst error \(worstUlps) ulp")
            #expect(libmMismatches.isEmpty, "\(libmMismatches)")
        }

        @Test("sq_expf_n (eight lanes at a time on AVX2) = sq_expf, on both paths")
        func vectorExpMatchesScalar() {
            let expected = Self.inputs.map { sq_expf($0) }
            for path in KernelPath.allCases {
                var x = Self.inputs
                path.run { sq_expf_n(&x, Int64(x.count)) }
                let keep = x.indices.filter { !Self.inputs[$0].isNaN }
                #expect(bitMismatches(keep.map { x[$0] }, keep.map { expected[$0] }).isEmpty, "\(path)")
                #expect(x.indices.filter { Self.inputs[$0].isNaN }.allSatisfy { x[$0].isNaN })
            }
        }

        /// Values in every regime: ordinary activations, large ones whose exp leaves the fast
        /// path (|x| >= 88) inside otherwise ordinary 8-lane runs, and the special values.
        static func activations(_ n: Int, seed: UInt64) -> ([Float], [Float]) {
            var rng = SplitMix64(seed: seed)
            var a = (0..<n).map { i in Float(rng.nextDouble() * 2 - 1) * (i % 41 == 0 && i >= 24 ? 300 : 12) }
            // The special values go in the third 8-lane run and in the tail past the last full
            // run, so that the first two runs take the vector path.
            let specials: [Float] = [.nan, .infinity, -.infinity, -0.0, 0, 88, -88, 104, -104]
            let tail = n - n % 8
            for (k, v) in specials.enumerated() {
                if 16 + k < min(24, n) { a[16 + k] = v }
                if tail + k < n { a[tail + k] = specials[(k + 3) % specials.count] }
            }
            let b = (0..<n).map { _ in Float(rng.nextDouble() * 2 - 1) }
            return (a, b)
        }

        static func swiglu(_ a: [Float], _ b: [Float], _ path: KernelPath) -> [Float] {
            var out = a
            path.run { sq_swiglu(&out, b, Int64(out.count)) }
            return out
        }

        @Test(
            "SwiGLU: AVX2 = scalar bit for bit, = v / (1 + expf(-v)) * b",
            arguments: [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 23, 24, 31, 1536, 4099])
        func swigluAgrees(n: Int) {
            let (a, b) = Self.activations(n, seed: UInt64(n))
            let fast = Self.swiglu(a, b, .avx2)
            let slow = Self.swiglu(a, b, .scalar)
            #expect(bitMismatches(fast, slow).isEmpty, "\(bitMismatches(fast, slow))")
            #if canImport(Glibc)
                let formula = zip(a, b).map { v, w in v / (1 + Glibc.expf(-v)) * w }
                // NaN inputs give NaN on both sides; compare the rest bit for bit.
                let keep = a.indices.filter { !a[$0].isNaN }
                let lhs = keep.map { fast[$0] }
                let rhs = keep.map { formula[$0] }
                #expect(bitMismatches(lhs, rhs).isEmpty, "\(bitMismatches(lhs, rhs))")
                #expect(a.indices.filter { a[$0].isNaN }.allSatisfy { fast[$0].isNaN })
            #endif
        }
    }
}
