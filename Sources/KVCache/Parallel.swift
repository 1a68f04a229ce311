import Dispatch

/// Runs work items on up to `threads` threads. Work is split into contiguous chunks so that
/// results never depend on the thread count (each item is computed the same way wherever it runs).
public struct Parallel: Sendable {
    public let threads: Int

    public init(threads: Int) { self.threads = max(1, threads) }

    /// Calls `body(range)` for disjoint ranges covering 0..<count, concurrently.
    public func forEachChunk(_ count: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let n = min(threads, count)
        if n == 1 {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: n) { i in
                let lo = count * i / n
                let hi = count * (i + 1) / n
                if lo < hi { box.value(lo..<hi) }
            }
        }
    }

    /// Calls `body(i)` for each i in 0..<count, concurrently.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        forEachChunk(count) { r in
            for i in r { body(i) }
        }
    }
}

/// Carries a non-Sendable closure into concurrentPerform, which runs it to completion before
/// returning. `@unchecked Sendable`: callers only write disjoint outputs from each chunk.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
