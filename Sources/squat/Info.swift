import ArgumentParser
import LlamaModel

/// `squat info`: a model's configuration and tensor table (GGUF file or Hugging Face safetensors).
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's configuration and tensors.")

    @OptionGroup var model: ModelOptions

    func run() throws {
        let loaded = try ModelLoader.open(path: model.resolvedPath)
        if let gguf = loaded.gguf {
            print("file: \(gguf.path) (GGUF v\(gguf.version), \(gguf.tensorNames.count) tensors)")
            print(loaded.config)
            for name in gguf.tensorNames {
                guard let t = gguf.tensors[name] else { continue }
                print("\(name)\t\(t.type.name)\t\(t.shape)")
            }
        } else if let hf = loaded.source as? HuggingFaceModel {
            print("model: \(hf.path) (safetensors, \(hf.files.count) file(s), \(hf.tensorNames.count) tensors)")
            print(loaded.config)
            for file in hf.files {
                for name in file.tensorNames {
                    guard let e = file.entries[name] else { continue }
                    print("\(name)\t\(e.dtype)\t\(e.shape)")
                }
            }
        }
    }
}
