/// The merge table of a BPE vocabulary: for a pair of token ids, the rank of the merge (lower is
/// applied first) and the id of the merged token.
struct MergeTable: Sendable {
    private var table: [UInt64: UInt64] = [:]

    init() {}

    var count: Int { table.count }

    @inline(__always) private static func key(_ l: Int32, _ r: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
    }

    /// Adds a merge unless the pair already has one (the first occurrence wins, as in llama.cpp).
    mutating func add(left: Int32, right: Int32, result: Int32, rank: Int) {
        let k = Self.key(left, right)
        if table[k] == nil {
            table[k] = UInt64(UInt32(truncatingIfNeeded: rank)) << 32 | UInt64(UInt32(bitPattern: result))
        }
    }

    @inline(__always) func lookup(_ l: Int32, _ r: Int32) -> (rank: Int32, result: Int32)? {
        guard let v = table[Self.key(l, r)] else { return nil }
        return (Int32(bitPattern: UInt32(v >> 32)), Int32(bitPattern: UInt32(truncatingIfNeeded: v)))
    }
}

/// Reusable scratch state for merging the symbols of one word at a time, lowest rank first
/// (ties: leftmost), with a binary heap — llama.cpp's `llm_tokenizer_bpe_session` on token ids.
struct BytePairMerger {
    private struct Candidate {
        var rank: Int32
        var left: Int32
        var right: Int32
        var leftID: Int32
        var rightID: Int32
        var result: Int32

        @inline(__always) func before(_ o: Candidate) -> Bool {
            rank < o.rank || (rank == o.rank && left < o.left)
        }
    }

    private var ids: [Int32] = []
    private var prev: [Int32] = []
    private var next: [Int32] = []
    private var heap: [Candidate] = []

    /// Merges `symbols` (token ids; -1 for a symbol that is not in the vocabulary and never
    /// merges) and appends the resulting ids (including any -1) to `output` in order.
    mutating func merge(_ symbols: [Int32], table: MergeTable, into output: inout [Int32]) {
        let n = symbols.count
        if n <= 1 {
            output.append(contentsOf: symbols)
            return
        }
        ids.removeAll(keepingCapacity: true)
        ids.append(contentsOf: symbols)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        for i in 0..<n {
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        heap.removeAll(keepingCapacity: true)
        for i in 1..<n { addCandidate(Int32(i - 1), Int32(i), table) }

        while let c = popMin() {
            let l = Int(c.left), r = Int(c.right)
            // Outdated: a side was merged away or changed since this candidate was queued.
            guard ids[l] == c.leftID, ids[r] == c.rightID, next[l] == c.right else { continue }
            ids[l] = c.result
            ids[r] = -2  // dead
            let rn = next[r]
            next[l] = rn
            if rn >= 0 { prev[Int(rn)] = c.left }
            addCandidate(prev[l], c.left, table)
            addCandidate(c.left, rn, table)
        }
        var i: Int32 = 0
        while i >= 0 {
            output.append(ids[Int(i)])
            i = next[Int(i)]
        }
    }

    private mutating func addCandidate(_ l: Int32, _ r: Int32, _ table: MergeTable) {
        guard l >= 0, r >= 0 else { return }
        let li = ids[Int(l)], ri = ids[Int(r)]
        guard li >= 0, ri >= 0, let m = table.lookup(li, ri) else { return }
        push(Candidate(rank: m.rank, left: l, right: r, leftID: li, rightID: ri, result: m.result))
    }

    private mutating func push(_ c: Candidate) {
        heap.append(c)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard heap[i].before(heap[p]) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    private mutating func popMin() -> Candidate? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n, heap[l].before(heap[m]) { m = l }
                if r < n, heap[r].before(heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
