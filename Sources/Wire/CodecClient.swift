import CProtobufC
import SquatProto

// C mirrors of client.proto.

extension Prompt.Message: CMirror {
    static let protoName = "squat.v1.ChatMessage"
    static var cInit: (UnsafeMutablePointer<Squat__V1__ChatMessage>?) -> Void { squat__v1__chat_message__init }

    func fill(_ c: inout Squat__V1__ChatMessage, _ arena: Arena) throws(WireError) {
        c.role = try arena.string(role, Self.protoName, "role")
        c.content = try arena.string(content, Self.protoName, "content")
    }

    init(c: Squat__V1__ChatMessage) throws(WireError) {
        self.init(
            role: try CRead.string(c.role, Self.protoName, "role"),
            content: try CRead.string(c.content, Self.protoName, "content"))
    }
}

/// `squat.v1.ChatMessages`: the list wrapper a oneof needs.
struct ChatMessages: CMirror {
    var messages: [Prompt.Message]

    static let protoName = "squat.v1.ChatMessages"
    static var cInit: (UnsafeMutablePointer<Squat__V1__ChatMessages>?) -> Void { squat__v1__chat_messages__init }

    init(_ messages: [Prompt.Message]) { self.messages = messages }

    func fill(_ c: inout Squat__V1__ChatMessages, _ arena: Arena) throws(WireError) {
        (c.n_messages, c.messages) = try arena.messages(messages)
    }

    init(c: Squat__V1__ChatMessages) throws(WireError) {
        messages = try CRead.messages(c.n_messages, c.messages, Self.protoName, "messages")
    }
}

/// `squat.v1.TokenIds`: the list wrapper a oneof needs.
struct TokenIDs: CMirror {
    var ids: [UInt32]

    static let protoName = "squat.v1.TokenIds"
    static var cInit: (UnsafeMutablePointer<Squat__V1__TokenIds>?) -> Void { squat__v1__token_ids__init }

    init(_ ids: [UInt32]) { self.ids = ids }

    func fill(_ c: inout Squat__V1__TokenIds, _ arena: Arena) throws(WireError) {
        (c.n_ids, c.ids) = arena.scalars(ids)
    }

    init(c: Squat__V1__TokenIds) throws(WireError) {
        ids = try CRead.scalars(c.n_ids, c.ids, Self.protoName, "ids")
    }
}

extension Sampling: CMirror {
    static let protoName = "squat.v1.Sampling"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Sampling>?) -> Void { squat__v1__sampling__init }

    func fill(_ c: inout Squat__V1__Sampling, _ arena: Arena) throws(WireError) {
        c.sampler = try arena.message(sampler)
        c.max_tokens = maxTokens
        (c.n_stop, c.stop) = try arena.strings(stop, Self.protoName, "stop")
        c.ignore_eos = ignoreEndOfGeneration ? 1 : 0
    }

    init(c: Squat__V1__Sampling) throws(WireError) {
        self.init(
            sampler: try CRead.message(c.sampler, default: SamplerParams()), maxTokens: c.max_tokens,
            stop: try CRead.strings(c.n_stop, c.stop, Self.protoName, "stop"), ignoreEndOfGeneration: c.ignore_eos != 0)
    }
}

extension CacheOptions: CMirror {
    static let protoName = "squat.v1.CacheOptions"
    static var cInit: (UnsafeMutablePointer<Squat__V1__CacheOptions>?) -> Void { squat__v1__cache_options__init }

    func fill(_ c: inout Squat__V1__CacheOptions, _ arena: Arena) throws(WireError) {
        c.kind = Squat__V1__CacheKind(rawValue: kind.rawValue)
        c.key_bits = keyBits
        c.value_bits = valueBits
        c.max_context_tokens = maxContextTokens
    }

    init(c: Squat__V1__CacheOptions) throws(WireError) {
        self.init(
            kind: CacheKind(rawValue: c.kind.rawValue), keyBits: c.key_bits, valueBits: c.value_bits,
            maxContextTokens: c.max_context_tokens)
    }
}

extension Submit: CMirror {
    static let protoName = "squat.v1.Submit"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Submit>?) -> Void { squat__v1__submit__init }

    func fill(_ c: inout Squat__V1__Submit, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
        switch prompt {
        case .text(let text):
            c.prompt_case = SQUAT__V1__SUBMIT__PROMPT_TEXT
            c.text = try arena.string(text, Self.protoName, "text")
        case .chat(let messages):
            c.prompt_case = SQUAT__V1__SUBMIT__PROMPT_CHAT
            c.chat = try arena.message(ChatMessages(messages))
        case .tokens(let ids):
            c.prompt_case = SQUAT__V1__SUBMIT__PROMPT_TOKENS
            c.tokens = try arena.message(TokenIDs(ids))
        }
        c.sampling = try arena.message(sampling)
        c.cache = try arena.message(cache)
    }

    init(c: Squat__V1__Submit) throws(WireError) {
        let prompt: Prompt
        switch c.prompt_case {
        case SQUAT__V1__SUBMIT__PROMPT_TEXT:
            prompt = .text(try CRead.string(c.text, Self.protoName, "text"))
        case SQUAT__V1__SUBMIT__PROMPT_CHAT:
            prompt = .chat(try CRead.message(c.chat, default: ChatMessages([])).messages)
        case SQUAT__V1__SUBMIT__PROMPT_TOKENS:
            prompt = .tokens(try CRead.message(c.tokens, default: TokenIDs([])).ids)
        default:
            throw .missingField(message: Self.protoName, field: "prompt")
        }
        self.init(
            requestID: try CRead.string(c.request_id, Self.protoName, "request_id"), prompt: prompt,
            sampling: try CRead.message(c.sampling, default: Sampling()),
            cache: try CRead.message(c.cache, default: CacheOptions()))
    }
}

extension TokenEvent: CMirror {
    static let protoName = "squat.v1.TokenEvent"
    static var cInit: (UnsafeMutablePointer<Squat__V1__TokenEvent>?) -> Void { squat__v1__token_event__init }

    func fill(_ c: inout Squat__V1__TokenEvent, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
        c.index = index
        c.token_id = tokenID
        c.piece = arena.binary(piece)
        c.logprob = logprob
    }

    init(c: Squat__V1__TokenEvent) throws(WireError) {
        self.init(
            requestID: try CRead.string(c.request_id, Self.protoName, "request_id"), index: c.index,
            tokenID: c.token_id, piece: try CRead.bytes(c.piece, Self.protoName, "piece"), logprob: c.logprob)
    }
}

extension Usage: CMirror {
    static let protoName = "squat.v1.Usage"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Usage>?) -> Void { squat__v1__usage__init }

    func fill(_ c: inout Squat__V1__Usage, _ arena: Arena) throws(WireError) {
        c.prompt_tokens = promptTokens
        c.completion_tokens = completionTokens
        c.cached_prompt_tokens = cachedPromptTokens
    }

    init(c: Squat__V1__Usage) throws(WireError) {
        self.init(
            promptTokens: c.prompt_tokens, completionTokens: c.completion_tokens,
            cachedPromptTokens: c.cached_prompt_tokens)
    }
}

extension Timings: CMirror {
    static let protoName = "squat.v1.Timings"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Timings>?) -> Void { squat__v1__timings__init }

    func fill(_ c: inout Squat__V1__Timings, _ arena: Arena) throws(WireError) {
        c.queued_us = queuedMicroseconds
        c.prefill_us = prefillMicroseconds
        c.decode_us = decodeMicroseconds
        c.total_us = totalMicroseconds
    }

    init(c: Squat__V1__Timings) throws(WireError) {
        self.init(
            queuedMicroseconds: c.queued_us, prefillMicroseconds: c.prefill_us, decodeMicroseconds: c.decode_us,
            totalMicroseconds: c.total_us)
    }
}

extension Finished: CMirror {
    static let protoName = "squat.v1.Finished"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Finished>?) -> Void { squat__v1__finished__init }

    func fill(_ c: inout Squat__V1__Finished, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
        c.reason = Squat__V1__FinishReason(rawValue: reason.rawValue)
        c.usage = try arena.message(usage)
        c.timings = try arena.message(timings)
    }

    init(c: Squat__V1__Finished) throws(WireError) {
        self.init(
            requestID: try CRead.string(c.request_id, Self.protoName, "request_id"),
            reason: Reason(rawValue: c.reason.rawValue), usage: try CRead.message(c.usage, default: Usage()),
            timings: try CRead.message(c.timings, default: Timings()))
    }
}

extension ErrorReply: CMirror {
    static let protoName = "squat.v1.Error"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Error>?) -> Void { squat__v1__error__init }

    func fill(_ c: inout Squat__V1__Error, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
        c.code = Squat__V1__ErrorCode(rawValue: code.rawValue)
        c.message = try arena.string(message, Self.protoName, "message")
    }

    init(c: Squat__V1__Error) throws(WireError) {
        self.init(
            requestID: try CRead.string(c.request_id, Self.protoName, "request_id"),
            code: ErrorCode(rawValue: c.code.rawValue), message: try CRead.string(c.message, Self.protoName, "message"))
    }
}

extension Cancel: CMirror {
    static let protoName = "squat.v1.Cancel"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Cancel>?) -> Void { squat__v1__cancel__init }

    func fill(_ c: inout Squat__V1__Cancel, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
    }

    init(c: Squat__V1__Cancel) throws(WireError) {
        self.init(requestID: try CRead.string(c.request_id, Self.protoName, "request_id"))
    }
}

extension DrainRequest: CMirror {
    static let protoName = "squat.v1.DrainRequest"
    static var cInit: (UnsafeMutablePointer<Squat__V1__DrainRequest>?) -> Void { squat__v1__drain_request__init }

    func fill(_ c: inout Squat__V1__DrainRequest, _ arena: Arena) throws(WireError) {
        c.worker_id = try arena.string(workerID, Self.protoName, "worker_id")
    }

    init(c: Squat__V1__DrainRequest) throws(WireError) {
        self.init(workerID: try CRead.string(c.worker_id, Self.protoName, "worker_id"))
    }
}

extension StatusRequest: CMirror {
    static let protoName = "squat.v1.StatusRequest"
    static var cInit: (UnsafeMutablePointer<Squat__V1__StatusRequest>?) -> Void { squat__v1__status_request__init }

    func fill(_ c: inout Squat__V1__StatusRequest, _ arena: Arena) throws(WireError) {
        c.include_sequences = includeSequences ? 1 : 0
    }

    init(c: Squat__V1__StatusRequest) throws(WireError) {
        self.init(includeSequences: c.include_sequences != 0)
    }
}

extension WorkerStatus: CMirror {
    static let protoName = "squat.v1.WorkerStatus"
    static var cInit: (UnsafeMutablePointer<Squat__V1__WorkerStatus>?) -> Void { squat__v1__worker_status__init }

    func fill(_ c: inout Squat__V1__WorkerStatus, _ arena: Arena) throws(WireError) {
        c.worker_id = try arena.string(workerID, Self.protoName, "worker_id")
        c.layers = try arena.message(layers)
        c.state = Squat__V1__WorkerState(rawValue: state.rawValue)
        c.kv_bytes_used = kvBytesUsed
        c.kv_bytes_free = kvBytesFree
        c.tokens_per_second = tokensPerSecond
        c.data_endpoint = try arena.string(dataEndpoint, Self.protoName, "data_endpoint")
        c.dropped_stale = droppedStale
        c.cache = try arena.string(cache, Self.protoName, "cache")
    }

    init(c: Squat__V1__WorkerStatus) throws(WireError) {
        self.init(
            workerID: try CRead.string(c.worker_id, Self.protoName, "worker_id"),
            layers: try CRead.message(c.layers, default: LayerRange()), state: WorkerState(rawValue: c.state.rawValue),
            kvBytesUsed: c.kv_bytes_used, kvBytesFree: c.kv_bytes_free, tokensPerSecond: c.tokens_per_second,
            dataEndpoint: try CRead.string(c.data_endpoint, Self.protoName, "data_endpoint"),
            droppedStale: c.dropped_stale, cache: try CRead.string(c.cache, Self.protoName, "cache"))
    }
}

extension SequenceStatus: CMirror {
    static let protoName = "squat.v1.SequenceStatus"
    static var cInit: (UnsafeMutablePointer<Squat__V1__SequenceStatus>?) -> Void { squat__v1__sequence_status__init }

    func fill(_ c: inout Squat__V1__SequenceStatus, _ arena: Arena) throws(WireError) {
        c.request_id = try arena.string(requestID, Self.protoName, "request_id")
        c.sequence_id = sequenceID
        c.state = Squat__V1__SequenceState(rawValue: state.rawValue)
        c.prompt_tokens = promptTokens
        c.generated_tokens = generatedTokens
    }

    init(c: Squat__V1__SequenceStatus) throws(WireError) {
        self.init(
            requestID: try CRead.string(c.request_id, Self.protoName, "request_id"), sequenceID: c.sequence_id,
            state: SequenceState(rawValue: c.state.rawValue), promptTokens: c.prompt_tokens,
            generatedTokens: c.generated_tokens)
    }
}

extension Status: CMirror {
    static let protoName = "squat.v1.Status"
    static var cInit: (UnsafeMutablePointer<Squat__V1__Status>?) -> Void { squat__v1__status__init }

    func fill(_ c: inout Squat__V1__Status, _ arena: Arena) throws(WireError) {
        c.epoch = epoch
        c.model_fingerprint = try arena.string(modelFingerprint, Self.protoName, "model_fingerprint")
        (c.n_workers, c.workers) = try arena.messages(workers)
        (c.n_sequences, c.sequences) = try arena.messages(sequences)
        c.dropped_stale = droppedStale
        c.dropped_malformed = droppedMalformed
        c.pipeline = try arena.message(pipeline)
        (c.n_lost_workers, c.lost_workers) = try arena.messages(lostWorkers)
        c.security = try arena.string(security, Self.protoName, "security")
        c.auth_rejections = authRejections
        c.unauthorized_messages = unauthorizedMessages
    }

    init(c: Squat__V1__Status) throws(WireError) {
        self.init(
            epoch: c.epoch,
            modelFingerprint: try CRead.string(c.model_fingerprint, Self.protoName, "model_fingerprint"),
            workers: try CRead.messages(c.n_workers, c.workers, Self.protoName, "workers"),
            sequences: try CRead.messages(c.n_sequences, c.sequences, Self.protoName, "sequences"),
            droppedStale: c.dropped_stale, droppedMalformed: c.dropped_malformed,
            pipeline: try CRead.message(c.pipeline, default: PipelineStats()))
        lostWorkers = try CRead.messages(c.n_lost_workers, c.lost_workers, Self.protoName, "lost_workers")
        security = try CRead.string(c.security, Self.protoName, "security")
        authRejections = c.auth_rejections
        unauthorizedMessages = c.unauthorized_messages
    }
}

extension PipelineStats: CMirror {
    static let protoName = "squat.v1.PipelineStats"
    static var cInit: (UnsafeMutablePointer<Squat__V1__PipelineStats>?) -> Void { squat__v1__pipeline_stats__init }

    func fill(_ c: inout Squat__V1__PipelineStats, _ arena: Arena) throws(WireError) {
        c.micro_batches = microBatches
        c.rows = rows
        c.tokens_in = tokensIn
        c.tokens_out = tokensOut
        c.round_trip_us = roundTripMicroseconds
        (c.n_stage_busy_us, c.stage_busy_us) = arena.scalars(stageBusyMicroseconds)
        c.max_in_flight = maxInFlight
        c.peak_in_flight = peakInFlight
        c.replans = replans
        c.tokens_replayed = tokensReplayed
        c.hold_reason = try arena.string(holdReason, Self.protoName, "hold_reason")
        c.cache_migrations = cacheMigrations
        c.cache_layers_shipped = cacheLayersShipped
        c.cache_bytes_shipped = cacheBytesShipped
        c.cache_fallbacks = cacheFallbacks
        c.stage_busy_micro_batches = stageBusyMicroBatches
    }

    init(c: Squat__V1__PipelineStats) throws(WireError) {
        self.init(
            microBatches: c.micro_batches, rows: c.rows, tokensIn: c.tokens_in, tokensOut: c.tokens_out,
            roundTripMicroseconds: c.round_trip_us,
            stageBusyMicroseconds: try CRead.scalars(
                c.n_stage_busy_us, c.stage_busy_us, Self.protoName, "stage_busy_us"),
            maxInFlight: c.max_in_flight, peakInFlight: c.peak_in_flight)
        replans = c.replans
        tokensReplayed = c.tokens_replayed
        holdReason = try CRead.string(c.hold_reason, Self.protoName, "hold_reason")
        cacheMigrations = c.cache_migrations
        cacheLayersShipped = c.cache_layers_shipped
        cacheBytesShipped = c.cache_bytes_shipped
        cacheFallbacks = c.cache_fallbacks
        stageBusyMicroBatches = c.stage_busy_micro_batches
    }
}
