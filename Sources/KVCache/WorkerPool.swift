import Foundation
import Synchronization

/// Persistent helper threads for `Parallel`. A region runs part 0 on the caller and part i on
/// helper i; between regions helpers spin briefly (decode issues hundreds of short regions per
/// token, which a dispatch queue's wake-up made slower with two threads than with one), then
/// sleep until the next region.
final class WorkerPool: Sendable {
    private let state: PoolState

    /// `helpers` threads beside the caller's.
    init(helpers: Int) {
        state = PoolState(helpers: helpers)
        for i in 1...max(1, helpers) {
            let s = state
            let thread = Thread { s.helperLoop(index: i) }
            thread.name = "squat-compute-\(i)"
            thread.start()
        }
    }

    deinit { state.stop() }

    /// Runs `body(0)` on the caller and `body(1...helpers)` on the helpers, returning when all
    /// are done. False (nothing run) when the pool is already running a region, e.g. for a
    /// nested call or a second caller: run the parts yourself then.
    func run(_ body: (Int) -> Void) -> Bool {
        state.run(body)
    }
}

/// The job of the current region, shared with the helpers.
private final class Job {
    var body: ((Int) -> Void)?
    init(_ body: @escaping (Int) -> Void) { self.body = body }
}

/// `@unchecked Sendable`: `job` is written only by the caller that holds `busy`, before it bumps
/// `generation` (sequentially consistent), and read by helpers after they see the bump; the
/// caller clears it only after every helper has reported done through `pending`.
private final class PoolState: @unchecked Sendable {
    let helpers: Int
    let generation = Atomic<UInt64>(0)
    let pending = Atomic<Int>(0)
    let sleepers = Atomic<Int>(0)
    let busy = Atomic<Bool>(false)
    let stopping = Atomic<Bool>(false)
    let condition = NSCondition()
    var job: Job?

    /// Spins of a helper waiting for the next region before it sleeps (~70 µs here). The serial
    /// work between a decode step's regions often lasts longer than 7 µs (20 000 spins): then
    /// ~20% of the regions began by waking a sleeping helper, 16–31 µs each, and two threads
    /// decoded at depth 0 at 193 tok/s against 231 with this window.
    static let spins = 200_000

    init(helpers: Int) { self.helpers = max(1, helpers) }

    func run(_ body: (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            let j = Job(body)
            job = j
            pending.store(helpers, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                condition.lock()
                condition.broadcast()
                condition.unlock()
            }
            body(0)
            while pending.load(ordering: .acquiring) > 0 {}
            job = nil
            j.body = nil
        }
        return true
    }

    func helperLoop(index: Int) {
        var seen: UInt64 = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .sequentiallyConsistent)
            while current == seen && spins < Self.spins {
                spins += 1
                current = generation.load(ordering: .sequentiallyConsistent)
            }
            if current == seen {
                condition.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen
                    && !stopping.load(ordering: .sequentiallyConsistent)
                {
                    condition.wait()
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                condition.unlock()
                current = generation.load(ordering: .sequentiallyConsistent)
            }
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            seen = current
            runJob(index)
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// A separate frame, so that the helper's references to the job end before it reports done.
    @inline(never) func runJob(_ index: Int) {
        if let body = job?.body { body(index) }
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }
}
