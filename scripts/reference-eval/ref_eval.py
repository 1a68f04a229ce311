#!/usr/bin/env python3
"""Independent float32 numpy re-implementation of the SQuat/KIVI quality-eval protocol.

Everything here follows ../shared/squat-vectors/README.md ("The reference algorithm" and
"End-to-end quality on the default model"). It exists to check whether a faithful float32
implementation of the *reference* (HF transformers + the SQuat authors' cache code) reproduces
the README's quality table, independently of the Swift engine.

Sub-commands
  validate  forward pass vs. the HF float32 golden logits, layer-0 states vs. the real-data
            vectors, and the quantizers / SQuat compensation vs. every unit vector case.
  eval      the end-to-end protocol (prefill P tokens, D teacher-forced decode steps) for a
            list of cache modes; prints a table and writes per-step arrays to --out
            (<mode>_kl.npy [D], <mode>_target_logp.npy [D-1], <mode>_argmax.npy [D],
            fp32_logits.npy [D, vocab]).
  summarize aggregate the runs in --out, including sensitivity-probe variants
            (--perturb EPS --seed S, --split-attention), into mean / spread per mode.

Mode names: fp32 | fp16kv | kivi | kivi_prerope | squat, optionally followed by _k<b>v<b>,
_qgs<N>, _sd<N> (e.g. kivi_k4v4, squat_k2v2_qgs16_sd5). Missing parts come from --bits /
--kbits / --vbits / --qgs / --sd.

Examples
  python3 ref_eval.py validate
  python3 ref_eval.py eval --modes fp32 kivi kivi_prerope squat --bits 2 \
      --decode-tokens 768 --out /tmp/refeval

Run single-threaded: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1.
All model and cache arithmetic is float32; only KL / log-prob reductions use float64.
"""

import argparse
import json
import math
import os
import re
import time

import numpy as np

F32 = np.float32

# Paths relative to the repository (this file is scripts/reference-eval/ref_eval.py); the
# shared references sit beside the repository, in ../shared.
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SHARED = os.environ.get("SQUAT_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
VECTORS_DIR = os.path.join(SHARED, "squat-vectors")
GOLDEN_FP32 = os.path.join(SHARED, "golden", "fp32_reference_smollm2_q4_1.json")
EVAL_WINDOW = os.path.join(VECTORS_DIR, "eval_window_gpl3.json")

# SmolLM2-135M (LLaMA) hyper-parameters; checked against the GGUF metadata at load time.
N_LAYER, N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF = 30, 576, 9, 3, 64, 1536
ROPE_THETA, RMS_EPS = 100000.0, 1e-5
GROUPS = N_HEAD // N_KV  # query heads per KV head

# `validate` tolerances (max abs difference): logits against the golden float32 reference
# (measured 2.8e-5 .. 6.6e-5) and layer-0 q/k/v against the real-data vectors (measured <= 4.8e-6).
LOGIT_TOL, STATE_TOL = 2e-4, 2e-5


# ----------------------------------------------------------------------------------------
# Model loading
# ----------------------------------------------------------------------------------------

def unpermute_rope_rows(w, n_head):
    """Undo llama.cpp's convert-time row permutation of attn_q / attn_k.

    The converter did w_gguf = w_hf.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(n, in)
    so that its RoPE can rotate adjacent pairs. Inverting gives Hugging Face's channel order
    (rotate_half pairs (i, i + hd/2) within a head), which is what the reference used and what
    SQuat's channel blocks refer to.
    """
    n, n_in = w.shape
    hd = n // n_head
    return w.reshape(n_head, hd // 2, 2, n_in).swapaxes(1, 2).reshape(n, n_in)


class Model:
    """Float32 weights dequantized from the GGUF, stored transposed ([in, out]) for x @ W."""

    def __init__(self, path):
        import gguf  # imported lazily so `--help` works without it
        from gguf.quants import dequantize

        reader = gguf.GGUFReader(path)

        def meta(key):
            f = reader.fields[key]
            return f.parts[f.data[0]][0]

        assert int(meta("llama.block_count")) == N_LAYER
        assert int(meta("llama.embedding_length")) == N_EMBD
        assert int(meta("llama.attention.head_count")) == N_HEAD
        assert int(meta("llama.attention.head_count_kv")) == N_KV
        assert int(meta("llama.feed_forward_length")) == N_FF
        assert float(meta("llama.rope.freq_base")) == ROPE_THETA
        assert abs(float(meta("llama.attention.layer_norm_rms_epsilon")) - RMS_EPS) < 1e-12

        raw = {}
        for t in reader.tensors:
            a = dequantize(t.data, t.tensor_type)
            raw[t.name] = np.ascontiguousarray(a, dtype=F32)

        self.tok_embd = raw["token_embd.weight"]                       # [vocab, 576]
        self.out_w = np.ascontiguousarray(self.tok_embd.T)             # tied head, [576, vocab]
        self.out_norm = raw["output_norm.weight"]
        self.layers = []
        for i in range(N_LAYER):
            p = f"blk.{i}."
            wq = unpermute_rope_rows(raw[p + "attn_q.weight"], N_HEAD)
            wk = unpermute_rope_rows(raw[p + "attn_k.weight"], N_KV)
            wv = raw[p + "attn_v.weight"]
            self.layers.append(dict(
                attn_norm=raw[p + "attn_norm.weight"],
                ffn_norm=raw[p + "ffn_norm.weight"],
                # fused q|k|v and gate|up projections; each output column is still an
                # independent float32 dot product, same as separate Linear layers.
                wqkv=np.ascontiguousarray(np.concatenate([wq, wk, wv], axis=0).T),
                wo=np.ascontiguousarray(raw[p + "attn_output.weight"].T),
                wgu=np.ascontiguousarray(np.concatenate(
                    [raw[p + "ffn_gate.weight"], raw[p + "ffn_up.weight"]], axis=0).T),
                wd=np.ascontiguousarray(raw[p + "ffn_down.weight"].T),
            ))
        self.vocab = self.tok_embd.shape[0]
        self.embd_in = self.tok_embd   # input lookup table (see perturb_inputs)

    def perturb_inputs(self, eps, seed):
        """Sensitivity probe: scale the INPUT embedding table (not the tied output head) by
        (1 + eps * N(0, 1)). With eps ~ 1e-7..1e-6 this is float32 rounding-level noise; the
        spread of the quantized modes' metrics over seeds shows how much any two faithful
        float32 implementations (different summation orders) can be expected to differ."""
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(self.tok_embd.shape).astype(F32)
        self.embd_in = (self.tok_embd * (F32(1.0) + F32(eps) * noise)).astype(F32)


def rms_norm(x, w):
    # HF LlamaRMSNorm in float32: x * rsqrt(mean(x^2) + eps) * w
    var = np.mean(x * x, axis=-1, keepdims=True)
    return w * (x * (F32(1.0) / np.sqrt(var + F32(RMS_EPS))))


def silu(x):
    return x / (F32(1.0) + np.exp(-x))


# ----------------------------------------------------------------------------------------
# RoPE (Hugging Face rotate_half convention, float32)
# ----------------------------------------------------------------------------------------

class Rope:
    def __init__(self, max_pos, dim=HEAD_DIM, theta=ROPE_THETA):
        inv_freq = F32(1.0) / (F32(theta) ** (np.arange(0, dim, 2, dtype=F32) / F32(dim)))
        pos = np.arange(max_pos, dtype=F32)
        freqs = np.outer(pos, inv_freq).astype(F32)          # [max_pos, dim/2]
        emb = np.concatenate([freqs, freqs], axis=-1)        # [max_pos, dim]
        self.cos = np.cos(emb).astype(F32)
        self.sin = np.sin(emb).astype(F32)

    def apply(self, x, positions):
        """x [..., n, D] with positions [n] (absolute) -> RoPE(x), float32."""
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * self.cos[positions] + rot * self.sin[positions]


# ----------------------------------------------------------------------------------------
# Quantizers (README steps 1-3)
# ----------------------------------------------------------------------------------------

def quant_last_axis(x, bits):
    """Asymmetric min/max quantization of each group along the LAST axis of x (float32).

    mn = min, mx = max, scale = (mx - mn) / (2^b - 1); q = rint(clamp((x - mn) / scale, 0, 2^b-1))
    (subtract, then divide, then clamp, then round half to even); dequant = q * scale + mn.
    A constant group (mx == mn) divides 0 by 0 in the reference; we take code 0, which is what
    its CUDA path produces (dequant is then exactly mn).
    Returns codes (uint8), scale, mn (keepdims), dequant.
    """
    qmax = F32(2 ** bits - 1)
    mn = x.min(axis=-1, keepdims=True)
    mx = x.max(axis=-1, keepdims=True)
    scale = (mx - mn) / qmax
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (x - mn) / scale
    t = np.nan_to_num(t, nan=0.0)  # 0/0 -> code 0 (only possible when mx == mn)
    q = np.rint(np.clip(t, F32(0.0), qmax))  # np.rint rounds half to even
    deq = q * scale + mn
    return q.astype(np.uint8), scale, mn, deq.astype(F32)


def quant_keys_per_channel(k, bits, gs=32):
    """Keys [kv, T, C] (T a multiple of gs, groups aligned to token 0 of k): each channel is
    quantized over groups of gs consecutive tokens. Returns codes [kv,T,C], scale/mn
    [kv,T/gs,C], dequant [kv,T,C]."""
    kv, T, C = k.shape
    assert T % gs == 0
    g = k.reshape(kv, T // gs, gs, C).transpose(0, 1, 3, 2)   # [kv, ng, C, gs]
    codes, scale, mn, deq = quant_last_axis(g, bits)
    back = lambda a: a.transpose(0, 1, 3, 2).reshape(kv, T, C)
    return back(codes), scale[..., 0], mn[..., 0], back(deq)


def quant_values_per_token(v, bits, gs=32):
    """Values [kv, T, D]: each token's D channels are quantized in groups of gs channels.
    Returns codes [kv,T,D], scale/mn [kv,T,D/gs], dequant [kv,T,D]."""
    kv, T, D = v.shape
    g = v.reshape(kv, T, D // gs, gs)
    codes, scale, mn, deq = quant_last_axis(g, bits)
    return codes.reshape(kv, T, D), scale[..., 0], mn[..., 0], deq.reshape(kv, T, D)


# ----------------------------------------------------------------------------------------
# SQuat (README steps 4-6)
# ----------------------------------------------------------------------------------------

def squat_subspace(q_post, n_kv, sd):
    """q_post [H, T, D] post-RoPE prompt queries -> (Q̂ [kv, sd, D], S [kv, min(gT, D)]).

    M = q.reshape(kv, g*T, D) (rows head-major: h = kvhead*g + j, then tokens); float32 SVD;
    Q̂ = diag(S[:sd]) Vh[:sd]."""
    H, T, D = q_post.shape
    M = np.ascontiguousarray(q_post.reshape(n_kv, (H // n_kv) * T, D), dtype=F32)
    _, S, Vh = np.linalg.svd(M, full_matrices=False)
    sd = min(sd, M.shape[1])
    qhat = (S[:, :sd, None] * Vh[:, :sd, :]).astype(F32)
    return qhat, S.astype(F32)


def generate_At_inv(qgs, qhat, lam, tol=1e-7):
    """README step 5 (the reference's generate_At_inv), float32, batched over KV heads.

    A = I + λ Q̂ᵀQ̂; mats[nb-1] = A; for t = nb-1..1 (c = t*qgs):
      A <- A[:c,:c] - A[c:c+qgs,:c]ᵀ (inv(A[c:c+qgs,c:c+qgs] + tol I) A[c:c+qgs,:c])
      mats[t-1] = A[:, -qgs:]
    Returns (mats, P_inv = inv(mats[nb-1]))."""
    kv, _, D = qhat.shape
    nb = (D + qgs - 1) // qgs
    eye = np.eye(D, dtype=F32)
    A = eye[None] + F32(lam) * np.matmul(qhat.transpose(0, 2, 1), qhat)
    A = A.astype(F32)
    mats = [None] * nb
    mats[nb - 1] = A
    for t in range(nb - 1, 0, -1):
        c = t * qgs
        M11 = A[:, :c, :c]
        N = A[:, c:c + qgs, :c]
        O = A[:, c:c + qgs, c:c + qgs]
        O_inv = np.linalg.inv(O + F32(tol) * np.eye(qgs, dtype=F32)[None]).astype(F32)
        A = (M11 - np.matmul(N.transpose(0, 2, 1), np.matmul(O_inv, N))).astype(F32)
        mats[t - 1] = np.ascontiguousarray(A[:, :, -qgs:])
    P_inv = np.linalg.inv(mats[nb - 1]).astype(F32)
    return mats, P_inv


def squat_new_quant(k, bits, gs, qgs, mats, P_inv):
    """README step 6 (the reference's new_quant). k: pre-RoPE keys [kv, T, D], T % gs == 0.

    Channel blocks of qgs are quantized left to right (per channel over gs-token groups); the
    error d = dequant - X_block of block i is pushed into the later channels:
      X[:, :, (i+1)qgs:] += (d @ mats[i]ᵀ) @ P_inv[(i+1)qgs:, :(i+1)qgs]ᵀ
    Each block's scale/min come from the compensated X.
    Returns codes, scale [kv,T/gs,D], mn, dequant [kv,T,D], target X [kv,T,D]."""
    X = np.array(k, dtype=F32, copy=True)
    kv, T, D = X.shape
    nb = (D + qgs - 1) // qgs
    codes = np.empty(X.shape, np.uint8)
    deq = np.empty_like(X)
    scale = np.empty((kv, T // gs, D), F32)
    mn = np.empty((kv, T // gs, D), F32)
    for i in range(nb):
        lo, hi = i * qgs, min((i + 1) * qgs, D)
        blk = X[:, :, lo:hi]
        c_, s_, m_, d_ = quant_keys_per_channel(blk, bits, gs)
        codes[:, :, lo:hi], scale[:, :, lo:hi], mn[:, :, lo:hi], deq[:, :, lo:hi] = c_, s_, m_, d_
        if i < nb - 1:
            dvec = d_ - blk
            B = P_inv[:, hi:, :hi]
            X[:, :, hi:] = X[:, :, hi:] + np.matmul(np.matmul(dvec, mats[i].transpose(0, 2, 1)),
                                                    B.transpose(0, 2, 1))
    return codes, scale, mn, deq, X


# ----------------------------------------------------------------------------------------
# Cache modes
# ----------------------------------------------------------------------------------------

class ModeSpec:
    BASES = ("fp32", "fp16kv", "kivi", "kivi_prerope", "squat")

    def __init__(self, text, args):
        m = re.fullmatch(r"(fp32|fp16kv|kivi_prerope|kivi|squat)"
                         r"(?:_k(\d+)v(\d+))?(?:_qgs(\d+))?(?:_sd(\d+))?", text)
        if not m:
            raise SystemExit(f"bad mode {text!r}")
        self.base = m.group(1)
        self.kbits = int(m.group(2) or args.kbits or args.bits)
        self.vbits = int(m.group(3) or args.vbits or args.bits)
        self.qgs = int(m.group(4) or args.qgs)
        self.sd = int(m.group(5) or args.sd)
        self.lam = args.lam
        self.gs = args.group_size
        self.residual = args.residual
        if self.base in ("fp32", "fp16kv"):
            self.name = self.base
        else:
            self.name = f"{self.base}_k{self.kbits}v{self.vbits}"
            if self.base == "squat":
                self.name += f"_qgs{self.qgs}_sd{self.sd}"

    @property
    def quantized(self):
        return self.base in ("kivi", "kivi_prerope", "squat")

    @property
    def prerope(self):
        return self.base in ("kivi_prerope", "squat")


class LayerCache:
    """One layer's KV cache for one mode (README step 7).

    Storage is position-ordered: k_att[:, p] is the key used at attention for position p
    (post-RoPE; RoPE(dequant) once p is quantized), v_att likewise. Since attention order is
    [quantized | full] = position order, one buffer serves both parts. Dequantizing (and
    re-RoPE-ing) each group once, when it is quantized, gives the same numbers as doing it
    at every step. k_raw holds what gets quantized: pre-RoPE keys (kivi_prerope, squat) or
    post-RoPE keys (kivi).
    """

    def __init__(self, spec, rope, max_len):
        self.s, self.rope = spec, rope
        self.k_att = np.zeros((N_KV, max_len, HEAD_DIM), F32)
        self.v_att = np.zeros((N_KV, max_len, HEAD_DIM), F32)
        self.k_raw = np.zeros((N_KV, max_len, HEAD_DIM), F32)
        self.n = 0      # tokens in cache
        self.nkq = 0    # keys [0, nkq) are quantized
        self.nvq = 0    # values [0, nvq) are quantized
        self.mats = self.P_inv = None

    def _store(self, k_pre, k_post, v, start):
        T = k_pre.shape[1]
        sl = slice(start, start + T)
        if self.s.base == "fp16kv":
            # Our reading of the README's fp16kv row (the README does not define it): every
            # cached post-RoPE key and value is rounded to float16 (prompt entries too, after
            # the exact prefill attention); all arithmetic stays float32.
            k_post = k_post.astype(np.float16).astype(F32)
            v = v.astype(np.float16).astype(F32)
        self.k_att[:, sl] = k_post
        self.v_att[:, sl] = v
        self.k_raw[:, sl] = k_pre if self.s.prerope else k_post
        self.n = start + T

    def _quantize_keys(self, a, b):
        """Quantize keys [a, b) (whole gs-token groups aligned to absolute positions)."""
        s = self.s
        raw = self.k_raw[:, a:b]
        if s.base == "squat":
            deq = squat_new_quant(raw, s.kbits, s.gs, s.qgs, self.mats, self.P_inv)[3]
        else:
            deq = quant_keys_per_channel(raw, s.kbits, s.gs)[3]
        if s.prerope:  # attention uses RoPE(dequant) at each key's absolute position
            deq = self.rope.apply(deq, np.arange(a, b))
        self.k_att[:, a:b] = deq
        self.nkq = b

    def _quantize_values(self, a, b):
        self.v_att[:, a:b] = quant_values_per_token(self.v_att[:, a:b], self.s.vbits, self.s.gs)[3]
        self.nvq = b

    def prefill(self, k_pre, k_post, v, q_post):
        """Store the prompt's states (prefill attention itself was exact), then quantize:
        keys [0, gs*floor(T/gs)); values all but the last `residual` when T > residual."""
        self._store(k_pre, k_post, v, 0)
        if not self.s.quantized:
            return
        s, T = self.s, k_pre.shape[1]
        if s.base == "squat":
            qhat, _ = squat_subspace(q_post, N_KV, s.sd)
            self.mats, self.P_inv = generate_At_inv(s.qgs, qhat, s.lam)
        nq = s.gs * (T // s.gs)
        if nq:
            self._quantize_keys(0, nq)
        if T > s.residual:
            self._quantize_values(0, T - s.residual)

    def append(self, k_pre, k_post, v):
        self._store(k_pre, k_post, v, self.n)

    def after_attention(self):
        """Post-attention cache maintenance of one decode step."""
        if not self.s.quantized:
            return
        s = self.s
        if self.n - self.nkq >= s.residual:          # full keys reached 32: flush one group
            self._quantize_keys(self.nkq, self.nkq + s.residual)
        if self.n - self.nvq > s.residual:           # 33 full values: quantize the oldest
            self._quantize_values(self.nvq, self.n - s.residual)


# ----------------------------------------------------------------------------------------
# Forward passes
# ----------------------------------------------------------------------------------------

INV_SQRT_D = F32(1.0 / math.sqrt(HEAD_DIM))


def softmax_f32(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def qkv_proj(layer, h, rope, positions):
    """h [T, 576] normalized -> q_post [H,T,D], k_pre [KV,T,D], k_post, v [KV,T,D]."""
    T = h.shape[0]
    qkv = h @ layer["wqkv"]
    nq, nk = N_HEAD * HEAD_DIM, N_KV * HEAD_DIM
    q = qkv[:, :nq].reshape(T, N_HEAD, HEAD_DIM).transpose(1, 0, 2)
    k = qkv[:, nq:nq + nk].reshape(T, N_KV, HEAD_DIM).transpose(1, 0, 2)
    v = qkv[:, nq + nk:].reshape(T, N_KV, HEAD_DIM).transpose(1, 0, 2)
    q_post = rope.apply(q, positions)
    k_post = rope.apply(k, positions)
    return q_post, np.ascontiguousarray(k), k_post, np.ascontiguousarray(v)


def mlp(layer, x):
    h = rms_norm(x, layer["ffn_norm"])
    gu = h @ layer["wgu"]
    return (silu(gu[:, :N_FF]) * gu[:, N_FF:]) @ layer["wd"]


def forward_prompt(model, rope, ids, all_logits=False):
    """Exact causal forward over a prompt (HF-style, float32).
    Returns logits (last position, or all) and the per-layer states for the caches."""
    T = len(ids)
    pos = np.arange(T)
    x = model.embd_in[np.asarray(ids)]
    mask = np.triu(np.full((T, T), -np.inf, F32), k=1)
    states = []
    for L in model.layers:
        h = rms_norm(x, L["attn_norm"])
        q_post, k_pre, k_post, v = qkv_proj(L, h, rope, pos)
        states.append((k_pre, k_post, v, q_post))
        qg = q_post.reshape(N_KV, GROUPS, T, HEAD_DIM)
        sc = np.matmul(qg, k_post[:, None].transpose(0, 1, 3, 2)) * INV_SQRT_D + mask
        o = np.matmul(softmax_f32(sc), v[:, None])                   # [KV, g, T, D]
        o = o.reshape(N_HEAD, T, HEAD_DIM).transpose(1, 0, 2).reshape(T, N_EMBD)
        x = x + o @ L["wo"]
        x = x + mlp(L, x)
    xs = x if all_logits else x[-1:]
    logits = rms_norm(xs, model.out_norm) @ model.out_w
    return logits, states


def decode_step(model, rope, caches, tok, pos, split=False):
    """One token at absolute position pos against the per-layer caches. Returns logits [vocab].

    split=False: one score matmul over all keys and one probs @ V matmul.
    split=True: the reference's structure, scores = cat(q @ K_quant, q @ K_full) and
    out = probs[:, :nvq] @ V_quant + probs[:, nvq:] @ V_full (same math, other rounding)."""
    x = model.embd_in[[tok]]
    p = np.array([pos])
    for L, c in zip(model.layers, caches):
        h = rms_norm(x, L["attn_norm"])
        q_post, k_pre, k_post, v = qkv_proj(L, h, rope, p)
        c.append(k_pre, k_post, v)
        n = c.n
        qg = q_post.reshape(N_KV, GROUPS, HEAD_DIM)
        if not split:
            sc = np.matmul(qg, c.k_att[:, :n].transpose(0, 2, 1)) * INV_SQRT_D  # [KV, g, n]
            o = np.matmul(softmax_f32(sc), c.v_att[:, :n])                      # [KV, g, D]
        else:
            kq, vq = c.nkq, c.nvq
            sc = np.concatenate([np.matmul(qg, c.k_att[:, :kq].transpose(0, 2, 1)),
                                 np.matmul(qg, c.k_att[:, kq:n].transpose(0, 2, 1))],
                                axis=-1) * INV_SQRT_D
            pr = softmax_f32(sc)
            o = np.matmul(pr[..., vq:n], c.v_att[:, vq:n])
            if vq:
                o = np.matmul(pr[..., :vq], c.v_att[:, :vq]) + o
        x = x + o.reshape(1, N_EMBD) @ L["wo"]
        x = x + mlp(L, x)
        c.after_attention()
    return (rms_norm(x, model.out_norm) @ model.out_w)[0]


def log_softmax64(logits):
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------

def load_case(case):
    blob = open(os.path.join(VECTORS_DIR, case["file"]), "rb").read()
    dt = {"f32": "<f4", "i32": "<i4", "u8": "u1"}
    return {a["name"]: np.frombuffer(blob, dt[a["dtype"]], count=int(np.prod(a["shape"])),
                                     offset=a["offset"]).reshape(a["shape"])
            for a in case["arrays"]}


def validate_vectors(rope, failures, model=None, window_ids=None):
    """Prints the unit-vector comparison; appends what is out of tolerance to `failures`."""
    man = json.load(open(os.path.join(VECTORS_DIR, "manifest.json")))
    print("\n== unit vectors ==")
    print("codes: mismatches/total (squat(own): own SVD + generate_At_inv; squat(ref mats): stored"
          " Ainv_t/P_inv);\ndequant: max abs diff (sqdq uses own mats); QtQ rel: max|diff|/max|ref|;"
          " att: q_decode.RoPE(k) max|diff| / max|att_qk_fp32|")
    hdr = (f"{'case':<48} {'kivi':>9} {'value':>9} {'squat(own)':>11} {'squat(ref mats)':>15}"
           f" {'kdq':>8} {'vdq':>8} {'sqdq':>8} {'QtQ rel':>8} {'att fp32':>8} {'att kivi':>8} {'att sq':>8}")
    print(hdr)
    for case in man["cases"]:
        a = load_case(case)
        P = case["params"]
        kb, vb, gs, qgs, sd, lam = (P["k_bits"], P["v_bits"], P["group_size"],
                                    P["quant_group_size"], P["subspace_dim"], P["squat_lambda"])
        D = case["head_dim"]
        k = a["k_states"][0].astype(F32)
        v = a["v_states"][0].astype(F32)
        q = a["q_states"][0].astype(F32)
        kc, _, _, kdq = quant_keys_per_channel(k, kb, gs)
        vc, _, _, vdq = quant_values_per_token(v, vb, gs)
        # own subspace and mats
        qhat, S = squat_subspace(q, case["kv_heads"], sd)
        sv_ref = a["singular_values"][0]
        sv_rel = float(np.abs(S - sv_ref).max() / np.abs(sv_ref).max())
        mats, P_inv = generate_At_inv(qgs, qhat, lam)
        sc, _, _, sdq, _ = squat_new_quant(k, kb, gs, qgs, mats, P_inv)
        # reference mats
        nb = (D + qgs - 1) // qgs
        rmats = [a[f"Ainv_t_{i}"][0].astype(F32) for i in range(nb)]
        sc_ref = squat_new_quant(k, kb, gs, qgs, rmats, a["P_inv"][0].astype(F32))[0]
        rq = a["query_subspace"][0]
        qtq_ref = np.matmul(rq.transpose(0, 2, 1), rq)
        qtq = np.matmul(qhat.transpose(0, 2, 1), qhat)
        qtq_rel = np.abs(qtq - qtq_ref).max() / np.abs(qtq_ref).max()
        # attention check: q_decode . RoPE(k) at positions 0..T-1, unscaled, relative to
        # max |att_qk_fp32| (the reference's cuda_bmm_fA_qB_outer_cos_sin path)
        T = k.shape[1]
        r = Rope(T, dim=D, theta=man["rope_theta"])
        qd = a["q_decode"][0, :, 0, :]                                   # [H, D]
        att = lambda kk: np.einsum("hd,htd->ht", qd,
                                   np.repeat(r.apply(kk, np.arange(T)), case["groups"], axis=0))
        scale_att = np.abs(a["att_qk_fp32"]).max()
        att_err = {nm: np.abs(att(x) - a["att_qk_" + nm][0, :, 0, :]).max() / scale_att
                   for x, nm in ((k, "fp32"), (kdq, "kivi"), (sdq, "squat"))}
        mm = lambda x, y: f"{int((x != y).sum())}/{x.size}"
        # The README's tolerances: KIVI and value codes exact; SQuat codes exact with the stored
        # matrices and with our own when λ = 0.001, within 1.5% when λ = 1.
        own_budget = 0.0 if lam < 0.01 else 0.015
        for name, got, ref, budget in (("kivi key codes", kc, a["kivi_key_codes"][0], 0.0),
                                       ("value codes", vc, a["value_codes"][0], 0.0),
                                       ("squat codes (own matrices)", sc, a["squat_key_codes"][0], own_budget),
                                       ("squat codes (stored matrices)", sc_ref, a["squat_key_codes"][0], 0.0)):
            if (got != ref).sum() > budget * got.size:
                failures.append(f"{case['id']}: {name} differ in {int((got != ref).sum())} of {got.size}")
        # Dequantized KIVI keys and values to 1e-6, Q̂ᵀQ̂ to 1e-5 and singular values to 1e-6
        # (relative to the largest); SQuat dequant, where our own codes must be exact, to 1e-4
        # relative to the largest (its scales come from our own compensated targets).
        checks = [("KIVI key dequant", np.abs(kdq - a["kivi_key_dequant"][0]).max(), 1e-6),
                  ("value dequant", np.abs(vdq - a["value_dequant"][0]).max(), 1e-6),
                  ("Q̂ᵀQ̂ (relative)", qtq_rel, 1e-5), ("singular values (relative)", sv_rel, 1e-6)]
        if own_budget == 0:
            ref_sdq = a["squat_key_dequant"][0]
            checks.append(("SQuat key dequant (relative)",
                           np.abs(sdq - ref_sdq).max() / np.abs(ref_sdq).max(), 1e-4))
        for name, err, tol in checks:
            if not err <= tol:  # also catches NaN
                failures.append(f"{case['id']}: {name} differs by {err:.2e} (tolerance {tol:g})")
        print(f"{case['id']:<48} {mm(kc, a['kivi_key_codes'][0]):>9} {mm(vc, a['value_codes'][0]):>9}"
              f" {mm(sc, a['squat_key_codes'][0]):>11} {mm(sc_ref, a['squat_key_codes'][0]):>15}"
              f" {np.abs(kdq - a['kivi_key_dequant'][0]).max():8.1e}"
              f" {np.abs(vdq - a['value_dequant'][0]).max():8.1e}"
              f" {np.abs(sdq - a['squat_key_dequant'][0]).max():8.1e}"
              f" {qtq_rel:8.1e} {att_err['fp32']:8.1e} {att_err['kivi']:8.1e} {att_err['squat']:8.1e}")
    # Real-data layer-0 states: checks the un-permutation / channel order of q and k.
    if model is not None and window_ids is not None:
        print("\n== layer-0 states of the eval window vs. real-data vectors (max abs diff) ==")
        for case in man["cases"]:
            if case["source"] != "smollm2":
                continue
            a = load_case(case)
            T, t0 = case["T"], case.get("token_start", 0)
            _, states = forward_prompt(model, rope, window_ids[t0:t0 + T])
            k_pre, _, v, q_post = states[case["layer"]]
            # np.max, unlike Python's max, keeps a NaN.
            worst = float(np.max([np.abs(x - a[n][0]).max() for x, n in ((q_post, "q_states"),
                                                                         (k_pre, "k_states"), (v, "v_states"))]))
            if not worst <= STATE_TOL:  # also catches NaN
                failures.append(f"{case['id']}: layer-{case['layer']} states differ by {worst:.2e}")
            print(f"{case['id']:<48} q {np.abs(q_post - a['q_states'][0]).max():.2e}"
                  f"  k {np.abs(k_pre - a['k_states'][0]).max():.2e}"
                  f"  v {np.abs(v - a['v_states'][0]).max():.2e}")


def validate_forward(model, rope, failures):
    """Prints the forward-pass comparison; appends what is out of tolerance to `failures`."""
    gold = json.load(open(GOLDEN_FP32))
    print("== forward vs. HF float32 golden logits ==")
    for p in gold["prompts"]:
        ids = p["input_tokens"]
        logits, states = forward_prompt(model, rope, ids)
        ref = np.asarray(p["last_prompt_position_logits_full"], F32)
        d_last = np.abs(logits[0] - ref).max()
        # teacher-forced decode through the fp32 cache path vs. the golden per-step top-20
        spec = ModeSpec("fp32", argparse.Namespace(bits=2, kbits=None, vbits=None, qgs=32, sd=20,
                                                   lam=0.001, group_size=32, residual=32))
        caches = [LayerCache(spec, rope, len(ids) + len(p["teacher_tokens"]) + 1)
                  for _ in range(N_LAYER)]
        for c, st in zip(caches, states):
            c.prefill(*st)
        d_steps, argmax_ok, finite = 0.0, 0, bool(np.isfinite(logits).all())
        step_logits = logits[0]
        for j, st in enumerate(p["steps"]):
            assert st["position"] == len(ids) - 1 + j
            if j > 0:
                step_logits = decode_step(model, rope, caches, p["teacher_tokens"][j - 1],
                                          len(ids) - 1 + j)
            tk = np.asarray(st["top_k"])
            d_steps = max(d_steps, np.abs(step_logits[tk[:, 0].astype(int)] - tk[:, 1]).max())
            finite = finite and bool(np.isfinite(step_logits).all())
            argmax_ok += int(np.argmax(step_logits) == int(tk[0, 0]))
        if not (finite and d_last <= LOGIT_TOL and d_steps <= LOGIT_TOL) or argmax_ok < len(p["steps"]):
            failures.append(f"{p['name']}: logits differ by {max(d_last, d_steps):.2e}, argmax agrees"
                            f" {argmax_ok}/{len(p['steps'])}")
        print(f"{p['name']:<24} T={len(ids):3d}  last-position logits max|diff| {d_last:.2e}"
              f"   {len(p['steps'])} teacher-forced steps top-20 max|diff| {d_steps:.2e}"
              f"  argmax agree {argmax_ok}/{len(p['steps'])}")


# ----------------------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------------------

def run_mode(model, rope, spec, states, ids, P, D, split=False):
    caches = [LayerCache(spec, rope, P + D + 1) for _ in range(N_LAYER)]
    for c, st in zip(caches, states):
        c.prefill(*st)
    logits = np.empty((D, model.vocab), F32)
    for i in range(D):
        logits[i] = decode_step(model, rope, caches, ids[P + i], P + i, split)
    return logits


def cmd_eval(args):
    t0 = time.time()
    model = Model(args.model)
    window = json.load(open(EVAL_WINDOW))["gpl3"]
    ids = window["ids"]
    P, D = args.prompt_len, args.decode_tokens
    assert len(ids) >= P + D, "window too short"
    rope = Rope(P + D + 8)
    os.makedirs(args.out, exist_ok=True)
    print(f"model loaded in {time.time() - t0:.1f}s; P={P} D={D}", flush=True)
    variant = ""   # suffix of output files for sensitivity-probe runs
    if args.perturb:
        model.perturb_inputs(args.perturb, args.seed)
        variant += f"_p{args.perturb:g}s{args.seed}"
        print(f"input embeddings perturbed: eps {args.perturb:g}, seed {args.seed}")
    if args.split_attention:
        variant += "_split"

    t = time.time()
    _, states = forward_prompt(model, rope, ids[:P])   # exact prefill, shared by every mode
    print(f"prefill {time.time() - t:.1f}s", flush=True)

    specs = [ModeSpec(m, args) for m in args.modes]
    targets = np.asarray(ids[P + 1:P + D], dtype=np.int64)   # step i predicts ids[P+i+1]
    fp32_path = os.path.join(args.out, "fp32_logits.npy")
    ref_logp = None
    # The KL / top-1 reference is always the unperturbed fp32 run (fp32_logits.npy).
    if variant or not any(s.base == "fp32" for s in specs):
        if os.path.exists(fp32_path):
            ref = np.load(fp32_path)
            if ref.shape[0] < D:
                raise SystemExit(f"{fp32_path} has only {ref.shape[0]} steps")
            # The saved reference must come from the same model file and prompt length.
            meta_path = fp32_path + ".json"
            meta = json.load(open(meta_path)) if os.path.exists(meta_path) else None
            want = {"model": os.path.abspath(args.model), "prompt_len": P}
            if meta is None or any(meta.get(k) != v for k, v in want.items()):
                raise SystemExit(f"{fp32_path} was made with {meta}, not {want}: rerun the fp32 mode")
            ref_logp = log_softmax64(ref[:D])
            ref_arg = ref[:D].argmax(-1)
            print(f"using fp32 logits from {fp32_path}")
        elif variant:
            raise SystemExit(f"run the plain fp32 mode first: {fp32_path} is missing")
        else:
            specs.insert(0, ModeSpec("fp32", args))
    else:  # run fp32 first
        specs.sort(key=lambda s: s.base != "fp32")

    rows = []
    for s in specs:
        t = time.time()
        logits = run_mode(model, rope, s, states, ids, P, D, args.split_attention)
        dt = time.time() - t
        logp = log_softmax64(logits)
        arg = logits.argmax(-1)
        if s.base == "fp32" and not variant:
            np.save(fp32_path, logits)
            with open(fp32_path + ".json", "w") as f:
                json.dump({"model": os.path.abspath(args.model), "prompt_len": P}, f)
            ref_logp, ref_arg = logp, arg
        tgt_lp = logp[np.arange(D - 1), targets]                       # [D-1]
        kl = (np.exp(ref_logp) * (ref_logp - logp)).sum(-1)            # [D]
        top1 = (arg == ref_arg).mean()
        ppl = math.exp(-tgt_lp.mean())
        stem = os.path.join(args.out, s.name + variant)
        np.save(stem + "_kl.npy", kl)
        np.save(stem + "_target_logp.npy", tgt_lp)
        np.save(stem + "_argmax.npy", arg)
        if args.save_logits and (s.base != "fp32" or variant):
            np.save(stem + "_logits.npy", logits)
        rows.append((s, ppl, kl.mean(), top1, dt))
        print(f"  {s.name + variant:<34} ppl {ppl:8.3f}  KL {kl.mean():.4g}  top-1 {100 * top1:5.1f}%"
              f"  ({dt:.0f}s, {1000 * dt / D:.1f} ms/step)", flush=True)

    print(f"\nD = {D} decode steps (P = {P}, group 32, residual 32, λ {args.lam})\n")
    print("| mode | k/v bits | qgs | sd | ppl | KL | top-1 |")
    print("|---|---|---|---|---|---|---|")
    for s, ppl, kl, top1, _ in rows:
        bits = "32/32" if s.base == "fp32" else "16/16" if s.base == "fp16kv" else f"{s.kbits}/{s.vbits}"
        qgs, sd = (str(s.qgs), str(s.sd)) if s.base == "squat" else ("", "")
        kls = f"{kl:.4f}" if kl >= 1e-4 or kl == 0 else f"{kl:.1e}"
        print(f"| {s.name + variant} | {bits} | {qgs} | {sd} | {ppl:.3f} | {kls} | {100 * top1:.1f}% |")
    print(f"\ntotal {time.time() - t0:.0f}s")


def cmd_summarize(args):
    """Aggregate every run saved in --out: the plain run and its sensitivity-probe variants
    (_p<eps>s<seed>, _split) per mode -> mean ± sample std and [min, max]."""
    import glob
    ref_arg = np.load(os.path.join(args.out, "fp32_logits.npy")).argmax(-1)
    groups = {}
    for f in sorted(glob.glob(os.path.join(args.out, "*_kl.npy"))):
        stem = f[:-len("_kl.npy")]
        name = os.path.basename(stem)
        base = re.sub(r"(_p[0-9.e+-]+s\d+)?(_split)?$", "", name)
        kl = np.load(f)
        lp = np.load(stem + "_target_logp.npy")
        top1 = (np.load(stem + "_argmax.npy") == ref_arg[:len(kl)]).mean()
        groups.setdefault(base, []).append((math.exp(-lp.mean()), kl.mean(), 100 * top1))
    print("| mode | runs | ppl mean ± sd [min, max] | KL mean ± sd [min, max] | top-1 % mean [min, max] |")
    print("|---|---|---|---|---|")
    for base, r in groups.items():
        a = np.asarray(r)
        sd = a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(3)
        print(f"| {base} | {len(a)} | {a[:, 0].mean():.3f} ± {sd[0]:.3f} [{a[:, 0].min():.3f}, {a[:, 0].max():.3f}]"
              f" | {a[:, 1].mean():.4f} ± {sd[1]:.4f} [{a[:, 1].min():.4f}, {a[:, 1].max():.4f}]"
              f" | {a[:, 2].mean():.1f} [{a[:, 2].min():.1f}, {a[:, 2].max():.1f}] |")


def cmd_validate(args):
    t0 = time.time()
    rope = Rope(4096)
    model = Model(args.model)
    print(f"model loaded in {time.time() - t0:.1f}s")
    failures = []
    validate_forward(model, rope, failures)
    ids = json.load(open(EVAL_WINDOW))["gpl3"]["ids"]
    validate_vectors(rope, failures, model, ids)
    if failures:
        print("\nvalidate: FAILED\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print(f"\nvalidate: all checks passed in {time.time() - t0:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["validate", "eval", "summarize"])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--modes", nargs="+", default=["fp32", "kivi", "kivi_prerope", "squat"])
    ap.add_argument("--bits", type=int, default=2, help="default k and v bits")
    ap.add_argument("--kbits", type=int, default=None)
    ap.add_argument("--vbits", type=int, default=None)
    ap.add_argument("--qgs", type=int, default=32, help="SQuat quant_group_size")
    ap.add_argument("--sd", type=int, default=20, help="SQuat subspace_dim")
    ap.add_argument("--lam", type=float, default=0.001, help="SQuat lambda")
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--residual", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=768)
    ap.add_argument("--out", default="/tmp/refeval")
    ap.add_argument("--save-logits", action="store_true", help="also save every mode's logits")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="sensitivity probe: relative noise on the input embeddings (e.g. 1e-7)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --perturb")
    ap.add_argument("--split-attention", action="store_true",
                    help="attention as [quantized | full] partial matmuls, like the reference code")
    args = ap.parse_args()
    if args.group_size != args.residual:
        raise SystemExit("this script assumes group_size == residual_length (32), as the reference")
    {"eval": cmd_eval, "validate": cmd_validate, "summarize": cmd_summarize}[args.command](args)


if __name__ == "__main__":
    main()
