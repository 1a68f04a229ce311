import ArgumentParser
import Foundation

/// `--model PATH`, defaulting to the default model fetched by scripts/setup.sh.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model file (.gguf) or Hugging Face directory. Default: models/SmolLM2-135M-Instruct.Q4_1.gguf")
    var model: String?

    static let defaultRelativePath = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

    var resolvedPath: String {
        if let model { return model }
        if let env = ProcessInfo.processInfo.environment["SQUAT_MODEL"] { return env }
        // Next to the working directory, or next to the executable's package checkout.
        let cwd = FileManager.default.currentDirectoryPath + "/" + Self.defaultRelativePath
        if FileManager.default.fileExists(atPath: cwd) { return cwd }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent(Self.defaultRelativePath).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return cwd
    }
}
