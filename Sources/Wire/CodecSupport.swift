import CProtobufC
import SquatProto

/// A Swift value type mirroring one protobuf-c message struct.
///
/// Encoding fills a C struct whose pointers all point into an `Arena`; decoding reads a
/// struct that protobuf-c unpacked, copying everything into Swift values, so no C memory
/// outlives the call.
protocol CMirror {
    associatedtype C
    /// The proto message's full name, for error messages.
    static var protoName: String { get }
    /// The generated `squat__v1__…__init`: sets the descriptor and defaults. A zeroed struct
    /// has a NULL descriptor, on which protobuf-c's pack asserts.
    static var cInit: (UnsafeMutablePointer<C>?) -> Void { get }
    /// Writes this value into `c` (already initialised with `cInit`).
    func fill(_ c: inout C, _ arena: Arena) throws(WireError)
    /// Reads a value that protobuf-c unpacked.
    init(c: C) throws(WireError)
}

/// C memory for one encode: every string, array and nested message of the C struct tree,
/// freed together when the encode is done.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for block in blocks { block.deallocate() }
    }

    private func allocate(bytes: Int, alignment: Int) -> UnsafeMutableRawPointer {
        let block = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: alignment)
        block.initializeMemory(as: UInt8.self, repeating: 0, count: max(bytes, 1))
        blocks.append(block)
        return block
    }

    /// A C struct for `value`, initialised and filled.
    func message<M: CMirror>(_ value: M) throws(WireError) -> UnsafeMutablePointer<M.C> {
        let p = allocate(bytes: MemoryLayout<M.C>.stride, alignment: MemoryLayout<M.C>.alignment)
            .bindMemory(to: M.C.self, capacity: 1)
        M.cInit(p)
        try value.fill(&p.pointee, self)
        return p
    }

    /// A C array of pointers to C structs for `values` (a repeated message field).
    func messages<M: CMirror>(_ values: [M]) throws(WireError) -> (
        Int, UnsafeMutablePointer<UnsafeMutablePointer<M.C>?>?
    ) {
        if values.isEmpty { return (0, nil) }
        let array = allocate(
            bytes: values.count * MemoryLayout<UnsafeMutablePointer<M.C>?>.stride,
            alignment: MemoryLayout<UnsafeMutablePointer<M.C>?>.alignment
        ).bindMemory(to: UnsafeMutablePointer<M.C>?.self, capacity: values.count)
        for (i, value) in values.enumerated() { array[i] = try message(value) }
        return (values.count, array)
    }

    /// A C array holding `values` (a repeated scalar field).
    func scalars<T: BitwiseCopyable>(_ values: [T]) -> (Int, UnsafeMutablePointer<T>?) {
        if values.isEmpty { return (0, nil) }
        let array = allocate(bytes: values.count * MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment)
            .bindMemory(to: T.self, capacity: values.count)
        for (i, value) in values.enumerated() { array[i] = value }
        return (values.count, array)
    }

    /// A NUL-terminated copy of `string`. protobuf-c strings are C strings, so an embedded NUL
    /// would silently cut the string: it is refused instead.
    func string(_ string: String, _ message: String, _ field: String) throws(WireError) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(string.utf8)
        if utf8.contains(0) {
            throw .invalidField(
                message: message, field: field, reason: "contains a NUL byte (protobuf-c strings are C strings)")
        }
        let p = allocate(bytes: utf8.count + 1, alignment: 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
        for (i, byte) in utf8.enumerated() { p[i] = CChar(bitPattern: byte) }
        p[utf8.count] = 0
        return p
    }

    /// An array of C strings (a repeated string field).
    func strings(_ values: [String], _ message: String, _ field: String) throws(WireError)
        -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?)
    {
        if values.isEmpty { return (0, nil) }
        let array = allocate(
            bytes: values.count * MemoryLayout<UnsafeMutablePointer<CChar>?>.stride,
            alignment: MemoryLayout<UnsafeMutablePointer<CChar>?>.alignment
        ).bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: values.count)
        for (i, value) in values.enumerated() { array[i] = try string(value, message, field) }
        return (values.count, array)
    }

    /// A `bytes` field holding a copy of `bytes`.
    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        let (count, data) = scalars(bytes)
        return ProtobufCBinaryData(len: count, data: data)
    }
}

/// Readers of unpacked protobuf-c structs. protobuf-c guarantees consistent counts and
/// pointers for a message it unpacked; these still check, so a bug there is an error, not a
/// crash.
enum CRead {
    /// A proto3 string: NULL reads as "", invalid UTF-8 is an error.
    static func string(_ p: UnsafePointer<CChar>?, _ message: String, _ field: String) throws(WireError) -> String {
        guard let p else { return "" }
        guard let string = String(validatingCString: p) else {
            throw .invalidField(message: message, field: field, reason: "invalid UTF-8")
        }
        return string
    }

    /// A repeated string field.
    static func strings(
        _ count: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ message: String, _ field: String
    ) throws(WireError) -> [String] {
        guard count > 0 else { return [] }
        guard let p else { throw .invalidField(message: message, field: field, reason: "\(count) items, no storage") }
        var result: [String] = []
        result.reserveCapacity(count)
        for i in 0..<count { result.append(try string(p[i], message, field)) }
        return result
    }

    /// A repeated scalar field.
    static func scalars<T: BitwiseCopyable>(
        _ count: Int, _ p: UnsafeMutablePointer<T>?, _ message: String, _ field: String
    ) throws(WireError) -> [T] {
        guard count > 0 else { return [] }
        guard let p else { throw .invalidField(message: message, field: field, reason: "\(count) items, no storage") }
        return Array(UnsafeBufferPointer(start: p, count: count))
    }

    /// A `bytes` field.
    static func bytes(_ data: ProtobufCBinaryData, _ message: String, _ field: String) throws(WireError) -> [UInt8] {
        try scalars(data.len, data.data, message, field)
    }

    /// A singular message field: nil when absent.
    static func message<M: CMirror>(_ p: UnsafeMutablePointer<M.C>?) throws(WireError) -> M? {
        guard let p else { return nil }
        return try M(c: p.pointee)
    }

    /// A singular message field that proto3 reads as its default when absent.
    static func message<M: CMirror>(_ p: UnsafeMutablePointer<M.C>?, default: @autoclosure () -> M) throws(WireError)
        -> M
    {
        guard let p else { return `default`() }
        return try M(c: p.pointee)
    }

    /// A singular message field the protocol requires.
    static func required<M: CMirror>(_ p: UnsafeMutablePointer<M.C>?, _ message: String, _ field: String)
        throws(WireError) -> M
    {
        guard let p else { throw .missingField(message: message, field: field) }
        return try M(c: p.pointee)
    }

    /// A repeated message field.
    static func messages<M: CMirror>(
        _ count: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<M.C>?>?, _ message: String, _ field: String
    ) throws(WireError) -> [M] {
        guard count > 0 else { return [] }
        guard let p else { throw .invalidField(message: message, field: field, reason: "\(count) items, no storage") }
        var result: [M] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            guard let item = p[i] else {
                throw .invalidField(message: message, field: field, reason: "item \(i) is NULL")
            }
            result.append(try M(c: item.pointee))
        }
        return result
    }
}
