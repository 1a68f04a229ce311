import CKernels

/// Splits the attention of a batch of query rows into tasks of (row, KV head, chunk of at most
/// `SQ_ATTENTION_CHUNK` key positions, aligned to absolute positions), runs them on threads and
/// combines each row's partials in chunk order. The split depends only on positions, never on
/// the thread count or the batch, so results are reproducible bit for bit.
public struct AttentionPlan {
    public struct Task {
        public let row: Int
        public let head: Int
        public let keyRange: Range<Int>
    }

    public let rows: Int
    public let kvHeads: Int
    public private(set) var tasks: [Task] = []
    /// Index of the first task of each (row, head), plus a final end index.
    private var firstTask: [Int] = []

    public static let chunk = Int(SQ_ATTENTION_CHUNK)

    /// `keysForRow(r)`: how many key positions row r attends to (0..<n).
    public init(rows: Int, kvHeads: Int, keysForRow: (Int) -> Int) {
        self.rows = rows
        self.kvHeads = kvHeads
        for r in 0..<rows {
            let n = keysForRow(r)
            for h in 0..<kvHeads {
                firstTask.append(tasks.count)
                var t0 = 0
                while t0 < n {
                    let t1 = min(n, t0 + Self.chunk)
                    tasks.append(Task(row: r, head: h, keyRange: t0..<t1))
                    t0 = t1
                }
            }
        }
        firstTask.append(tasks.count)
    }

    /// Runs `partial(task, out[g*D], ml[2g], scores[g*chunk])` for every task, then writes each
    /// (row, head)'s combined output into `output` (rows × qDim, head h at h*g*D).
    public func run(
        groupSize g: Int, headDim D: Int, output: UnsafeMutablePointer<Float>, qDim: Int, parallel: Parallel,
        partial: (Task, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let outs = UnsafeMutablePointer<Float>.allocate(capacity: max(1, tasks.count * g * D))
        let mls = UnsafeMutablePointer<Float>.allocate(capacity: max(1, tasks.count * 2 * g))
        defer {
            outs.deallocate()
            mls.deallocate()
        }
        let tasks = self.tasks
        // Tasks taken one at a time: chunks cost unevenly (the last one of a head is partial and
        // holds the full-precision window), and two threads do not always run at one speed.
        parallel.forEachDynamic(tasks.count) { next in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: g * Self.chunk)
            defer { scores.deallocate() }
            while let i = next() {
                partial(tasks[i], outs + i * g * D, mls + i * 2 * g, scores)
            }
        }
        let first = firstTask
        let kvHeads = self.kvHeads
        func combine(_ rh: Int) {
            let r = rh / kvHeads
            let h = rh % kvHeads
            let a = first[rh]
            let n = first[rh + 1] - a
            guard n > 0 else { return }
            sq_attend_combine(
                Int32(g), Int32(D), Int32(n), outs + a * g * D, mls + a * 2 * g, output + r * qDim + h * g * D)
        }
        // One row's combine (a few microseconds) costs less than waking the pool for it.
        if tasks.count * g * D < Self.inlineCombineFloats {
            for rh in 0..<rows * kvHeads { combine(rh) }
        } else {
            parallel.forEach(rows * kvHeads) { combine($0) }
        }
    }

    /// Partial outputs (floats) below which the combine runs on the calling thread.
    static let inlineCombineFloats = 1 << 16
}
