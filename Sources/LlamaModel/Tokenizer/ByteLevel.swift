/// GPT-2's reversible byte ↔ Unicode map (`bytes_to_unicode`): every byte becomes a printable
/// character, so byte-level BPE vocabularies can be stored as text. Printable Latin-1 bytes map
/// to themselves; the other 68 bytes map to U+0100, U+0101, … in byte order.
enum ByteLevel {
    /// The code point standing for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte a code point stands for, indexed by code point (0..<324); -1 where none.
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, cp) in scalarForByte.enumerated() { table[Int(cp)] = Int16(b) }
        return table
    }()

    /// Byte-level text of raw bytes (what the vocabulary stores).
    static func encode<C: Collection<UInt8>>(_ bytes: C) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes {
            if let u = Unicode.Scalar(scalarForByte[Int(b)]) { s.append(u) }
        }
        return String(s)
    }

    /// The raw bytes a vocabulary entry stands for. Characters outside the map are kept as their
    /// own UTF-8 bytes (llama.cpp would print an `[UNK_BYTE_…]` marker instead).
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for u in text.unicodeScalars {
            let v = u.value
            if v < 324, byteForScalar[Int(v)] >= 0 {
                out.append(UInt8(byteForScalar[Int(v)]))
            } else {
                UTF8Util.append(v, to: &out)
            }
        }
        return out
    }
}
