#!/usr/bin/env python3
"""Writes a Hugging Face LLaMA model directory from a LLaMA GGUF file, for tests.

Every tensor is dequantized to float32, Q/K rows are put back from llama.cpp's interleaved
RoPE order into Hugging Face's rotate-half order, GGUF names become Hugging Face names, and
the tensors are written as sharded safetensors (plus model.safetensors.index.json and
config.json). Norm weights are stored as BF16 (attention norms) and F16 (MLP norms) to
exercise those dtypes; the script checks both conversions are lossless, so the directory
holds exactly the GGUF's dequantized float32 weights.

Usage: make_hf_model.py MODEL.gguf OUT_DIR [--shards N]
Needs the PyPI packages gguf and numpy (scripts/setup.sh installs them).
"""
import argparse
import json
import os
import sys

try:
    import numpy as np
    import gguf
except ImportError as e:  # pragma: no cover - reported to the Swift test
    sys.stderr.write(f"make_hf_model.py: {e}; install the PyPI packages gguf and numpy: run scripts/setup.sh\n")
    sys.exit(3)

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(name):
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            sys.exit(f"make_hf_model.py: GGUF metadata key {key} is missing")
        return default
    return f.contents()


def to_rotate_half(w, heads):
    """Inverse of llama.cpp's Q/K permutation: within each head, GGUF row 2*i + c holds
    Hugging Face row c*D/2 + i (D = head dim)."""
    rows = w.shape[0]
    d = rows // heads
    return w.reshape(heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def encode(name, w, dtype):
    """Bytes of `w` as safetensors dtype `dtype`, checking the conversion loses nothing."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if dtype == "F32":
        return w.tobytes()
    if dtype == "F16":
        h = w.astype(np.float16)
        if not np.array_equal(h.astype(np.float32), w):
            sys.exit(f"make_hf_model.py: {name} is not exactly representable in F16")
        return h.tobytes()
    if dtype == "BF16":
        bits = w.view(np.uint32)
        if np.any(bits & 0xFFFF):
            sys.exit(f"make_hf_model.py: {name} is not exactly representable in BF16")
        return (bits >> 16).astype(np.uint16).tobytes()
    raise ValueError(dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()

    r = gguf.GGUFReader(args.gguf)
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"make_hf_model.py: architecture {arch} is not llama")
    heads = int(field(r, "llama.attention.head_count"))
    kv_heads = int(field(r, "llama.attention.head_count_kv", heads))
    hidden = int(field(r, "llama.embedding_length"))
    tensors = {t.name: t for t in r.tensors}
    vocab = int(tensors["token_embd.weight"].shape[1])
    tied = "output.weight" not in tensors
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(field(r, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(r, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": int(field(r, "llama.context_length")),
        "rms_norm_eps": float(np.float32(field(r, "llama.attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(field(r, "llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "vocab_size": vocab,
        "torch_dtype": "float32",
    }

    # (hf name, gguf tensor, dtype), in a stable order: embedding, layers, final norm, head.
    plan = []
    for t in r.tensors:
        name = hf_name(t.name)
        if name is None:
            sys.exit(f"make_hf_model.py: no Hugging Face name for GGUF tensor {t.name}")
        dtype = "BF16" if t.name.endswith("attn_norm.weight") else "F16" if t.name.endswith("ffn_norm.weight") else "F32"
        plan.append((name, t, dtype))

    def key(item):
        name = item[0]
        if name.startswith("model.embed_tokens"):
            return (0, 0, name)
        if name.startswith("model.layers."):
            return (1, int(name.split(".")[2]), name)
        return (2, 0, name)

    plan.sort(key=key)
    n = max(1, min(args.shards, len(plan)))
    per = (len(plan) + n - 1) // n
    shards = [plan[i * per:(i + 1) * per] for i in range(n)]
    shards = [s for s in shards if s]

    os.makedirs(args.out, exist_ok=True)
    weight_map = {}
    total = 0
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        # Four-byte dtypes first so every F32 tensor stays 4-byte aligned.
        shard.sort(key=lambda item: 0 if item[2] == "F32" else 1)
        header = {"__metadata__": {"format": "pt"}}
        datas = []
        offset = 0
        for name, t, dtype in shard:
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            shape = [int(x) for x in reversed(t.shape)]  # GGML [in, out] -> PyTorch [out, in]
            w = w.reshape(shape)
            if t.name.endswith("attn_q.weight"):
                w = to_rotate_half(w, heads)
            elif t.name.endswith("attn_k.weight"):
                w = to_rotate_half(w, kv_heads)
            data = encode(name, w, dtype)
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
            datas.append(data)
            offset += len(data)
            weight_map[name] = fname
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for d in datas:
                f.write(d)
        total += offset

    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {len(weight_map)} tensors ({total} bytes) in {len(shards)} shards to {args.out}")


if __name__ == "__main__":
    main()
