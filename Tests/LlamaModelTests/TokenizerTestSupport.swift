import Foundation
import Testing

@testable import LlamaModel

/// Paths and shared fixtures for the tokenizer tests.
enum TokenizerTestSupport {
    /// The package root: this file is `<root>/Tests/LlamaModelTests/TokenizerTestSupport.swift`.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let modelPath = packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static let goldenPath = packageRoot.appendingPathComponent("../shared/golden/llamacpp_smollm2_q4_1.json").standardized.path
    /// The test resources (declared `.copy("Fixtures")`), or the source folder if the bundle lacks them.
    static let fixturesDir: URL = {
        if let u = Bundle.module.url(forResource: "Fixtures", withExtension: nil) { return u }
        return packageRoot.appendingPathComponent("Tests/LlamaModelTests/Fixtures")
    }()

    struct Missing: Error, CustomStringConvertible {
        let description: String
    }

    /// The default model's tokenizer, loaded once.
    static func smolTokenizer() throws -> Tokenizer {
        try cache.get()
    }

    private static let cache = LoadOnce()

    final class LoadOnce: Sendable {
        let result: Result<Tokenizer, any Error>
        init() {
            guard FileManager.default.fileExists(atPath: TokenizerTestSupport.modelPath) else {
                result = .failure(Missing(description: "default model missing at \(TokenizerTestSupport.modelPath): run scripts/setup.sh"))
                return
            }
            do {
                result = .success(try Tokenizer(gguf: try GGUFFile(path: TokenizerTestSupport.modelPath)))
            } catch {
                result = .failure(error)
            }
        }
        func get() throws -> Tokenizer { try result.get() }
    }

    /// Parsed JSON file.
    static func json(at path: String) throws -> Any {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Missing(description: "missing file \(path)")
        }
        return try JSONSerialization.jsonObject(with: data)
    }

    static func ints(_ v: Any?) -> [Int32]? {
        (v as? [Any])?.compactMap { ($0 as? NSNumber).map { Int32(truncating: $0) } }
    }
}
