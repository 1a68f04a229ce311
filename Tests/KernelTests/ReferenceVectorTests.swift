import CKernels
import Foundation
import Testing

extension Kernels {
    /// Our decoders against gguf-py's (the numpy implementation maintained with llama.cpp), on the
    /// fixture rows written by Fixtures/make_quant_fixtures.py. All comparisons are bitwise: every
    /// format decodes with one f32 multiply (and one f32 add or subtract) per element, in the same
    /// order as GGML and gguf-py, so there is no rounding freedom.
    @Suite("gguf-py reference vectors") struct ReferenceVectors {
        @Test func manifestCoversEveryType() throws {
            let manifest = try Fixtures.manifest()
            #expect(Set(manifest.types.map(\.name)) == Set(QType.all.map(\.name)))
            #expect(!manifest.gguf_version.isEmpty)
        }

        @Test("type ids and block sizes are GGML's", arguments: QType.all)
        func blockSizes(_ t: QType) throws {
            let e = try Fixtures.entry(t)
            #expect(e.type == t.id)
            #expect(Int(sq_block_size(t.id)) == e.block_size)
            #expect(Int(sq_block_bytes(t.id)) == e.type_size)
            #expect(try Fixtures.bytes(e.blocks).count == e.rows * e.cols / e.block_size * e.type_size)
        }

        @Test("sq_dequantize_ref equals gguf-py", arguments: QType.all)
        func referenceDequantizer(_ t: QType) throws {
            let e = try Fixtures.entry(t)
            let expected = try Fixtures.floats(e.values)
            let (status, got) = dequantize(t, try Fixtures.bytes(e.blocks), e.rows * e.cols, reference: true)
            #expect(status == 0)
            let bad = bitMismatches(got, expected)
            #expect(bad.isEmpty, "\(t): \(bad.joined(separator: "; "))")
        }

        @Test("sq_dequantize equals gguf-py", arguments: QType.all, KernelPath.allCases)
        func fastDequantizer(_ t: QType, _ path: KernelPath) throws {
            let e = try Fixtures.entry(t)
            let expected = try Fixtures.floats(e.values)
            let blocks = try Fixtures.bytes(e.blocks)
            // The whole tensor at once, then row by row (a different n and start address).
            let (status, got) = path.run { dequantize(t, blocks, e.rows * e.cols) }
            #expect(status == 0)
            var bad = bitMismatches(got, expected)
            #expect(bad.isEmpty, "\(t) \(path): \(bad.joined(separator: "; "))")
            let rowBytes = blocks.count / e.rows
            for r in 0..<e.rows {
                let (s, row) = path.run { dequantize(t, Array(blocks[(r * rowBytes)..<((r + 1) * rowBytes)]), e.cols) }
                #expect(s == 0)
                bad = bitMismatches(row, Array(expected[(r * e.cols)..<((r + 1) * e.cols)]))
                #expect(bad.isEmpty, "\(t) \(path) row \(r): \(bad.joined(separator: "; "))")
            }
        }

        /// numpy's float32 -> float16 (round to nearest even) of the F16 source rows, which include
        /// exact halfway cases, subnormals and the overflow boundary.
        @Test("f32 -> f16 equals numpy", arguments: KernelPath.allCases)
        func f16EncodingMatchesNumpy(_ path: KernelPath) throws {
            let e = try Fixtures.entry(.f16)
            let source = try Fixtures.floats(try #require(e.source))
            let blocks = try Fixtures.bytes(e.blocks)
            let expected = stride(from: 0, to: blocks.count, by: 2).map { UInt16(blocks[$0]) | UInt16(blocks[$0 + 1]) << 8 }
            #expect(source.count == expected.count)
            var row = [UInt16](repeating: 0, count: source.count)
            path.run {
                source.withUnsafeBufferPointer { s in
                    row.withUnsafeMutableBufferPointer { sq_f32_to_f16_row(s.baseAddress, $0.baseAddress, Int64(s.count)) }
                }
            }
            let rowBad = (0..<source.count).filter { row[$0] != expected[$0] }
            #expect(rowBad.isEmpty, "\(path) row converter differs at \(rowBad.prefix(5).map { "\(source[$0]): 0x\(String(row[$0], radix: 16)) vs 0x\(String(expected[$0], radix: 16))" })")
            let scalarBad = (0..<source.count).filter { sq_f32_to_f16(source[$0]) != expected[$0] }
            #expect(scalarBad.isEmpty, "sq_f32_to_f16 differs at \(scalarBad.prefix(5).map { source[$0] })")
        }
    }
}
