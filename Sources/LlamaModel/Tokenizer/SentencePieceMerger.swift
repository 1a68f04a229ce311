/// llama.cpp's SentencePiece-style BPE (`llm_tokenizer_spm_session`): starting from UTF-8
/// characters, repeatedly joins the adjacent pair whose concatenation is the vocabulary entry
/// with the highest score (ties: leftmost); pieces that are not in the vocabulary fall back to
/// byte tokens `<0xNN>`.
struct SentencePieceMerger {
    private struct Symbol {
        var start: Int
        var count: Int
        var prev: Int
        var next: Int
    }
    private struct Candidate {
        var score: Float
        var left: Int
        var right: Int
        var size: Int
        // Max-heap on score, then min on left (llama.cpp's comparator).
        @inline(__always) func before(_ o: Candidate) -> Bool {
            o.score < score || (!(score < o.score) && !(o.score < score) && left < o.left)
        }
    }

    /// Tokenizes `text` (already escaped: spaces as U+2581) and appends the ids to `output`.
    static func tokenize(
        _ text: [UInt8], lookup: ([UInt8]) -> Int32?, score: (Int32) -> Float,
        byteToken: (UInt8) -> Int32?, into output: inout [Int32]
    ) {
        var symbols: [Symbol] = []
        var offs = 0
        while offs < text.count {
            let len = min(UTF8Util.sequenceLength(lead: text[offs]), text.count - offs)
            symbols.append(Symbol(start: offs, count: len, prev: symbols.count - 1, next: offs + len == text.count ? -1 : symbols.count + 1))
            offs += len
        }
        var heap: [Candidate] = []
        func push(_ c: Candidate) {
            heap.append(c)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard heap[i].before(heap[p]) else { break }
                heap.swapAt(i, p)
                i = p
            }
        }
        func pop() -> Candidate? {
            guard let top = heap.first else { return nil }
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < heap.count, heap[l].before(heap[m]) { m = l }
                    if r < heap.count, heap[r].before(heap[m]) { m = r }
                    if m == i { break }
                    heap.swapAt(i, m)
                    i = m
                }
            }
            return top
        }
        func tryAdd(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let s = symbols[l].start
            let n = symbols[l].count + symbols[r].count
            guard let id = lookup(Array(text[s..<s + n])) else { return }
            push(Candidate(score: score(id), left: l, right: r, size: n))
        }
        for i in symbols.indices.dropFirst() { tryAdd(i - 1, i) }
        while let c = pop() {
            let ls = symbols[c.left], rs = symbols[c.right]
            if ls.count == 0 || rs.count == 0 || ls.count + rs.count != c.size { continue }
            symbols[c.left].count += rs.count
            symbols[c.right].count = 0
            symbols[c.left].next = rs.next
            if rs.next >= 0 { symbols[rs.next].prev = c.left }
            tryAdd(symbols[c.left].prev, c.left)
            tryAdd(c.left, symbols[c.left].next)
        }
        var i = symbols.isEmpty ? -1 : 0
        while i >= 0 {
            let s = symbols[i]
            let piece = Array(text[s.start..<s.start + s.count])
            if let id = lookup(piece) {
                output.append(id)
            } else {
                for b in piece {
                    if let id = byteToken(b) { output.append(id) }
                }
            }
            i = s.next
        }
    }
}
