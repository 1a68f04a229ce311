import Foundation
import FuzzSupport

@testable import LlamaModel

// The mutations of the file and tokenizer fuzzers (tally and runner: module FuzzSupport).

/// Byte-level mutations for file formats: bit flips, byte replacements, insertions, deletions,
/// truncations, little-endian "interesting" integers written over 1, 2, 4 or 8 bytes (lengths,
/// counts, type ids, offsets), repeated slices and splices of other valid files, and, for text
/// formats, tokens from a dictionary (JSON punctuation, literals, numbers at the edges) inserted,
/// written over the text, or put in place of a whole number.
enum FileMutator {
    /// Values that sit at the edges of the parsers' checks.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 16, 31, 32, 64, 127, 128, 255, 256, 1023, 4096, 65535, 65536,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 40, (1 << 40) + 1, 1 << 62, 0x7FFF_FFFF_FFFF_FFFF,
        0x8000_0000_0000_0000, .max, .max - 1,
    ]

    /// `seed` after 1 to 4 mutations (mostly one, so that many inputs still parse).
    static func mutated(
        _ seed: [UInt8], donors: [[UInt8]], dictionary: [[UInt8]] = [], using rng: inout SeededRandom
    ) -> [UInt8] {
        var bytes = seed
        let rounds = [1, 1, 1, 1, 2, 3, 4].randomElement(using: &rng) ?? 1
        for _ in 0..<rounds { mutate(&bytes, donors: donors, dictionary: dictionary, using: &rng) }
        return bytes
    }

    static func mutate(_ bytes: inout [UInt8], donors: [[UInt8]], dictionary: [[UInt8]], using rng: inout SeededRandom)
    {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<(dictionary.isEmpty ? 9 : 14), using: &rng) {
        case 0 where !bytes.isEmpty:  // flip one bit
            bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1 where !bytes.isEmpty:  // replace a byte
            bytes[position] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // insert a byte
            bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
        case 3 where !bytes.isEmpty:  // delete a run of bytes
            bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...8, using: &rng)))
        case 4:  // truncate
            bytes = Array(bytes.prefix(position))
        case 5,
            6 where !bytes.isEmpty:  // an interesting little-endian integer over 1, 2, 4 or 8 bytes
            let width = [1, 2, 4, 8, 8, 8].randomElement(using: &rng) ?? 8
            var value = interesting.randomElement(using: &rng) ?? 0
            if Bool.random(using: &rng) { value = value &+ UInt64(bytes.count) }  // near the file size
            for k in 0..<width where position + k < bytes.count {
                bytes[position + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))
            }
        case 7 where !bytes.isEmpty:  // repeat a slice
            let end = min(bytes.count, position + Int.random(in: 1...64, using: &rng))
            bytes.insert(contentsOf: bytes[position..<end], at: end)
        case 12, 13:  // a whole number in the text (a run of digits) replaced by a dictionary number
            let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
            guard let start = bytes[position...].firstIndex(where: { digits.contains($0) }) else { return }
            let end = bytes[start...].firstIndex { !digits.contains($0) } ?? bytes.count
            let numbers = dictionary.filter { $0.first.map { digits.contains($0) || $0 == UInt8(ascii: "-") } ?? false }
            bytes.replaceSubrange(start..<end, with: numbers.randomElement(using: &rng) ?? [])
        case 9, 10, 11:  // a dictionary token, inserted or written over
            let token = dictionary.randomElement(using: &rng) ?? []
            if Bool.random(using: &rng) || bytes.isEmpty {
                bytes.insert(contentsOf: token, at: position)
            } else {
                bytes.replaceSubrange(position..<min(bytes.count, position + token.count), with: token)
            }
        default:  // splice in a slice of another valid input
            guard let other = donors.randomElement(using: &rng), !other.isEmpty else { return }
            let start = Int.random(in: 0..<other.count, using: &rng)
            let end = min(other.count, start + Int.random(in: 1...256, using: &rng))
            bytes.insert(contentsOf: other[start..<end], at: position)
        }
    }

    /// `count` random bytes.
    static func random(_ count: Int, using rng: inout SeededRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// JSON punctuation, literals, escapes and numbers at the edges of Int, Int32 and Double.
    static let jsonDictionary: [[UInt8]] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud83d", "\\udc00", "\\u0000", "null", "true", "false",
        "0", "-1", "1e3", "1.5", "-0", "1e309", "-1e309", "1000000000", "2147483646", "2147483647", "2147483648",
        "4294967296",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "1e-400", "0.0000001", " ", "\n", "[[[[[[[[", "]]]]]]]]", "{\"a\":", "\"\":", "é", "\u{FFFD}", "\u{0}",
    ].map { Array($0.utf8) }
}
