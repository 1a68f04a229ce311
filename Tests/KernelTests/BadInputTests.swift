import CKernels
import Testing

extension Kernels {
    @Suite("bad input") struct BadInput {
        /// Ids GGML does not define or this library does not implement.
        static let unknownTypes: [Int32] = [-1, 4, 5, 9, 10, 11, 15, 16, 20, 29, 31, 39, 1000, .max, .min]

        @Test(arguments: unknownTypes)
        func unknownType(_ id: Int32) {
            #expect(sq_block_size(id) == 0)
            #expect(sq_block_bytes(id) == 0)
            let src = [UInt8](repeating: 0x11, count: 1024)
            var dst = [Float](repeating: 7, count: 256)
            let x = [Float](repeating: 1, count: 256)
            src.withUnsafeBytes { s in
                dst.withUnsafeMutableBufferPointer { d in
                    #expect(sq_dequantize(id, s.baseAddress, d.baseAddress, 256) == -1)
                    #expect(sq_dequantize_ref(id, s.baseAddress, d.baseAddress, 256) == -1)
                }
                x.withUnsafeBufferPointer { xp in
                    #expect(sq_dot_ref(id, s.baseAddress, xp.baseAddress, 256).isNaN)
                    #expect(sq_dot(id, s.baseAddress, xp.baseAddress, 256).isNaN)
                }
            }
            #expect(dst.allSatisfy { $0 == 7 }, "an unknown type wrote output")
        }

        /// A length that is not a whole number of blocks is refused without writing.
        @Test(arguments: QType.all.filter { !$0.isFloat })
        func partialBlock(_ t: QType) {
            let src = [UInt8](repeating: 0, count: 4 * t.blockBytes)
            for n in [t.blockSize / 2, t.blockSize + 1, 3 * t.blockSize - 16] {
                var dst = [Float](repeating: 7, count: 4 * t.blockSize)
                src.withUnsafeBytes { s in
                    dst.withUnsafeMutableBufferPointer { d in
                        #expect(sq_dequantize(t.id, s.baseAddress, d.baseAddress, Int64(n)) == -1, "\(t) n=\(n)")
                        #expect(sq_dequantize_ref(t.id, s.baseAddress, d.baseAddress, Int64(n)) == -1, "\(t) n=\(n)")
                    }
                }
                #expect(dst.allSatisfy { $0 == 7 }, "\(t) n=\(n) wrote output")
            }
            var dst = [Float](repeating: 7, count: t.blockSize)
            let status = src.withUnsafeBytes { s in dst.withUnsafeMutableBufferPointer { sq_dequantize(t.id, s.baseAddress, $0.baseAddress, Int64(t.blockSize)) } }
            #expect(status == 0)
            #expect(dst.allSatisfy { $0 == 0 }, "\(t): an all-zero block decodes to zeros")
        }
    }
}
