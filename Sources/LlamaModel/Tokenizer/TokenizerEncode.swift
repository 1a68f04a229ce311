extension Tokenizer {
    /// A piece of the input after special tokens were split out.
    enum Fragment: Equatable {
        case text(Range<Int>)
        case token(Int32)
    }

    /// Converts text to token ids exactly as llama.cpp's `llama_tokenize` does.
    ///
    /// - Parameters:
    ///   - addSpecial: add BOS/EOS where the model asks for them (`add_bos_token`/`add_eos_token`).
    ///   - parseSpecial: recognise control tokens written in the text (`<|im_start|>`, …) as single
    ///     tokens. User-defined tokens are always recognised, as in llama.cpp.
    /// - Returns: the token ids; never fails, whatever the input.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        let bytes = Array(text.utf8)
        let fragments = partition(bytes, parseSpecial: parseSpecial)
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 2)
        if addSpecial, addsBOS, let bos = bosToken { out.append(bos) }
        switch model {
        case .sentencePiece:
            var previousWasSpecial = true
            for f in fragments {
                switch f {
                case .text(let r):
                    var t: [UInt8] = []
                    t.reserveCapacity(r.count + 1)
                    if addSpacePrefix, previousWasSpecial { t.append(0x20) }
                    t.append(contentsOf: bytes[r])
                    t = Self.replacing(t, [0x20], with: [0xE2, 0x96, 0x81])
                    SentencePieceMerger.tokenize(
                        t, lookup: { self.textToID[$0] }, score: { self.scores[Int($0)] },
                        byteToken: { self.sentencePieceByteToken($0) }, into: &out)
                    previousWasSpecial = false
                case .token(let id):
                    out.append(id)
                    previousWasSpecial = true
                }
            }
        case .byteLevelBPE, .characterBPE:
            var merger = BytePairMerger()
            for f in fragments {
                switch f {
                case .text(let r): encodeBPE(bytes, r, merger: &merger, into: &out)
                case .token(let id): out.append(id)
                }
            }
        }
        if addSpecial, addsEOS, let eos = eosToken { out.append(eos) }
        return out
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, split every
    /// remaining text fragment at each of its occurrences.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0..<bytes.count)]
        for id in specialTokensByLength {
            let a = attributes[Int(id)]
            if !parseSpecial, !a.isDisjoint(with: [.control, .unknown]) { continue }
            let pattern = Array(tokens[Int(id)].utf8)
            guard !pattern.isEmpty, pattern.count <= bytes.count else { continue }
            var next: [Fragment] = []
            next.reserveCapacity(fragments.count)
            var changed = false
            for f in fragments {
                guard case .text(let r) = f, r.count >= pattern.count else {
                    next.append(f)
                    continue
                }
                var start = r.lowerBound
                while let m = Self.find(pattern, in: bytes, from: start, to: r.upperBound) {
                    if m > start { next.append(.text(start..<m)) }
                    next.append(.token(id))
                    start = m + pattern.count
                    changed = true
                }
                if start < r.upperBound { next.append(.text(start..<r.upperBound)) }
            }
            if changed { fragments = next }
        }
        return fragments
    }

    /// First occurrence of `pattern` in `bytes[from..<to]`.
    static func find(_ pattern: [UInt8], in bytes: [UInt8], from: Int, to: Int) -> Int? {
        let m = pattern.count
        guard m > 0, to - from >= m else { return nil }
        let first = pattern[0]
        return bytes.withUnsafeBufferPointer { b -> Int? in
            pattern.withUnsafeBufferPointer { p -> Int? in
                var i = from
                let last = to - m
                while i <= last {
                    if b[i] == first {
                        var j = 1
                        while j < m, b[i + j] == p[j] { j += 1 }
                        if j == m { return i }
                    }
                    i += 1
                }
                return nil
            }
        }
    }

    /// llama.cpp's `byte_to_token` for SentencePiece vocabularies: `<0xNN>`, else the byte as a
    /// one-character token, else the unknown token (llama.cpp would throw).
    func sentencePieceByteToken(_ b: UInt8) -> Int32? {
        let t = byteTokens[Int(b)]
        if t >= 0 { return t }
        if let t = textToID[[b]] { return t }
        return unknownToken
    }

    /// Pre-tokenizes and BPE-encodes one text fragment.
    private func encodeBPE(_ bytes: [UInt8], _ r: Range<Int>, merger: inout BytePairMerger, into out: inout [Int32]) {
        switch model {
        case .byteLevelBPE:
            var cps: [UInt32] = []
            cps.reserveCapacity(r.count + 1)
            if byteLevelAddPrefixSpace, bytes[r.lowerBound] != 0x20 { cps.append(0x20) }
            for u in String(decoding: bytes[r], as: UTF8.self).unicodeScalars { cps.append(u.value) }
            var symbols: [Int32] = []
            var word: [UInt8] = []
            var start = 0
            for len in preTokenizer.split(cps) {
                word.removeAll(keepingCapacity: true)
                for i in start..<start + len { UTF8Util.append(cps[i], to: &word) }
                start += len
                if ignoreMerges {
                    var mapped: [UInt8] = []
                    mapped.reserveCapacity(word.count * 2)
                    for b in word { UTF8Util.append(ByteLevel.scalarForByte[Int(b)], to: &mapped) }
                    if let id = textToID[mapped] {
                        out.append(id)
                        continue
                    }
                }
                symbols.removeAll(keepingCapacity: true)
                for b in word { symbols.append(byteLevelSymbols[Int(b)]) }
                let before = out.count
                merger.merge(symbols, table: mergeTable, into: &out)
                // Symbols missing from the vocabulary produce nothing (as in llama.cpp).
                if out[before...].contains(where: { $0 < 0 }) {
                    let kept = out[before...].filter { $0 >= 0 }
                    out.removeSubrange(before...)
                    out.append(contentsOf: kept)
                }
            }
        case .characterBPE:
            encodeCharacterBPE(Array(bytes[r]), isFirst: r.lowerBound == 0, merger: &merger, into: &out)
        case .sentencePiece:
            break
        }
    }

    /// Hugging Face BPE over characters (tokenizer.json of SentencePiece-converted models):
    /// normalizers, Metaspace, then ranked merges with `<0xNN>` byte fallback.
    private func encodeCharacterBPE(_ input: [UInt8], isFirst: Bool, merger: inout BytePairMerger, into out: inout [Int32]) {
        var text = input
        if let p = normalizerPrepend, !text.isEmpty { text = p + text }
        for (pattern, replacement) in normalizerReplacements {
            text = Self.replacing(text, pattern, with: replacement)
        }
        var words: [[UInt8]] = [text]
        if let ms = metaspace {
            text = Self.replacing(text, [0x20], with: ms.replacement)
            let prepend: Bool
            switch ms.scheme {
            case .always: prepend = true
            case .first: prepend = isFirst
            case .never: prepend = false
            }
            if prepend, !text.starts(with: ms.replacement) { text = ms.replacement + text }
            words = ms.split ? Self.splitBefore(text, ms.replacement) : [text]
        } else if !words.isEmpty {
            words = [text]
        }
        let unknownID = unknownToken
        var symbols: [Int32] = []
        for word in words where !word.isEmpty {
            if ignoreMerges, let id = textToID[word] {
                out.append(id)
                continue
            }
            symbols.removeAll(keepingCapacity: true)
            var i = 0
            while i < word.count {
                let len = min(UTF8Util.sequenceLength(lead: word[i]), word.count - i)
                let ch = Array(word[i..<i + len])
                i += len
                if let id = textToID[ch] {
                    symbols.append(id)
                    continue
                }
                if byteFallback, ch.allSatisfy({ byteTokens[Int($0)] >= 0 }) {
                    for b in ch { symbols.append(byteTokens[Int(b)]) }
                    continue
                }
                if let u = unknownID {
                    if fuseUnknown, symbols.last == u { continue }
                    symbols.append(u)
                }
            }
            let before = out.count
            merger.merge(symbols, table: mergeTable, into: &out)
            if out[before...].contains(where: { $0 < 0 }) {
                let kept = out[before...].filter { $0 >= 0 }
                out.removeSubrange(before...)
                out.append(contentsOf: kept)
            }
        }
    }

    /// Splits so that every occurrence of `marker` starts a new piece (HF `MergedWithNext`).
    static func splitBefore(_ text: [UInt8], _ marker: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        var i = 0
        while let m = find(marker, in: text, from: i, to: text.count) {
            if m > start { out.append(Array(text[start..<m])) }
            start = m
            i = m + marker.count
        }
        if start < text.count { out.append(Array(text[start...])) }
        return out
    }
}
