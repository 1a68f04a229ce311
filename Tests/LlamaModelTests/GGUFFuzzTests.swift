import Foundation
import FuzzSupport
import Testing

@testable import LlamaModel

// Fuzz: the GGUF header, metadata and tensor-table parser (`GGUFFile(file:)`, on in-memory
// files from `MappedFile(copying:path:)`), and what reads the metadata next: `LlamaConfig(gguf:)`
// and, from every other input, `Tokenizer(gguf:)`. 100,000 seeded inputs: 90% mutations of
// valid GGUF files (every metadata type and nested arrays; a tiny LLaMA with its tensors and a
// byte-level vocabulary; a SentencePiece vocabulary; the sentencepiece_tiny.gguf fixture), 10%
// random bytes, half behind a valid magic and version. Each must parse, with every tensor view
// inside the file, or be a `ModelFileError` naming the file.
@Suite("Fuzz: GGUF parser", .timeLimit(.minutes(10)))
struct GGUFFuzzTests {
    static let inputs = 100_000

    /// A tiny LLaMA: configuration keys, a small byte-level vocabulary and F32/Q4_1 tensors.
    static func tinyLlama() -> GGUFWriter {
        var w = GGUFWriter()
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tokens += (32..<128).map { ByteLevel.encode([UInt8($0)]) }
        tokens += ["Ġt", "he", "Ġthe"]
        w.metadata = [
            ("general.architecture", .string("llama")), ("llama.embedding_length", .u32(8)),
            ("llama.block_count", .u32(1)), ("llama.feed_forward_length", .u32(12)),
            ("llama.attention.head_count", .u32(2)), ("llama.attention.head_count_kv", .u32(1)),
            ("llama.context_length", .u32(64)), ("llama.rope.freq_base", .f32(10000)),
            ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)), ("llama.vocab_size", .u32(10)),
            ("llama.rope.scaling.type", .string("llama3")), ("llama.rope.scaling.factor", .f32(8)),
            ("llama.rope.scaling.original_context_length", .u32(32)),
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .array(elementType: 8, tokens.map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(elementType: 5, tokens.indices.map { .i32($0 < 3 ? 3 : 1) })),
            ("tokenizer.ggml.merges", .array(elementType: 8, [.string("Ġ t"), .string("h e"), .string("Ġt he")])),
            ("tokenizer.ggml.bos_token_id", .u32(1)), ("tokenizer.ggml.eos_token_id", .u32(2)),
            ("tokenizer.chat_template", .string("{% for m in messages %}{{ m.content }}{% endfor %}")),
        ]
        w.tensors = [
            .init(
                name: "token_embd.weight", type: .f32, shape: [8, 10],
                bytes: [Float](repeating: 0.5, count: 80).f32Bytes),
            .init(name: "output_norm.weight", type: .f32, shape: [8], bytes: [Float](repeating: 1, count: 8).f32Bytes),
            .init(
                name: "blk.0.ffn_up.weight", type: .q4_1, shape: [32, 2], bytes: [UInt8](repeating: 0x11, count: 40)),
        ]
        return w
    }

    static func seeds() throws -> [[UInt8]] {
        let fixture = TokenizerTestSupport.fixturesDir.appendingPathComponent("sentencepiece_tiny.gguf")
        var v2 = GGUFTests().sample()
        v2.version = 2
        return [
            GGUFTests().sample().encode(), v2.encode(), tinyLlama().encode(),
            TestGGUFWriter.encode(TestGGUFWriter.spmMetadata()),
            Array(try Data(contentsOf: fixture)),
        ]
    }

    /// One input: parse, then check and use what parsed.
    static func exercise(
        _ bytes: [UInt8], path: String, readVocabulary: Bool, _ tally: inout FuzzTally, failures: inout [String]
    ) {
        do throws(ModelFileError) {
            let file = try MappedFile(copying: bytes, path: path)
            let gguf = try GGUFFile(file: file)
            tally.record("parsed")
            // Every tensor view lies inside the file, and its bytes can be read.
            let end = file.base + file.count
            for name in gguf.tensorNames {
                guard let t = gguf.tensors[name], t.data >= file.base, t.byteCount > 0, t.data + t.byteCount <= end
                else {
                    failures.append("tensor '\(name)' outside the file")
                    continue
                }
                _ = t.data.load(as: UInt8.self) ^ (t.data + t.byteCount - 1).load(as: UInt8.self)
            }
            do throws(ModelFileError) {
                _ = try LlamaConfig(gguf: gguf)
                tally.note("config read")
            } catch {
                if error.file != path || error.what.utf8.count > bytes.count + 1024 {
                    failures.append("config error '\(error.what.prefix(200))…' (\(error.what.utf8.count) bytes)")
                }
                tally.note("config refused")
            }
            guard readVocabulary, gguf.metadata["tokenizer.ggml.tokens"] != nil else { return }
            do throws(ModelFileError) {
                let tokenizer = try Tokenizer(gguf: gguf)
                let ids = tokenizer.encode("the <|im_start|>hello ▁wörld<s>\u{1F600}")
                if ids.contains(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) {
                    failures.append("token id out of range")
                }
                _ = tokenizer.decode(ids + [-1, Int32(tokenizer.vocabularySize)])
                tally.note("tokenizer read")
            } catch {
                if error.file != path || error.what.utf8.count > bytes.count + 1024 {
                    failures.append("tokenizer error '\(error.what.prefix(200))…' (\(error.what.utf8.count) bytes)")
                }
                tally.note("tokenizer refused")
            }
        } catch {
            // An error names the file and says what was wrong, in a message no longer than the
            // input (plus some words): no description of a whole value.
            if error.file != path || error.what.isEmpty || error.what.utf8.count > bytes.count + 1024 {
                failures.append("error '\(error.what.prefix(200))…' (\(error.what.utf8.count) bytes) for \(error.file)")
            }
            tally.record("rejected")
        }
    }

    @Test("100,000 seeded random and mutated GGUF files parse or give a ModelFileError naming the file")
    func fuzz() async throws {
        let seeds = try Self.seeds()
        var rng = SeededRandom(seed: 0x6617_5EED)
        var failures: [String] = []
        let path = "/fuzz/model.gguf"
        let tally = await runFuzzer("GGUFFile", inputs: Self.inputs) { i, tally in
            var bytes: [UInt8]
            if i % 10 == 0 {
                bytes = FileMutator.random(Int.random(in: 0...256, using: &rng), using: &rng)
                if i % 20 == 0, bytes.count >= 24 {  // a valid magic and version, then random counts
                    bytes.replaceSubrange(0..<8, with: [0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0])
                }
            } else {
                // The small files most; the 14 KB fixture (a thousand strings) one time in twenty.
                let seed = seeds[[0, 0, 1, 2, 2, 2, 3, 3, 0, 4][i % 20 / 2]]
                bytes = FileMutator.mutated(seed, donors: seeds, using: &rng)
            }
            // The vocabulary (half the cost of a parse that has one) from every other input.
            tally.timed(i) { Self.exercise(bytes, path: path, readVocabulary: i % 2 == 0, &$0, failures: &failures) }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["parsed"] > 10_000 && tally["rejected"] > 10_000, "\(tally)")
        #expect(tally["config read"] > 100 && tally["config refused"] > 100, "\(tally)")
        #expect(tally["tokenizer read"] > 100 && tally["tokenizer refused"] > 100, "\(tally)")
    }

    /// Found reading the parser's error paths (the fuzzer now also bounds every message by the
    /// input's size): an invalid `general.alignment` or configuration value was described in
    /// full, so a 1 MB array took 4 s and gave a 31 MB message.
    @Test("regression: an invalid metadata value of any size is described in a short message")
    func hugeValueInError() throws {
        let big = GGUFWriter.Value.array(elementType: 0, Array(repeating: .u8(7), count: 1_000_000))
        var w = GGUFWriter()
        w.metadata = [("general.alignment", big)]
        let alignment = #expect(throws: ModelFileError.self) {
            try GGUFFile(file: MappedFile(copying: w.encode(), path: "a.gguf"))
        }
        #expect(
            alignment?.what
                == "metadata 'general.alignment' is array of 1000000, first uint8 7, expected a power of two")
        var llama = Self.tinyLlama()
        llama.metadata[1] = ("llama.embedding_length", big)
        llama.metadata[7] = ("llama.rope.freq_base", .string(String(repeating: "é\u{301}", count: 100_000)))
        let gguf = try GGUFFile(file: MappedFile(copying: llama.encode(), path: "l.gguf"))
        let config = #expect(throws: ModelFileError.self) { try LlamaConfig(gguf: gguf) }
        #expect(
            config?.what
                == "metadata key 'llama.embedding_length' is array of 1000000, first uint8 7, expected an integer")
        llama.metadata[1] = ("llama.embedding_length", .u32(8))
        let theta = #expect(throws: ModelFileError.self) {
            try LlamaConfig(gguf: GGUFFile(file: MappedFile(copying: llama.encode(), path: "l.gguf")))
        }
        #expect((theta?.what.utf8.count ?? .max) < 200, "\(theta?.what.prefix(200) ?? "")")
    }

    @Test("the seeds parse, with their configuration and vocabularies")
    func seedsParse() throws {
        let seeds = try Self.seeds()
        for (i, seed) in seeds.enumerated() {
            #expect(throws: Never.self, "seed \(i)") { try GGUFFile(file: MappedFile(copying: seed, path: "seed\(i)")) }
        }
        let llama = try GGUFFile(file: MappedFile(copying: seeds[2], path: "tiny"))
        #expect(try LlamaConfig(gguf: llama).layerCount == 1)
        #expect(try Tokenizer(gguf: llama).vocabularySize == 102)
    }

    @Test("an in-memory file parses as the same file on disk does, and refuses empty input")
    func inMemoryMatchesDisk() throws {
        let bytes = GGUFTests().sample().encode()
        let dir = try TempDir()
        let path = try dir.write("m.gguf", bytes)
        let disk = try GGUFFile(path: path)
        let memory = try GGUFFile(file: MappedFile(copying: bytes, path: path))
        #expect(memory.metadata == disk.metadata && memory.metadataKeys == disk.metadataKeys)
        #expect(memory.tensorNames == disk.tensorNames && memory.alignment == disk.alignment)
        for name in disk.tensorNames {
            let a = try disk.tensor(name)
            let b = try memory.tensor(name)
            #expect(a.shape == b.shape && a.type == b.type && a.byteCount == b.byteCount)
            #expect(
                Array(UnsafeRawBufferPointer(start: a.data, count: a.byteCount))
                    == Array(UnsafeRawBufferPointer(start: b.data, count: b.byteCount)))
        }
        let error = #expect(throws: ModelFileError.self) { try MappedFile(copying: [], path: "empty.gguf") }
        #expect(error == ModelFileError(file: "empty.gguf", what: "file is empty"))
    }
}
