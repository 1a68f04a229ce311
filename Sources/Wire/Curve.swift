import CZeroMQ
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A CURVE long-term key pair, both halves Z85-encoded (40 characters each).
public struct CurveKeyPair: Sendable, Hashable, CustomStringConvertible {
    /// The public half: what peers are given and what a ZAP handler admits.
    public let publicKey: String
    /// The secret half: stays on this machine (`NAME.key`, mode 0600).
    public let secretKey: String

    /// A new random key pair (`zmq_curve_keypair`).
    public static func generate() throws(WireError) -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else {
            throw WireError.fromErrno("curve_keypair", socket: nil, endpoint: nil)
        }
        return CurveKeyPair(
            publicKey: String(decoding: publicKey.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self),
            secretKey: String(decoding: secretKey.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// The pair of `secretKey`, its public half derived (`zmq_curve_public`); nil when
    /// `secretKey` is not a Z85 CURVE key.
    public init?(secretKey: String) {
        guard Curve.isKey(secretKey) else { return nil }
        var publicKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicKey, secretKey) == 0 else { return nil }
        self.publicKey = String(decoding: publicKey.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.secretKey = secretKey
    }

    private init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// The options that make a socket the CURVE server of this pair (its peers must know
    /// `publicKey`; the context's ZAP handler decides which of them get in).
    public var serverOptions: [SocketOption] {
        [.curveServer(true), .curveSecretKey(secretKey), .curvePublicKey(publicKey), .zapDomain(Curve.zapDomain)]
    }

    /// The options that make a socket a CURVE client of the server whose public key is `server`.
    public func clientOptions(server: String) -> [SocketOption] {
        [.curveServerKey(server), .curvePublicKey(publicKey), .curveSecretKey(secretKey)]
    }

    /// The public key only: a pair printed in a log must not give its secret away.
    public var description: String { "CURVE key pair \(publicKey)" }
}

/// A key file that cannot be used: which file, and why.
public struct CurveKeyError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// CURVE key files: `NAME.pub` (the public key) and `NAME.key` (the secret key, mode 0600),
/// each one Z85 line, as `squat keygen` writes them.
public enum Curve {
    /// Whether libzmq was built with CURVE (libsodium or tweetnacl).
    public static var isAvailable: Bool { zmq_has("curve") == 1 }

    /// The ZAP domain of every squat server socket.
    public static let zapDomain = "squat"

    /// Whether `text` is a Z85-encoded 32-byte key.
    public static func isKey(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 40 else { return false }
        var decoded = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&decoded, text) != nil
    }

    /// The Z85 form of a 32-byte key (as a ZAP request carries it).
    public static func z85(_ key: [UInt8]) -> String? {
        guard key.count == 32 else { return nil }
        var out = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&out, key, 32) != nil else { return nil }
        return String(decoding: out.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes `pair` as `DIR/NAME.pub` and `DIR/NAME.key` (mode 0600), creating `directory`
    /// (mode 0700) if needed. An existing file is never overwritten.
    @discardableResult
    public static func write(_ pair: CurveKeyPair, directory: String, name: String) throws(CurveKeyError) -> (
        publicFile: String, secretFile: String
    ) {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw CurveKeyError(
                path: directory, reason: "'\(name)' is not a usable key name (no '/', not starting with '.')")
        }
        let fm = FileManager.default
        do {
            try fm.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CurveKeyError(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }
        let pub = (directory as NSString).appendingPathComponent("\(name).pub")
        let key = (directory as NSString).appendingPathComponent("\(name).key")
        for path in [pub, key] where fm.fileExists(atPath: path) {
            throw CurveKeyError(path: path, reason: "already exists; not overwriting a key (remove it first)")
        }
        try create(key, contents: "\(pair.secretKey)\n", mode: 0o600)
        try create(pub, contents: "\(pair.publicKey)\n", mode: 0o644)
        return (pub, key)
    }

    /// Creates `path` exclusively with `mode` (so a secret is never readable by others, not even
    /// for a moment) and writes `contents`.
    private static func create(_ path: String, contents: String, mode: mode_t) throws(CurveKeyError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else {
            throw CurveKeyError(path: path, reason: "cannot create: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw CurveKeyError(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
        }
        _ = fchmod(fd, mode)  // against a restrictive umask changing nothing, a permissive one widening nothing
    }

    /// The one key in a key file: the first line that is not empty or a `#` comment.
    public static func readKey(file path: String) throws(CurveKeyError) -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CurveKeyError(path: path, reason: "cannot read the key file: \(error.localizedDescription)")
        }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let line = lines.first(where: { !$0.isEmpty && !$0.hasPrefix("#") }) else {
            throw CurveKeyError(path: path, reason: "no key in the file (expected one 40-character Z85 line)")
        }
        guard isKey(line) else {
            throw CurveKeyError(
                path: path, reason: "'\(line.prefix(48))' is not a CURVE key (expected 40 Z85 characters)")
        }
        return line
    }

    /// The key pair in `directory`: its one `NAME.key` (mode 0600 or stricter), checked against
    /// `NAME.pub` when that exists.
    public static func loadPair(directory: String) throws(CurveKeyError) -> (name: String, pair: CurveKeyPair) {
        let names = try files(in: directory, extension: "key")
        guard names.count == 1, let name = names.first else {
            throw CurveKeyError(
                path: directory,
                reason: names.isEmpty
                    ? "no secret key (NAME.key) in the directory; create one with `squat keygen --out \(directory)`"
                    : "\(names.count) secret keys (\(names.map { "\($0).key" }.joined(separator: ", "))); keep exactly one"
            )
        }
        let keyPath = (directory as NSString).appendingPathComponent("\(name).key")
        var info = stat()
        if stat(keyPath, &info) == 0, info.st_mode & 0o077 != 0 {
            throw CurveKeyError(
                path: keyPath,
                reason:
                    "the secret key is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 on it"
            )
        }
        let secret = try readKey(file: keyPath)
        guard let pair = CurveKeyPair(secretKey: secret) else {
            throw CurveKeyError(path: keyPath, reason: "not a CURVE secret key")
        }
        let pubPath = (directory as NSString).appendingPathComponent("\(name).pub")
        if FileManager.default.fileExists(atPath: pubPath) {
            let pub = try readKey(file: pubPath)
            guard pub == pair.publicKey else {
                throw CurveKeyError(
                    path: pubPath,
                    reason: "does not match \(name).key (the public key of that secret is \(pair.publicKey))")
            }
        }
        return (name, pair)
    }

    /// Every `NAME.pub` in `directory`, by name.
    public static func loadPublicKeys(directory: String) throws(CurveKeyError) -> [(name: String, key: String)] {
        var keys: [(name: String, key: String)] = []
        for name in try files(in: directory, extension: "pub") {
            keys.append((name, try readKey(file: (directory as NSString).appendingPathComponent("\(name).pub"))))
        }
        return keys
    }

    /// The base names of the regular files `*.EXT` in `directory`, sorted.
    private static func files(in directory: String, extension ext: String) throws(CurveKeyError) -> [String] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw CurveKeyError(path: directory, reason: "cannot list the key directory: \(error.localizedDescription)")
        }
        return entries.filter { $0.hasSuffix(".\(ext)") && !$0.hasPrefix(".") }.map {
            String($0.dropLast(ext.count + 1))
        }
        .sorted()
    }

    /// Whether `endpoint` only reaches this machine: `inproc://`, `ipc://`, or TCP on a
    /// loopback address (127.0.0.0/8, ::1, localhost). `tcp://*` and `tcp://0.0.0.0` are not.
    public static func isLocalOnly(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("ipc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst("tcp://".count))
        // An interface may precede the host with ';' (source;destination): judge the address bound.
        if let semi = host.firstIndex(of: ";") { host = String(host[..<semi]) }
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            host = String(host[..<colon])
        }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
