#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wall-clock and process CPU time, for tokens/s and tokens per CPU-second.
struct CPUClock {
    static func wall() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
    /// User + system CPU seconds of this process (all threads).
    static func cpu() -> Double {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) * 1e-6 + Double(ru.ru_stime.tv_sec)
            + Double(ru.ru_stime.tv_usec) * 1e-6
    }
    /// Peak resident set size of this process, in bytes.
    static func peakRSS() -> Int {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return Int(ru.ru_maxrss) * 1024
    }

    let wall0 = CPUClock.wall()
    let cpu0 = CPUClock.cpu()
    var elapsed: (wall: Double, cpu: Double) { (CPUClock.wall() - wall0, CPUClock.cpu() - cpu0) }
}
