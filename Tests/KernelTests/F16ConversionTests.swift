import CKernels
import Testing

extension Kernels {
    @Suite("f16 conversion") struct F16Conversion {
        static let allHalves: [UInt16] = (0...UInt16.max).map { $0 }

        static func isNaN(_ h: UInt16) -> Bool { h & 0x7C00 == 0x7C00 && h & 0x03FF != 0 }

        static func rowToF32(_ h: [UInt16], _ path: KernelPath) -> [Float] {
            var out = [Float](repeating: 0, count: h.count)
            path.run {
                h.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { sq_f16_to_f32_row(s.baseAddress, $0.baseAddress, Int64(s.count)) } }
            }
            return out
        }

        static func rowToF16(_ f: [Float], _ path: KernelPath) -> [UInt16] {
            var out = [UInt16](repeating: 0, count: f.count)
            path.run {
                f.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { sq_f32_to_f16_row(s.baseAddress, $0.baseAddress, Int64(s.count)) } }
            }
            return out
        }

        /// Every f16 value: decode, encode, and the F16C row converters agree with the scalar ones.
        @Test func roundTripAllValues() {
            var bad: [String] = []
            for h in Self.allHalves {
                let f = sq_f16_to_f32(h)
                let back = sq_f32_to_f16(f)
                if Self.isNaN(h) {
                    // NaNs come back quiet with their payload (as F16C does); a signaling NaN cannot round-trip.
                    if !f.isNaN || f.sign != (h & 0x8000 != 0 ? .minus : .plus) || back != h | 0x0200 {
                        bad.append("NaN 0x\(String(h, radix: 16)) -> \(f) -> 0x\(String(back, radix: 16))")
                    }
                } else if back != h {
                    bad.append("0x\(String(h, radix: 16)) -> \(f) -> 0x\(String(back, radix: 16))")
                }
            }
            #expect(bad.isEmpty, "\(bad.count) failures: \(bad.prefix(5))")
        }

        #if !(os(macOS) && arch(x86_64))
        /// An oracle independent of the C code: Swift's Float16 (IEEE binary16, round to nearest even).
        @Test func decodeMatchesSwiftFloat16() {
            let bad = Self.allHalves.filter { h in
                let f = sq_f16_to_f32(h)
                let want = Float(Float16(bitPattern: h))
                return want.isNaN ? !f.isNaN : f.bitPattern != want.bitPattern
            }
            #expect(bad.isEmpty, "differs for \(bad.prefix(5).map { "0x" + String($0, radix: 16) })")
        }

        @Test("random f32 -> f16: scalar, F16C row and Swift's Float16 agree", arguments: KernelPath.allCases)
        func encodeRandomBitPatterns(_ path: KernelPath) {
            var rng = SplitMix64(seed: 0xF16)
            // Uniform bit patterns cover NaNs, infinities, subnormals and every exponent; more in f16 range.
            let f: [Float] = (0..<(1 << 18)).map { i in
                let bits = UInt32(truncatingIfNeeded: rng.next())
                return i % 2 == 0 ? Float(bitPattern: bits)
                    : Float(bitPattern: (bits & 0x8FFF_FFFF) | 0x3000_0000)  // exponents 2^-31 ... 2^32
            }
            let row = Self.rowToF16(f, path)
            var bad: [String] = []
            for i in f.indices {
                let scalar = sq_f32_to_f16(f[i])
                let swift = f[i].isNaN ? scalar : Float16(f[i]).bitPattern
                if row[i] != scalar || scalar != swift {
                    bad.append("\(f[i]) (0x\(String(f[i].bitPattern, radix: 16))): row 0x\(String(row[i], radix: 16)) scalar 0x\(String(scalar, radix: 16)) Float16 0x\(String(swift, radix: 16))")
                }
            }
            #expect(bad.isEmpty, "\(bad.count) failures: \(bad.prefix(5))")
        }
        #endif

        @Test("row converters equal the scalar conversions on all f16 values", arguments: KernelPath.allCases)
        func rowConvertersAgree(_ path: KernelPath) {
            let decoded = Self.rowToF32(Self.allHalves, path)
            let decodeBad = Self.allHalves.filter { decoded[Int($0)].bitPattern != sq_f16_to_f32($0).bitPattern }
            #expect(decodeBad.isEmpty, "\(path) decode differs for \(decodeBad.prefix(5).map { "0x" + String($0, radix: 16) })")
            let encoded = Self.rowToF16(decoded, path)
            let encodeBad = Self.allHalves.filter { encoded[Int($0)] != sq_f32_to_f16(decoded[Int($0)]) }
            #expect(encodeBad.isEmpty, "\(path) encode differs for \(encodeBad.prefix(5).map { "0x" + String($0, radix: 16) })")
        }

        /// Values exactly halfway between two neighbouring f16 values round to the even one, both signs,
        /// normal and subnormal, including the overflow and underflow edges; one ulp of f32 either side
        /// goes to the nearer neighbour.
        @Test("halfway cases round to nearest even", arguments: KernelPath.allCases)
        func halfwayCases(_ path: KernelPath) {
            var inputs: [Float] = [], expected: [UInt16] = []
            for h in UInt16(0)..<0x7C00 {  // h and h + 1 finite or h + 1 == inf (0x7BFF, 0x7C00)
                let lo = Double(sq_f16_to_f32(h)), hi = h + 1 == 0x7C00 ? 65536.0 : Double(sq_f16_to_f32(h + 1))
                let mid = Float((lo + hi) / 2)  // exact in f32
                let even = h & 1 == 0 ? h : h + 1
                for sign: UInt16 in [0, 0x8000] {
                    let s: Float = sign == 0 ? 1 : -1
                    inputs += [s * mid, s * mid.nextUp, s * mid.nextDown]
                    expected += [even | sign, (h + 1) | sign, h | sign]
                }
            }
            let row = Self.rowToF16(inputs, path)
            var bad: [String] = []
            for i in inputs.indices {
                let scalar = sq_f32_to_f16(inputs[i])
                if scalar != expected[i] || row[i] != expected[i] {
                    bad.append("\(inputs[i]): want 0x\(String(expected[i], radix: 16)) scalar 0x\(String(scalar, radix: 16)) row 0x\(String(row[i], radix: 16))")
                }
            }
            #expect(bad.isEmpty, "\(bad.count) failures: \(bad.prefix(5))")
            // A few named edges.
            #expect(sq_f32_to_f16(65520) == 0x7C00)                      // halfway to 65536: rounds up to inf
            #expect(sq_f32_to_f16(Float(65520).nextDown) == 0x7BFF)      // largest finite f16
            #expect(sq_f32_to_f16(0x1p-25) == 0)                          // halfway to the smallest subnormal: 0 is even
            #expect(sq_f32_to_f16(Float(0x1p-25).nextUp) == 1)
            #expect(sq_f32_to_f16(0x1.8p-24) == 2)                        // halfway between subnormals 1 and 2
        }
    }
}
