/// One splitting pass of a pre-tokenizer. Each pass refines the pieces of the previous one,
/// keeping the text between matches as pieces of their own (llama.cpp's `unicode_regex_split`).
enum PreTokenizerStep: Sendable, Equatable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// (llama.cpp's `unicode_regex_split_custom_gpt2`).
    case gpt2
    /// Llama 3 / Qwen 2: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,n}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` with n = `maxDigits` (3 for Llama 3,
    /// 1 for Qwen 2).
    case llama3(maxDigits: Int)
    /// `\p{N}`: every number character on its own (SmolLM, StarCoder; HF `Digits(individual_digits)`).
    case individualDigits
    /// `\p{N}+` (HF `Digits` without individual digits).
    case numberRuns
    /// `[\p{P}\$\+<=>\^~\|]+` (first pass of llama.cpp's default pre-tokenizer).
    case punctuationRuns
    /// `[0-9][0-9][0-9]` (last pass of llama.cpp's default pre-tokenizer).
    case asciiDigitTriples
}

/// Splits text (as code points) into the words that BPE merges never cross.
struct PreTokenizer: Sendable, Equatable {
    let steps: [PreTokenizerStep]

    /// The pre-tokenizer llama.cpp uses for a GGUF `tokenizer.ggml.pre` name, or nil if unknown.
    /// Also returns whether merges are skipped for whole-word vocabulary hits and the default of
    /// `add_bos_token`.
    static func forGGUFName(_ name: String) -> (PreTokenizer, ignoreMerges: Bool, addBOS: Bool)? {
        switch name {
        case "", "default":
            return (PreTokenizer(steps: [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples]), false, false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            return (PreTokenizer(steps: [.llama3(maxDigits: 3)]), true, true)
        case "dbrx", "smaug-bpe", "glm4", "chatglm-bpe":
            return (PreTokenizer(steps: [.llama3(maxDigits: 3)]), false, false)
        case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "grok-2":
            return (PreTokenizer(steps: [.llama3(maxDigits: 1)]), false, false)
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            return (PreTokenizer(steps: [.individualDigits, .gpt2]), false, false)
        case "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
            "gigachat", "a.x-4.0", "mellum", "exaone4", "trillion", "granite-docling", "roberta-bpe":
            return (PreTokenizer(steps: [.gpt2]), false, false)
        default:
            return nil
        }
    }

    /// Word boundaries of `cps` as consecutive lengths that add up to `cps.count`.
    func split(_ cps: [UInt32]) -> [Int] {
        var lengths = cps.isEmpty ? [] : [cps.count]
        for step in steps {
            switch step {
            case .gpt2: lengths = Self.splitGPT2(cps, lengths)
            case .llama3(let n): lengths = Self.splitLlama3(cps, lengths, maxDigits: max(1, n))
            case .individualDigits:
                lengths = Self.splitMatches(cps, lengths) { cps, pos, _ in
                    CodepointClass.of(cps[pos]).contains(.number) ? 1 : 0
                }
            case .numberRuns:
                lengths = Self.splitMatches(cps, lengths) { cps, pos, end in
                    var p = pos
                    while p < end, CodepointClass.of(cps[p]).contains(.number) { p += 1 }
                    return p - pos
                }
            case .punctuationRuns:
                lengths = Self.splitMatches(cps, lengths) { cps, pos, end in
                    var p = pos
                    while p < end {
                        let c = cps[p]
                        guard CodepointClass.of(c).contains(.punctuation)
                            || c == 0x24 || c == 0x2B || c == 0x3C || c == 0x3D || c == 0x3E
                            || c == 0x5E || c == 0x7E || c == 0x7C
                        else { break }
                        p += 1
                    }
                    return p - pos
                }
            case .asciiDigitTriples:
                lengths = Self.splitMatches(cps, lengths) { cps, pos, end in
                    guard end - pos >= 3 else { return 0 }
                    for i in pos..<pos + 3 where !(0x30...0x39).contains(cps[i]) { return 0 }
                    return 3
                }
            }
        }
        return lengths
    }

    /// Regex-iterator style split: the leftmost match at each point becomes a piece, and the text
    /// between matches stays a piece of its own. `match` returns the match length at a position
    /// (0 for no match).
    private static func splitMatches(
        _ cps: [UInt32], _ lengths: [Int], match: ([UInt32], Int, Int) -> Int
    ) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(lengths.count)
        var start = 0
        for len in lengths {
            let end = start + len
            var gapStart = start
            var pos = start
            while pos < end {
                let m = match(cps, pos, end)
                if m > 0 {
                    if pos > gapStart { out.append(pos - gapStart) }
                    out.append(m)
                    pos += m
                    gapStart = pos
                } else {
                    pos += 1
                }
            }
            if end > gapStart { out.append(end - gapStart) }
            start = end
        }
        return out
    }

    // MARK: GPT-2

    private static func splitGPT2(_ cps: [UInt32], _ lengths: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(cps.count / 3 + 1)
        var start = 0
        for len in lengths {
            let ini = start
            let end = start + len
            start = end
            @inline(__always) func cpt(_ p: Int) -> UInt32? { p >= ini && p < end ? cps[p] : nil }
            @inline(__always) func cls(_ p: Int) -> CodepointClass? { p >= ini && p < end ? CodepointClass.of(cps[p]) : nil }
            var prevEnd = ini
            @inline(__always) func addToken(_ e: Int) -> Int {
                let n = e - prevEnd
                if n > 0 { out.append(n) }
                prevEnd = e
                return n
            }
            var pos = ini
            while pos < end {
                let c = cps[pos]
                let flags = CodepointClass.of(c)
                // 's|'t|'re|'ve|'m|'ll|'d
                if c == 0x27, pos + 1 < end {
                    let n1 = cps[pos + 1]
                    if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                        pos += addToken(pos + 2)
                        continue
                    }
                    if pos + 2 < end {
                        let n2 = cps[pos + 2]
                        if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                            pos += addToken(pos + 3)
                            continue
                        }
                    }
                }
                var flags2 = c == 0x20 ? cls(pos + 1) : flags
                // <space>?\p{L}+
                if let f = flags2, f.contains(.letter) {
                    if c == 0x20 { pos += 1 }
                    while let f2 = flags2, f2.contains(.letter) {
                        pos += 1
                        flags2 = cls(pos)
                    }
                    _ = addToken(pos)
                    continue
                }
                // <space>?\p{N}+
                if let f = flags2, f.contains(.number) {
                    if c == 0x20 { pos += 1 }
                    while let f2 = flags2, f2.contains(.number) {
                        pos += 1
                        flags2 = cls(pos)
                    }
                    _ = addToken(pos)
                    continue
                }
                // <space>?[^\s\p{L}\p{N}]+
                if let f = flags2, f.isDisjoint(with: [.whitespace, .letter, .number]) {
                    if c == 0x20 { pos += 1 }
                    while let f2 = flags2, f2.isDisjoint(with: [.whitespace, .letter, .number]) {
                        pos += 1
                        flags2 = cls(pos)
                    }
                    _ = addToken(pos)
                    continue
                }
                var numWhitespace = 0
                while let f = cls(pos + numWhitespace), f.contains(.whitespace) { numWhitespace += 1 }
                // \s+(?!\S)
                if numWhitespace > 1, cpt(pos + numWhitespace) != nil {
                    pos += numWhitespace - 1
                    _ = addToken(pos)
                    continue
                }
                // \s+
                if numWhitespace > 0 {
                    pos += numWhitespace
                    _ = addToken(pos)
                    continue
                }
                // no match
                pos += 1
                _ = addToken(pos)
            }
        }
        return out
    }

    // MARK: Llama 3 / Qwen 2

    @inline(__always) private static func lower(_ c: UInt32) -> UInt32 {
        (0x41...0x5A).contains(c) ? c + 32 : c
    }

    private static func splitLlama3(_ cps: [UInt32], _ lengths: [Int], maxDigits: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(cps.count / 3 + 1)
        var start = 0
        for len in lengths {
            let ini = start
            let end = start + len
            start = end
            @inline(__always) func cpt(_ p: Int) -> UInt32? { p >= ini && p < end ? cps[p] : nil }
            @inline(__always) func cls(_ p: Int) -> CodepointClass? { p >= ini && p < end ? CodepointClass.of(cps[p]) : nil }
            var prevEnd = ini
            @inline(__always) func addToken(_ e: Int) -> Int {
                let n = e - prevEnd
                if n > 0 { out.append(n) }
                prevEnd = e
                return n
            }
            var pos = ini
            while pos < end {
                let c = cps[pos]
                let flags = CodepointClass.of(c)
                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if c == 0x27, pos + 1 < end {
                    let n1 = lower(cps[pos + 1])
                    if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                        pos += addToken(pos + 2)
                        continue
                    }
                    if pos + 2 < end {
                        let n2 = lower(cps[pos + 2])
                        if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                            pos += addToken(pos + 3)
                            continue
                        }
                    }
                }
                // [^\r\n\p{L}\p{N}]?\p{L}+
                if !(c == 0x0D || c == 0x0A || flags.contains(.number)) {
                    if flags.contains(.letter) || (cls(pos + 1)?.contains(.letter) ?? false) {
                        pos += 1
                        while let f = cls(pos), f.contains(.letter) { pos += 1 }
                        _ = addToken(pos)
                        continue
                    }
                }
                // \p{N}{1,n}
                if flags.contains(.number) {
                    var runStart = pos
                    while let f = cls(pos), f.contains(.number) {
                        pos += 1
                        if pos - runStart >= maxDigits {
                            _ = addToken(pos)
                            runStart = pos
                        }
                    }
                    _ = addToken(pos)
                    continue
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                var flags2 = c == 0x20 ? cls(pos + 1) : flags
                if let f = flags2, f.isDisjoint(with: [.whitespace, .letter, .number]) {
                    if c == 0x20 { pos += 1 }
                    while let f2 = flags2, f2.isDisjoint(with: [.whitespace, .letter, .number]) {
                        pos += 1
                        flags2 = cls(pos)
                    }
                    while let c2 = cpt(pos), c2 == 0x0D || c2 == 0x0A { pos += 1 }
                    _ = addToken(pos)
                    continue
                }
                var numWhitespace = 0
                var lastEndRN = 0
                while let f = cls(pos + numWhitespace), f.contains(.whitespace) {
                    let c2 = cps[pos + numWhitespace]
                    if c2 == 0x0D || c2 == 0x0A { lastEndRN = pos + numWhitespace + 1 }
                    numWhitespace += 1
                }
                // \s*[\r\n]+
                if lastEndRN > 0 {
                    pos = lastEndRN
                    _ = addToken(pos)
                    continue
                }
                // \s+(?!\S)
                if numWhitespace > 1, cpt(pos + numWhitespace) != nil {
                    pos += numWhitespace - 1
                    _ = addToken(pos)
                    continue
                }
                // \s+
                if numWhitespace > 0 {
                    pos += numWhitespace
                    _ = addToken(pos)
                    continue
                }
                pos += 1
                _ = addToken(pos)
            }
        }
        return out
    }
}
