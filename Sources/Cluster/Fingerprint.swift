import KVCache
import Foundation

/// A model's identity as the cluster compares it: workers must serve the coordinator's model.
///
/// For a file: its size and the SHA-256 of its first MiB (a GGUF's header, metadata and tensor
/// table, where every shape, type and offset lives). For a directory (Hugging Face): the SHA-256
/// of `config.json` plus the names and sizes of its files.
public enum ModelFingerprint {
    public static let prefixBytes = 1 << 20

    public static func of(path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ClusterError("model '\(path)' does not exist")
        }
        var hash = SHA256()
        if isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            var total: UInt64 = 0
            for name in names {
                let attributes = try FileManager.default.attributesOfItem(atPath: path + "/" + name)
                let size = (attributes[.size] as? NSNumber)?.uint64Value ?? 0
                total &+= size
                hash.update(Array("\(name)=\(size);".utf8))
            }
            if let config = FileManager.default.contents(atPath: path + "/config.json") { hash.update([UInt8](config)) }
            return "dir\(total)-" + String(hash.hexDigest().prefix(32))
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ClusterError("cannot read model '\(path)'") }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: 0)
        let prefix = try handle.read(upToCount: prefixBytes) ?? Data()
        hash.update([UInt8](prefix))
        return "\(size)-" + String(hash.hexDigest().prefix(32))
    }
}

/// An error of the cluster layer, with a message for people.
public struct ClusterError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
