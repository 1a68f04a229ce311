extension Tokenizer {
    /// The bytes a token stands for, as llama.cpp's `llama_token_to_piece`: byte-level entries
    /// mapped back through GPT-2's byte map, `<0xNN>` byte tokens as that byte, `▁` as a space.
    ///
    /// - Parameter special: render control and unknown tokens as their text (`<|im_end|>`);
    ///   when false they give no bytes.
    /// - Returns: the bytes, which may be an incomplete UTF-8 sequence; empty for ids out of range.
    public func pieceBytes(_ id: Int32, special: Bool = true) -> [UInt8] {
        guard id >= 0, Int(id) < pieces.count else { return [] }
        if !special, !attributes[Int(id)].isDisjoint(with: [.control, .unknown]) { return [] }
        return pieces[Int(id)]
    }

    /// The text of a token sequence: the pieces concatenated, invalid UTF-8 replaced by U+FFFD.
    /// Ids out of range are skipped. No spaces are removed or cleaned up (as llama.cpp's
    /// `common_token_to_piece` concatenation).
    ///
    /// - Parameter skipSpecialTokens: leave out control and unknown tokens.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids { bytes.append(contentsOf: pieceBytes(id, special: !skipSpecialTokens)) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
