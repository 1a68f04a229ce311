// Attention that reads 2/4/8-bit packed KV codes directly (SQuat and KIVI caches), never a
// dequantized copy of the cache.
//
// Packed layout of one token's D codes of `bits` bits: D*bits/8 bytes; with k = 8/bits codes per
// byte and w = D/k bytes, byte i holds the code of channel i + j*w at bit j*bits (j < k).
// Keys: codes per token, scale/min (f16) per channel per group of `key_group` tokens.
// Values: codes per token, scale/min (f16) per token per group of `value_group` channels.
#include <math.h>
#include <string.h>
#include "sq_internal.h"

void sq_pack_codes(const uint8_t *codes, int D, int bits, uint8_t *out) {
    const int k = 8 / bits, w = D / k;
    for (int i = 0; i < w; i++) {
        uint8_t b = 0;
        for (int j = 0; j < k; j++) b |= (uint8_t)(codes[i + j * w] << (j * bits));
        out[i] = b;
    }
}

void sq_unpack_codes(const uint8_t *packed, int D, int bits, uint8_t *codes) {
    const int k = 8 / bits, w = D / k;
    const uint8_t mask = (uint8_t)((1u << bits) - 1);
    for (int i = 0; i < w; i++)
        for (int j = 0; j < k; j++) codes[i + j * w] = (packed[i] >> (j * bits)) & mask;
}

// A scale or minimum stored as f32 or f16.
static inline float load_scale(const void *p, int64_t i, int f32) {
    return f32 ? ((const float *)p)[i] : sq_f16_to_f32(((const uint16_t *)p)[i]);
}

// Dequantized key of one token into k[D] (scalar), rotated by RoPE (halves layout) if cs given.
static inline void key_scalar(const uint8_t *packed, int D, int bits, const float *s, const float *m, const float *c,
                              const float *sn, float *k) {
    uint8_t codes[256];
    sq_unpack_codes(packed, D, bits, codes);
    for (int i = 0; i < D; i++) k[i] = fmaf((float)codes[i], s[i], m[i]);
    if (c) {
        const int h = D / 2;
        for (int i = 0; i < h; i++) {
            float a = k[i], b = k[i + h];
            k[i] = fmaf(a, c[i], -b * sn[i]);
            k[i + h] = fmaf(a, sn[i], b * c[i]);
        }
    }
}

static inline float dot_scalar8(const float *q, const float *k, int D) {
    float acc[8] = {0};
    for (int i = 0; i < D; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = fmaf(q[i + j], k[i + j], acc[j]);
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    return (a0 + a2) + (a1 + a3);
}

#if SQ_X86
SQ_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

SQ_AVX2 static inline __m256 load8_scale(const void *p, int64_t i, int f32) {
    return f32 ? _mm256_loadu_ps((const float *)p + i) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}

// Unpacks one token's codes into floats c[D/8] (ymm), for bits 2 or 4 (D multiple of 32).
SQ_AVX2 static inline void unpack_avx2(const uint8_t *packed, int D, int bits, __m256 *c) {
    const int k = 8 / bits, w = D / k;
    const __m128i mask = _mm_set1_epi8((char)((1 << bits) - 1));
    for (int off = 0; off < w; off += 16) {  // 16 bytes at a time (w is 16, 32, ...)
        int n = w - off < 16 ? w - off : 16;
        __m128i raw;
        if (n == 16) {
            raw = _mm_loadu_si128((const __m128i *)(packed + off));
        } else {
            uint8_t tmp[16] = {0};
            memcpy(tmp, packed + off, (size_t)n);
            raw = _mm_loadu_si128((const __m128i *)tmp);
        }
        for (int j = 0; j < k; j++) {
            __m128i v = _mm_and_si128(_mm_srli_epi16(raw, j * bits), mask);
            int ch = off + j * w;  // channel of byte `off` for code j
            c[ch / 8] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            if (n > 8) c[ch / 8 + 1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
        }
    }
}
#endif

#if SQ_X86
SQ_AVX2 static void scores_packed_avx2(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                           const void *kmin, int scale_f32, int key_group, int64_t first_group_offset, const float *rope_cos,
                           const float *rope_sin, int64_t n, float scale, float *scores, int64_t score_stride) {
    const int pb = D * bits / 8;
    const int h = D / 2;
    __m256 s[32], m[32];
    int64_t group = -1;
    for (int64_t t = 0; t < n; t++) {
        int64_t gi = (first_group_offset + t) / key_group;
        if (gi != group) {
            group = gi;
            for (int v = 0; v < D / 8; v++) {
                s[v] = load8_scale(kscale, gi * D + v * 8, scale_f32);
                m[v] = load8_scale(kmin, gi * D + v * 8, scale_f32);
            }
        }
        __m256 k[32];
        unpack_avx2(codes + t * pb, D, bits, k);
        for (int v = 0; v < D / 8; v++) k[v] = _mm256_fmadd_ps(k[v], s[v], m[v]);
        if (rope_cos) {
            const float *c = rope_cos + t * h, *sn = rope_sin + t * h;
            for (int v = 0; v < h / 8; v++) {
                __m256 cv = _mm256_loadu_ps(c + v * 8), sv = _mm256_loadu_ps(sn + v * 8);
                __m256 a = k[v], b = k[v + h / 8];
                k[v] = _mm256_fmadd_ps(a, cv, _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), b), sv));
                k[v + h / 8] = _mm256_fmadd_ps(a, sv, _mm256_mul_ps(b, cv));
            }
        }
        for (int j = 0; j < g; j++) {
            const float *qj = q + j * D;
            __m256 acc = _mm256_setzero_ps();
            for (int v = 0; v < D / 8; v++) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qj + v * 8), k[v], acc);
            scores[j * score_stride + t] = hsum8(acc) * scale;
        }
    }
}
#endif

void sq_scores_packed_keys(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                           const void *kmin, int scale_f32, int key_group, int64_t first_group_offset, const float *rope_cos,
                           const float *rope_sin, int64_t n, float scale, float *scores, int64_t score_stride) {
    const int pb = D * bits / 8;
    const int h = D / 2;
#if SQ_X86
    if (sq_use_avx2() && (bits == 2 || bits == 4) && D % 32 == 0 && D <= 256) {
        scores_packed_avx2(q, g, D, codes, bits, kscale, kmin, scale_f32, key_group, first_group_offset, rope_cos, rope_sin, n,
                           scale, scores, score_stride);
        return;
    }
#endif
    float s[256], m[256], k[256];
    int64_t group = -1;
    for (int64_t t = 0; t < n; t++) {
        int64_t gi = (first_group_offset + t) / key_group;
        if (gi != group) {
            group = gi;
            for (int i = 0; i < D; i++) {
                s[i] = load_scale(kscale, gi * D + i, scale_f32);
                m[i] = load_scale(kmin, gi * D + i, scale_f32);
            }
        }
        key_scalar(codes + t * pb, D, bits, s, m, rope_cos ? rope_cos + t * h : NULL, rope_sin ? rope_sin + t * h : NULL, k);
        for (int j = 0; j < g; j++) scores[j * score_stride + t] = dot_scalar8(q + j * D, k, D) * scale;
    }
}

#if SQ_X86
SQ_AVX2 static void scores_f32_avx2(const float *q, int g, int D, const float *keys, int64_t n, float scale, float *scores,
                                    int64_t score_stride) {
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < g; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < D; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + j * D + i), _mm256_loadu_ps(keys + t * D + i), acc);
            scores[j * score_stride + t] = hsum8(acc) * scale;
        }
}
SQ_AVX2 static void values_f32_avx2(const float *p, int64_t p_stride, int g, int D, const float *values, int64_t n,
                                    float *out) {
    for (int j = 0; j < g; j++)
        for (int64_t t = 0; t < n; t++) {
            __m256 w = _mm256_set1_ps(p[j * p_stride + t]);
            for (int i = 0; i < D; i += 8)
                _mm256_storeu_ps(out + j * D + i,
                                 _mm256_fmadd_ps(w, _mm256_loadu_ps(values + t * D + i), _mm256_loadu_ps(out + j * D + i)));
        }
}
#endif

void sq_scores_f32_keys(const float *q, int g, int D, const float *keys, int64_t n, float scale, float *scores,
                        int64_t score_stride) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0) {
        scores_f32_avx2(q, g, D, keys, n, scale, scores, score_stride);
        return;
    }
#endif
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < g; j++) scores[j * score_stride + t] = dot_scalar8(q + j * D, keys + t * D, D) * scale;
}

#if SQ_X86
SQ_AVX2 static void values_packed_avx2(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                 const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n, float *out) {
    const int pb = D * bits / 8;
    const int ng = D / value_group;
    const int per = value_group / 8;  // ymm per channel group
    float mterm[8 * 32];              // [j][group]: sum_t p * min, added once at the end
    for (int i = 0; i < g * ng; i++) mterm[i] = 0;
    for (int64_t t = 0; t < n; t++) {
        __m256 c[32];
        unpack_avx2(codes + t * pb, D, bits, c);  // once per token, shared by the g query heads
        for (int gi = 0; gi < ng; gi++) {
            float sc = scale_f32 ? ((const float *)vscale)[t * ng + gi] : _cvtsh_ss(((const uint16_t *)vscale)[t * ng + gi]);
            float mn = scale_f32 ? ((const float *)vmin)[t * ng + gi] : _cvtsh_ss(((const uint16_t *)vmin)[t * ng + gi]);
            for (int j = 0; j < g; j++) {
                float pt = p[j * p_stride + t];
                __m256 w = _mm256_set1_ps(pt * sc);
                float *o = out + j * D;
                for (int v = gi * per; v < (gi + 1) * per; v++)
                    _mm256_storeu_ps(o + v * 8, _mm256_fmadd_ps(w, c[v], _mm256_loadu_ps(o + v * 8)));
                mterm[j * ng + gi] = fmaf(pt, mn, mterm[j * ng + gi]);
            }
        }
    }
    for (int j = 0; j < g; j++)
        for (int gi = 0; gi < ng; gi++) {
            __m256 u = _mm256_set1_ps(mterm[j * ng + gi]);
            float *o = out + j * D;
            for (int v = gi * per; v < (gi + 1) * per; v++) _mm256_storeu_ps(o + v * 8, _mm256_add_ps(_mm256_loadu_ps(o + v * 8), u));
        }
}
#endif

void sq_accumulate_packed_values(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                 const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n, float *out) {
    const int pb = D * bits / 8;
    const int ng = D / value_group;
#if SQ_X86
    if (sq_use_avx2() && (bits == 2 || bits == 4) && D % 32 == 0 && D <= 256 && value_group % 8 == 0 &&
        g * (D / value_group) <= 256) {
        values_packed_avx2(p, p_stride, g, D, codes, bits, vscale, vmin, scale_f32, value_group, n, out);
        return;
    }
#endif
    uint8_t c[256];
    for (int64_t t = 0; t < n; t++) {
        sq_unpack_codes(codes + t * pb, D, bits, c);
        for (int j = 0; j < g; j++) {
            float pt = p[j * p_stride + t];
            for (int gi = 0; gi < ng; gi++) {
                float w = pt * load_scale(vscale, t * ng + gi, scale_f32), u = pt * load_scale(vmin, t * ng + gi, scale_f32);
                for (int i = gi * value_group; i < (gi + 1) * value_group; i++) out[j * D + i] += fmaf(w, (float)c[i], u);
            }
        }
    }
}

void sq_accumulate_f32_values(const float *p, int64_t p_stride, int g, int D, const float *values, int64_t n,
                              float *out) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0) {
        values_f32_avx2(p, p_stride, g, D, values, n, out);
        return;
    }
#endif
    for (int j = 0; j < g; j++)
        for (int64_t t = 0; t < n; t++) {
            float pt = p[j * p_stride + t];
            for (int i = 0; i < D; i++) out[j * D + i] = fmaf(pt, values[t * D + i], out[j * D + i]);
        }
}

void sq_rope_table(float *x, int D, const float *c, const float *sn) {
    const int h = D / 2;
    for (int i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        x[i] = a * c[i] - b * sn[i];
        x[i + h] = a * sn[i] + b * c[i];
    }
}
