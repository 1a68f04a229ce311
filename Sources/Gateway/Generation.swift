import Cluster
import Foundation
import Hummingbird
import Synchronization
import Wire

/// Token timing of one request, recorded on its client thread as tokens arrive.
final class TokenTimer: Sendable {
    let start: ContinuousClock.Instant
    let metrics: GatewayMetrics
    private let last = Mutex<ContinuousClock.Instant?>(nil)

    init(start: ContinuousClock.Instant, metrics: GatewayMetrics) {
        self.start = start
        self.metrics = metrics
    }

    func record(index: UInt32, at now: ContinuousClock.Instant) {
        let previous = last.withLock { l -> ContinuousClock.Instant? in
            defer { l = now }
            return l
        }
        if let previous {
            metrics.interTokenLatency.record(now - previous)
        } else {
            metrics.timeToFirstToken.record(now - start)
        }
    }
}

/// Turns a request's events into text with `squat submit`'s rules (`TextAssembler`: whole
/// UTF-8 characters only, nothing from a stop string on) and OpenAI's finish reasons.
struct TextStream {
    private var assembler: TextAssembler
    private(set) var failure: ErrorReply?

    init(stops: [String]) { assembler = TextAssembler(stops: stops) }

    enum Step {
        /// Text now safe to send (possibly empty).
        case text(String)
        /// The end: the last text, and the `Finished`.
        case done(String, Finished)
        /// The request failed.
        case failed(APIError)
    }

    mutating func feed(_ event: CoordinatorLink.Event) -> Step {
        switch event {
        case .token(let t):
            return .text(assembler.append(t.piece))
        case .finished(let f):
            if f.reason == .error || f.reason == .cancelled {
                let reason =
                    failure.map(APIError.from)
                    ?? APIError.internalError(
                        "the request ended with '\(Finished.Reason.names[f.reason.rawValue] ?? "?")'")
                return .failed(reason)
            }
            // As EventPrinter: the held-back text is printed unless a stop string ended it.
            return .done(f.reason == .stopString ? "" : assembler.finish(), f)
        case .error(let e):
            failure = e
            return .text("")
        case .unavailable(let reason):
            return .failed(APIError.unavailable("no pipeline serves requests: \(reason)"))
        }
    }

    /// The events ended before a `Finished`: the coordinator's refusal, if it sent one.
    func endedEarly() -> APIError {
        failure.map(APIError.from) ?? APIError.internalError("the coordinator ended the request without finishing it")
    }

    static func finishReason(_ f: Finished) -> String {
        switch f.reason {
        case .maxTokens, .contextFull: "length"
        default: "stop"
        }
    }
}

/// The iterator of a request's events, handed from the route handler (which reads the first
/// event, to choose the HTTP status) to the streaming body writer.
// @unchecked Sendable: used by one task at a time, the handler and then (after it returned) the body writer.
final class EventIterator: @unchecked Sendable {
    var iterator: AsyncThrowingStream<CoordinatorLink.Event, Error>.AsyncIterator
    init(_ iterator: AsyncThrowingStream<CoordinatorLink.Event, Error>.AsyncIterator) { self.iterator = iterator }

    func next() async throws(APIError) -> CoordinatorLink.Event? {
        do {
            return try await iterator.next()
        } catch {
            throw APIError.internalError("lost the coordinator: \(error)")
        }
    }
}

extension Gateway {
    /// `POST /v1/completions` and `POST /v1/chat/completions`.
    func generate(_ request: Request, context: some RequestContext, kind: GenerationRequest.Kind) async throws
        -> Response
    {
        let started = ContinuousClock.now
        metrics.inFlight.increment()
        var streaming = false
        defer { if !streaming { metrics.inFlight.decrement() } }
        do {
            let buffer = try await request.body.collect(upTo: options.maxBodyBytes)
            let body = try JSONValue.parse(Data(buffer.readableBytesView))
            let req = try GenerationRequest.parse(body, kind: kind, servedModel: options.modelID)
            let id =
                (kind == .chat ? "chatcmpl-" : "cmpl-")
                + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let submit = Submit(
                requestID: id, prompt: req.prompt,
                sampling: Sampling(sampler: req.sampler, maxTokens: req.maxTokens, stop: req.stop))
            let timer = TokenTimer(start: started, metrics: metrics)
            let (events, cancel) = link.run(submit) { index, now in timer.record(index: index, at: now) }
            let iterator = EventIterator(events.makeAsyncIterator())
            let created = Int(Date().timeIntervalSince1970)
            var text = TextStream(stops: req.stop)

            // The first event decides the status: refusals and an idle pipeline are HTTP errors.
            var first: TextStream.Step
            while true {
                guard let event = try await iterator.next() else { throw text.endedEarly() }
                first = text.feed(event)
                if case .failed(let e) = first { throw e }
                if text.failure == nil { break }  // an error is followed by the end or Finished(error)
            }

            let header = ResponseHeader(id: id, created: created, model: options.modelID, kind: kind)
            if req.stream {
                streaming = true
                return streamResponse(
                    first: first, rest: iterator, text: text, header: header, includeUsage: req.includeUsage,
                    cancel: cancel, started: started)
            }
            var output = ""
            var step = first
            while true {
                switch step {
                case .text(let s):
                    output += s
                case .done(let s, let f):
                    output += s
                    finished(kind, f, started: started)
                    return json(header.complete(text: output, finished: f))
                case .failed(let e):
                    throw e
                }
                guard let event = try await iterator.next() else { throw text.endedEarly() }
                step = text.feed(event)
            }
        } catch let error as APIError {
            metrics.request(kind, outcome: error.outcome)
            throw error
        } catch {
            // Body too large and the like: Hummingbird's errors, answered by the error middleware.
            metrics.request(kind, outcome: "bad_request")
            throw error
        }
    }

    /// Counts a request that finished well.
    func finished(_ kind: GenerationRequest.Kind, _ f: Finished, started: ContinuousClock.Instant) {
        metrics.request(kind, outcome: TextStream.finishReason(f))
        metrics.generatedTokens.increment(by: Int64(f.usage.completionTokens))
        metrics.promptTokens.increment(by: Int64(f.usage.promptTokens))
        metrics.requestDuration.record(ContinuousClock.now - started)
    }

    /// Server-sent events: `data: {chunk}` per piece of text, the last chunk with the finish
    /// reason (and one with `usage` if asked), then `data: [DONE]`. A failure after the headers
    /// went out is sent as a `data: {"error": …}` event.
    func streamResponse(
        first: TextStream.Step, rest: EventIterator, text: TextStream, header: ResponseHeader, includeUsage: Bool,
        cancel: CoordinatorLink.CancelFlag, started: ContinuousClock.Instant
    ) -> Response {
        let metrics = metrics
        let body = ResponseBody { [self] writer in
            var text = text
            var step = first
            var finishedOK = false
            defer {
                metrics.inFlight.decrement()
                if !finishedOK { cancel.set() }
            }
            func event(_ value: JSONValue) -> ByteBuffer { ByteBuffer(string: "data: \(value.encodedString)\n\n") }
            do {
                if header.kind == .chat {
                    try await writer.write(
                        event(header.chunk(delta: ["role": "assistant", "content": ""], includeUsage: includeUsage)))
                }
                loop: while true {
                    switch step {
                    case .text(let s):
                        if !s.isEmpty {
                            try await writer.write(event(header.chunk(text: s, includeUsage: includeUsage)))
                        }
                    case .done(let s, let f):
                        if !s.isEmpty {
                            try await writer.write(event(header.chunk(text: s, includeUsage: includeUsage)))
                        }
                        try await writer.write(
                            event(
                                header.chunk(
                                    text: nil, finishReason: TextStream.finishReason(f), includeUsage: includeUsage)))
                        if includeUsage { try await writer.write(event(header.usageChunk(f))) }
                        finishedOK = true
                        finished(header.kind, f, started: started)
                        break loop
                    case .failed(let e):
                        metrics.request(header.kind, outcome: e.outcome)
                        try await writer.write(event(e.body))
                        break loop
                    }
                    do throws(APIError) {
                        guard let next = try await rest.next() else { throw text.endedEarly() }
                        step = text.feed(next)
                    } catch {
                        step = .failed(error)
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The HTTP client went away: the request's thread drops its coordinator
                // connection, and the coordinator cancels the request.
                if !finishedOK { metrics.request(header.kind, outcome: "client_gone") }
                throw error
            }
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: body)
    }
}

/// The fields every response and chunk of one request share, and their JSON shapes.
struct ResponseHeader: Sendable {
    let id: String
    let created: Int
    let model: String
    let kind: GenerationRequest.Kind

    private func object(_ type: String, choices: [JSONValue]) -> [String: JSONValue] {
        [
            "id": JSONValue(id), "object": JSONValue(type), "created": JSONValue(created), "model": JSONValue(model),
            "choices": .array(choices),
        ]
    }

    static func usage(_ f: Finished) -> JSONValue {
        [
            "prompt_tokens": JSONValue(f.usage.promptTokens), "completion_tokens": JSONValue(f.usage.completionTokens),
            "total_tokens": JSONValue(Int(f.usage.promptTokens) + Int(f.usage.completionTokens)),
        ]
    }

    /// The non-streaming answer.
    func complete(text: String, finished f: Finished) -> JSONValue {
        let reason = JSONValue(TextStream.finishReason(f))
        var o: [String: JSONValue]
        switch kind {
        case .completion:
            o = object(
                "text_completion",
                choices: [["index": 0, "text": JSONValue(text), "logprobs": nil, "finish_reason": reason]])
        case .chat:
            o = object(
                "chat.completion",
                choices: [
                    [
                        "index": 0, "message": ["role": "assistant", "content": JSONValue(text), "refusal": nil],
                        "logprobs": nil, "finish_reason": reason,
                    ]
                ])
        }
        o["usage"] = Self.usage(f)
        return .object(o)
    }

    /// A streamed chunk with `text` (nil: none, the last chunk) or, for chat, an explicit delta.
    func chunk(text: String?, finishReason: String? = nil, includeUsage: Bool) -> JSONValue {
        switch kind {
        case .completion:
            return chunk(
                choice: ["text": JSONValue(text ?? "")], finishReason: finishReason, includeUsage: includeUsage)
        case .chat:
            let delta: JSONValue = text.map { ["content": JSONValue($0)] } ?? .object([:])
            return chunk(delta: delta, finishReason: finishReason, includeUsage: includeUsage)
        }
    }

    func chunk(delta: JSONValue, finishReason: String? = nil, includeUsage: Bool) -> JSONValue {
        chunk(choice: ["delta": delta], finishReason: finishReason, includeUsage: includeUsage)
    }

    private func chunk(choice: [String: JSONValue], finishReason: String?, includeUsage: Bool) -> JSONValue {
        var c = choice
        c["index"] = 0
        c["logprobs"] = nil as JSONValue
        c["finish_reason"] = JSONValue(finishReason)
        var o = object(kind == .chat ? "chat.completion.chunk" : "text_completion", choices: [.object(c)])
        if includeUsage { o["usage"] = nil as JSONValue }
        return .object(o)
    }

    /// `stream_options.include_usage`: the extra last chunk, no choices.
    func usageChunk(_ f: Finished) -> JSONValue {
        var o = object(kind == .chat ? "chat.completion.chunk" : "text_completion", choices: [])
        o["usage"] = Self.usage(f)
        return .object(o)
    }
}
