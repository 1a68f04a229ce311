import CKernels
import Foundation
import Testing

/// Every test that calls a kernel whose code path depends on `sq_force_scalar` lives in a suite
/// nested in this one: `.serialized` is inherited, so no test observes another one's toggle.
@Suite(.serialized) enum Kernels {}

/// A tensor type of the kernel library, with what the tests need to build random rows of it.
struct QType: Sendable, CustomStringConvertible {
    let name: String
    let id: Int32
    let blockSize: Int
    let blockBytes: Int
    /// Byte offsets of f16 scale fields (d) and of f16 offset fields (m, dmin) inside a block.
    let scaleOffsets: [Int]
    let offsetOffsets: [Int]

    var description: String { name }
    var isFloat: Bool { blockSize == 1 }

    static let f32 = QType(name: "F32", id: Int32(SQ_TYPE_F32), blockSize: 1, blockBytes: 4, scaleOffsets: [], offsetOffsets: [])
    static let f16 = QType(name: "F16", id: Int32(SQ_TYPE_F16), blockSize: 1, blockBytes: 2, scaleOffsets: [], offsetOffsets: [])
    static let bf16 = QType(name: "BF16", id: Int32(SQ_TYPE_BF16), blockSize: 1, blockBytes: 2, scaleOffsets: [], offsetOffsets: [])
    static let q8_0 = QType(name: "Q8_0", id: Int32(SQ_TYPE_Q8_0), blockSize: 32, blockBytes: 34, scaleOffsets: [0], offsetOffsets: [])
    static let q4_0 = QType(name: "Q4_0", id: Int32(SQ_TYPE_Q4_0), blockSize: 32, blockBytes: 18, scaleOffsets: [0], offsetOffsets: [])
    static let q4_1 = QType(name: "Q4_1", id: Int32(SQ_TYPE_Q4_1), blockSize: 32, blockBytes: 20, scaleOffsets: [0], offsetOffsets: [2])
    static let q5_0 = QType(name: "Q5_0", id: Int32(SQ_TYPE_Q5_0), blockSize: 32, blockBytes: 22, scaleOffsets: [0], offsetOffsets: [])
    static let q5_1 = QType(name: "Q5_1", id: Int32(SQ_TYPE_Q5_1), blockSize: 32, blockBytes: 24, scaleOffsets: [0], offsetOffsets: [2])
    static let q4_K = QType(name: "Q4_K", id: Int32(SQ_TYPE_Q4_K), blockSize: 256, blockBytes: 144, scaleOffsets: [0], offsetOffsets: [2])
    static let q5_K = QType(name: "Q5_K", id: Int32(SQ_TYPE_Q5_K), blockSize: 256, blockBytes: 176, scaleOffsets: [0], offsetOffsets: [2])
    static let q6_K = QType(name: "Q6_K", id: Int32(SQ_TYPE_Q6_K), blockSize: 256, blockBytes: 210, scaleOffsets: [208], offsetOffsets: [])

    static let all: [QType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    func rowBytes(_ n: Int) -> Int { n / blockSize * blockBytes }

    /// Random rows of `n` elements: floats in [-1, 1) for the float types; for block types random
    /// bytes (every bit pattern is a valid block) with finite f16 scales and offsets of realistic size.
    func randomRows(_ rows: Int, _ n: Int, using rng: inout SplitMix64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rows * rowBytes(n))
        switch id {
        case QType.f32.id:
            for i in 0..<(rows * n) { out.storeLE(UInt32(Float.random(in: -1..<1, using: &rng).bitPattern), at: 4 * i) }
        case QType.f16.id:
            for i in 0..<(rows * n) { out.storeLE(UInt16(sq_f32_to_f16(Float.random(in: -1..<1, using: &rng))), at: 2 * i) }
        case QType.bf16.id:
            for i in 0..<(rows * n) { out.storeLE(UInt16(Float.random(in: -1..<1, using: &rng).bitPattern >> 16), at: 2 * i) }
        default:
            for i in out.indices { out[i] = UInt8.random(in: 0...255, using: &rng) }
            for b in 0..<(out.count / blockBytes) {
                for off in scaleOffsets {
                    let d = Float.random(in: 0.002..<0.05, using: &rng) * (Bool.random(using: &rng) ? 1 : -1)
                    out.storeLE(sq_f32_to_f16(d), at: b * blockBytes + off)
                }
                for off in offsetOffsets {
                    out.storeLE(sq_f32_to_f16(Float.random(in: -0.5..<0.5, using: &rng)), at: b * blockBytes + off)
                }
            }
        }
        return out
    }
}

/// Which implementation sq_* dispatches to.
enum KernelPath: String, Sendable, CustomStringConvertible, CaseIterable {
    case avx2, scalar
    var description: String { rawValue }

    /// Runs `body` with this path selected, restoring the previous setting afterwards.
    func run<T>(_ body: () throws -> T) rethrows -> T {
        let previous = sq_force_scalar(self == .scalar ? 1 : 0)
        defer { _ = sq_force_scalar(previous) }
        return try body()
    }
}

/// Deterministic generator (SplitMix64), so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == UInt8 {
    mutating func storeLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        for i in 0..<(T.bitWidth / 8) { self[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
}

func randomFloats(_ count: Int, using rng: inout SplitMix64) -> [Float] {
    (0..<count).map { _ in Float.random(in: -1..<1, using: &rng) }
}

/// Float arrays compared by bit pattern: index and values of the first differences.
func bitMismatches(_ a: [Float], _ b: [Float], limit: Int = 5) -> [String] {
    var out: [String] = []
    for i in 0..<Swift.min(a.count, b.count) where a[i].bitPattern != b[i].bitPattern {
        if out.count == limit { out.append("..."); break }
        out.append("[\(i)] \(a[i]) (0x\(String(a[i].bitPattern, radix: 16))) vs \(b[i]) (0x\(String(b[i].bitPattern, radix: 16)))")
    }
    if a.count != b.count { out.append("count \(a.count) vs \(b.count)") }
    return out
}

// MARK: - C calls over Swift arrays

func dequantize(_ t: QType, _ bytes: [UInt8], _ n: Int, reference: Bool = false) -> (status: Int32, values: [Float]) {
    var out = [Float](repeating: .nan, count: n)
    let status = bytes.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer { dst in
            reference ? sq_dequantize_ref(t.id, src.baseAddress, dst.baseAddress, Int64(n))
                : sq_dequantize(t.id, src.baseAddress, dst.baseAddress, Int64(n))
        }
    }
    return (status, out)
}

func dot(_ t: QType, _ row: UnsafeRawPointer, _ x: [Float], _ n: Int) -> Float {
    x.withUnsafeBufferPointer { sq_dot(t.id, row, $0.baseAddress, Int64(n)) }
}

func dotRef(_ t: QType, _ row: UnsafeRawPointer, _ x: [Float], _ n: Int) -> Double {
    x.withUnsafeBufferPointer { sq_dot_ref(t.id, row, $0.baseAddress, Int64(n)) }
}

// MARK: - fixtures written by Fixtures/make_quant_fixtures.py (gguf-py)

struct FixtureManifest: Decodable {
    struct Entry: Decodable {
        let name: String
        let type: Int32
        let block_size: Int
        let type_size: Int
        let rows: Int
        let cols: Int
        let blocks: String
        let values: String
        let source: String?
    }
    let gguf_version: String
    let types: [Entry]
}

enum Fixtures {
    static var directory: URL {
        get throws {
            try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures missing from the test bundle")
        }
    }

    static func manifest() throws -> FixtureManifest {
        try JSONDecoder().decode(FixtureManifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
    }

    static func entry(_ t: QType) throws -> FixtureManifest.Entry {
        try #require(try manifest().types.first { $0.name == t.name }, "no fixture for \(t.name)")
    }

    static func bytes(_ file: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(file)))
    }

    /// Little-endian float32 file.
    static func floats(_ file: String) throws -> [Float] {
        let raw = try bytes(file)
        try #require(raw.count % 4 == 0)
        return stride(from: 0, to: raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
        }
    }
}
