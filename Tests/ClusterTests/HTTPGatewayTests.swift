import Foundation
import Testing
import Wire

@testable import Cluster

/// `squat coordinator --http`: the official `openai` Python client and `prometheus_client`'s
/// parser against a real coordinator and worker (clients/python/openai_gateway_check.py).
@Suite("HTTP gateway", .serialized, .timeLimit(.minutes(10)))
struct HTTPGatewayTests {
    static let script = Paths.packageRoot.appendingPathComponent("clients/python/openai_gateway_check.py").path
    static let token = "test-token-\(UUID().uuidString)"

    @Test("OpenAI client: completion, chat (streamed = whole = squat generate), stop, errors, auth; metrics parse")
    func openAIClientAndMetrics() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        // The pinned Python packages must be there: a missing one fails, never skips.
        let check = try procs.spawn(
            "python-check", executable: "/usr/bin/env",
            ["python3", "-c", "import openai, prometheus_client.parser; print(openai.__version__)"])
        #expect(Processes.wait(.seconds(60)) { !check.isRunning })
        try #require(
            check.terminationStatus == 0,
            "python3 with the packages openai and prometheus-client is needed: run scripts/setup.sh\n\(procs.log("python-check"))"
        )

        let endpoint = try procs.startCoordinator([
            "--workers", "1", "--http", "127.0.0.1:0", "--http-token", Self.token,
        ])
        let base = try procs.httpBase()
        try procs.spawn(
            "w1", ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", "w1"])
        try procs.waitReady(endpoint, workers: 1)

        // What `squat generate` prints for the same chat prompt, greedy, same max tokens.
        let prompt = "What is the tallest mountain in the world?"
        let generateArgs = ["generate", "--model", Paths.model, "--threads", "1", "--chat", "--temperature", "0"]
        let generate = try procs.spawn(
            "generate", generateArgs + ["--max-tokens", "40", prompt], separateOutput: true)
        let generateStop = try procs.spawn(
            "generate-stop", generateArgs + ["--max-tokens", "40", "--stop", "Everest", prompt], separateOutput: true)
        #expect(Processes.wait(.seconds(120)) { !generate.isRunning && !generateStop.isRunning })
        #expect(generate.terminationStatus == 0, "\(procs.log("generate"))")
        let expected = String(decoding: procs.output("generate"), as: UTF8.self)
        let expectedStop = String(decoding: procs.output("generate-stop"), as: UTF8.self)
        #expect(!expected.isEmpty)

        let python = try procs.spawn(
            "python", executable: "/usr/bin/env",
            [
                "python3", Self.script, "--base-url", base, "--token", Self.token, "--chat-prompt", prompt,
                "--max-tokens", "40", "--stop", "Everest",
            ], separateOutput: true)
        #expect(Processes.wait(.seconds(300)) { !python.isRunning })
        try #require(python.terminationStatus == 0, "\(procs.allLogs)")
        let data = procs.output("python")
        let out = try #require(
            try JSONSerialization.jsonObject(with: data) as? [String: Any],
            "not JSON: \(String(decoding: data, as: UTF8.self))")

        #expect(out["models"] as? [String] == ["SmolLM2-135M-Instruct.Q4_1.gguf"])

        // Completion, not streamed.
        let completion = try #require(out["completion"] as? [String: Any])
        #expect(completion["object"] as? String == "text_completion")
        #expect(!((completion["text"] as? String) ?? "").isEmpty)
        #expect(completion["finish_reason"] as? String == "length")
        let cUsage = try #require(completion["usage"] as? [String: Any])
        #expect(cUsage["completion_tokens"] as? Int == 16)
        #expect(cUsage["prompt_tokens"] as? Int == 5)
        #expect(cUsage["total_tokens"] as? Int == 21)

        // Chat: streamed deltas = the whole answer = `squat generate`'s bytes.
        let chat = try #require(out["chat"] as? [String: Any])
        let stream = try #require(out["chat_stream"] as? [String: Any])
        #expect(chat["object"] as? String == "chat.completion")
        #expect(chat["role"] as? String == "assistant")
        #expect(chat["content"] as? String == expected, "generate printed \(expected.debugDescription)")
        #expect(stream["content"] as? String == expected)
        #expect(((stream["deltas"] as? [String]) ?? []).count > 1, "the answer came in one piece")
        #expect(stream["roles"] as? [String] == ["assistant"])
        #expect(stream["finish_reason"] as? String == chat["finish_reason"] as? String)
        let usage = try #require(chat["usage"] as? [String: Any])
        let streamUsage = try #require(
            stream["usage"] as? [String: Any], "no usage chunk (stream_options.include_usage)")
        #expect(usage["completion_tokens"] as? Int == streamUsage["completion_tokens"] as? Int)
        #expect(usage["prompt_tokens"] as? Int == streamUsage["prompt_tokens"] as? Int)
        #expect((usage["completion_tokens"] as? Int ?? 0) <= 40)

        // A stop string: the same text as `squat generate --stop`, finish_reason "stop".
        let stop = try #require(out["chat_stop"] as? [String: Any])
        #expect(stop["content"] as? String == expectedStop)
        #expect(stop["finish_reason"] as? String == "stop")

        // Errors in OpenAI's shape, with their HTTP statuses.
        func error(_ key: String) throws -> (status: Int?, error: [String: Any]) {
            let e = try #require(out[key] as? [String: Any])
            let body = try #require(e["body"] as? [String: Any])
            let inner = try #require(body["error"] as? [String: Any], "\(key): \(body)")
            for field in ["message", "type", "code"] { #expect(inner.keys.contains(field), "\(key) lacks \(field)") }
            return (e["status"] as? Int, inner)
        }
        let badAuth = try error("bad_auth")
        #expect(badAuth.status == 401)
        #expect(badAuth.error["code"] as? String == "invalid_api_key")
        let badRequest = try error("bad_request")
        #expect(badRequest.status == 400)
        #expect((badRequest.error["message"] as? String ?? "").contains("temperature"))
        #expect(badRequest.error["param"] as? String == "temperature")
        let badModel = try error("bad_model")
        #expect(badModel.status == 404)
        #expect(badModel.error["code"] as? String == "model_not_found")
        #expect(out["metrics_no_token"] as? Int == 401)
        #expect((out["health_no_token"] as? [Any])?.first as? Int == 200)

        // Metrics, as prometheus_client parses them.
        let before = try #require(out["metrics_before"] as? [String: Any])
        let after = try #require(out["metrics_after"] as? [String: Any])
        let families = [
            "squat_http_requests", "squat_generated_tokens", "squat_time_to_first_token_seconds",
            "squat_inter_token_latency_seconds", "squat_queue_length", "squat_live_sequences",
            "squat_worker_kv_used_bytes", "squat_worker_kv_free_bytes", "squat_stage_busy_seconds", "squat_workers_up",
            "squat_replans", "squat_tokens_replayed", "squat_http_auth_rejected", "squat_pipeline_serving",
            "squat_rejected_connections", "squat_stage_step_latency_seconds", "squat_cache_migrations",
            "squat_cache_layers_shipped", "squat_cache_shipped_bytes", "squat_cache_fallbacks",
        ]
        for name in families { #expect(after[name] != nil, "no metric family \(name) in /metrics") }
        func value(_ families: [String: Any], _ family: String, sample: String, labels: [String: String] = [:])
            -> Double?
        {
            guard let f = families[family] as? [String: Any], let samples = f["samples"] as? [[Any]] else { return nil }
            for s in samples where s.count == 3 && s[0] as? String == sample {
                if let l = s[1] as? [String: String], labels.allSatisfy({ l[$0.key] == $0.value }) {
                    return s[2] as? Double ?? (s[2] as? Int).map(Double.init)
                }
            }
            return nil
        }
        let tokensBefore = value(before, "squat_generated_tokens", sample: "squat_generated_tokens_total") ?? -1
        let tokensAfter = value(after, "squat_generated_tokens", sample: "squat_generated_tokens_total") ?? -1
        #expect(tokensBefore >= 0 && tokensAfter > tokensBefore, "tokens counter \(tokensBefore) → \(tokensAfter)")
        #expect((after["squat_generated_tokens"] as? [String: Any])?["type"] as? String == "counter")
        #expect((after["squat_time_to_first_token_seconds"] as? [String: Any])?["type"] as? String == "histogram")
        #expect(
            value(after, "squat_time_to_first_token_seconds", sample: "squat_time_to_first_token_seconds_count") ?? 0
                >= 4)
        #expect(value(after, "squat_workers_up", sample: "squat_workers_up") == 1)
        #expect(value(after, "squat_replans", sample: "squat_replans_total") ?? 0 >= 1)
        #expect(
            value(after, "squat_stage_busy_seconds", sample: "squat_stage_busy_seconds_total", labels: ["stage": "0"])
                ?? 0 > 0)
        #expect(
            value(
                after, "squat_stage_step_latency_seconds", sample: "squat_stage_step_latency_seconds",
                labels: ["stage": "0"])
                ?? 0 > 0)
        #expect(value(after, "squat_http_auth_rejected", sample: "squat_http_auth_rejected_total") ?? 0 >= 2)
        #expect(
            value(
                after, "squat_http_requests", sample: "squat_http_requests_total",
                labels: ["endpoint": "chat_completions", "outcome": "length"]) ?? 0 >= 2)
        #expect(
            value(
                after, "squat_http_requests", sample: "squat_http_requests_total",
                labels: ["endpoint": "chat_completions", "outcome": "bad_request"]) == 1)
        #expect(
            value(after, "squat_worker_kv_used_bytes", sample: "squat_worker_kv_used_bytes", labels: ["worker": "w1"])
                != nil)
    }

    @Test("an HTTP client that disconnects mid-stream has its request cancelled and its caches freed")
    func clientDisconnect() throws {
        let procs = try Processes()
        defer { procs.stopAll() }
        let endpoint = try procs.startCoordinator(["--workers", "1", "--kv", "full", "--http", "127.0.0.1:0"])
        let base = try procs.httpBase()
        try procs.spawn(
            "w1", ["worker", "--model", Paths.model, "--coordinator", endpoint, "--threads", "1", "--id", "w1"])
        try procs.waitReady(endpoint, workers: 1)

        // A streamed completion of up to 2,000 tokens; the client reads three events and hangs up.
        let script = """
            import http.client, json, sys, urllib.parse
            u = urllib.parse.urlparse(sys.argv[1])
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            body = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "prompt": "Count from one to one thousand: one, two, three,", "max_tokens": 2000,
                    "temperature": 0, "stream": True}
            c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            events = 0
            while events < 3:
                line = r.fp.readline()
                if not line:
                    sys.exit(f"the stream ended after {events} events (HTTP {r.status})")
                if line.startswith(b"data: "):
                    events += 1
            c.sock.close()
            print(events)
            """
        let reader = try procs.runExecutable("reader", ["/usr/bin/env", "python3", "-c", script, base])
        #expect(reader.status == 0 && reader.output.contains("3"), "\(reader.output)")

        // The request ends well before its 2,000 tokens, and the coordinator holds no sequence.
        let client = try ClusterClient(endpoint: endpoint, timeout: .seconds(5))
        #expect(
            Processes.wait(.seconds(15)) { (try? client.status().sequences.isEmpty) ?? false },
            "the request is still live after its HTTP client left:\n\(procs.allLogs)")
        let settled = try client.status().pipeline.tokensOut
        Thread.sleep(forTimeInterval: 1)
        let later = try client.status()
        #expect(later.pipeline.tokensOut == settled, "tokens are still being generated")
        // Greedy, this prompt loops without an end-of-generation token (`squat generate` ran 300
        // tokens to its limit): only the cancel stops it this early.
        #expect(settled < 200, "\(settled) tokens generated: the request ran on")
        // The worker freed the sequence's KV cache (its load report, within a heartbeat or two).
        #expect(
            Processes.wait(.seconds(10)) { (try? client.status().workers.first?.kvBytesUsed) == 0 },
            "the worker still holds KV cache: \(String(describing: try? client.status().workers))")
        let metrics = try procs.runExecutable(
            "metrics",
            [
                "/usr/bin/env", "python3", "-c",
                "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                base + "/metrics",
            ])
        #expect(
            metrics.output.contains("squat_http_requests_total{endpoint=\"completions\",outcome=\"client_gone\"} 1")
                || metrics.output.contains("outcome=\"client_gone\",endpoint=\"completions\"} 1"),
            "\(metrics.output.split(separator: "\n").filter { $0.contains("http_requests") })")
    }
}
