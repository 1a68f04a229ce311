import CProtobufC
import SquatProto

// C mirrors of data.proto.

extension RowSampling: CMirror {
    static let protoName = "squat.v1.RowSampling"
    static var cInit: (UnsafeMutablePointer<Squat__V1__RowSampling>?) -> Void { squat__v1__row_sampling__init }

    func fill(_ c: inout Squat__V1__RowSampling, _ arena: Arena) throws(WireError) {
        c.sampler = try arena.message(sampler)
        c.draw_index = drawIndex
        (c.n_penalty_tokens, c.penalty_tokens) = arena.scalars(penaltyTokens)
    }

    init(c: Squat__V1__RowSampling) throws(WireError) {
        self.init(
            sampler: try CRead.message(c.sampler, default: SamplerParams()), drawIndex: c.draw_index,
            penaltyTokens: try CRead.scalars(c.n_penalty_tokens, c.penalty_tokens, Self.protoName, "penalty_tokens"))
    }
}

extension BatchRow: CMirror {
    static let protoName = "squat.v1.BatchRow"
    static var cInit: (UnsafeMutablePointer<Squat__V1__BatchRow>?) -> Void { squat__v1__batch_row__init }

    func fill(_ c: inout Squat__V1__BatchRow, _ arena: Arena) throws(WireError) {
        c.sequence_id = sequenceID
        c.start_position = startPosition
        c.count = count
        c.flags = flags.rawValue
        if let sampling { c.sampling = try arena.message(sampling) }
    }

    init(c: Squat__V1__BatchRow) throws(WireError) {
        self.init(
            sequenceID: c.sequence_id, startPosition: c.start_position, count: c.count,
            flags: RowFlags(rawValue: c.flags), sampling: try CRead.message(c.sampling))
    }
}

extension StepBatch: CMirror {
    static let protoName = "squat.v1.StepBatch"
    static var cInit: (UnsafeMutablePointer<Squat__V1__StepBatch>?) -> Void { squat__v1__step_batch__init }

    func fill(_ c: inout Squat__V1__StepBatch, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.micro_batch_id = microBatchID
        (c.n_rows, c.rows) = try arena.messages(rows)
        (c.n_token_ids, c.token_ids) = arena.scalars(tokenIDs)
        if let tensor { c.tensor = try arena.message(tensor) }
    }

    init(c: Squat__V1__StepBatch) throws(WireError) {
        self.init(
            epoch: c.epoch, microBatchID: c.micro_batch_id,
            rows: try CRead.messages(c.n_rows, c.rows, Self.protoName, "rows"),
            tokenIDs: try CRead.scalars(c.n_token_ids, c.token_ids, Self.protoName, "token_ids"),
            tensor: try CRead.message(c.tensor))
    }
}

extension Activations: CMirror {
    static let protoName = "squat.v1.Activations"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Activations>?) -> Void { squat__v1__activations__init }

    func fill(_ c: inout Squat__V1__Activations, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.micro_batch_id = microBatchID
        (c.n_rows, c.rows) = try arena.messages(rows)
        c.tensor = try arena.message(tensor)
        (c.n_stage_busy_us, c.stage_busy_us) = arena.scalars(stageBusyMicroseconds)
    }

    init(c: Squat__V1__Activations) throws(WireError) {
        self.init(
            epoch: c.epoch, microBatchID: c.micro_batch_id,
            rows: try CRead.messages(c.n_rows, c.rows, Self.protoName, "rows"),
            tensor: try CRead.required(c.tensor, Self.protoName, "tensor"),
            stageBusyMicroseconds: try CRead.scalars(c.n_stage_busy_us, c.stage_busy_us, Self.protoName, "stage_busy_us"))
    }
}

extension SampledToken: CMirror {
    static let protoName = "squat.v1.SampledToken"
    static var cInit: (UnsafeMutablePointer<Squat__V1__SampledToken>?) -> Void { squat__v1__sampled_token__init }

    func fill(_ c: inout Squat__V1__SampledToken, _ arena: Arena) throws(WireError) {
        c.sequence_id = sequenceID
        c.token_id = tokenID
        c.logprob = logprob
    }

    init(c: Squat__V1__SampledToken) throws(WireError) {
        self.init(sequenceID: c.sequence_id, tokenID: c.token_id, logprob: c.logprob)
    }
}

extension SampledTokens: CMirror {
    static let protoName = "squat.v1.SampledTokens"
    static var cInit: (UnsafeMutablePointer<Squat__V1__SampledTokens>?) -> Void { squat__v1__sampled_tokens__init }

    func fill(_ c: inout Squat__V1__SampledTokens, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.micro_batch_id = microBatchID
        (c.n_tokens, c.tokens) = try arena.messages(tokens)
        (c.n_stage_busy_us, c.stage_busy_us) = arena.scalars(stageBusyMicroseconds)
    }

    init(c: Squat__V1__SampledTokens) throws(WireError) {
        self.init(
            epoch: c.epoch, microBatchID: c.micro_batch_id,
            tokens: try CRead.messages(c.n_tokens, c.tokens, Self.protoName, "tokens"),
            stageBusyMicroseconds: try CRead.scalars(c.n_stage_busy_us, c.stage_busy_us, Self.protoName, "stage_busy_us"))
    }
}
