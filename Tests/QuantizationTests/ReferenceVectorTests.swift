import Foundation
import Testing
@testable import KVCache

/// The shared reference vectors (SQuat authors' code), through the `squat kvcheck` logic.
@Suite struct ReferenceVectorTests {
    @Test func manifestHasTheSixteenPublicCases() throws {
        let m = try ReferenceManifest(path: SharedVectors.manifest)
        #expect(m.cases.count == 16)
        #expect(m.ropeTheta == 100_000)
    }

    @Test(arguments: SharedVectors.caseIDs)
    func caseWithinTolerance(id: String) throws {
        let m = try ReferenceManifest(path: SharedVectors.manifest)
        let c = try #require(m.cases.first { $0.id == id })
        let r = try KVCheck.check(try m.load(c), ropeTheta: m.ropeTheta)
        #expect(r.failures.isEmpty, "\(r.failures)")
        // The exact parts, stated directly.
        #expect(r.kiviKeys.codeMismatches == 0 && r.values.codeMismatches == 0 && r.squatStored.codeMismatches == 0)
        #expect(r.kiviKeys.dequantMaxAbs == 0 && r.values.dequantMaxAbs == 0)
        #expect(r.kiviKeys.packedMatches && r.values.packedMatches && r.squatStored.packedMatches)
        if c.params.lambda <= 0.001 || c.blocks == 1 {
            #expect(r.squat.codeMismatches == 0, "λ=\(c.params.lambda): \(r.squat.codeMismatches) SQuat codes differ")
        } else {
            #expect(r.squat.mismatchFraction <= 0.015)
        }
        #expect(r.singularValueError < 5e-6 && r.gramError < 2e-5)
    }

    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

/// Damaged manifests and `.bin` files must fail with an error naming the file and the array.
@Suite struct CorruptedVectorTests {
    /// A scratch copy of the manifest (one case) and its `.bin`.
    struct Scratch {
        let dir: URL
        var manifest: [String: Any]
        var bin: [UInt8]
        let file: String

        init(caseIndex: Int = 0) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvcheck-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let data = try Data(contentsOf: URL(fileURLWithPath: SharedVectors.manifest))
            var m = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            let c = (m["cases"] as! [[String: Any]])[caseIndex]
            m["cases"] = [c]
            manifest = m
            file = c["file"] as! String
            bin = [UInt8](try Data(contentsOf: SharedVectors.directory.appendingPathComponent(file)))
        }

        var theCase: [String: Any] {
            get { (manifest["cases"] as! [[String: Any]])[0] }
            set { manifest["cases"] = [newValue] }
        }

        mutating func editArray(_ name: String, _ edit: (inout [String: Any]) -> Void) {
            var c = theCase
            var arrays = c["arrays"] as! [[String: Any]]
            let i = arrays.firstIndex { ($0["name"] as! String) == name }!
            edit(&arrays[i])
            c["arrays"] = arrays
            theCase = c
        }

        func offset(of name: String) -> Int {
            (theCase["arrays"] as! [[String: Any]]).first { ($0["name"] as! String) == name }!["offset"] as! Int
        }

        /// Writes the files and runs kvcheck; returns the error.
        func run() throws -> ReferenceVectorError? {
            let path = dir.appendingPathComponent("manifest.json")
            try JSONSerialization.data(withJSONObject: manifest).write(to: path)
            try Data(bin).write(to: dir.appendingPathComponent(file))
            defer { try? FileManager.default.removeItem(at: dir) }
            do {
                _ = try KVCheck.run(manifestPath: path.path)
                return nil
            } catch {
                return error
            }
        }
    }

    @Test func untouchedCopyPasses() throws {
        #expect(try Scratch().run() == nil)
    }

    @Test func flippedByteFailsTheChecksumAndPointsAtTheArray() throws {
        var s = try Scratch()
        // Turn one k_states float into a NaN.
        let o = s.offset(of: "k_states") + 4 * 17
        s.bin.replaceSubrange(o..<(o + 4), with: [0x00, 0x00, 0xC0, 0x7F])
        let e = try #require(try s.run())
        #expect(e.file == s.file)
        #expect(e.description.contains("sha256 mismatch"))
        #expect(e.description.contains("k_states (1 non-finite values)"))
    }

    @Test func silentBitFlipFailsTheChecksum() throws {
        var s = try Scratch()
        s.bin[s.offset(of: "squat_key_dequant") + 101] ^= 0x01
        let e = try #require(try s.run())
        #expect(e.file == s.file && e.description.contains("sha256 mismatch"))
    }

    @Test func truncatedFileNamesTheArrayPastTheEnd() throws {
        var s = try Scratch()
        s.bin.removeLast(100)
        let e = try #require(try s.run())
        #expect(e.file == s.file)
        #expect(e.array == "att_qk_fp32")
        #expect(e.message.contains("past the end of the file"))
    }

    @Test func badOffsetNamesTheArray() throws {
        var s = try Scratch()
        s.editArray("v_states") { $0["offset"] = ($0["offset"] as! Int) + 4 }
        let e = try #require(try s.run())
        #expect(e.array == "v_states" && e.message.contains("multiple of 16"))
    }

    @Test func sizeNotMatchingShapeNamesTheArray() throws {
        var s = try Scratch()
        s.editArray("P_inv") { $0["nbytes"] = ($0["nbytes"] as! Int) - 4 }
        let e = try #require(try s.run())
        #expect(e.array == "P_inv" && e.message.contains("does not match shape"))
    }

    @Test func wrongShapeNamesTheArray() throws {
        var s = try Scratch()
        // Same byte count, wrong shape: [1, 2, 64, 32] instead of [1, 2, 32, 64].
        s.editArray("k_states") { $0["shape"] = [1, 2, 64, 32] }
        let e = try #require(try s.run())
        #expect(e.array == "k_states" && e.message.contains("expected [1, 2, 32, 64]"))
    }

    @Test func missingArrayIsNamed() throws {
        var s = try Scratch()
        var c = s.theCase
        c["arrays"] = (c["arrays"] as! [[String: Any]]).filter { ($0["name"] as! String) != "Ainv_t_2" }
        s.theCase = c
        let e = try #require(try s.run())
        #expect(e.array == "Ainv_t_2" && e.message.contains("missing"))
    }

    @Test func missingManifestKeyIsNamed() throws {
        var s = try Scratch()
        var c = s.theCase
        var p = c["params"] as! [String: Any]
        p.removeValue(forKey: "k_bits")
        c["params"] = p
        s.theCase = c
        let e = try #require(try s.run())
        #expect(e.file == "manifest.json")
        #expect(e.message.contains("cases[0].params") && e.message.contains("k_bits"))
    }

    @Test func invalidParametersAreExplained() throws {
        var s = try Scratch()
        var c = s.theCase
        var p = c["params"] as! [String: Any]
        p["k_bits"] = 3
        c["params"] = p
        s.theCase = c
        let e = try #require(try s.run())
        #expect(e.description.contains("kBits") && e.description.contains("3 bits is not supported"))
    }

    @Test func missingBinIsNamed() throws {
        var s = try Scratch()
        var c = s.theCase
        c["file"] = "nope.bin"
        s.theCase = c
        let e = try #require(try s.run())
        #expect(e.file == "nope.bin" && e.message.contains("cannot read"))
    }
}
