import CKernels

/// Rotary position embedding in the `halves` layout (channel i pairs with i + D/2).
public struct Rope: Sendable {
    public let headDim: Int
    public let inverseFrequencies: [Float]

    public init(headDim: Int, inverseFrequencies: [Float]) {
        precondition(inverseFrequencies.count == headDim / 2, "RoPE needs headDim/2 frequencies")
        self.headDim = headDim
        self.inverseFrequencies = inverseFrequencies
    }

    /// Rotates `heads` consecutive heads at `x` for position `position`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        inverseFrequencies.withUnsafeBufferPointer {
            sq_rope(x, Int32(heads), Int32(headDim), Int64(position), $0.baseAddress)
        }
    }
}
