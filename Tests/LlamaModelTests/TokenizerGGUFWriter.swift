import Foundation

@testable import LlamaModel

/// Writes small GGUF v3 files holding only metadata, for tokenizer tests.
enum TestGGUFWriter {
    enum Value {
        case string(String)
        case uint32(UInt32)
        case int32(Int32)
        case float32(Float)
        case bool(Bool)
        case strings([String])
        case int32s([Int32])
        case float32s([Float])
    }

    static func write(_ kvs: [(String, Value)]) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-tok-\(UUID().uuidString).gguf")
        try Data(encode(kvs)).write(to: url)
        return url.path
    }

    /// The bytes of a GGUF v3 file holding `kvs` and no tensors.
    static func encode(_ kvs: [(String, Value)]) -> [UInt8] {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) {
            let b = Array(s.utf8)
            u64(UInt64(b.count))
            d.append(contentsOf: b)
        }
        u32(0x4655_4747)
        u32(3)
        u64(0)
        u64(UInt64(kvs.count))
        for (k, v) in kvs {
            str(k)
            switch v {
            case .string(let s): u32(8); str(s)
            case .uint32(let x): u32(4); u32(x)
            case .int32(let x): u32(5); u32(UInt32(bitPattern: x))
            case .float32(let x): u32(6); u32(x.bitPattern)
            case .bool(let b): u32(7); d.append(b ? 1 : 0)
            case .strings(let a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            case .int32s(let a): u32(9); u32(5); u64(UInt64(a.count)); a.forEach { u32(UInt32(bitPattern: $0)) }
            case .float32s(let a): u32(9); u32(6); u64(UInt64(a.count)); a.forEach { u32($0.bitPattern) }
            }
        }
        return Array(d)
    }

    /// Writes the file, loads it, removes it.
    static func tokenizer(_ kvs: [(String, Value)]) throws -> Tokenizer {
        let path = try write(kvs)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Tokenizer(gguf: try GGUFFile(path: path))
    }

    /// The error loading such a file gives (nil if it loads).
    static func loadError(_ kvs: [(String, Value)]) throws -> ModelFileError? {
        let path = try write(kvs)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try Tokenizer(gguf: try GGUFFile(path: path))
            return nil
        } catch {
            return error
        }
    }

    /// A tiny SentencePiece ("llama") vocabulary: <unk> <s> </s>, 256 byte tokens <0x00>…<0xFF>
    /// (ids 3…258), then scored pieces from id 259.
    static let spmPieces: [(String, Float)] = [
        ("▁", -10), ("h", -10), ("e", -10), ("l", -10), ("o", -10), ("a", -10), ("b", -10), ("c", -10),
        ("he", -3), ("ll", -2), ("llo", -4), ("hello", -1), ("▁hello", -0.5), ("ab", -5), ("bc", -4), ("▁a", -6),
    ]

    static func spmMetadata(extra: [(String, Value)] = []) -> [(String, Value)] {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        var scores: [Float] = [0, 0, 0]
        for b in 0..<256 {
            tokens.append(String(format: "<0x%02X>", b))
            types.append(6)
            scores.append(0)
        }
        for (t, s) in spmPieces {
            tokens.append(t)
            types.append(1)
            scores.append(s)
        }
        var kvs: [(String, Value)] = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.scores", .float32s(scores)),
            ("tokenizer.ggml.bos_token_id", .uint32(1)),
            ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.unknown_token_id", .uint32(0)),
        ]
        for (k, v) in extra {
            kvs.removeAll { $0.0 == k }
            kvs.append((k, v))
        }
        return kvs
    }

    /// A tiny byte-level ("gpt2") vocabulary: the 256 byte characters, then merged tokens.
    static func bpeMetadata(extraTokens: [String] = ["Ġt", "he", "Ġthe"], merges: [String] = ["Ġ t", "h e", "Ġt he"]) -> [(String, Value)] {
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        for b in 0..<256 { tokens.append(ByteLevel.encode([UInt8(b)])) }
        tokens += extraTokens
        var types = [Int32](repeating: 1, count: tokens.count)
        types[0] = 3; types[1] = 3; types[2] = 3
        return [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("gpt-2")),
            ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.merges", .strings(merges)),
            ("tokenizer.ggml.bos_token_id", .uint32(1)),
            ("tokenizer.ggml.eos_token_id", .uint32(2)),
        ]
    }
}
