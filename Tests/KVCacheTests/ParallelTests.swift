import Foundation
import Synchronization
import Testing

@testable import KVCache

@Suite("Parallel regions on the worker pool", .timeLimit(.minutes(1)))
struct ParallelTests {
    /// Counts how often each index was visited, from any thread. NSLock (pthreads), which
    /// ThreadSanitizer understands, so that a report under TSan points at the pool itself.
    final class Visits: @unchecked Sendable {
        // @unchecked: `counts` is only touched under `lock`.
        private let lock = NSLock()
        private var counts: [Int]
        init(_ n: Int) { counts = [Int](repeating: 0, count: n) }
        func visit(_ r: Range<Int>) { lock.withLock { for i in r { counts[i] += 1 } } }
        var values: [Int] { lock.withLock { counts } }
    }

    @Test("every index exactly once, in chunks that do not depend on timing", arguments: [1, 2, 3, 4])
    func coversEachIndexOnce(threads: Int) {
        let parallel = Parallel(threads: threads)
        for count in [0, 1, 2, 3, 7, 64, 1000] {
            let v = Visits(count)
            let lock = NSLock()
            nonisolated(unsafe) var chunks: [Range<Int>] = []
            parallel.forEachChunk(count) { r in
                v.visit(r)
                lock.withLock { chunks.append(r) }
            }
            #expect(v.values.allSatisfy { $0 == 1 }, "threads \(threads) count \(count)")
            let expected = count <= 1 || threads == 1
                ? (count == 0 ? [] : [0..<count])
                : (0..<threads).map { count * $0 / threads..<count * ($0 + 1) / threads }.filter { !$0.isEmpty }
            #expect(lock.withLock { chunks.sorted { $0.lowerBound < $1.lowerBound } } == expected)
        }
    }

    @Test("many regions in a row, with pauses that put the helpers to sleep")
    func manyRegionsAndSleeps() {
        let parallel = Parallel(threads: 3)
        let total = Atomic<Int>(0)
        for round in 0..<3_000 {
            parallel.forEachChunk(9) { r in total.add(r.count, ordering: .relaxed) }
            if round % 500 == 0 { Thread.sleep(forTimeInterval: 0.02) }
        }
        #expect(total.load(ordering: .relaxed) == 27_000)
    }

    @Test("a nested region and a second caller run their chunks themselves")
    func nestedAndConcurrentCallers() async {
        let parallel = Parallel(threads: 2)
        let inner = Visits(8 * 5)
        parallel.forEach(8) { i in
            parallel.forEachChunk(5) { r in inner.visit((i * 5 + r.lowerBound)..<(i * 5 + r.upperBound)) }
        }
        #expect(inner.values.allSatisfy { $0 == 1 })
        let shared = Visits(4 * 3_000)
        await withTaskGroup(of: Void.self) { group in
            for caller in 0..<4 {
                group.addTask {
                    for k in 0..<1_000 {
                        let base = caller * 3_000 + k * 3
                        parallel.forEachChunk(3) { r in shared.visit((base + r.lowerBound)..<(base + r.upperBound)) }
                    }
                }
            }
        }
        #expect(shared.values.allSatisfy { $0 == 1 })
    }
}
