import Foundation
import Testing

@testable import LlamaModel

/// Chat templates. Each template string is copied from the model's public
/// `tokenizer_config.json` (source named above it); expected outputs were derived by hand
/// from reading the template (trim_blocks/lstrip_blocks as transformers sets them).
@Suite("Tokenizer: chat templates")
struct TokenizerChatTemplateTests {
    static func m(_ role: String, _ content: String) -> ChatMessage { ChatMessage(role: role, content: content) }

    @Test("SmolLM2's template from the GGUF renders exactly as llama.cpp's Jinja path")
    func smolLM2Golden() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let golden = try #require(try TokenizerGoldenTests.golden()["chat"] as? [String: Any])
        #expect(tok.chatTemplate == golden["template_from_gguf"] as? String)
        let user = try #require(golden["user_message"] as? String)
        let expected = try #require(golden["formatted_jinja_default"] as? String)
        let rendered = try tok.applyChatTemplate([Self.m("user", user)], addGenerationPrompt: true)
        #expect(rendered == expected)
        // And the golden chat prompt's tokens follow from it.
        let prompts = try #require(try TokenizerGoldenTests.golden()["prompts"] as? [[String: Any]])
        let chat = try #require(prompts.first { $0["kind"] as? String == "chat" })
        #expect(chat["prompt"] as? String == rendered)
        #expect(tok.encode(rendered) == TokenizerTestSupport.ints(chat["tokens_default"]))
    }

    @Test("SmolLM2: an explicit system message replaces the default one; no generation prompt")
    func smolLM2System() throws {
        let tok = try TokenizerTestSupport.smolTokenizer()
        let out = try tok.applyChatTemplate(
            [Self.m("system", "Be terse."), Self.m("user", "Hi"), Self.m("assistant", "Hello.")], addGenerationPrompt: false)
        #expect(out == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n")
    }

    // Source: meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json "chat_template" (JSON "\\n"
    // escapes are Jinja string escapes, kept as \n inside the Jinja literals here).
    static let llama2 = #"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"#

    @Test("Llama 2 [INST] template")
    func llama2Template() throws {
        let t = try ChatTemplate(Self.llama2)
        let out = try t.render(
            messages: [Self.m("system", "You are helpful."), Self.m("user", "Hi"), Self.m("assistant", " Hello! "), Self.m("user", "How are you?")],
            addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        // System folded into the first user turn in <<SYS>>; contents stripped; BOS before each [INST].
        #expect(out == "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST]")
        let noSystem = try t.render(messages: [Self.m("user", "Hi")], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        #expect(noSystem == "<s>[INST] Hi [/INST]")
        let error = #expect(throws: ChatTemplateError.self) {
            try t.render(messages: [Self.m("user", "a"), Self.m("user", "b")], addGenerationPrompt: true)
        }
        #expect(error?.message.contains("Conversation roles must alternate") == true)
        #expect(error?.line == 1)
    }

    // Source: meta-llama/Meta-Llama-3-8B-Instruct, tokenizer_config.json "chat_template" (its
    // "\n\n" are real newlines inside the Jinja literals).
    static let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

    @Test("Llama 3 header template (filter binds tighter than +)")
    func llama3Template() throws {
        let out = try ChatTemplate(Self.llama3).render(
            messages: [Self.m("system", "Be brief."), Self.m("user", "  Hi there  ")], addGenerationPrompt: true,
            bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>")
        #expect(
            out == "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    }

    // Source: TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr format), tokenizer_config.json
    // "chat_template"; the newlines between tags are real and rely on trim_blocks.
    static let zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"

    @Test("Zephyr / TinyLlama template with trim_blocks newlines")
    func zephyrTemplate() throws {
        let out = try ChatTemplate(Self.zephyr).render(
            messages: [Self.m("system", "You are a friendly chatbot."), Self.m("user", "Hello")], addGenerationPrompt: true,
            bosToken: "<s>", eosToken: "</s>")
        // The newline after each {% %} is trimmed; the one after each {{ }} stays.
        #expect(out == "<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHello</s>\n<|assistant|>\n")
    }

    // Source: mistralai/Mistral-7B-Instruct-v0.2, tokenizer_config.json "chat_template" (as also
    // quoted in llama.cpp's tests/test-chat-template.cpp).
    static let mistral = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

    @Test("Mistral [INST] template and its role check")
    func mistralTemplate() throws {
        let t = try ChatTemplate(Self.mistral)
        let out = try t.render(
            messages: [Self.m("user", "Hello"), Self.m("assistant", "Hi there"), Self.m("user", "Who are you")],
            addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        #expect(out == "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]")
        let error = #expect(throws: ChatTemplateError.self) {
            try t.render(messages: [Self.m("system", "x"), Self.m("user", "y")], addGenerationPrompt: true)
        }
        #expect(error?.message.contains("must alternate") == true)
    }

    // Source: mistralai/Mistral-7B-Instruct-v0.3 "v1" template with a system prompt, as given in
    // llama.cpp's tests/test-chat-template.cpp ("mistralai 'v1' template with a system prompt").
    static let mistralV1 = "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"

    @Test("Mistral v1 template: whitespace control, 'is defined', slicing")
    func mistralV1Template() throws {
        let t = try ChatTemplate(Self.mistralV1)
        let out = try t.render(
            messages: [Self.m("system", "You are a helpful assistant"), Self.m("user", "Hello"), Self.m("assistant", "Hi there"), Self.m("user", "Who are you")],
            addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        #expect(out == "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]")
        let noSystem = try t.render(messages: [Self.m("user", "Hello")], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        #expect(noSystem == "<s> [INST] Hello [/INST]")
    }

    @Test(
        "whitespace rules: trim_blocks, lstrip_blocks, +/- modifiers, trailing newline",
        arguments: [
            ("a\n  {% if true %}\n  b\n  {% endif %}\nc", "a\n  b\nc"),
            ("a {% if true %}b{% endif %}", "a b"),  // not at line start: kept
            ("  {%+ if true %}x{% endif %}", "  x"),  // '+' disables lstrip
            ("{# comment #}\nx", "x"),
            ("  {# c #}  x", "  x"),
            ("x{{- ' y' -}}\n z", "x yz"),
            ("line\n", "line"),
            ("a\n\n", "a\n"),
            ("a\r\n{% if true %}\r\nb{% endif %}", "a\nb"),  // Jinja normalises newlines
        ])
    func whitespace(_ c: (String, String)) throws {
        #expect(try ChatTemplate(c.0).render(messages: [], addGenerationPrompt: false) == c.1)
    }

    @Test("loop variables, namespace, filters, tests, operators")
    func miscFeatures() throws {
        let src = "{%- set ns = namespace(n=0) -%}\n{% for m in messages if m.role != 'system' %}\n  {{ loop.index }}/{{ loop.length }}:{{ m.content|upper }}{{ ',' if not loop.last }}\n  {%- set ns.n = ns.n + m.content|length %}\n{% endfor %}\n{{ ns.n }} {{ messages[-1]['content'][1:3] }} {{ missing | default('dflt') }} {{ 'x' in 'xyz' }} {{ messages|length > 2 }}\n{{ {'a': [1, 'b', none, true]} | tojson }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 'a,b'.split(',') }}\n"
        let out = try ChatTemplate(src).render(
            messages: [Self.m("system", "S"), Self.m("user", "hello"), Self.m("assistant", "world")], addGenerationPrompt: true)
        // "  " before {{ is kept (lstrip_blocks only strips before {% %}); "{%- set" eats "\n  ".
        #expect(out == "  1/2:HELLO,  2/2:WORLD10 or dflt True True\n{\"a\": [1, \"b\", null, true]} 3 2 ['a', 'b']")
        let t2 = try ChatTemplate("{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }}{% if not loop.last %}&{% endif %}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}|{{ 'Hello World'.lower().startswith('hello') }}|{{ ' a b '.strip() | title }}|{{ [3, 1] | first }}{{ 2 ** 10 }}|{{ x is not defined and none is none }}")
        #expect(try t2.render(messages: [], addGenerationPrompt: false) == "x=1&y=2|empty|True|A B|31024|True")
    }

    @Test("unsupported or broken templates give errors naming the position", arguments: [
        ("{% macro greet(name) %}hi{% endmacro %}", "unsupported statement", 1, 1),
        ("line one\n{{ messages | frobnicate }}", "unknown filter 'frobnicate'", 2, 13),
        ("{% if true %}never closed", "never closed", 1, 1),
        ("{{ 'a' + }}", "expected an expression after '+'", 1, 8),
        ("{{ 'unterminated }}", "unterminated string", 1, 4),
        ("{% for x in 5 %}{% endfor %}", "cannot loop over a integer", 1, 1),
        ("\n\n  {{ foo(1) }}", "unknown function 'foo'", 3, 6),
        ("{% endif %}", "unexpected", 1, 1),
        ("{{ 1 / 0 }}", "division by zero", 1, 6),
        ("{{ 'a' + 1 }}", "cannot add string and integer", 1, 8),
        ("{# unclosed comment", "unclosed comment", 1, 1),
        ("{{ x", "unclosed tag", 1, 1),
    ])
    func errors(_ c: (String, String, Int, Int)) throws {
        let error = #expect(throws: ChatTemplateError.self) {
            try ChatTemplate(c.0).render(messages: [Self.m("user", "u")], addGenerationPrompt: true)
        }
        #expect(error?.message.contains(c.1) == true, "\(error?.description ?? "no error")")
        #expect(error?.line == c.2 && error?.column == c.3, "\(error?.description ?? "no error")")
    }

    @Test("deep nesting renders or is refused, never overflows the stack")
    func deepNesting() throws {
        let parens = "{{ " + String(repeating: "(", count: 90) + "1" + String(repeating: ")", count: 90) + " }}"
        #expect(try ChatTemplate(parens).render(messages: [], addGenerationPrompt: false) == "1")
        let chain = "{{ " + String(repeating: "1+", count: 250) + "1 }}"
        #expect(try ChatTemplate(chain).render(messages: [], addGenerationPrompt: false) == "251")
        let ifs = String(repeating: "{% if true %}", count: 150) + "x" + String(repeating: "{% endif %}", count: 150)
        #expect(try ChatTemplate(ifs).render(messages: [], addGenerationPrompt: false) == "x")
        for src in [
            "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}",
            "{{ " + String(repeating: "not ", count: 5000) + "true }}",
            "{{ " + String(repeating: "-", count: 5000) + "1 }}",
            "{{ " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + " }}",
            String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000),
            String(repeating: "{% for x in messages %}", count: 5000),
            "{{ " + String(repeating: "1+", count: 100_000) + "1 }}",
            "{{ 'x'" + String(repeating: "|trim", count: 100_000) + " }}",
            "{{ messages" + String(repeating: "[0]", count: 100_000) + " }}",
            "{{ 1" + String(repeating: " == 1", count: 100_000) + " }}",
        ] {
            let error = #expect(throws: ChatTemplateError.self) { try ChatTemplate(src) }
            #expect(error?.message.contains("too deeply") == true, "\(error?.description ?? "")")
        }
    }

    @Test("values cannot nest without bound")
    func valueNesting() throws {
        let src = "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"
        let error = #expect(throws: ChatTemplateError.self) { try ChatTemplate(src).render(messages: [], addGenerationPrompt: false) }
        #expect(error?.message.contains("nested more than") == true)
        for grow in ["{% set ns.x = ns.x + ns.x %}", "{% set ns.x = ns.x ~ ns.x %}"] {
            let start = grow.contains("~") ? "'ab'" : "[1]"
            let doubling = "{% set ns = namespace(x=\(start)) %}{% for i in range(100) %}\(grow){% endfor %}"
            let e = #expect(throws: ChatTemplateError.self) { try ChatTemplate(doubling).render(messages: [], addGenerationPrompt: false) }
            #expect(e?.message.contains("longer than") == true)
        }
        let ok = "{% set ns = namespace(x=[]) %}{% for i in range(3) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"
        #expect(try ChatTemplate(ok).render(messages: [], addGenerationPrompt: false) == "[[[[]]]]")
    }

    @Test("a model without a template reports it")
    func noTemplate() throws {
        let tok = try TestGGUFWriter.tokenizer(TestGGUFWriter.spmMetadata())
        let error = #expect(throws: ChatTemplateError.self) { try tok.applyChatTemplate([Self.m("user", "x")], addGenerationPrompt: true) }
        #expect(error?.message.contains("no chat template") == true)
    }

    @Test("random templates never crash (seeded, 3000 rounds)")
    func fuzzTemplates() throws {
        var rng = TokenizerRobustnessTests.SplitMix64(state: 0xC0FFEE)
        let pieces = [
            "{%", "%}", "{{", "}}", "{#", "#}", "-", "+", "for", "in", "if", "elif", "else", "endif", "endfor", "set", "=",
            "messages", "message", "['role']", ".content", "|", "trim", "length", "loop.index", "(", ")", "[", "]", "'a'",
            "\"b\"", "1", "-1", ":", ",", "not", "and", "or", "is", "defined", "none", "~", "*", "//", "%", " ", "\n",
            "namespace(", "range(", "raise_exception(", "{", "}", "x", "ns.x", "tojson", "default(", ".strip()", "**",
        ]
        let messages = [Self.m("system", "s"), Self.m("user", "u")]
        var rendered = 0
        for _ in 0..<3000 {
            var src = ""
            for _ in 0..<Int.random(in: 1...25, using: &rng) { src += pieces.randomElement(using: &rng)! }
            if let t = try? ChatTemplate(src), (try? t.render(messages: messages, addGenerationPrompt: true)) != nil {
                rendered += 1
            }
        }
        #expect(rendered > 0)
    }
}
