#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only memory mapping of a whole file. Tensor views point into it without copying.
///
/// `@unchecked Sendable`: the mapping is immutable (PROT_READ) and lives as long as this object;
/// so is the private copy of `init(copying:path:)`, which is never written after it is made.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let count: Int
    /// Whether `base` is an `mmap` (else memory allocated by `init(copying:path:)`).
    private let isMapping: Bool

    public init(path: String) throws(ModelFileError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelFileError(file: path, what: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ModelFileError(file: path, what: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ModelFileError(file: path, what: "not a regular file")
        }
        let size = Int(st.st_size)
        guard size > 0 else { throw ModelFileError(file: path, what: "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ModelFileError(file: path, what: "mmap failed: \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(p)
        self.count = size
        self.isMapping = true
    }

    /// A copy of `bytes` in memory, standing in for the file `path` (which is only used in error
    /// messages): parsers read it exactly as they read a mapping, without a file system, e.g.
    /// for files that arrive some other way or for fuzzing. The copy is aligned to 64 bytes (a
    /// mapping is page-aligned). Empty input is refused as an empty file is.
    public init(copying bytes: [UInt8], path: String) throws(ModelFileError) {
        guard !bytes.isEmpty else { throw ModelFileError(file: path, what: "file is empty") }
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
        bytes.withUnsafeBytes { source in
            if let start = source.baseAddress { p.copyMemory(from: start, byteCount: source.count) }
        }
        self.path = path
        self.base = UnsafeRawPointer(p)
        self.count = bytes.count
        self.isMapping = false
    }

    deinit {
        if isMapping {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// Drops the pages wholly inside [p, p + count) from resident memory (MADV_DONTNEED: a
    /// private, never-written mapping reads them from the file again if touched). No effect on
    /// a copy in memory or outside the mapping.
    public func dropResidentPages(_ p: UnsafeRawPointer, count n: Int) {
        guard isMapping, n > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        let lo = Int(bitPattern: base)
        let hi = lo + count
        let start = (Int(bitPattern: p) + page - 1) / page * page
        let end = (Int(bitPattern: p) + n) / page * page
        guard start < end, start >= lo, end <= hi, let a = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(a, end - start, Int32(MADV_DONTNEED))
    }

    /// A bounds-checked view of `length` bytes at `offset`.
    public func bytes(at offset: Int, length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }
}

/// An error reading a model, tokenizer or config file: which file, and what was wrong.
public struct ModelFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let what: String
    public init(file: String, what: String) {
        self.file = file
        self.what = what
    }
    public var description: String { "\(file): \(what)" }
}
