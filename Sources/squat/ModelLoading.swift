import Foundation
import KVCache
import LlamaModel

/// Writes to standard error (statistics, progress), keeping stdout for generated text.
enum StandardError {
    static func write(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// A whole model opened for one process: file, configuration, tokenizer and weights.
struct LoadedModel {
    let files: LoadedModelFiles
    let config: LlamaConfig
    let tokenizer: Tokenizer
    let weights: LlamaWeights

    /// Opens the model, touching every weight page once with a progress bar on stderr so that
    /// the first token does not pay for page faults.
    static func load(path: String, showProgress: Bool = true) throws -> LoadedModel {
        let files = try ModelLoader.open(path: path)
        let config = files.config
        let tokenizer = try files.tokenizer()
        let weights = try files.weights()
        let names = weights.tensorViews
        let total = names.reduce(0) { $0 + $1.byteCount }
        var done = 0
        var lastPercent = -1
        var checksum: UInt8 = 0
        let interactive = isatty(2) != 0
        for t in names {
            var off = 0
            while off < t.byteCount {
                checksum &+= t.data.load(fromByteOffset: off, as: UInt8.self)
                off += 4096
            }
            done += t.byteCount
            let percent = total > 0 ? done * 100 / total : 100
            if showProgress && interactive && percent != lastPercent {
                lastPercent = percent
                let bar = String(repeating: "#", count: percent / 4) + String(repeating: ".", count: 25 - percent / 4)
                StandardError.write("\rloading \(URL(fileURLWithPath: path).lastPathComponent) [\(bar)] \(percent)%")
            }
        }
        if showProgress {
            let name = URL(fileURLWithPath: path).lastPathComponent
            let summary = "\(config.layerCount) layers, \(total / 1_048_576) MiB\(checksum == 0 ? "" : "")"
            StandardError.write(interactive ? " \(summary)\n" : "loaded \(name): \(summary)\n")
        }
        return LoadedModel(files: files, config: config, tokenizer: tokenizer, weights: weights)
    }
}
