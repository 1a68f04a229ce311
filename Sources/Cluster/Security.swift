import Foundation
import Wire

/// The CURVE keys of a worker or client: its own pair, and the coordinator's public key.
public struct CurveClientKeys: Sendable {
    public var pair: CurveKeyPair
    /// The coordinator's public key (its `.pub` file).
    public var serverKey: String

    public init(pair: CurveKeyPair, serverKey: String) {
        self.pair = pair
        self.serverKey = serverKey
    }

    /// Reads `--curve-secret DIR` and `--curve-server-key FILE`.
    public static func load(secretDirectory: String, serverKeyFile: String) throws(CurveKeyError) -> CurveClientKeys {
        CurveClientKeys(
            pair: try Curve.loadPair(directory: secretDirectory).pair, serverKey: try Curve.readKey(file: serverKeyFile)
        )
    }
}

/// Who a peer of the coordinator is, by the key it authenticated with.
public enum PeerRole: Sendable, Equatable, CustomStringConvertible {
    /// A key from `--authorized-keys DIR/workers/`.
    case worker(name: String, key: String)
    /// A key from `--authorized-keys DIR/clients/`.
    case client(name: String, key: String)
    /// No key: the coordinator runs without CURVE, or the peer is in the same process (`inproc://`).
    case local

    public var description: String {
        switch self {
        case .worker(let name, _): "worker key '\(name)'"
        case .client(let name, _): "client key '\(name)'"
        case .local: "unauthenticated peer"
        }
    }
}

/// The coordinator's CURVE set-up: its own pair and the public keys it admits, by role.
///
/// `--authorized-keys DIR` holds `DIR/workers/*.pub` (may register as workers) and
/// `DIR/clients/*.pub` (may submit requests, cancel, ask for status and drain workers).
public struct AuthorizedKeys: Sendable {
    public var pair: CurveKeyPair
    /// Public key → name (the `.pub` file's base name).
    public var workers: [String: String]
    public var clients: [String: String]

    public init(pair: CurveKeyPair, workers: [String: String], clients: [String: String]) {
        self.pair = pair
        self.workers = workers
        self.clients = clients
    }

    /// Reads `--curve-secret DIR` and `--authorized-keys DIR`.
    public static func load(secretDirectory: String, authorizedDirectory: String) throws(CurveKeyError)
        -> AuthorizedKeys
    {
        let pair = try Curve.loadPair(directory: secretDirectory).pair
        var byRole: [String: [String: String]] = [:]
        let fm = FileManager.default
        for role in ["workers", "clients"] {
            let dir = (authorizedDirectory as NSString).appendingPathComponent(role)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                byRole[role] = [:]
                continue
            }
            var keys: [String: String] = [:]
            for (name, key) in try Curve.loadPublicKeys(directory: dir) {
                if let other = keys[key] {
                    throw CurveKeyError(path: dir, reason: "\(name).pub and \(other).pub hold the same key")
                }
                keys[key] = name
            }
            byRole[role] = keys
        }
        let workers = byRole["workers"] ?? [:]
        let clients = byRole["clients"] ?? [:]
        guard !workers.isEmpty else {
            throw CurveKeyError(
                path: authorizedDirectory,
                reason:
                    "no worker keys: put each worker's NAME.pub in \(authorizedDirectory)/workers/ (and clients' in clients/)"
            )
        }
        if let shared = workers.keys.first(where: { clients[$0] != nil }) {
            throw CurveKeyError(
                path: authorizedDirectory,
                reason:
                    "key \(shared) is both a worker (\(workers[shared] ?? "")) and a client (\(clients[shared] ?? "")): give each role its own key"
            )
        }
        return AuthorizedKeys(pair: pair, workers: workers, clients: clients)
    }

    /// The ZAP table: public key → user id ("worker:KEY" or "client:KEY").
    var zapTable: [String: String] {
        var table: [String: String] = [:]
        for key in workers.keys { table[key] = "worker:" + key }
        for key in clients.keys { table[key] = "client:" + key }
        return table
    }

    /// The role of a peer whose messages carry `userID` (nil: no ZAP, i.e. `inproc://`).
    func role(userID: String?) -> PeerRole {
        guard let userID else { return .local }
        if userID.hasPrefix("worker:") {
            let key = String(userID.dropFirst("worker:".count))
            return .worker(name: workers[key] ?? "?", key: key)
        }
        if userID.hasPrefix("client:") {
            let key = String(userID.dropFirst("client:".count))
            return .client(name: clients[key] ?? "?", key: key)
        }
        return .local
    }
}

/// The refusal to listen on a non-loopback address without keys.
public enum OpenBindCheck {
    /// nil when `endpoint` may be bound; otherwise why not and what to do.
    public static func refusal(endpoint: String, what: String, hasKeys: Bool, insecure: Bool) -> String? {
        guard !hasKeys, !insecure, !Curve.isLocalOnly(endpoint) else { return nil }
        return "refusing to bind \(what) on \(endpoint) without CURVE keys: anyone who can reach that address could "
            + "submit prompts, register as a worker or read the activations. Give --curve-secret DIR (see `squat keygen`) "
            + "and the other key flags, bind a loopback address, or pass --insecure to run unauthenticated anyway."
    }
}
