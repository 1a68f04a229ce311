import KVCache
import Testing

@testable import Cluster

@Suite("Planner and helpers", .timeLimit(.minutes(1)))
struct PlannerTests {
    @Test func equalWorkersSplitEvenly() {
        let r = PartitionPlanner.plan(layers: 30, workers: [WorkerCapacity(threads: 1), WorkerCapacity(threads: 1)])
        #expect(r == [0..<15, 15..<30])
    }

    @Test func proportionalToThreads() {
        let r = PartitionPlanner.plan(layers: 30, workers: [WorkerCapacity(threads: 2), WorkerCapacity(threads: 1)])
        #expect(r == [0..<20, 20..<30])
    }

    @Test func outputHeadCountsAsWorkOfTheLastStage() {
        let one = WorkerCapacity(threads: 1)
        // 30 layers + a head worth 8: 19 layers of work each.
        #expect(PartitionPlanner.plan(layers: 30, workers: [one, one], headLayers: 8) == [0..<19, 19..<30])
        #expect(
            PartitionPlanner.plan(layers: 30, workers: [one, one, one], headLayers: 6) == [0..<12, 12..<24, 24..<30])
        // A head heavier than a share still leaves the last worker one layer.
        #expect(PartitionPlanner.plan(layers: 4, workers: [one, one], headLayers: 10) == [0..<3, 3..<4])
    }

    @Test func memoryCapsAndExtraWorkers() {
        let r = PartitionPlanner.plan(
            layers: 4, workers: [WorkerCapacity(threads: 8, memoryBudgetBytes: 100), WorkerCapacity(threads: 1)],
            bytesPerLayer: 100)
        #expect(r == [0..<1, 1..<4])
        let many = PartitionPlanner.plan(layers: 2, workers: Array(repeating: WorkerCapacity(threads: 1), count: 3))
        #expect(many == [0..<1, 1..<2, 2..<2])
        #expect(
            PartitionPlanner.plan(
                layers: 4, workers: [WorkerCapacity(threads: 1, memoryBudgetBytes: 10)], bytesPerLayer: 100) == nil)
    }

    @Test func sha256KnownVectors() {
        var a = SHA256()
        a.update(Array("abc".utf8))
        #expect(a.hexDigest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var b = SHA256()
        b.update(Array(repeating: UInt8(ascii: "a"), count: 1_000))
        #expect(b.hexDigest() == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func textAssemblerHoldsStopsAndSplitCharacters() {
        var t = TextAssembler(stops: ["END"])
        #expect(t.append(Array("hi E".utf8)) == "hi ")
        #expect(t.append([0xC3]) == "")
        #expect(t.append([0xA9]) == "Eé")
        #expect(t.append(Array("xEN".utf8)) == "x")
        #expect(t.append(Array("D tail".utf8)) == "")
        #expect(t.stopped)
    }
}
