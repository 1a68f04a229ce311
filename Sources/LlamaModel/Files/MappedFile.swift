#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only memory mapping of a whole file. Tensor views point into it without copying.
///
/// `@unchecked Sendable`: the mapping is immutable (PROT_READ) and lives as long as this object.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let count: Int

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
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), count)
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
