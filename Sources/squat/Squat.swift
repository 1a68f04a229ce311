import ArgumentParser

@main
struct Squat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squat",
        abstract: "Distributed LLaMA inference with SQuat-quantized KV caches.",
        subcommands: [
            Generate.self, Tokenize.self, Eval.self, Bench.self, Info.self, KVCheckCommand.self, CoordinatorCommand.self,
            WorkerCommand.self, SubmitCommand.self, StatusCommand.self, DrainCommand.self, KeygenCommand.self,
        ])
}
