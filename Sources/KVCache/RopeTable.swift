import CKernels

/// cos/sin of RoPE angles for every position up to a context length, [position][D/2], computed
/// exactly as `sq_rope` computes them. The packed caches' attention reads the rows of key-group
/// starts and of in-group offsets (0..<group size) from it.
///
/// `@unchecked Sendable`: immutable after init.
public final class RopeTable: @unchecked Sendable {
    public let positions: Int
    public let half: Int
    public let cos: UnsafeMutablePointer<Float>
    public let sin: UnsafeMutablePointer<Float>

    public init(rope: Rope, positions: Int) {
        self.positions = positions
        half = rope.headDim / 2
        cos = .allocate(capacity: max(1, positions * half))
        sin = .allocate(capacity: max(1, positions * half))
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * rope.inverseFrequencies[i]
                cos[p * half + i] = _cos(angle)
                sin[p * half + i] = _sin(angle)
            }
        }
    }

    deinit {
        cos.deallocate()
        sin.deallocate()
    }
}

#if canImport(Glibc)
    import Glibc
    @inline(__always) func _cos(_ x: Float) -> Float { Glibc.cosf(x) }
    @inline(__always) func _sin(_ x: Float) -> Float { Glibc.sinf(x) }
#elseif canImport(Darwin)
    import Darwin
    @inline(__always) func _cos(_ x: Float) -> Float { Darwin.cosf(x) }
    @inline(__always) func _sin(_ x: Float) -> Float { Darwin.sinf(x) }
#endif
