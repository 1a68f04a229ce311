import Foundation
import KVCache

@testable import LlamaModel

/// Paths of the package, the default model and the shared references.
enum Golden {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let modelPath = packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static let sharedDir = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    struct MissingFile: Error, CustomStringConvertible {
        let path: String
        var description: String { "\(path) is missing: run scripts/setup.sh (model) or check ../shared (references)" }
    }

    static func json(_ relative: String) throws -> [String: Any] {
        let url = sharedDir.appendingPathComponent(relative)
        guard let data = FileManager.default.contents(atPath: url.path) else { throw MissingFile(path: url.path) }
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw MissingFile(path: url.path + " (not a JSON object)")
        }
        return obj
    }

    static func openModel() throws -> GGUFFile {
        guard FileManager.default.fileExists(atPath: modelPath) else { throw MissingFile(path: modelPath) }
        return try GGUFFile(path: modelPath)
    }
}

/// The default model loaded once for all tests of a process.
final class SharedModel: @unchecked Sendable {
    // @unchecked: immutable after init; each test makes its own stage and caches.
    let gguf: GGUFFile
    let config: LlamaConfig
    let weights: LlamaWeights

    static let shared: Result<SharedModel, any Error> = Result { try SharedModel() }

    private init() throws {
        gguf = try Golden.openModel()
        config = try LlamaConfig(gguf: gguf)
        weights = try LlamaWeights(source: gguf, config: config, layers: 0..<config.layerCount, qkInterleaved: true)
    }

    static func get() throws -> SharedModel { try shared.get() }
}

extension Array where Element == Any {
    var ints: [Int] { compactMap { ($0 as? NSNumber)?.intValue } }
    var floats: [Float] { compactMap { ($0 as? NSNumber)?.floatValue } }
}
