/// Runs work items on up to `threads` threads. Work is split into contiguous chunks so that
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
}
