import ArgumentParser
import Foundation
import KVCache
import LlamaModel

/// `squat eval`: perplexity, KL to the full-precision cache and top-1 agreement of cache modes,
/// following the SQuat authors' protocol: prefill P tokens in one call, then teacher-forced
/// decode one token at a time.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare KV-cache modes: perplexity, KL(full ‖ mode), top-1 agreement (teacher forcing).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var cacheOptions: CacheOptions
    @Option(help: "Text file to evaluate on.") var text: String?
    @Option(help: "JSON file of token ids: a list, or an object holding one under \"ids\".") var tokens: String?
    @Option(help: "Prompt tokens, prefilled in one call.") var promptTokens = 512
    @Option(help: "Decode steps (teacher forcing).") var decodeTokens = 768
    @Option(
        name: .customLong("mode"), help: "Cache to evaluate (repeatable): full-f16, kivi:k2v2, squat:k2v2:qgs32:sd20, …"
    )
    var modes: [String] = []
    @Option(help: "Compute threads.") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Print the results as a JSON list of {mode, ppl, kl, top1}.") var json = false
    @Option(
        help: ArgumentHelp(
            "Sensitivity probe: multiply the modes' input embeddings by 1 + EPS·N(0,1) (the reference run stays exact).",
            valueName: "EPS"))
    var perturb: Float?
    @Option(help: "Seed of --perturb's noise (default 1).") var seed: UInt64?

    func validate() throws {
        if let perturb, !(perturb.isFinite && perturb >= 0 && perturb < 1) {
            throw ValidationError("--perturb must be a finite value in [0, 1), got \(perturb)")
        }
        if seed != nil && perturb == nil { throw ValidationError("--seed applies only with --perturb") }
        // Bounded so that P + D cannot overflow; far beyond any model's context.
        for (flag, v) in [("--prompt-tokens", promptTokens), ("--decode-tokens", decodeTokens)] where v > 1 << 24 {
            throw ValidationError("\(flag) must be at most \(1 << 24), got \(v)")
        }
    }

    func ids(_ tokenizer: Tokenizer) throws -> [Int32] {
        if let tokens {
            guard let data = FileManager.default.contents(atPath: tokens) else {
                throw ValidationError("cannot read --tokens file '\(tokens)'")
            }
            let obj = try JSONSerialization.jsonObject(with: data)
            func find(_ o: Any) -> [Int32]? {
                if let a = o as? [NSNumber] { return a.map { Int32(clamping: $0.int64Value) } }
                if let d = o as? [String: Any] {
                    if let ids = d["ids"] { return find(ids) }
                    for key in d.keys.sorted() { if let r = find(d[key] as Any) { return r } }
                }
                return nil
            }
            guard let ids = find(obj) else { throw ValidationError("no list of token ids in '\(tokens)'") }
            return ids
        }
        guard let text else { throw ValidationError("give --text FILE or --tokens FILE") }
        guard let data = FileManager.default.contents(atPath: text) else {
            throw ValidationError("cannot read --text file '\(text)'")
        }
        return tokenizer.encode(String(decoding: data, as: UTF8.self), addSpecial: false, parseSpecial: false)
    }

    func run() throws {
        let loaded = try LoadedModel.load(path: model.resolvedPath)
        let ids = try ids(loaded.tokenizer)
        let P = promptTokens
        let D = decodeTokens
        guard P >= 1, D >= 2 else { throw ValidationError("need --prompt-tokens ≥ 1 and --decode-tokens ≥ 2") }
        guard ids.count >= P + D else {
            throw ValidationError(
                "the text has \(ids.count) tokens; --prompt-tokens \(P) + --decode-tokens \(D) need \(P + D)")
        }
        let config = loaded.config
        let specs =
            modes.isEmpty
            ? ["full-f16", "kivi:k2v2", "kivi-prerope:k2v2", "squat:k2v2", "kivi:k4v4", "squat:k4v4"] : modes
        let stage = LlamaStage(weights: loaded.weights, threads: threads, activations: .f32)
        let factories = try specs.map {
            (
                name: $0,
                factory: try cacheOptions.factory(
                    spec: $0, headDim: config.headDim, contextLength: config.contextLength)
            )
        }
        if let perturb {
            FileHandle.standardError.write(
                Data("the modes' input embeddings are perturbed: eps \(perturb), seed \(seed ?? 1)\n".utf8))
        }
        let progress = Progress(total: D, label: "eval")
        let evaluation = CacheEvaluation(
            stage: stage, promptTokens: P, decodeTokens: D,
            perturbation: perturb.map { CacheEvaluation.InputPerturbation(epsilon: $0, seed: seed ?? 1) })
        let rows = try evaluation.run(ids: ids, modes: factories) { progress.update($0) }
        progress.finish()
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted]
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
        } else {
            // `%-28@` does not pad on Linux: the columns of strings are padded by hand.
            let width = max(28, rows.map(\.mode.count).max() ?? 0)
            func column(_ s: String) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
            func right(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
            print(column("mode") + " " + right("ppl", 9) + " " + right("KL", 9) + " " + right("top-1", 10))
            for r in rows {
                print(column(r.mode) + String(format: " %9.3f %9.4f %9.1f%%", r.ppl, r.kl, r.top1 * 100))
            }
        }
    }

}

/// A progress bar on stderr (only when stderr is a terminal; otherwise every 10%).
final class Progress {
    let total: Int
    let label: String
    let interactive = isatty(2) != 0
    var last = -1
    let start = CPUClock.wall()

    init(total: Int, label: String) {
        self.total = max(total, 1)
        self.label = label
    }

    func update(_ done: Int) {
        let pct = done * 100 / total
        guard pct != last else { return }
        if interactive {
            last = pct
            let bar = String(repeating: "#", count: pct / 4) + String(repeating: ".", count: 25 - pct / 4)
            StandardError.write("\r\(label) [\(bar)] \(pct)% (\(done)/\(total), \(Int(CPUClock.wall() - start)) s)")
        } else if pct / 10 != last / 10 {
            last = pct
            StandardError.write("\(label): \(pct)% (\(done)/\(total))\n")
        }
    }

    func finish() {
        if interactive { StandardError.write("\n") }
    }
}
