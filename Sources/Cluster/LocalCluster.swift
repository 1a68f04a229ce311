import Foundation
import KVCache
import LlamaModel
import Synchronization
import Wire

/// A coordinator and `stages` workers inside this process, each loop on a thread of its own,
/// talking over `inproc://` endpoints of one shared ZeroMQ context: the same code and protocol
/// as separate processes, without the sockets' network hops.
public final class LocalCluster: Sendable {
    /// The coordinator's endpoint (reachable only through `context`).
    public let endpoint: String
    /// The shared context: clients must use it to reach `endpoint`.
    public let context: Context
    private let stop: StopFlag
    private let done: DispatchGroup

    /// Hands an object built on one thread to the loop thread that alone uses it afterwards.
    private struct Handoff<T>: @unchecked Sendable {  // the creator never touches it again
        let value: T
    }

    final class StopFlag: Sendable {
        let flag = Atomic<Bool>(false)
        var isSet: Bool { flag.load(ordering: .relaxed) }
        func set() { flag.store(true, ordering: .relaxed) }
    }

    /// Starts the coordinator and the workers and waits (up to `readyTimeout`) until the
    /// pipeline serves.
    public init(
        coordinator coordinatorOptions: CoordinatorOptions, workers workerOptions: [WorkerOptions],
        readyTimeout: Duration = .seconds(60)
    ) throws {
        let context = try Context()
        let name = UUID().uuidString
        var c = coordinatorOptions
        c.context = context
        c.bind = "inproc://squat-coordinator-\(name)"
        c.minWorkers = workerOptions.count
        let coordinator = try Coordinator(options: c)
        let endpoint = coordinator.endpoint
        var workers: [Worker] = []
        for (i, o) in workerOptions.enumerated() {
            var w = o
            w.context = context
            w.coordinator = endpoint
            w.dataBind = "inproc://squat-stage-\(name)-\(i)"
            workers.append(try Worker(options: w))
        }
        let stop = StopFlag()
        let done = DispatchGroup()
        let log = ClusterLog("local cluster")
        let coordinatorBox = Handoff(value: coordinator)
        done.enter()
        Thread {
            defer { done.leave() }
            do { try coordinatorBox.value.run(shouldStop: { stop.isSet }) } catch { log.error("coordinator: \(error)") }
        }.start()
        for w in workers {
            let box = Handoff(value: w)
            done.enter()
            Thread {
                defer { done.leave() }
                do { _ = try box.value.run(shouldStop: { stop.isSet }) } catch { log.error("worker: \(error)") }
            }.start()
        }
        self.context = context
        self.endpoint = endpoint
        self.stop = stop
        self.done = done
        let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(2), context: context)
        let deadline = Monotonic.now() + readyTimeout
        while true {
            if let s = try? client.status(includeSequences: false), s.pipeline.maxInFlight > 0,
                s.workers.filter({ $0.state == .ready }).count == workerOptions.count
            {
                break
            }
            guard Monotonic.now() < deadline else {
                shutdown()
                throw ClusterError("the in-process pipeline of \(workerOptions.count) stage(s) was not ready within \(readyTimeout)")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Stops the loops (the coordinator drains its workers) and waits for their threads.
    public func shutdown() {
        stop.set()
        _ = done.wait(timeout: .now() + 10)
    }

    deinit { shutdown() }
}
