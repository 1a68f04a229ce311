import ArgumentParser
import Cluster
import Foundation
import Wire

/// The CURVE flags of a worker or client: its own key pair and the coordinator's public key.
struct ClientKeyOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Directory holding this process's CURVE key pair (NAME.key, NAME.pub), as `squat keygen` writes it.",
            valueName: "dir"))
    var curveSecret: String?
    @Option(help: ArgumentHelp("The coordinator's public key (its NAME.pub).", valueName: "file"))
    var curveServerKey: String?

    func validate() throws {
        guard (curveSecret == nil) == (curveServerKey == nil) else {
            throw ValidationError(
                "--curve-secret and --curve-server-key go together (this process's keys and the coordinator's public key)"
            )
        }
    }

    /// The keys, or nil when running without CURVE.
    func keys() throws -> CurveClientKeys? {
        guard let curveSecret, let curveServerKey else { return nil }
        do {
            return try CurveClientKeys.load(secretDirectory: curveSecret, serverKeyFile: curveServerKey)
        } catch {
            throw ValidationError("CURVE keys: \(error)")
        }
    }
}

/// `squat keygen`: a CURVE key pair for a coordinator, worker or client.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE key pair: DIR/NAME.pub (public, to share) and DIR/NAME.key (secret, mode 0600).",
        discussion: """
            The coordinator takes --curve-secret DIR and --authorized-keys AUTH, where AUTH/workers/*.pub may register \
            as workers and AUTH/clients/*.pub may submit requests. Workers and clients take --curve-secret DIR and \
            --curve-server-key (the coordinator's .pub).
            """)

    @Option(help: ArgumentHelp("Directory to write the pair into (created, mode 0700).", valueName: "dir")) var out:
        String
    @Option(help: "Base name of the two files (default: the host name).") var name: String?

    func run() throws {
        guard Curve.isAvailable else { throw ValidationError("this libzmq was built without CURVE support") }
        let pair = try CurveKeyPair.generate()
        let base = name ?? ProcessInfo.processInfo.hostName
        do {
            let files = try Curve.write(pair, directory: out, name: base)
            print("public key \(pair.publicKey)")
            print("wrote \(files.publicFile) and \(files.secretFile) (secret, mode 0600)")
        } catch {
            throw ValidationError("keygen: \(error)")
        }
    }
}

/// The refusal to bind a non-loopback address without keys, as a usage error.
func checkOpenBind(_ endpoint: String, what: String, hasKeys: Bool, insecure: Bool) throws {
    if let refusal = OpenBindCheck.refusal(endpoint: endpoint, what: what, hasKeys: hasKeys, insecure: insecure) {
        throw ValidationError(refusal)
    }
}
