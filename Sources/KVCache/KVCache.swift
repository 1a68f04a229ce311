/// Shape of the attention a cache serves.
public struct AttentionShape: Sendable, Equatable {
    public let kvHeads: Int
    /// Query heads per KV head.
    public let groupSize: Int
    public let headDim: Int
    public init(kvHeads: Int, groupSize: Int, headDim: Int) {
        self.kvHeads = kvHeads
        self.groupSize = groupSize
        self.headDim = headDim
    }
    public var queryHeads: Int { kvHeads * groupSize }
    public var qDim: Int { queryHeads * headDim }
    public var kvDim: Int { kvHeads * headDim }
}

/// The KV cache of one sequence over a stage's layers. One call per layer stores the keys and
/// values of new tokens and computes attention for their queries.
public protocol SequenceKVCache: AnyObject {
    /// Tokens stored (and committed) so far; the next token's position.
    var count: Int { get }
    /// For local layer `layer`: appends `rows` tokens at positions count..<count+rows, given
    /// their pre-RoPE queries (rows × qDim), keys and values (rows × kvDim), and writes the
    /// attention output (rows × qDim) for each query, causally. May modify queries and keys
    /// in place (RoPE). Call for every layer, then `commit(rows:)`.
    func forward(
        layer: Int, queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>,
        values: UnsafeMutablePointer<Float>, rows: Int, output: UnsafeMutablePointer<Float>, parallel: Parallel)
    /// Marks `rows` tokens appended on every layer as stored.
    func commit(rows: Int)
    /// Bytes of memory the cache holds for its tokens (all layers).
    var byteCount: Int { get }
    /// The exact state of every layer, one blob per layer (format: `CacheSnapshot`), for
    /// shipping layers to another stage: a cache of the same kind and configuration that
    /// imports them continues bit for bit as this one would.
    func exportLayers() -> [[UInt8]]
    /// Installs exported layers into this cache, which must be empty (`count == 0`): one blob
    /// per layer, all with the same token count, made by a cache of the same kind, shape and
    /// settings. Every blob is checked before anything is installed; on error the cache is
    /// unchanged.
    func importLayers(_ blobs: [[UInt8]]) throws(KVCacheImportError)
}

/// Makes a cache for each new sequence; one per stage, configured once.
public protocol KVCacheFactory: Sendable {
    func makeCache(layers: Int, shape: AttentionShape, rope: Rope) -> any SequenceKVCache
    /// A short name for logs and tables ("f16", "squat-k2v2", ...).
    var name: String { get }
}
