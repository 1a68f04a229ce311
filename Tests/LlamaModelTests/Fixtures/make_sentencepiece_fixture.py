#!/usr/bin/env python3
"""Reference tokenizations from Google's `sentencepiece`, for the GGUF "llama" (SentencePiece
BPE) path of the Swift tokenizer.

Trains a tiny SentencePiece BPE model with byte fallback (identity normalization, no
whitespace collapsing, dummy prefix: the settings under which llama.cpp's SPM tokenizer and
sentencepiece agree), writes its vocabulary as a GGUF file with the `gguf` package exactly as
llama.cpp's converter lays it out (tokens, scores, token types, special ids), and records the
ids sentencepiece produces for a list of strings.

Exact command (from the package root), with sentencepiece 0.2.3 and gguf 0.19.0:

    pip install sentencepiece==0.2.3 gguf==0.19.0
    python3 Tests/LlamaModelTests/Fixtures/make_sentencepiece_fixture.py Tests/LlamaModelTests/Fixtures
"""
import importlib.metadata
import io
import json
import os
import sys

import gguf
import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixture import STRINGS  # noqa: E402

EXTRA = [
    "hello world, hello again",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces and   three inside",
    "tabs\tnewlines\nand\r\ncarriage returns",
    "ünïcödé ñ 漢字 😀",
]


def main():
    out_dir = sys.argv[1]
    corpus = [s for s in STRINGS if s.strip()] * 3 + EXTRA * 3
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="bpe", vocab_size=700,
        byte_fallback=True, character_coverage=0.98, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)

    gguf_name = "sentencepiece_tiny.gguf"
    w = gguf.GGUFWriter(os.path.join(out_dir, gguf_name), arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    cases = []
    for s in STRINGS + EXTRA:
        if "<s>" in s or "</s>" in s:
            continue
        cases.append({"text": s, "ids": sp.encode(s, out_type=int), "decoded": sp.decode(sp.encode(s, out_type=int))})
    out = {
        "generator": "Tests/LlamaModelTests/Fixtures/make_sentencepiece_fixture.py",
        "sentencepiece_version": importlib.metadata.version("sentencepiece"),
        "gguf_version": importlib.metadata.version("gguf"),
        "gguf": gguf_name,
        "cases": cases,
    }
    with open(os.path.join(out_dir, "sentencepiece_reference_tokens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} cases, vocabulary {len(tokens)}")


if __name__ == "__main__":
    main()
