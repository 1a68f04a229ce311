#!/usr/bin/env python3
"""Reference tokenizations from Hugging Face `tokenizers`, for the Swift tokenizer tests.

Reads the vocabulary and merges of the default model's GGUF with the `gguf` package, builds a
`tokenizers` BPE tokenizer the way SmolLM2's own tokenizer.json is built (byte-level BPE,
Digits(individual_digits) + ByteLevel pre-tokenizer, control tokens as special added tokens),
saves that tokenizer.json, and writes the ids `tokenizers` produces for a list of strings, with
three pre-tokenizers: SmolLM2's, and the Llama 3 and Qwen 2 split regexes.

It also trains a tiny SentencePiece-style BPE (character merges, `<0xNN>` byte fallback, `▁` for
spaces) on the same strings, saves it, and records its ids with the three ways such
tokenizer.json files mark spaces: Prepend+Replace normalizers (Llama 2), Metaspace with
prepend_scheme "first" (newer Llama/Mistral) and Metaspace "always" with split.

Exact command (from the package root), with tokenizers 0.23.3 and gguf 0.19.0:

    pip install tokenizers==0.23.3 gguf==0.19.0
    python3 Tests/LlamaModelTests/Fixtures/make_tokenizer_fixture.py \
        models/SmolLM2-135M-Instruct.Q4_1.gguf Tests/LlamaModelTests/Fixtures
"""
import importlib.metadata
import json
import os
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

STRINGS = [
    "",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "Hello world",
    "Hello, world! How are you doing today?",
    " leading space",
    "trailing space ",
    "multiple   spaces   between   words",
    "tabs\tand\ttabs\t\t",
    "line one\nline two\r\nline three\n\n",
    "I'm sure you'll see it's done, we've ALREADY said I'D go.",
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000",
    "2024-11-29T05:12:00Z",
    "version 1.2.3-beta+exp.sha.5114f85",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "<div class=\"x\">a &amp; b</div>",
    "email: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    "Café déjà vu, naïve façade, jalapeño, Ærøskøbing",
    "Straße, ÄÖÜ äöü ß",
    "Привет, как дела? Всё хорошо.",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "你好，世界！今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "Math: ∑ x² ≤ ∞, α+β=γ, ½ ¾ Ⅻ ٣",
    "zero\u200bwidth and nbsp\u00a0here and ideographic\u3000space",
    "control \u0001\u0002 chars and \u007f del",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more<|endoftext|>",
    "<|im_start|><|im_start|>",
    "broken <|im_start user",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!???...,,,;;;:::",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "'s 'S 'll 'LL 're 'Re",
    "  \n  indented\n\t\tmore",
]


def main():
    gguf_path, out_dir = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(gguf_path)

    def field(name):
        f = r.fields[name]
        return [f.contents(i) for i in range(len(f.data))] if len(f.types) > 1 else f.contents()

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3
    ])
    json_path = os.path.join(out_dir, "smollm2_tokenizer.json")
    tok.save(json_path, pretty=False)
    saved = json.load(open(json_path, encoding="utf-8"))

    variants = {
        "smollm": saved["pre_tokenizer"],
        "llama3": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "qwen2": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    }
    # Llama 3's own tokenizer.json sets ignore_merges (llama.cpp does the same for llama-bpe).
    ignore_merges = {"smollm": False, "llama3": True, "qwen2": False}
    results = {}
    for name, pre in variants.items():
        cfg = dict(saved)
        cfg["pre_tokenizer"] = pre
        cfg["model"] = dict(saved["model"], ignore_merges=ignore_merges[name])
        t = Tokenizer.from_str(json.dumps(cfg))
        cases = []
        for s in STRINGS:
            t.encode_special_tokens = False
            ids = t.encode(s, add_special_tokens=False).ids
            t.encode_special_tokens = True
            ids_text_only = t.encode(s, add_special_tokens=False).ids
            cases.append({
                "text": s,
                "ids": ids,
                "ids_special_as_text": ids_text_only,
                "decoded": t.decode(ids, skip_special_tokens=False),
            })
        results[name] = {"pre_tokenizer": pre, "ignore_merges": ignore_merges[name], "cases": cases}

    spm_json, spm_results = make_spm_like(out_dir)

    out = {
        "generator": "Tests/LlamaModelTests/Fixtures/make_tokenizer_fixture.py",
        "tokenizers_version": tokenizers.__version__,
        "gguf_version": importlib.metadata.version("gguf"),
        "model": os.path.basename(gguf_path),
        "tokenizer_json": "smollm2_tokenizer.json",
        "variants": results,
        "spm_tokenizer_json": spm_json,
        "spm_variants": spm_results,
    }
    with open(os.path.join(out_dir, "hf_reference_tokens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(STRINGS)} strings x {len(variants)} pre-tokenizers; "
          f"tokenizer.json {os.path.getsize(json_path)} bytes")


def make_spm_like(out_dir):
    """A small trained character-level BPE with byte fallback, in three space-marking styles."""
    corpus = STRINGS * 4
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=70,
                                  show_progress=False)
    base.train_from_iterator(corpus, trainer)
    trained = json.loads(base.to_str())
    vocab = dict(trained["model"]["vocab"])
    for b in range(256):
        vocab.setdefault("<0x%02X>" % b, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    name = "spm_like_tokenizer.json"
    tok.save(os.path.join(out_dir, name), pretty=False)
    saved = json.load(open(os.path.join(out_dir, name), encoding="utf-8"))
    styles = {
        "prepend_replace": (saved["normalizer"], None),
        "metaspace_first": (None, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}),
        "metaspace_always_split": (None, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}),
    }
    strings = STRINGS + ["text</s>more<s> x", "</s>", " <unk> "]
    results = {}
    for style, (norm, pre) in styles.items():
        cfg = dict(saved, normalizer=norm, pre_tokenizer=pre)
        t = Tokenizer.from_str(json.dumps(cfg))
        results[style] = {
            "normalizer": norm,
            "pre_tokenizer": pre,
            "cases": [{"text": s, "ids": t.encode(s, add_special_tokens=False).ids} for s in strings],
        }
    return name, results


if __name__ == "__main__":
    main()
