import Foundation

@testable import LlamaModel

/// A tensor to write into a test safetensors file.
struct STTensor {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: [UInt8]

    static func f32(_ name: String, _ shape: [Int], _ values: [Float]) -> STTensor {
        STTensor(name: name, dtype: "F32", shape: shape, bytes: values.flatMap { le($0.bitPattern) })
    }
    static func f16(_ name: String, _ shape: [Int], bits: [UInt16]) -> STTensor {
        STTensor(name: name, dtype: "F16", shape: shape, bytes: bits.flatMap { le($0) })
    }
    static func bf16(_ name: String, _ shape: [Int], bits: [UInt16]) -> STTensor {
        STTensor(name: name, dtype: "BF16", shape: shape, bytes: bits.flatMap { le($0) })
    }
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// Writes safetensors files the way the reference implementation does (tensors packed in
/// order, header padded with spaces to 8 bytes), or from raw pieces for corruption tests.
enum STWriter {
    /// The header JSON text for `tensors` packed in order.
    static func header(_ tensors: [STTensor], metadata: [String: String]? = ["format": "pt"]) -> String {
        var parts: [String] = []
        if let metadata {
            let m = metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// A complete file: 8-byte length, padded header, data.
    static func file(header: String, data: [UInt8], pad: Bool = true) -> [UInt8] {
        var h = Array(header.utf8)
        if pad { while h.count % 8 != 0 { h.append(0x20) } }
        return le(UInt64(h.count)) + h + data
    }

    static func file(_ tensors: [STTensor], metadata: [String: String]? = ["format": "pt"]) -> [UInt8] {
        file(header: header(tensors, metadata: metadata), data: tensors.flatMap(\.bytes))
    }
}

/// A temporary directory removed when the value is released.
final class TempDir {
    let url: URL
    var path: String { url.path }

    init(_ label: String = "squat-test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = url.appendingPathComponent(name).path
        try writeFile(p, bytes)
        return p
    }
    @discardableResult
    func write(_ name: String, text: String) throws -> String { try write(name, Array(text.utf8)) }
}

/// Replaces the file at `path` with `bytes` using plain POSIX calls (Foundation's
/// `Data.write` takes milliseconds per file here, too slow for fuzz loops). The old file is
/// unlinked first, so a mapping of it stays valid.
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    struct WriteFailed: Error { let path: String }
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw WriteFailed(path: path) }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { throw WriteFailed(path: path) }
}

/// SplitMix64: a small seeded generator, so fuzz runs are reproducible.
struct SeededRandom: RandomNumberGenerator {
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

/// IEEE half → float, written out from the format definition (independent of the kernels).
func halfToFloat(_ h: UInt16) -> Float {
    let sign: Float = h & 0x8000 != 0 ? -1 : 1
    let exp = Int((h >> 10) & 0x1F)
    let mant = Float(h & 0x3FF)
    switch exp {
    case 0: return sign * mant * Float(sign: .plus, exponent: -24, significand: 1)
    case 31: return mant == 0 ? sign * .infinity : .nan
    default: return sign * (1024 + mant) * Float(sign: .plus, exponent: exp - 25, significand: 1)
    }
}

/// The F16 bits of a float that F16 holds exactly (normal range; test values only).
func floatToHalfExact(_ f: Float) -> UInt16 {
    if f == 0 { return f.sign == .minus ? 0x8000 : 0 }
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exp = Int((bits >> 23) & 0xFF) - 127 + 15
    let mant = UInt16((bits >> 13) & 0x3FF)
    return sign | UInt16(exp) << 10 | mant
}

/// A config.json for a tiny LLaMA, with `overrides` replacing or adding keys (JSON text values;
/// a nil value removes the key).
func tinyConfigJSON(_ overrides: [String: String?] = [:]) -> String {
    var keys: [(String, String)] = [
        ("architectures", "[\"LlamaForCausalLM\"]"), ("model_type", "\"llama\""), ("hidden_size", "8"),
        ("intermediate_size", "12"), ("num_hidden_layers", "2"), ("num_attention_heads", "2"),
        ("num_key_value_heads", "1"), ("rms_norm_eps", "1e-05"), ("rope_theta", "10000.0"),
        ("vocab_size", "10"), ("max_position_embeddings", "64"), ("tie_word_embeddings", "false"),
        ("hidden_act", "\"silu\""),
    ]
    for (k, v) in overrides {
        if let i = keys.firstIndex(where: { $0.0 == k }) {
            if let v { keys[i].1 = v } else { keys.remove(at: i) }
        } else if let v {
            keys.append((k, v))
        }
    }
    return "{" + keys.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
}

/// The tensors of the tiny LLaMA of `tinyConfigJSON()` (hidden 8, MLP 12, 2 heads of 4,
/// 1 KV head, vocab 10, 2 layers), with seeded random values, in Hugging Face names and
/// PyTorch `[out, in]` shapes. Norms are BF16 and F16 to mix dtypes.
func tinyModelTensors(seed: UInt64 = 1, lmHead: Bool = true) -> [STTensor] {
    var rng = SeededRandom(seed: seed)
    func f32(_ name: String, _ shape: [Int]) -> STTensor {
        .f32(name, shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) })
    }
    var t: [STTensor] = [f32("model.embed_tokens.weight", [10, 8])]
    for l in 0..<2 {
        let p = "model.layers.\(l)."
        t += [
            f32(p + "self_attn.q_proj.weight", [8, 8]), f32(p + "self_attn.k_proj.weight", [4, 8]),
            f32(p + "self_attn.v_proj.weight", [4, 8]), f32(p + "self_attn.o_proj.weight", [8, 8]),
            f32(p + "mlp.gate_proj.weight", [12, 8]), f32(p + "mlp.up_proj.weight", [12, 8]),
            f32(p + "mlp.down_proj.weight", [8, 12]),
            .bf16(p + "input_layernorm.weight", [8], bits: (0..<8).map { _ in 0x3F80 + UInt16.random(in: 0..<64, using: &rng) }),
            .f16(p + "post_attention_layernorm.weight", [8], bits: (0..<8).map { _ in 0x3C00 + UInt16.random(in: 0..<256, using: &rng) }),
        ]
    }
    t.append(f32("model.norm.weight", [8]))
    if lmHead { t.append(f32("lm_head.weight", [10, 8])) }
    return t
}

/// Runs `body`, expecting a `ModelFileError`; returns it (nil, recorded by the caller, if none).
func modelFileError(_ body: () throws -> Void) -> ModelFileError? {
    do {
        try body()
        return nil
    } catch let e as ModelFileError {
        return e
    } catch {
        return ModelFileError(file: "?", what: "unexpected error type: \(error)")
    }
}
