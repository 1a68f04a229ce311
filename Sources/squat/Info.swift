import ArgumentParser
import LlamaModel

/// `squat info`: a model file's configuration and tensor table.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's configuration and tensors.")

    @OptionGroup var model: ModelOptions

    func run() throws {
        let gguf = try GGUFFile(path: model.resolvedPath)
        let config = try LlamaConfig(gguf: gguf)
        print("file: \(gguf.path) (GGUF v\(gguf.version), \(gguf.tensorNames.count) tensors)")
        print(config)
        for name in gguf.tensorNames {
            guard let t = gguf.tensors[name] else { continue }
            print("\(name)\t\(t.type.name)\t\(t.shape)")
        }
    }
}
