import Foundation
import Testing

/// The protoc-c output committed in Sources/SquatProto must be exactly what
/// scripts/gen-proto.sh makes from proto/ today.
@Suite("Generated protobuf-c code", .timeLimit(.minutes(1)))
struct GeneratedCodeTests {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let committed = packageRoot.appendingPathComponent("Sources/SquatProto")

    @Test("Sources/SquatProto matches a fresh scripts/gen-proto.sh run")
    func generatedCodeIsCurrent() throws {
        guard let protoc = Self.findExecutable("protoc-c") else {
            Issue.record("protoc-c is not on PATH: run scripts/setup.sh (it installs protobuf-c-compiler)")
            return
        }
        let output = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }

        let script = Self.packageRoot.appendingPathComponent("scripts/gen-proto.sh")
        let (status, stderr) = try Self.run(URL(fileURLWithPath: "/bin/bash"), [script.path, output.path])
        try #require(status == 0, "scripts/gen-proto.sh failed (\(status)) using \(protoc): \(stderr)")

        let differences = try Self.compare(committed: Self.committed, generated: output)
        #expect(
            differences.isEmpty,
            "Sources/SquatProto is stale: run scripts/gen-proto.sh and commit. Differences: \(differences)")
        #expect(try Self.files(in: output).count >= 10, "expected a .c and a .h for each of the 5 protos")
    }

    @Test("the comparison catches a changed, a missing and an extra file")
    func comparisonCanFail() throws {
        let copy = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(at: Self.committed, to: copy)
        #expect(try Self.compare(committed: Self.committed, generated: copy).isEmpty)

        let files = try Self.files(in: copy).sorted()
        try #require(files.count >= 3)
        var changed = try Data(contentsOf: copy.appendingPathComponent(files[0]))
        changed[changed.count / 2] ^= 0x20
        try changed.write(to: copy.appendingPathComponent(files[0]))
        try FileManager.default.removeItem(at: copy.appendingPathComponent(files[1]))
        try Data("x".utf8).write(to: copy.appendingPathComponent("extra.pb-c.c"))

        let differences = try Self.compare(committed: Self.committed, generated: copy)
        #expect(differences.count == 3, "\(differences)")
    }

    // MARK: - Helpers

    /// Relative paths of the regular files under `root`.
    static func files(in root: URL) throws -> Set<String> {
        let rootPath = root.standardizedFileURL.path
        guard let enumerator = FileManager.default.enumerator(atPath: rootPath) else { return [] }
        var result: Set<String> = []
        while let relative = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: rootPath + "/" + relative, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                result.insert(relative)
            }
        }
        return result
    }

    /// One line per file that differs, is missing from `generated`, or is extra in it.
    static func compare(committed: URL, generated: URL) throws -> [String] {
        let old = try files(in: committed)
        let new = try files(in: generated)
        var differences: [String] = []
        for path in old.subtracting(new).sorted() { differences.append("\(path): committed but not generated") }
        for path in new.subtracting(old).sorted() { differences.append("\(path): generated but not committed") }
        for path in old.intersection(new).sorted() {
            let a = try Data(contentsOf: committed.appendingPathComponent(path))
            let b = try Data(contentsOf: generated.appendingPathComponent(path))
            if a != b { differences.append("\(path): contents differ") }
        }
        return differences
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squat-gen-proto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func run(_ executable: URL, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let errorPipe = Pipe()
        process.standardError = errorPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = errorPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stderr, as: UTF8.self))
    }
}
