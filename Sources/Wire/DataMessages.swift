// Swift mirrors of proto/squat/v1/data.proto: the data plane.

/// Flags of a `BatchRow` (`squat.v1.RowFlag` bits).
public struct RowFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    /// The flags with these bits (unknown bits are kept).
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The last prompt token of this sequence is in this row.
    public static let promptEnds = RowFlags(rawValue: 1)
    /// The last stage computes logits for the row's last token and samples.
    public static let needLogits = RowFlags(rawValue: 2)
}

/// Last-stage sampling for one row.
public struct RowSampling: Sendable, Hashable {
    /// `squat.v1.RowSampling.sampler`.
    public var sampler: SamplerParams
    /// Tokens sampled so far for this sequence (seeds the draw, so replays repeat it).
    public var drawIndex: UInt32
    /// Recent tokens the repetition penalty applies to.
    public var penaltyTokens: [UInt32]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(sampler: SamplerParams = SamplerParams(), drawIndex: UInt32 = 0, penaltyTokens: [UInt32] = []) {
        self.sampler = sampler
        self.drawIndex = drawIndex
        self.penaltyTokens = penaltyTokens
    }
}

/// One sequence's slice of a micro-batch: `count` consecutive tokens from `startPosition`.
public struct BatchRow: Sendable, Hashable {
    /// `squat.v1.BatchRow.sequence_id`.
    public var sequenceID: UInt64
    /// `squat.v1.BatchRow.start_position`.
    public var startPosition: UInt32
    /// `squat.v1.BatchRow.count`.
    public var count: UInt32
    /// `squat.v1.BatchRow.flags`.
    public var flags: RowFlags
    /// Set on rows with `.needLogits`.
    public var sampling: RowSampling?

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        sequenceID: UInt64, startPosition: UInt32, count: UInt32, flags: RowFlags = [], sampling: RowSampling? = nil
    ) {
        self.sequenceID = sequenceID
        self.startPosition = startPosition
        self.count = count
        self.flags = flags
        self.sampling = sampling
    }
}

/// The total token count of `rows`, in 64 bits so that no input can overflow it.
func tokenCount(_ rows: [BatchRow]) -> UInt64 {
    rows.reduce(0) { $0 + UInt64($1.count) }
}

/// Coordinator → first stage: the rows of a micro-batch with their token ids inline, row after
/// row (`count` each).
public struct StepBatch: Sendable, Hashable {
    /// `squat.v1.StepBatch.epoch`.
    public var epoch: UInt64
    /// `squat.v1.StepBatch.micro_batch_id`.
    public var microBatchID: UInt64
    /// `squat.v1.StepBatch.rows`.
    public var rows: [BatchRow]
    /// `squat.v1.StepBatch.token_ids`.
    public var tokenIDs: [UInt32]
    /// Reserved for embeddings computed elsewhere: when set, a tensor frame follows.
    public var tensor: TensorHeader?

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        epoch: UInt64, microBatchID: UInt64, rows: [BatchRow], tokenIDs: [UInt32], tensor: TensorHeader? = nil
    ) {
        self.epoch = epoch
        self.microBatchID = microBatchID
        self.rows = rows
        self.tokenIDs = tokenIDs
        self.tensor = tensor
    }
}

/// Stage → next stage: the hidden states of the rows, shape `[Σ count, hidden]`, travel in
/// the raw frame after this header.
public struct Activations: Sendable, Hashable {
    /// `squat.v1.Activations.epoch`.
    public var epoch: UInt64
    /// `squat.v1.Activations.micro_batch_id`.
    public var microBatchID: UInt64
    /// `squat.v1.Activations.rows`.
    public var rows: [BatchRow]
    /// `squat.v1.Activations.tensor`.
    public var tensor: TensorHeader
    /// Compute microseconds of each stage so far, in pipeline order.
    public var stageBusyMicroseconds: [UInt64]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(
        epoch: UInt64, microBatchID: UInt64, rows: [BatchRow], tensor: TensorHeader, stageBusyMicroseconds: [UInt64] = []
    ) {
        self.epoch = epoch
        self.microBatchID = microBatchID
        self.rows = rows
        self.tensor = tensor
        self.stageBusyMicroseconds = stageBusyMicroseconds
    }
}

/// One sampled token.
public struct SampledToken: Sendable, Hashable {
    /// `squat.v1.SampledToken.sequence_id`.
    public var sequenceID: UInt64
    /// `squat.v1.SampledToken.token_id`.
    public var tokenID: UInt32
    /// `squat.v1.SampledToken.logprob`.
    public var logprob: Float

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(sequenceID: UInt64, tokenID: UInt32, logprob: Float = 0) {
        self.sequenceID = sequenceID
        self.tokenID = tokenID
        self.logprob = logprob
    }
}

/// Last stage → coordinator: one token per row that asked for logits.
public struct SampledTokens: Sendable, Hashable {
    /// `squat.v1.SampledTokens.epoch`.
    public var epoch: UInt64
    /// `squat.v1.SampledTokens.micro_batch_id`.
    public var microBatchID: UInt64
    /// `squat.v1.SampledTokens.tokens`.
    public var tokens: [SampledToken]
    /// Compute microseconds of every stage for this micro-batch, in pipeline order.
    public var stageBusyMicroseconds: [UInt64]

    /// Memberwise; defaulted parameters are the proto3 zero values.
    public init(epoch: UInt64, microBatchID: UInt64, tokens: [SampledToken], stageBusyMicroseconds: [UInt64] = []) {
        self.epoch = epoch
        self.microBatchID = microBatchID
        self.tokens = tokens
        self.stageBusyMicroseconds = stageBusyMicroseconds
    }
}
