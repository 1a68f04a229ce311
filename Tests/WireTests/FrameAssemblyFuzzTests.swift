import FuzzSupport
import Testing

@testable import Wire

// Fuzz: frame assembly (`Inbound.assemble`, the part of `Socket.receiveMessage` after the
// frames are read: routing id, envelope, tensor frame checked against its header, then
// `TensorFrame`). 100,000 seeded multipart messages: 0 to 4 frames, routed or not, envelopes
// with random tensor headers (dtypes known and not, ranks 0 to 4, zero and huge dimensions,
// rows whose token counts match the shape or not), tensor frames of the promised size, one
// byte or one element off, missing or extra, envelopes mutated or of other types. Each must
// assemble into a message whose tensor is exactly what its header promises, or a typed
// rejection.
@Suite("Fuzz: frame assembly", .timeLimit(.minutes(10)))
struct FrameAssemblyFuzzTests {
    static let inputs = 100_000

    static func dimension(_ rng: inout SplitMix64) -> UInt32 {
        switch Int.random(in: 0..<20, using: &rng) {
        case 0: 0
        case 1: .max
        case 2: 1 << 20
        case 3: UInt32.random(in: 0...UInt32.max, using: &rng)
        case 4: 576
        default: UInt32.random(in: 1...6, using: &rng)
        }
    }

    static func header(_ rng: inout SplitMix64) -> TensorHeader {
        let dtype = [DType.f32, .f32, .f16, .f16, .unspecified, DType(rawValue: 9)].randomElement(using: &rng) ?? .f32
        let rank = [1, 2, 2, 2, 2, 3, 0, 4].randomElement(using: &rng) ?? 2
        return TensorHeader(dtype: dtype, shape: (0..<rank).map { _ in dimension(&rng) })
    }

    /// Rows whose token counts add up to `tokens` (or, one time in four, to something else).
    static func rows(tokens: UInt32, _ rng: inout SplitMix64) -> [BatchRow] {
        var left = Bool.random(using: &rng) || Bool.random(using: &rng) ? tokens : dimension(&rng)
        var rows: [BatchRow] = []
        for i in 0..<Int.random(in: 1...3, using: &rng) {
            let count = i == 2 ? left : UInt32.random(in: 0...left, using: &rng)
            left -= count
            rows.append(BatchRow(sequenceID: UInt64(i), startPosition: 0, count: count, flags: [.needLogits]))
        }
        if left > 0 { rows.append(BatchRow(sequenceID: 9, startPosition: 0, count: left)) }
        return rows
    }

    /// A message that announces a tensor (or, one time in five, any sample message).
    static func message(_ rng: inout SplitMix64, samples: [WireMessage]) -> WireMessage {
        let h = header(&rng)
        switch Int.random(in: 0..<5, using: &rng) {
        case 0, 1:
            let tokens = h.shape.first ?? 0
            let rows = Int.random(in: 0..<5, using: &rng) == 0 ? [] : rows(tokens: tokens, &rng)
            return .activations(Activations(epoch: 1, microBatchID: rng.next(), rows: rows, tensor: h))
        case 2:
            return .stepBatch(StepBatch(epoch: 1, microBatchID: 2, rows: [], tokenIDs: [], tensor: h))
        case 3:
            return .stepBatch(StepBatch(epoch: 1, microBatchID: 3, rows: [], tokenIDs: [1, 2, 3]))
        default:
            return samples.randomElement(using: &rng) ?? .cancel(Cancel(requestID: "r"))
        }
    }

    /// A frame of about the size `header` promises: exact, one byte or one element off, empty,
    /// or random.
    static func tensorFrame(for header: TensorHeader?, _ rng: inout SplitMix64) -> [UInt8] {
        let promised = (try? header?.byteCount()) ?? nil
        var size: Int
        if let promised, promised <= 1 << 16 {
            let width = header?.dtype.byteWidth ?? 1
            let deltas = [0, 0, 0, 0, 0, -1, 1, -width, width]
            size = max(0, promised + (deltas.randomElement(using: &rng) ?? 0))
        } else {
            size = [0, 1, 4, 8, 576 * 4].randomElement(using: &rng) ?? 0
        }
        if Int.random(in: 0..<20, using: &rng) == 0 { size = Int.random(in: 0...64, using: &rng) }
        return Mutator.random(min(size, 16), using: &rng) + [UInt8](repeating: 0x3C, count: max(0, size - 16))
    }

    /// One multipart message: routing id (when routed), envelope, tensor, and sometimes frames
    /// missing or added.
    static func frames(routed: Bool, _ rng: inout SplitMix64, samples: [WireMessage], encodings: [[UInt8]])
        throws(WireError) -> [[UInt8]]
    {
        let message = message(&rng, samples: samples)
        var envelope = try message.encoded()
        if Int.random(in: 0..<8, using: &rng) == 0 {
            envelope = Mutator.mutated(envelope, donors: encodings, using: &rng)
        }
        var frames: [[UInt8]] = []
        if routed { frames.append(Mutator.random(Int.random(in: 0...5, using: &rng), using: &rng)) }
        frames.append(envelope)
        // The tensor: usually when the header announces one, sometimes when it does not.
        let announced = message.tensorHeader != nil
        if announced ? Int.random(in: 0..<10, using: &rng) != 0 : Int.random(in: 0..<10, using: &rng) == 0 {
            frames.append(tensorFrame(for: message.tensorHeader, &rng))
        }
        switch Int.random(in: 0..<12, using: &rng) {
        case 0: frames.append(Mutator.random(Int.random(in: 0...8, using: &rng), using: &rng))  // an extra frame
        case 1: frames.removeFirst(Int.random(in: 0...frames.count, using: &rng))  // frames missing at the front
        case 2: frames.removeLast(Int.random(in: 0...frames.count, using: &rng))  // frames missing at the end
        case 3: frames += [[], [], []]  // several extra frames
        default: break
        }
        return frames
    }

    @Test("100,000 seeded multipart messages assemble into a checked message or a typed rejection")
    func assemble() async throws {
        let samples = fuzzSeedMessages()
        let encodings = try samples.map { try $0.encoded() }
        var rng = SplitMix64(seed: 0xF4A3_E5EE)
        var failures: [String] = []
        let tally = await runFuzzer("frame assembly", inputs: Self.inputs) { i, tally in
            let routed = i % 2 == 0
            let maxSize = i % 50 == 7 ? Int.random(in: 0...64, using: &rng) : WireMessage.defaultMaxSize
            let frames: [[UInt8]]
            let parts: Multipart
            do {
                frames = try Self.frames(routed: routed, &rng, samples: samples, encodings: encodings)
                parts = try Multipart(frames)
            } catch {
                failures.append("building input \(i): \(error)")
                return
            }
            switch Inbound.assemble(parts, routed: routed, maxSize: maxSize) {
            case .timeout:
                failures.append("input \(i): timeout")
            case .rejected(let identity, let error):
                if routed, frames.count <= 3, identity != (frames.first ?? []) {
                    failures.append("input \(i): rejected with identity \(String(describing: identity))")
                }
                tally.record(errorKind(error))
            case .message(var incoming):
                consume(incoming.message)
                if routed, incoming.identity != frames.first {
                    failures.append("input \(i): identity \(String(describing: incoming.identity))")
                }
                guard let header = incoming.message.tensorHeader else {
                    if incoming.hasTensor { failures.append("input \(i): a tensor without a header") }
                    tally.record("message")
                    break
                }
                // The tensor is exactly what the header promises, and readable in full.
                let promised = try? header.byteCount()
                let ok = incoming.withTensor { tensor in
                    tensor.byteCount == promised && tensor.header == header
                        && (tensor.elementCount > 1 << 14 || tensor.floats().count == tensor.elementCount)
                }
                if ok != true { failures.append("input \(i): tensor does not match \(header)") }
                if incoming.takeTensor() == nil || incoming.hasTensor {
                    failures.append("input \(i): takeTensor")
                }
                tally.record("message with tensor")
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(tally.inputs == Self.inputs)
        #expect(tally["message"] > 5_000 && tally["message with tensor"] > 5_000, "\(tally)")
        #expect(tally["tensorMismatch"] > 5_000 && tally["unexpectedFrames"] > 1_000, "\(tally)")
        #expect(tally["malformedFrame"] > 100 && tally["frameTooLarge"] > 100, "\(tally)")
        #expect(tally.count { $0.hasPrefix("other") } == 0, "\(tally)")
    }

    @Test("more frames than a ROUTER or a DEALER allows are rejected without an identity")
    func tooManyFrames() throws {
        let envelope = try WireMessage.cancel(Cancel(requestID: "r")).encoded()
        for routed in [false, true] {
            let frames = (routed ? [[1]] : []) + [envelope, [], []]
            guard
                case .rejected(let identity, let error) = Inbound.assemble(
                    try Multipart(frames), routed: routed, maxSize: WireMessage.defaultMaxSize)
            else {
                Issue.record("accepted \(frames.count) frames")
                continue
            }
            #expect(identity == nil)
            #expect(error == .unexpectedFrames(expected: "at most \(routed ? 3 : 2)", received: frames.count))
        }
    }
}
