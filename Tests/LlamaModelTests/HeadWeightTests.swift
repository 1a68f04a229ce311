import Foundation
import Testing

@testable import LlamaModel

/// `LoadedModelFiles.outputHeadLayerEquivalents`, the planner's weight for the last stage's
/// output head: bytes of the head over bytes of one layer's matrices, halved.
@Suite("Output head weight for stage balancing")
struct HeadWeightTests {
    /// A synthetic model, its head (`output.weight`, or the embedding when tied) f16 if asked.
    static func write(headF16: Bool, tied: Bool) throws -> (path: String, shape: SyntheticModelTests.Shape) {
        let shape = SyntheticModelTests.Shape(layers: 2, hidden: 64, ffn: 96, heads: 4, kvHeads: 2, vocab: 48)
        var m = SyntheticModelTests.makeModel(shape, seed: 5)
        if tied { m.tensors["output.weight"] = nil }
        let head = tied ? "token_embd.weight" : "output.weight"
        return (try SyntheticModelTests.write(m, f16: headF16 ? [head] : []), shape)
    }

    @Test(arguments: [false, true])
    func headWeightFollowsBytes(tied: Bool) throws {
        let plain = try Self.write(headF16: false, tied: tied)
        defer { try? FileManager.default.removeItem(atPath: plain.path) }
        let half = try Self.write(headF16: true, tied: tied)
        defer { try? FileManager.default.removeItem(atPath: half.path) }
        let s = plain.shape
        let layerElements = s.hidden * (2 * s.heads * s.headDim + 2 * s.kvHeads * s.headDim) + 3 * s.hidden * s.ffn
        let headElements = s.vocab * s.hidden
        let files = try ModelLoader.open(path: plain.path)
        #expect(files.config.tiedEmbeddings == tied)
        // All f32: bytes and multiply-adds agree.
        let expected = 0.5 * Double(headElements) / Double(layerElements)
        #expect(abs(files.outputHeadLayerEquivalents - expected) < 1e-12)
        #expect(abs(files.config.outputHeadLayerEquivalents - expected) < 1e-12)
        // An f16 head beside f32 layers reads half the bytes: half the weight.
        let halfFiles = try ModelLoader.open(path: half.path)
        #expect(abs(halfFiles.outputHeadLayerEquivalents - expected / 2) < 1e-12)
        #expect(abs(halfFiles.config.outputHeadLayerEquivalents - expected) < 1e-12)
    }
}
