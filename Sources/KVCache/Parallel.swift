import Synchronization

/// Runs work items on up to `threads` threads, in contiguous chunks or handed out one at a time;
/// results never depend on the thread count (each item is computed the same way wherever it runs).
public struct Parallel: Sendable {
    public let threads: Int
    /// threads - 1 helper threads (nil for one thread).
    private let pool: WorkerPool?

    public init(threads: Int) {
        self.threads = max(1, threads)
        pool = self.threads > 1 ? WorkerPool(helpers: self.threads - 1) : nil
    }

    /// Calls `body(range)` for disjoint ranges covering 0..<count, concurrently: chunk i of
    /// `threads` is count*i/threads ..< count*(i+1)/threads (empty chunks skipped).
    public func forEachChunk(_ count: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        guard let pool, count > 1 else {
            body(0..<count)
            return
        }
        let n = threads
        func chunk(_ i: Int) {
            let lo = count * i / n
            let hi = count * (i + 1) / n
            if lo < hi { body(lo..<hi) }
        }
        // A nested region, or a second caller while the pool is busy, runs its chunks here.
        if !pool.run(chunk) {
            for i in 0..<n { chunk(i) }
        }
    }

    /// Calls `body(i)` for each i in 0..<count, concurrently.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        forEachChunk(count) { r in
            for i in r { body(i) }
        }
    }

    /// Calls `body(next)` once on each thread, the caller's included. `next()` hands out the
    /// indices 0..<count, each exactly once, to whichever thread asks first, so that items of
    /// uneven cost, or threads that run at uneven speed, even out. An item's result must not
    /// depend on the thread that computes it.
    public func forEachDynamic(_ count: Int, _ body: (_ next: () -> Int?) -> Void) {
        guard count > 0 else { return }
        let counter = IndexCounter(count: count)
        guard let pool, count > 1, pool.run({ _ in body(counter.next) }) else {
            body(counter.next)
            return
        }
    }
}

/// Hands out 0..<count, one index per call, across threads.
private final class IndexCounter: Sendable {
    let count: Int
    let taken = Atomic<Int>(0)

    init(count: Int) { self.count = count }

    func next() -> Int? {
        let i = taken.add(1, ordering: .relaxed).oldValue
        return i < count ? i : nil
    }
}
