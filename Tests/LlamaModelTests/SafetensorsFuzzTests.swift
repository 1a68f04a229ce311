import Foundation
import FuzzSupport
import Testing

@testable import LlamaModel

// Fuzz: the safetensors header (`SafetensorsFile(file:)` on in-memory files: length field,
// JSON header, dtypes, shapes, offsets, overlaps) and the tensor views it hands out.
// 100,000 seeded inputs: 90% mutations of valid files (the tiny LLaMA's tensors; small files
// of every dtype with metadata, scalars and empty tensors) with byte edits, JSON tokens and
// edge integers, 10% random bytes, half behind a plausible header length. Each must parse,
// with every tensor inside the data, or be a `ModelFileError` naming the file (its message at
// most twice the input).
@Suite("Fuzz: safetensors header", .timeLimit(.minutes(10)))
struct SafetensorsFuzzTests {
    static let inputs = 100_000

    static func seeds() -> [[UInt8]] {
        let ids = STTensor(name: "position_ids", dtype: "I64", shape: [3], bytes: [1, 2, 3].flatMap { le(Int64($0)) })
        return [
            STWriter.file(tinyModelTensors()),
            STWriter.file(
                [
                    .f32("a", [2, 3], [1, 2, 3, 4, 5, 6]), .bf16("b", [4], bits: [0x3F80, 0x4000, 0x4040, 0x4080]),
                    .f16("c", [2, 2], bits: [0x3C00, 0x4000, 0xC000, 0x0001]),
                ],
                metadata: ["format": "pt", "note": "α β \\\" \\u00e9"]),
            STWriter.file(
                [.f32("scalar", [], [42]), .f32("empty", [0, 4], []), ids, .f32("w", [1, 1, 1, 2], [1, 2])],
                metadata: nil),
        ]
    }

    /// One input: parse, then read every tensor the header lists.
    static func exercise(_ bytes: [UInt8], path: String, _ tally: inout FuzzTally, failures: inout [String]) {
        do throws(ModelFileError) {
            let file = try SafetensorsFile(file: try MappedFile(copying: bytes, path: path))
            tally.record("parsed")
            for name in file.tensorNames {
                guard let entry = file.entries[name], entry.byteRange.lowerBound >= file.dataStart,
                    entry.byteRange.upperBound <= bytes.count
                else {
                    failures.append("tensor '\(name)' outside the data")
                    continue
                }
                do throws(ModelFileError) {
                    let view = try file.tensor(name)
                    if view.byteCount != entry.byteRange.count
                        || view.elementCount * (view.type == .f32 ? 4 : 2) != view.byteCount
                    {
                        failures.append("tensor '\(name)': view of \(view.byteCount) bytes, shape \(view.shape)")
                    }
                    if view.byteCount > 0 {
                        _ = view.data.load(as: UInt8.self) ^ (view.data + view.byteCount - 1).load(as: UInt8.self)
                    }
                    tally.note("tensor read")
                } catch {
                    if error.file != path || error.what.utf8.count > 2 * bytes.count + 1024 {
                        failures.append("tensor error '\(error.what.prefix(200))…' for \(error.file)")
                    }
                    tally.note("tensor refused")
                }
            }
        } catch {
            if error.file != path || error.what.isEmpty || error.what.utf8.count > 2 * bytes.count + 1024 {
                failures.append("error '\(error.what.prefix(200))…' (\(error.what.utf8.count) bytes) for \(error.file)")
            }
            tally.record("rejected")
        }
    }

    @Test("100,000 seeded random and mutated safetensors files parse or give a ModelFileError naming the file")
    func fuzz() async {
        let seeds = Self.seeds()
        var rng = SeededRandom(seed: 0x5AFE_5EED)
        var failures: [String] = []
        let path = "/fuzz/model.safetensors"
        let tally = await runFuzzer("SafetensorsFile", inputs: Self.inputs) { i, tally in
            var bytes: [UInt8]
            if i % 10 == 0 {
                bytes = FileMutator.random(Int.random(in: 0...200, using: &rng), using: &rng)
                if i % 20 == 0, bytes.count > 8 { bytes.replaceSubrange(0..<8, with: le(UInt64(bytes.count - 8))) }
            } else {
                bytes = FileMutator.mutated(
                    seeds[i % seeds.count], donors: seeds, dictionary: FileMutator.jsonDictionary, using: &rng)
            }
            tally.timed(i) { Self.exercise(bytes, path: path, &$0, failures: &failures) }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["parsed"] > 5_000 && tally["rejected"] > 10_000, "\(tally)")
        #expect(tally["tensor read"] > 10_000 && tally["tensor refused"] > 100, "\(tally)")
    }

    @Test("the seeds parse")
    func seedsParse() throws {
        for (i, seed) in Self.seeds().enumerated() {
            let file = try SafetensorsFile(file: MappedFile(copying: seed, path: "seed\(i)"))
            #expect(!file.tensorNames.isEmpty)
        }
    }
}
