import CZeroMQ

/// A ZeroMQ context: the owner of the I/O threads behind every socket made from it.
///
/// Sockets keep their context alive, so it is terminated (`zmq_ctx_term`) only after the last
/// socket is closed; each socket's linger (1 s by default) bounds how long that can block.
// @unchecked Sendable: libzmq documents zmq_ctx_* as thread-safe, and `handle` never changes.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Makes a context with `ioThreads` background I/O threads.
    public init(ioThreads: Int32 = 1) throws(WireError) {
        guard let handle = zmq_ctx_new() else {
            throw WireError.fromErrno("ctx_new", socket: nil, endpoint: nil)
        }
        self.handle = handle
        if zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads) != 0 {
            let error = WireError.fromErrno("ctx_set(ZMQ_IO_THREADS=\(ioThreads))", socket: nil, endpoint: nil)
            zmq_ctx_term(handle)
            throw error
        }
    }

    /// Makes every blocking call on this context's sockets, in any thread, return
    /// `WireError.contextTerminated`, and every later call fail the same way. Sockets must still
    /// be closed (or released) by their owners.
    public func shutdown() {
        zmq_ctx_shutdown(handle)
    }

    deinit {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }
}
