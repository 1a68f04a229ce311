#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Minimal file-system queries (this module does not use Foundation).
enum FileSystem {
    enum Kind { case missing, file, directory, other }

    static func kind(_ path: String) -> Kind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    /// Names of the entries of a directory (without "." and ".."), sorted.
    static func list(_ path: String) throws(ModelFileError) -> [String] {
        guard let dir = opendir(path) else {
            throw ModelFileError(file: path, what: "cannot list directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// `dir/name` without doubling a trailing slash.
    static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// The directory part of a path ("." when there is none).
    static func directory(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// The whole content of a (small) file, e.g. config.json.
    static func read(_ path: String) throws(ModelFileError) -> [UInt8] {
        let file = try MappedFile(path: path)
        return Array(UnsafeRawBufferPointer(start: file.base, count: file.count))
    }

    /// Reads and parses a JSON file; errors name the file and the byte.
    static func readJSON(_ path: String) throws(ModelFileError) -> JSONValue {
        let bytes = try read(path)
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw ModelFileError(file: path, what: "not valid JSON: \(error)")
        }
    }
}
