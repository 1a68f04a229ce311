#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Floats on anonymous pages of their own, unmapped by `release()`: a large scratch that lives
/// for one call. From malloc, freeing a block this size raises glibc's mmap threshold, and
/// later blocks of that size then stay in the heap (~6 MiB more peak memory in an 8000-token
/// prefill). Small buffers, and any the system cannot map, come from the heap.
struct PageBuffer {
    let floats: UnsafeMutablePointer<Float>
    private let bytes: Int
    private let mapped: Bool

    init(floats count: Int) {
        let n = max(1, count)
        bytes = n * MemoryLayout<Float>.stride
        // Below glibc's initial mmap threshold (128 KiB) the heap serves it without that effect.
        let p = bytes < 1 << 17 ? nil : mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let p, p != UnsafeMutableRawPointer(bitPattern: -1) {
            floats = p.bindMemory(to: Float.self, capacity: n)
            mapped = true
        } else {
            floats = .allocate(capacity: n)
            mapped = false
        }
    }

    func release() {
        if mapped {
            munmap(floats, bytes)
        } else {
            floats.deallocate()
        }
    }
}
