import Synchronization

/// A tiny lock for lazily built shared state.
final class NSLockLike: Sendable {
    private let mutex = Mutex<Void>(())
    func withLock<T>(_ body: () -> T) -> T {
        mutex.withLock { _ in body() }
    }
}
