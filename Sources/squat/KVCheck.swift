import ArgumentParser
import Foundation
import KVCache

/// `squat kvcheck`: runs the SQuat/KIVI reference vectors through our quantization code.
struct KVCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvcheck",
        abstract: "Check KV-cache quantization (KIVI, SQuat) against reference vectors.",
        discussion: """
            Reads a manifest (format: squat-vectors/README.md), validates each .bin file (sizes, \
            offsets, shapes, sha256) and runs every case from its inputs: KIVI keys and values, \
            the query subspace, generate_At_inv and SQuat keys, with our own subspace and matrices \
            and again with the stored Ainv_t/P_inv. Exits non-zero when a case is past tolerance.
            """)

    @Option(help: "Path of manifest.json.")
    var manifest: String

    @Flag(help: "Print every measurement of every case.")
    var verbose = false

    func run() throws {
        let tol = KVCheckTolerances()
        let results: [KVCheckCaseResult]
        do {
            results = try KVCache.KVCheck.run(manifestPath: manifest, tolerances: tol)
        } catch {
            print("kvcheck: \(error)")
            fflush(nil)
            throw ExitCode(2)
        }
        print(KVCheckReport.table(results))
        if verbose {
            for r in results { print(KVCheckReport.details(r)) }
        }
        let failed = results.filter { !$0.passed }
        for r in failed {
            print("FAIL \(r.id)")
            for f in r.failures { print("  - \(f)") }
        }
        print(failed.isEmpty
            ? "kvcheck: all \(results.count) cases within tolerance"
            : "kvcheck: \(failed.count) of \(results.count) cases past tolerance")
        fflush(nil)
        if !failed.isEmpty { throw ExitCode.failure }
    }
}

/// Text output of `squat kvcheck`.
enum KVCheckReport {
    static func e(_ x: Double) -> String { x == 0 ? "0" : String(format: "%.1e", x) }
    static func pct(_ c: KVCheckQuantComparison) -> String {
        c.codeMismatches == 0 ? "0" : String(format: "%d (%.2f%%)", c.codeMismatches, 100 * c.mismatchFraction)
    }
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

    static func table(_ results: [KVCheckCaseResult]) -> String {
        let idWidth = max(4, results.map(\.id.count).max() ?? 4)
        let cols: [(String, Int)] = [
            ("λ", 6), ("check", 6), ("SQuat≠ own", 14), ("≠ stored", 8), ("KIVI≠", 6), ("V≠", 4),
            ("ΔSQuat abs/rng", 15), ("ΔKIVI abs/rng", 15), ("ΔV abs/rng", 15), ("Δσ/σmax", 8), ("ΔQ̂ᵀQ̂", 8),
            ("Δatt sq/kv/fp", 23), ("relErrSub ours/ref", 19), ("", 4),
        ]
        var lines = [pad("case", idWidth) + "  " + cols.map { lpad($0.0, $0.1) }.joined(separator: " ")]
        lines.append(String(repeating: "-", count: lines[0].count))
        for r in results {
            let fields = [
                String(format: "%g", r.lambda), r.strict ? "exact" : "budget", pct(r.squat), pct(r.squatStored),
                pct(r.kiviKeys), pct(r.values),
                "\(e(r.squat.dequantMaxAbsAgreeing))/\(e(r.squat.dequantRelativeAgreeing))",
                "\(e(r.kiviKeys.dequantMaxAbs))/\(e(r.kiviKeys.dequantRelative))",
                "\(e(r.values.dequantMaxAbs))/\(e(r.values.dequantRelative))",
                e(r.singularValueError), e(r.gramError),
                "\(e(r.attSquat))/\(e(r.attKivi))/\(e(r.attFp32))",
                String(format: "%.4f/%@", r.relErrSubspaceSquat, r.relErrSubspaceSquatRef.map { String(format: "%.4f", $0) } ?? "-"),
                r.passed ? "ok" : "FAIL",
            ]
            lines.append(pad(r.id, idWidth) + "  " + zip(fields, cols).map { lpad($0, $1.1) }.joined(separator: " "))
        }
        lines.append("""
            SQuat≠ own: SQuat key codes differing with our own subspace/Ainv_t/P_inv; ≠ stored: with the stored ones. \
            ΔX abs/rng: max |Δ| of dequantized values (SQuat: where codes agree) and relative to the reference's range. \
            Δatt: attention logits q·RoPE(k̂)ᵀ, max |Δ| / max |ref|. check: exact = codes up to ties (≤0.1%), \
            budget = ≤1.5% (λ=1, ill-conditioned A).
            """)
        return lines.joined(separator: "\n")
    }

    static func details(_ r: KVCheckCaseResult) -> String {
        func q(_ name: String, _ c: KVCheckQuantComparison) -> String {
            var s = "  \(pad(name, 16)) codes ≠ \(c.codeMismatches)/\(c.codes)"
            if c.codeMismatches > 0 { s += " (\(c.nearTies) near ties)" }
            s += "  dequant max|Δ| \(e(c.dequantMaxAbs)) (rel \(e(c.dequantRelative))), agreeing codes \(e(c.dequantMaxAbsAgreeing)) (rel \(e(c.dequantRelativeAgreeing)))"
            if let t = c.targetRelative { s += "  target rel \(e(t))" }
            s += "  packing layout \(c.packingLayoutMatches ? "ok" : "DIFFERS"), packed words \(c.packedMatches ? "equal" : "differ")"
            return s
        }
        return """
            \(r.passed ? "PASS" : "FAIL") \(r.id)  (\(r.summary); \(r.strict ? "exact codes expected" : "mismatch budget"))
            \(q("SQuat keys", r.squat))
            \(q("SQuat (stored)", r.squatStored))
            \(q("KIVI keys", r.kiviKeys))
            \(q("values", r.values))
              subspace: σ max|Δ|/σmax \(e(r.singularValueError))  Q̂ᵀQ̂ max|Δ|/max \(e(r.gramError))  QL iterations \(r.solverIterations) (Jacobi vs QL \(e(r.jacobiAgreement)))  Ainv_t \(e(r.matsError))  P_inv \(e(r.pInvError))
              attention logits max|Δ|/max|ref|: SQuat \(e(r.attSquat)) (stored \(e(r.attSquatStored)))  KIVI \(e(r.attKivi))  fp32 \(e(r.attFp32))
              rel_err_in_subspace: SQuat \(String(format: "%.6f", r.relErrSubspaceSquat)) (ref \(r.relErrSubspaceSquatRef.map { String(format: "%.6f", $0) } ?? "-"))  KIVI \(String(format: "%.6f", r.relErrSubspaceKivi)) (ref \(r.relErrSubspaceKiviRef.map { String(format: "%.6f", $0) } ?? "-"))
            """
    }
}
