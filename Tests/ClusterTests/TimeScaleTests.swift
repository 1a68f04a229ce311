import Testing

@testable import Cluster

/// `SQUAT_TIME_SCALE`: a whole number 1…1000 scales the protocol's deadlines; anything else is 1.
@Suite("Time scale") struct TimeScaleTests {
    @Test("parses whole numbers in 1…1000 and ignores the rest")
    func parse() {
        #expect(TimeScale.parse(nil) == 1)
        #expect(TimeScale.parse("20") == 20)
        #expect(TimeScale.parse(" 7 ") == 7)
        #expect(TimeScale.parse("1000") == 1000)
        for bad in ["", "0", "-3", "1001", "2.5", "fast", "20s"] {
            #expect(TimeScale.parse(bad) == 1, "\(bad)")
        }
    }

    @Test("the coordinator's and the worker's deadlines carry the factor")
    func deadlines() {
        let f = TimeScale.factor
        #expect(CoordinatorOptions(bind: "tcp://127.0.0.1:0", modelPath: "m").busyLiveness == .seconds(30) * f)
        #expect(CoordinatorOptions(bind: "tcp://127.0.0.1:0", modelPath: "m").stepTimeout == .seconds(120) * f)
        #expect(CacheShipping.timeout == .seconds(30) * f)
        #expect(CacheShipping.settleTimeout == .seconds(10) * f)
    }
}
