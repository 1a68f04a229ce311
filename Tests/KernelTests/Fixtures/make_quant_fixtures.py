#!/usr/bin/env python3
"""Writes the external reference vectors for the CKernels block formats.

For every tensor type, a few rows are encoded and decoded with gguf-py (`pip install gguf`,
the numpy implementation shipped with llama.cpp), independently of our C code:

  <name>.blocks   raw GGUF bytes of ROWS rows of COLS elements (row-major, blocks back to back)
  <name>.f32      gguf-py's dequantization of those bytes, little-endian float32
  f16.src.f32     the float32 input that was converted to F16 (numpy's round-to-nearest-even)
  manifest.json   type ids, shapes, file names, generator versions

F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are quantized from seeded random data by
gguf.quants.quantize. gguf-py has no quantizer for Q4_K, Q5_K and Q6_K (only dequantizers):
their blocks are seeded random bytes, which are all valid blocks, except that the f16 super-block
scales d (and dmin) are set to finite values of realistic size. Random bytes exercise every bit
of the packed 6-bit scales/mins and of the high-bit planes. gguf-py then dequantizes them.

Run from anywhere: python3 Tests/KernelTests/Fixtures/make_quant_fixtures.py
The output is deterministic for a given gguf/numpy version.
"""
import json
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20260401
ROWS = 4
COLS = 512  # a multiple of 256, so every type (k-quants included) fits a row
OUT = os.path.dirname(os.path.abspath(__file__))

QUANTIZED = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
RANDOM_BYTES = [T.Q4_K, T.Q5_K, T.Q6_K]


def source_rows(rng: np.random.Generator) -> np.ndarray:
    """Rows of different magnitudes, with outliers, an all-zero block and a constant block."""
    scales = np.array([1e-3, 0.05, 1.0, 30.0], dtype=np.float32)[:ROWS, None]
    data = rng.standard_normal((ROWS, COLS)).astype(np.float32) * scales
    data[1, rng.integers(0, COLS, 8)] *= 25.0        # outliers
    data[0, :32] = 0.0                                # d == 0 block
    data[2, 32:64] = np.float32(0.375)                # constant block: max == min
    data[3, 64:96] = -np.abs(data[3, 64:96])          # all-negative block
    return data


def f16_specials(rng: np.random.Generator) -> np.ndarray:
    """A row of values that probe f32 -> f16 rounding: exact halfway cases (normal and
    subnormal, both parities), values next to them, overflow and underflow boundaries."""
    h = rng.integers(0, 0x7BFF, 96, dtype=np.uint16)              # finite f16, below the max
    lo = h.view(np.float16).astype(np.float32)
    hi = (h + 1).view(np.float16).astype(np.float32)
    mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)  # exact in f32
    sub = rng.integers(0, 0x3FF, 32, dtype=np.uint16)              # subnormal f16 codes
    slo = sub.view(np.float16).astype(np.float32)
    shi = (sub + 1).view(np.float16).astype(np.float32)
    smid = ((slo.astype(np.float64) + shi.astype(np.float64)) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))])
    edges = np.array([65504.0, 65519.996, 65520.0, 65536.0, 1e6, np.inf, 2.0**-24, 2.0**-25,
                      np.nextafter(np.float32(2.0**-25), np.float32(1)), 2.0**-26, 1e-30, 0.0,
                      6.1035156e-05, 6.097555e-05, 2.0**-14 - 2.0**-25, 3.0 * 2.0**-25],
                     dtype=np.float32)
    row = np.concatenate([mid, smid, near, edges, -mid[:32], -edges]).astype(np.float32)
    assert row.size <= COLS
    row = np.concatenate([row, rng.standard_normal(COLS - row.size).astype(np.float32) * 1e-5])
    return row


def random_kquant_blocks(rng: np.random.Generator, qtype: T) -> np.ndarray:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = ROWS * COLS // block_size
    raw = rng.integers(0, 256, (nblocks, type_size), dtype=np.uint8)
    d = (rng.uniform(2e-4, 4e-2, nblocks) * rng.choice([1.0, -1.0], nblocks)).astype(np.float16)
    d[0] = 0.0                                              # a block with d == 0
    if qtype == T.Q6_K:
        raw[:, 208:210] = d.view(np.uint8).reshape(nblocks, 2)
    else:
        dmin = rng.uniform(1e-4, 2e-2, nblocks).astype(np.float16)
        raw[:, 0:2] = d.view(np.uint8).reshape(nblocks, 2)
        raw[:, 2:4] = dmin.view(np.uint8).reshape(nblocks, 2)
        raw[1, 4:16] = 0xFF                                 # all 6-bit scales and mins = 63
    return raw.reshape(ROWS, -1)


def main() -> None:
    rng = np.random.default_rng(SEED)
    entries = []
    for qtype in QUANTIZED + RANDOM_BYTES:
        name = qtype.name.lower()
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        entry = {"name": qtype.name, "type": int(qtype), "block_size": block_size, "type_size": type_size,
                 "rows": ROWS, "cols": COLS, "blocks": f"{name}.blocks", "values": f"{name}.f32"}
        if qtype in RANDOM_BYTES:
            blocks = random_kquant_blocks(rng, qtype)
            entry["origin"] = "random block bytes with finite f16 scales"
        else:
            src = source_rows(rng)
            if qtype == T.F16:
                src[3] = f16_specials(rng)
                src.astype("<f4").tofile(os.path.join(OUT, "f16.src.f32"))
                entry["source"] = "f16.src.f32"
            with np.errstate(over="ignore"):  # the F16 row holds values that overflow to inf on purpose
                blocks = quants.quantize(src, qtype).view(np.uint8).reshape(ROWS, -1)
            entry["origin"] = "gguf.quants.quantize of seeded random rows"
        values = quants.dequantize(blocks, qtype).reshape(ROWS, COLS).astype(np.float32)
        assert blocks.shape[1] == COLS // block_size * type_size
        np.ascontiguousarray(blocks).tofile(os.path.join(OUT, entry["blocks"]))
        values.astype("<f4").tofile(os.path.join(OUT, entry["values"]))
        entries.append(entry)
    manifest = {
        "generator": "make_quant_fixtures.py",
        "gguf_version": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "numpy_version": np.__version__,
        "seed": SEED,
        "types": entries,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def _dist_version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


if __name__ == "__main__":
    main()
