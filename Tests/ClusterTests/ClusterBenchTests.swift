import Foundation
import Testing

@testable import squat

/// `squat bench --cluster`: a real coordinator and worker processes started by the bench itself.
@Suite("Cluster bench", .serialized, .timeLimit(.minutes(5)))
struct ClusterBenchTests {
    @Test("--max-in-flight reaches the bench's coordinator: its credit is reported and bounds the micro-batches")
    func maxInFlightPassesThrough() throws {
        let procs = try Processes()
        var rowsPerBatch: [Int: Double] = [:]
        for credit in [1, 3] {
            let json = procs.directory.appendingPathComponent("bench-\(credit).json").path
            let r = try procs.run(
                "bench-\(credit)",
                [
                    "bench", "--model", Paths.model, "--cluster", "2", "--concurrency", "3", "--decode-tokens", "6",
                    "--cluster-prompt-tokens", "8", "--max-in-flight", "\(credit)", "--json", json,
                ], timeout: .seconds(120))
            #expect(r.status == 0, "\(r.output)")
            #expect(r.output.contains("\(credit) micro-batch(es) in flight at most"), "\(r.output)")
            let data = try #require(FileManager.default.contents(atPath: json), "no JSON from the bench:\n\(r.output)")
            let rows = try JSONDecoder().decode([ClusterBench.Row].self, from: data)
            let row = try #require(rows.first)
            #expect(rows.count == 1 && row.concurrency == 3)
            #expect(row.maxInFlight == credit)
            #expect(row.aggregateTokensPerSecond > 0 && row.allDecodingTokensPerSecond >= 0)
            rowsPerBatch[credit] = row.meanRowsPerMicroBatch
        }
        // One micro-batch at a time carries all three sequences; three at a time split them.
        let one = try #require(rowsPerBatch[1])
        let three = try #require(rowsPerBatch[3])
        #expect(one > three, "rows per micro-batch: \(one) with credit 1, \(three) with credit 3")
    }

    @Test("the all-decoding rate counts only tokens from the window in which every sequence decodes")
    func allDecodingWindow() {
        // A decodes 0…5 s, B 2…7 s: both decode in (2, 5], three tokens each.
        let a: [Double] = [0, 1, 2, 3, 4, 5]
        let b: [Double] = [2, 3, 4, 5, 6, 7]
        #expect(ClusterBench.allDecodingRate([a, b]) == 2)
        // One sequence: its own decode rate (tokens after the first, over their span).
        #expect(ClusterBench.allDecodingRate([a]) == 1)
        // Never all at once, or a sequence without tokens: no such window.
        #expect(ClusterBench.allDecodingRate([[0, 1], [2, 3]]) == 0)
        #expect(ClusterBench.allDecodingRate([a, []]) == 0)
    }

    @Test("scaling is the median over rounds of each round's ratio, not a ratio of medians")
    func scalingPairsRounds() {
        func row(_ aggregate: Double, _ allDecoding: Double) -> ClusterBench.Row {
            ClusterBench.Row(
                workers: 2, workerThreads: 1, concurrency: 1, decodeTokensPerSequence: 8,
                aggregateTokensPerSecond: aggregate, aggregateTokensPerCPUSecond: 0,
                allDecodingTokensPerSecond: allDecoding, perSequenceTokensPerSecond: 0, timeToFirstTokenMs: 0,
                meanHopMicroseconds: 0, meanStageBusyMicroseconds: [], meanRowsPerMicroBatch: 0, maxInFlight: 2,
                residentMiB: [:], peakResidentMiB: [:])
        }
        // A machine that slows down round by round: the ratios are 3, 4 and 2; the medians of the
        // two columns (100 and 300) would give 3 too, so the second case tells them apart.
        let base = [row(100, 100), row(50, 50), row(200, 200)]
        let eight = [row(300, 330), row(200, 220), row(400, 440)]
        let s = ClusterBench.scaling(base, eight)
        #expect(abs(s.aggregate - 3) < 1e-12 && abs(s.allDecoding - 3.3) < 1e-12, "\(s)")
        #expect(s.aggregateRange == 2...4, "\(s)")
        // Medians of the columns: 100 and 400, i.e. 4×; the rounds' ratios: 2, 2.5 and 8 → 2.5.
        let s2 = ClusterBench.scaling(
            [row(100, 100), row(200, 200), row(50, 50)], [row(200, 0), row(500, 0), row(400, 0)])
        #expect(abs(s2.aggregate - 2.5) < 1e-12, "\(s2)")
        // A round whose base made no tokens is left out; none left gives 0.
        let none = ClusterBench.scaling([row(0, 0)], [row(300, 300)])
        #expect(none.aggregate == 0 && none.allDecoding == 0 && none.aggregateRange == 0...0)
        #expect(ClusterBench.scaling([row(0, 0), row(100, 100)], [row(300, 300), row(200, 250)]).aggregate == 2)
    }

    @Test("--max-in-flight 0 is refused by name before anything starts")
    func zeroCreditRefused() throws {
        let procs = try Processes()
        let r = try procs.run(
            "bench-zero", ["bench", "--model", Paths.model, "--cluster", "2", "--max-in-flight", "0"])
        #expect(r.status != 0)
        // The bench's own check, not the coordinator's refusal after it was started.
        #expect(r.output.contains("--max-in-flight must be ≥ 1, got 0"), "\(r.output)")
        #expect(!r.output.contains("did not start"), "\(r.output)")
    }
}
