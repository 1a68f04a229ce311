import Foundation
import Testing
import Wire

@testable import Gateway

/// The HTTP gateway's request checks, without a server: every bad field is named.
@Suite("HTTP gateway requests")
struct GatewayRequestTests {
    static let model = "SmolLM2-135M-Instruct.Q4_1.gguf"

    func parse(_ json: String, _ kind: GenerationRequest.Kind = .completion) throws -> GenerationRequest {
        let value = try JSONValue.parse(Data(json.utf8))
        return try GenerationRequest.parse(value, kind: kind, servedModel: Self.model)
    }

    func refusal(_ json: String, _ kind: GenerationRequest.Kind = .completion) -> APIError? {
        do {
            _ = try parse(json, kind)
            return nil
        } catch let e as APIError {
            return e
        } catch {
            return nil
        }
    }

    @Test("completion fields: prompt shapes, stop as a string or a list, sampling, seed")
    func completionFields() throws {
        let m = "\"model\": \"\(Self.model)\""
        var r = try parse(#"{\#(m), "prompt": "Hi", "stop": "\n", "max_tokens": 7, "temperature": 0, "seed": 5}"#)
        #expect(r.prompt == .text("Hi"))
        #expect(r.stop == ["\n"])
        #expect(r.maxTokens == 7)
        #expect(r.sampler.temperature == 0)
        #expect(r.sampler.seed == 5)
        #expect(!r.stream)
        r = try parse(#"{\#(m), "prompt": ["Hi"], "stop": ["a", "b"], "top_p": 0.5, "stream": true}"#)
        #expect(r.prompt == .text("Hi"))
        #expect(r.stop == ["a", "b"])
        #expect(r.sampler.topP == 0.5)
        #expect(r.sampler.temperature == 1)  // OpenAI's default
        #expect(r.maxTokens == 0)  // the coordinator's default
        #expect(r.stream)
        r = try parse(#"{\#(m), "prompt": [504, 3575, 282]}"#)
        #expect(r.prompt == .tokens([504, 3575, 282]))
        r = try parse(#"{\#(m), "prompt": [[1, 2]], "stream_options": {"include_usage": true}}"#)
        #expect(r.prompt == .tokens([1, 2]))
        #expect(r.includeUsage)
    }

    @Test("chat messages: roles, text parts, developer as system")
    func chatMessages() throws {
        let r = try parse(
            #"{"model": "\#(Self.model)", "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}], "max_completion_tokens": 3}"#,
            .chat)
        #expect(
            r.prompt == .chat([.init(role: "system", content: "Be brief."), .init(role: "user", content: "Hi there")]))
        #expect(r.maxTokens == 3)
    }

    @Test("bad requests name the field; an unknown model is a 404")
    func refusals() {
        let m = "\"model\": \"\(Self.model)\""
        let cases: [(String, GenerationRequest.Kind, String?, Int)] = [
            ("[1]", .completion, nil, 400),
            ("{not json", .completion, nil, 400),
            (#"{"prompt": "x"}"#, .completion, "model", 400),
            (#"{"model": "gpt-4", "prompt": "x"}"#, .completion, "model", 404),
            (#"{\#(m)}"#, .completion, "prompt", 400),
            (#"{\#(m), "prompt": 3}"#, .completion, "prompt", 400),
            (#"{\#(m), "prompt": ["a", "b"]}"#, .completion, "prompt", 400),
            (#"{\#(m), "prompt": [1.5]}"#, .completion, "prompt", 400),
            (#"{\#(m), "prompt": "x", "temperature": "hot"}"#, .completion, "temperature", 400),
            (#"{\#(m), "prompt": "x", "temperature": 2.5}"#, .completion, "temperature", 400),
            (#"{\#(m), "prompt": "x", "top_p": 0}"#, .completion, "top_p", 400),
            (#"{\#(m), "prompt": "x", "max_tokens": 0}"#, .completion, "max_tokens", 400),
            (#"{\#(m), "prompt": "x", "max_tokens": 1.5}"#, .completion, "max_tokens", 400),
            (#"{\#(m), "prompt": "x", "stop": 1}"#, .completion, "stop", 400),
            (#"{\#(m), "prompt": "x", "stop": [""]}"#, .completion, "stop", 400),
            (#"{\#(m), "prompt": "x", "stream": "yes"}"#, .completion, "stream", 400),
            (#"{\#(m), "prompt": "x", "n": 2}"#, .completion, "n", 400),
            (#"{\#(m), "prompt": "x", "seed": 1.5}"#, .completion, "seed", 400),
            (#"{\#(m), "prompt": "x", "presence_penalty": 1}"#, .completion, "presence_penalty", 400),
            (#"{\#(m)}"#, .chat, "messages", 400),
            (#"{\#(m), "messages": []}"#, .chat, "messages", 400),
            (#"{\#(m), "messages": [{"content": "x"}]}"#, .chat, "messages[0].role", 400),
            (#"{\#(m), "messages": [{"role": "robot", "content": "x"}]}"#, .chat, "messages[0].role", 400),
            (#"{\#(m), "messages": [{"role": "user"}]}"#, .chat, "messages[0].content", 400),
            (
                #"{\#(m), "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, .chat,
                "messages[0].content[0]", 400
            ),
        ]
        for (json, kind, param, status) in cases {
            let e = refusal(json, kind)
            #expect(e != nil, "accepted: \(json)")
            guard let e else { continue }
            #expect(Int(e.status.code) == status, "\(json): \(e.status)")
            #expect(e.param == param, "\(json): param \(e.param ?? "nil")")
            if let param { #expect(e.message.contains(param), "\(json): \(e.message)") }
            // OpenAI's error shape.
            let body = e.body["error"]
            #expect(body?["message"] != nil && body?["type"] != nil && body?["code"] != nil)
        }
    }
}
