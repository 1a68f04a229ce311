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
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

    static func grid(_ header: [String], _ rows: [[String]], leftColumns: Int = 1) -> [String] {
        let widths = header.indices.map { c in ([header[c]] + rows.map { $0[c] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, cell in c < leftColumns ? pad(cell, widths[c]) : lpad(cell, widths[c]) }
                .joined(separator: "  ")
        }
        let head = line(header)
        return [head, String(repeating: "-", count: head.count)] + rows.map(line)
    }

    static func codes(_ c: KVCheckQuantComparison) -> String {
        c.codeMismatches == 0 ? "0/\(c.codes)" : String(format: "%d/%d (%.2f%%)", c.codeMismatches, c.codes, 100 * c.mismatchFraction)
    }

    static func table(_ results: [KVCheckCaseResult]) -> String {
        var out = ["Keys and values against the reference (codes differing; dequantized max |Δ| absolute / relative to the reference's range):"]
        out += grid(
            ["case", "λ", "check", "SQuat codes≠", "SQuat Δ", "KIVI codes≠", "KIVI Δ", "value codes≠", "value Δ",
             "stored: SQuat codes≠", "SQuat Δ", "result"],
            results.map { r in
                [r.id, String(format: "%g", r.lambda), r.strict ? "exact" : "budget",
                 codes(r.squat), "\(e(r.squat.dequantMaxAbsAgreeing))/\(e(r.squat.dequantRelativeAgreeing))",
                 codes(r.kiviKeys), "\(e(r.kiviKeys.dequantMaxAbs))/\(e(r.kiviKeys.dequantRelative))",
                 codes(r.values), "\(e(r.values.dequantMaxAbs))/\(e(r.values.dequantRelative))",
                 codes(r.squatStored), "\(e(r.squatStored.dequantMaxAbs))/\(e(r.squatStored.dequantRelative))",
                 r.passed ? "ok" : "FAIL"]
            })
        out.append("")
        out.append("Subspace, matrices and attention logits (max |Δ| relative to σmax / max |ref|):")
        func rel(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "-" }
        out += grid(
            ["case", "σ", "Q̂ᵀQ̂", "Ainv_t", "P_inv", "att SQuat", "att SQuat(stored)", "att KIVI", "att fp32",
             "relErrSub SQuat ours/ref", "relErrSub KIVI ours/ref"],
            results.map { r in
                [r.id, e(r.singularValueError), e(r.gramError), e(r.matsError), e(r.pInvError),
                 e(r.attSquat), e(r.attSquatStored), e(r.attKivi), e(r.attFp32),
                 "\(rel(r.relErrSubspaceSquat))/\(rel(r.relErrSubspaceSquatRef))",
                 "\(rel(r.relErrSubspaceKivi))/\(rel(r.relErrSubspaceKiviRef))"]
            })
        out.append("""
            SQuat: our own subspace, Ainv_t and P_inv (Δ where codes agree); stored: the case's Ainv_t/P_inv. \
            check "exact": codes equal up to rounding ties (≤ 0.1%); "budget": λ large, A = I + λQ̂ᵀQ̂ \
            ill-conditioned, ≤ 1.5% of SQuat codes may differ. Attention logits: q_decode·RoPE(k̂)ᵀ at positions 0..<T.
            """)
        return out.joined(separator: "\n")
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
