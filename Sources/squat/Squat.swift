import ArgumentParser

@main
struct Squat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squat",
        abstract: "Distributed LLaMA inference with SQuat-quantized KV caches.",
        subcommands: [Generate.self, Tokenize.self, Bench.self, Info.self, KVCheckCommand.self])
}
