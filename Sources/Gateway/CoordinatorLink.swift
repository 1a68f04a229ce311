import Cluster
import Foundation
import Synchronization
import Wire

/// The gateway's way to the coordinator: like any client, through `ClusterClient`, over the
/// coordinator's `inproc://` endpoint on the shared ZeroMQ context. ZeroMQ sockets are not
/// thread-safe and `ClusterClient` blocks, so every call gets a thread of its own that creates,
/// uses and closes its client; async code only awaits the results.
final class CoordinatorLink: Sendable {
    let endpoint: String
    let context: Context
    /// Longest silence of the coordinator while a request is live.
    let timeout: Duration

    init(endpoint: String, context: Context, timeout: Duration = .seconds(120)) {
        self.endpoint = endpoint
        self.context = context
        self.timeout = timeout
    }

    /// What a request stream yields.
    enum Event: Sendable {
        case token(TokenEvent)
        case finished(Finished)
        case error(ErrorReply)
        /// The pipeline does not serve (the coordinator's hold reason); nothing was submitted.
        case unavailable(String)
    }

    /// Set when the HTTP side gives up on a request (its client went away): at the request's
    /// next event its thread sends Cancel and drops its ClusterClient; the coordinator ends the
    /// request and frees its caches.
    final class CancelFlag: Sendable {
        private let flag = Atomic<Bool>(false)
        var isSet: Bool { flag.load(ordering: .relaxed) }
        func set() { flag.store(true, ordering: .relaxed) }
    }

    struct Abandoned: Error {}

    /// Checks that the pipeline serves, then submits `submit` and streams its events.
    /// `onToken(index, now)` is called on the request's thread as each token arrives (timing).
    func run(_ submit: Submit, onToken: @escaping @Sendable (UInt32, ContinuousClock.Instant) -> Void)
        -> (events: AsyncThrowingStream<Event, Error>, cancel: CancelFlag)
    {
        let cancel = CancelFlag()
        let (stream, continuation) = AsyncThrowingStream<Event, Error>.makeStream()
        continuation.onTermination = { _ in cancel.set() }
        let endpoint = endpoint
        let context = context
        let timeout = timeout
        let thread = Thread {
            do {
                let client = try ClusterClient(endpoint: endpoint, timeout: timeout, context: context)
                let status = try client.status(includeSequences: false)
                guard status.pipeline.holdReason.isEmpty else {
                    continuation.yield(.unavailable(status.pipeline.holdReason))
                    continuation.finish()
                    return
                }
                try client.submit(submit) { event in
                    if cancel.isSet {
                        // Tell the coordinator now (it would also notice the dropped connection).
                        try? client.cancel(submit.requestID)
                        throw Abandoned()
                    }
                    switch event {
                    case .token(let t):
                        onToken(t.index, ContinuousClock.now)
                        continuation.yield(.token(t))
                    case .finished(let f): continuation.yield(.finished(f))
                    case .error(let e): continuation.yield(.error(e))
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.name = "squat-http-request"
        thread.start()
        return (stream, cancel)
    }

    /// The coordinator's status, asked on a thread of its own.
    func status(includeSequences: Bool = true) async throws -> Status {
        let endpoint = endpoint
        let context = context
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Status, Error>) in
            let thread = Thread {
                do {
                    let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(5), context: context)
                    continuation.resume(returning: try client.status(includeSequences: includeSequences))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "squat-http-status"
            thread.start()
        }
    }
}
