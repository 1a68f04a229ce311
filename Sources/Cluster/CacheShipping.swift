import Foundation
import LlamaModel
import Wire

/// Sizes and errors of shipping KV caches between workers on a re-plan.
enum CacheShipping {
    /// `ZMQ_MAXMSGSIZE` of the control sockets: the larger of the usual control bound and one
    /// layer of a full-context cache in the widest format (f32 keys and values, plus SQuat's
    /// per-head matrices and some header room), so that any cache this model can have ships.
    static func controlMaxFrameBytes(_ config: LlamaConfig) -> Int64 {
        let context = Int64(max(1, config.contextLength))
        let kv = Int64(max(1, config.kvDim))
        let matrices = Int64(max(1, config.kvHeadCount)) * Int64(max(1, config.headDim * config.headDim)) * 8
        return max(Int64(WireMessage.controlMaxSize), context * kv * 2 * 4 + matrices + (1 << 20))
    }

    /// How long a re-plan may take to move caches before it falls back to replay.
    static let timeout: Duration = TimeScale.scaled(.seconds(30))

    /// How long a plan that would ship caches waits for every stage to report ready at the
    /// current epoch before it replays instead.
    static let settleTimeout: Duration = TimeScale.scaled(.seconds(10))
}

/// Why a worker could not keep or rebuild the caches an Assign asked it to.
struct CacheShippingFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Coordinator {
    /// A re-plan that moves the caches of the layers that change owner instead of replaying
    /// every live sequence: the pipeline is quiet (no micro-batch in flight); the old owners
    /// export the moved layers (phase 1), then the new epoch's Assigns tell every worker to keep
    /// what it still owns, the coordinator forwards the blobs to the new owners, and each worker
    /// confirms with CachesImported (phase 2). Anything going wrong falls back to replay.
    struct Migration {
        enum Phase { case exporting, importing }
        var phase = Phase.exporting
        let oldEpoch: UInt64
        let started: ContinuousClock.Instant
        /// The workers of the new plan (identities) and their layer ranges (empty: standing by).
        let members: [[UInt8]]
        let ranges: [Range<Int>]
        /// Workers that leave once the exports are in (drained).
        let leaving: Set<[UInt8]>
        /// Sequences whose caches move (those fed into the old epoch's pipeline).
        var sequences: [UInt64]
        /// The old owner of every layer, by layer index.
        let oldOwner: [[UInt8]]
        /// Layers whose owner changes.
        let moved: [Int]
        /// Exported blobs by sequence and layer, with their token counts.
        var blobs: [UInt64: [Int: (tokens: UInt32, bytes: [UInt8])]] = [:]
        var received = 0
        var bytes = 0
        /// CacheLayer messages for the new owners not yet taken by the socket.
        var outbox: [(to: [UInt8], header: CacheLayer, blob: [UInt8])] = []
        var sent = 0
        /// Members whose CachesImported has not come.
        var awaiting: Set<[UInt8]> = []
        /// Sequences that ended during the move: released once it is done.
        var release: [UInt64] = []

        var expected: Int { sequences.count * moved.count }

        func newOwner(of layer: Int) -> [UInt8]? {
            zip(members, ranges).first { $0.1.contains(layer) }?.0
        }
    }

    /// Whether the next plan should ship caches: enabled, the old pipeline whole (no stage
    /// lost), and some sequence has caches in it.
    var shippingApplies: Bool {
        options.shipCaches && !forceReplay && !pipeline.isEmpty
            && pipeline.allSatisfy { id in workers.contains { $0.identity == id } }
            && order.contains { (sequences[$0]?.fed ?? 0) > 0 }
    }

    /// Every stage at the current epoch and ready (not still loading or installing caches), so
    /// that its caches are there to export.
    var pipelineSettled: Bool {
        pipeline.allSatisfy { id in
            workers.contains { $0.identity == id && $0.heartbeatEpoch == epoch && $0.load?.state == .ready }
        }
    }

    /// Phase 1: plans without the draining workers and asks the old owners of every moved layer
    /// for its caches. False when no plan is possible (the replay path then holds requests).
    func startMigration() throws -> Bool {
        let staying = workers.filter { !$0.draining }
        guard let ranges = partition(staying) else { return false }
        let layerCount = files.config.layerCount
        var owners = [[UInt8]?](repeating: nil, count: layerCount)
        for w in workers where pipeline.contains(w.identity) {
            for l in Int(w.layers.start)..<Int(max(w.layers.start, w.layers.end)) where l < layerCount {
                owners[l] = w.identity
            }
        }
        let oldOwner = owners.compactMap { $0 }
        guard oldOwner.count == layerCount else { return false }
        // Aligned with `ranges` (the planner's order); a worker standing by has an empty range.
        let members = staying.map(\.identity)
        let memberRanges = ranges
        let live = order.filter { (sequences[$0]?.fed ?? 0) > 0 }
        func newOwner(_ layer: Int) -> [UInt8]? { zip(members, memberRanges).first { $0.1.contains(layer) }?.0 }
        let moved = (0..<layerCount).filter { newOwner($0) != oldOwner[$0] }
        let m = Migration(
            oldEpoch: epoch, started: Monotonic.now(), members: members, ranges: memberRanges,
            leaving: Set(workers.filter(\.draining).map(\.identity)), sequences: live, oldOwner: oldOwner,
            moved: moved)
        migration = m
        // One ExportCaches per contiguous run of moved layers with the same old owner.
        var runs: [(owner: [UInt8], layers: Range<Int>)] = []
        for l in moved {
            if let last = runs.last, last.owner == oldOwner[l], last.layers.upperBound == l {
                runs[runs.count - 1].layers = last.layers.lowerBound..<(l + 1)
            } else {
                runs.append((oldOwner[l], l..<(l + 1)))
            }
        }
        log.info(
            "epoch \(epoch) → \(epoch + 1): moving the caches of \(moved.count) layer(s) × \(live.count) sequence(s) "
                + "instead of replaying; exporting "
                + runs.map { r in "\(workerName(r.owner)) \(r.layers.lowerBound)..<\(r.layers.upperBound)" }.joined(
                    separator: ", "))
        holdReason = "epoch \(epoch): moving caches to the new plan"
        for r in runs {
            send(
                .exportCaches(
                    ExportCaches(
                        epoch: epoch,
                        layers: LayerRange(start: UInt32(r.layers.lowerBound), end: UInt32(r.layers.upperBound)),
                        sequenceIDs: live)),
                to: r.owner)
        }
        if m.expected == 0 { try commitMigration() }
        return true
    }

    /// Whether a CacheLayer from `identity` belongs to the export in progress (checked before
    /// its frame is copied).
    func expectsCacheLayer(_ c: CacheLayer, from identity: [UInt8]) -> Bool {
        guard let m = migration, m.phase == .exporting, c.epoch == m.oldEpoch else { return false }
        return m.oldOwner.contains(identity)
    }

    /// A worker's answer to ExportCaches.
    func handleCacheLayer(_ c: CacheLayer, blob: [UInt8]?, from identity: [UInt8]) throws {
        guard var m = migration, m.phase == .exporting, c.epoch == m.oldEpoch, m.oldOwner.contains(identity) else {
            droppedStale += 1
            return
        }
        guard c.error.isEmpty else { return abortMigration("\(workerName(identity)): \(c.error)") }
        let layer = Int(c.layer)
        guard let blob, layer < m.oldOwner.count, m.oldOwner[layer] == identity, m.moved.contains(layer),
            m.sequences.contains(c.sequenceID), m.blobs[c.sequenceID]?[layer] == nil
        else {
            droppedMalformed += 1
            return
        }
        // The pipeline is quiet: every cache holds exactly the tokens fed so far.
        if let fed = sequences[c.sequenceID]?.fed, Int(c.tokenCount) != fed {
            return abortMigration(
                "\(workerName(identity)): layer \(layer) of sequence \(c.sequenceID) holds \(c.tokenCount) tokens, not \(fed)"
            )
        }
        m.blobs[c.sequenceID, default: [:]][layer] = (c.tokenCount, blob)
        m.received += 1
        m.bytes += blob.count
        migration = m
        if m.received == m.expected { try commitMigration() }
    }

    /// Phase 2: the new epoch. Every member is told to keep its caches; the moved layers' blobs
    /// go to their new owners; the leaving workers are let go.
    func commitMigration() throws {
        guard var m = migration else { return }
        guard m.members.allSatisfy({ id in workers.contains { $0.identity == id } }) else {
            return abortMigration("a worker of the new plan left during the move")
        }
        // Sequences that ended meanwhile: their caches are not kept (not listed) nor shipped.
        m.sequences = m.sequences.filter { sequences[$0] != nil }
        let leaving = workers.filter { m.leaving.contains($0.identity) }
        workers.removeAll { m.leaving.contains($0.identity) }
        let ranges = workers.map { w in m.members.firstIndex(of: w.identity).map { m.ranges[$0] } ?? 0..<0 }
        try assignStages(ranges: ranges, keep: (m.oldEpoch, m.sequences))
        for w in leaving {
            send(.drain(Drain(epoch: epoch, reason: "drained: its layers moved to the other workers")), to: w.identity)
            log.info("worker \(w.id) drained")
        }
        for id in m.sequences {
            for layer in m.moved {
                guard let owner = m.newOwner(of: layer), let b = m.blobs[id]?[layer] else { continue }
                m.outbox.append(
                    (
                        owner,
                        CacheLayer(
                            epoch: epoch, sequenceID: id, layer: UInt32(layer), tokenCount: b.tokens,
                            blob: TensorHeader(dtype: .u8, shape: [UInt32(b.bytes.count)])),
                        b.bytes
                    ))
            }
        }
        m.blobs = [:]
        m.phase = .importing
        // Workers that joined during the export stand by (no layers) and are not waited for.
        m.awaiting = Set(m.members)
        migration = m
        holdReason = "epoch \(epoch): the workers are installing the moved caches"
        flushMigrationOutbox()
    }

    /// Sends what the sockets take of the blobs for the new owners; the rest next turn.
    func flushMigrationOutbox() {
        guard var m = migration, m.phase == .importing, m.sent < m.outbox.count else { return }
        defer { migration = m }
        while m.sent < m.outbox.count {
            let item = m.outbox[m.sent]
            do {
                let frame = try Message(bytes: item.blob)
                guard try router.send(.cacheLayer(item.header), tensor: frame, to: item.to, dontWait: true) == .sent
                else { return }  // the peer's queue is full: the rest next turn
            } catch {
                log.info("cannot send a cache layer to \(workerName(item.to)): \(error)")
                if case .hostUnreachable = error { unreachable.insert(item.to) }
                return
            }
            m.outbox[m.sent].blob = []
            m.sent += 1
        }
    }

    /// A worker's CachesImported: the move is done when every member has confirmed.
    func handleCachesImported(_ r: CachesImported, from identity: [UInt8]) {
        guard var m = migration, m.phase == .importing, r.epoch == epoch, m.awaiting.contains(identity) else {
            if r.epoch != epoch { droppedStale += 1 }
            return
        }
        guard r.error.isEmpty else { return abortMigration("\(workerName(identity)): \(r.error)") }
        m.awaiting.remove(identity)
        migration = m
        guard m.awaiting.isEmpty else { return }
        migration = nil
        stats.cacheMigrations += 1
        stats.cacheLayersShipped += UInt64(m.outbox.count)
        stats.cacheBytesShipped += UInt64(m.bytes)
        let per = m.outbox.isEmpty ? 0 : m.bytes / m.outbox.count
        log.info(
            "epoch \(epoch): moved \(m.outbox.count) layer cache(s) (\(m.moved.count) layer(s) × \(m.sequences.count) sequence(s)), "
                + "\(m.bytes) bytes (\(per) per layer and sequence) in \(Monotonic.now() - m.started); no replay")
        release(m.release)
    }

    /// Gives up on a move: the next plan replays every live sequence into empty caches.
    func abortMigration(_ why: String) {
        guard migration != nil else { return }
        log.info("moving caches failed (\(why)); replaying instead")
        migration = nil
        stats.cacheFallbacks += 1
        forceReplay = true
        needsPlan = true
    }

    /// A worker is gone: a move that needs it cannot finish.
    func migrationLost(_ identity: [UInt8]) {
        guard let m = migration else { return }
        if m.members.contains(identity) || m.oldOwner.contains(identity) {
            abortMigration("worker \(workerName(identity)) was lost")
        }
    }

    func workerName(_ identity: [UInt8]) -> String {
        workers.first { $0.identity == identity }?.id ?? "?"
    }
}
