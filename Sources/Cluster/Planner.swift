/// What the planner knows of a worker.
public struct WorkerCapacity: Sendable, Equatable {
    public var threads: Int
    /// Bytes of weights plus KV cache the worker may use; 0: no limit given.
    public var memoryBudgetBytes: UInt64
    public init(threads: Int, memoryBudgetBytes: UInt64 = 0) {
        self.threads = threads
        self.memoryBudgetBytes = memoryBudgetBytes
    }
}

/// Splits a model's layers into contiguous ranges, one per worker in pipeline order.
public enum PartitionPlanner {
    /// Layers in proportion to each worker's threads (at least one each), capped by what its
    /// memory budget holds at `bytesPerLayer`. `headLayers`: the last stage's extra work (the
    /// output head), in layers' worth of compute, so that the last worker takes fewer layers and
    /// the stages stay balanced. Workers beyond the layer count get nothing (an empty range);
    /// nil when the budgets together cannot hold the model.
    public static func plan(
        layers: Int, workers: [WorkerCapacity], bytesPerLayer: UInt64 = 0, headLayers: Double = 0
    ) -> [Range<Int>]? {
        guard layers > 0, !workers.isEmpty else { return nil }
        let used = Array(workers.prefix(layers))
        let cap: [Int] = used.map { w in
            guard w.memoryBudgetBytes > 0, bytesPerLayer > 0 else { return layers }
            return Int(min(UInt64(layers), w.memoryBudgetBytes / bytesPerLayer))
        }
        guard cap.reduce(0, +) >= layers, !cap.contains(0) else { return nil }
        let weights = used.map { Double(max(1, $0.threads)) }
        let total = weights.reduce(0, +)
        // Each worker's ideal share of the work (layers plus the head), the head's part taken off
        // the last one's layers.
        let work = Double(layers) + max(0, headLayers)
        var ideal = weights.map { $0 / total * work }
        ideal[ideal.count - 1] -= max(0, headLayers)
        // Largest-remainder apportionment, every worker ≥ 1, then clamp to caps and redistribute.
        var counts = ideal.map { max(1, Int($0.rounded(.down))) }
        counts = zip(counts, cap).map { min($0, $1) }
        while counts.reduce(0, +) > layers,
            let i = counts.indices.filter({ counts[$0] > 1 }).max(by: {
                Double(counts[$0]) - ideal[$0] < Double(counts[$1]) - ideal[$1]
            })
        {
            counts[i] -= 1
        }
        while counts.reduce(0, +) < layers {
            // Give the next layer to the worker furthest below its share that has room.
            let candidates = counts.indices.filter { counts[$0] < cap[$0] }
            guard let i = candidates.max(by: { ideal[$0] - Double(counts[$0]) < ideal[$1] - Double(counts[$1]) }) else {
                return nil
            }
            counts[i] += 1
        }
        var ranges: [Range<Int>] = []
        var start = 0
        for c in counts {
            ranges.append(start..<start + c)
            start += c
        }
        ranges += Array(repeating: layers..<layers, count: workers.count - used.count)
        return ranges
    }
}
