// GGML k-quant super-blocks of 256 elements: Q4_K, Q5_K and Q6_K.
//
//   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}            8 sub-blocks of 32
//   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} 8 sub-blocks of 32
//        x = (d * sc_j) * q - (dmin * m_j), sc_j and m_j 6-bit (scale_min_k4 below)
//        q: sub-block j = 2g + h takes qs[32g + l] (l < 32), low nibble for h = 0, high for h = 1;
//        Q5_K adds bit j of qh[l] as bit 4.
//   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}       16 sub-blocks of 16
//        x = (d * scales[e / 16]) * (q - 32); element e = 128h + 32g + l (h < 2, g < 4, l < 32):
//        low 4 bits from ql[64h + 32(g & 1) + l] (low nibble for g < 2, high for g >= 2),
//        high 2 bits from qh[32h + l] >> 2g.
//
// Dot products with f32 activations. Q4_K/Q5_K: per sub-block j and token, s = sum q x in 8 lanes,
// acc[j & 1] += (d sc_j) * s, then acc[j & 1] += -(dmin m_j) * xsum lanes (the minimum term folded
// lane-wise, as Q4_1 does). Q6_K: per pair of 16-element sub-blocks, acc[0] += (d sc_A) * s_A and
// acc[1] += (d sc_B) * s_B. The scalar kernels repeat the AVX2 lane arithmetic exactly.
#include <math.h>
#include <string.h>
#include "sq_simd.h"

#pragma STDC FP_CONTRACT OFF

#define QK 256

// 6-bit scale and minimum of sub-block j (0..7) from the 12 packed bytes:
// bytes 0-3: scales 0-3 (low 6 bits), high 2 bits = bits 4-5 of scales 4-7;
// bytes 4-7: mins 0-3 (low 6 bits), high 2 bits = bits 4-5 of mins 4-7;
// bytes 8-11: low nibble = bits 0-3 of scales 4-7, high nibble = bits 0-3 of mins 4-7.
static inline void scale_min_k4(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Per-sub-block multipliers dl[j] = d * sc_j and ml[j] = dmin * m_j (each one rounding, as in GGML).
static inline void k4_scales(uint16_t d16, uint16_t dmin16, const uint8_t *scales, float dl[8], float ml[8]) {
    float d = sq_h2f(d16), dmin = sq_h2f(dmin16);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        dl[j] = d * (float)sc;
        ml[j] = dmin * (float)m;
    }
}

// ---------------------------------------------------------------- reference dequantizers

static void deq_q4_K_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q4_K *blk = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q4_K *k = &blk[i / QK];
        int e = (int)(i % QK), j = e / 32, l = e % 32;
        int sc, m;
        scale_min_k4(j, k->scales, &sc, &m);
        uint8_t byte = k->qs[32 * (j / 2) + l];
        int q = (j & 1) ? byte >> 4 : byte & 0x0F;
        float dl = sq_h2f(k->d) * (float)sc, ml = sq_h2f(k->dmin) * (float)m;
        float dq = dl * (float)q;
        dst[i] = dq - ml;
    }
}

static void deq_q5_K_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q5_K *blk = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q5_K *k = &blk[i / QK];
        int e = (int)(i % QK), j = e / 32, l = e % 32;
        int sc, m;
        scale_min_k4(j, k->scales, &sc, &m);
        uint8_t byte = k->qs[32 * (j / 2) + l];
        int q = ((j & 1) ? byte >> 4 : byte & 0x0F) | (((k->qh[l] >> j) & 1) << 4);
        float dl = sq_h2f(k->d) * (float)sc, ml = sq_h2f(k->dmin) * (float)m;
        float dq = dl * (float)q;
        dst[i] = dq - ml;
    }
}

static void deq_q6_K_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q6_K *blk = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q6_K *k = &blk[i / QK];
        int e = (int)(i % QK), h = e / 128, g = (e % 128) / 32, l = e % 32;
        uint8_t byte = k->ql[64 * h + 32 * (g & 1) + l];
        int lo = g >= 2 ? byte >> 4 : byte & 0x0F;
        int hi = (k->qh[32 * h + l] >> (2 * g)) & 3;
        float dl = sq_h2f(k->d) * (float)k->scales[e / 16];
        dst[i] = dl * (float)((lo | (hi << 4)) - 32);
    }
}

// ---------------------------------------------------------------- scalar code decoding

// q[32]: codes of sub-block j of a Q4_K / Q5_K block (Q4_K: qh == NULL).
static inline void codes_k_sub(const uint8_t *qs, const uint8_t *qh, int j, float q[32]) {
    const uint8_t *p = qs + 32 * (j / 2);
    for (int l = 0; l < 32; l++) {
        int v = (j & 1) ? p[l] >> 4 : p[l] & 0x0F;
        if (qh) v |= ((qh[l] >> j) & 1) << 4;
        q[l] = (float)v;
    }
}

// q[32]: signed codes (q - 32) of elements 128h + 32g + [0, 32) of a Q6_K block.
static inline void codes_q6_K_quarter(const sq_block_q6_K *k, int h, int g, float q[32]) {
    const uint8_t *ql = k->ql + 64 * h + 32 * (g & 1), *qh = k->qh + 32 * h;
    for (int l = 0; l < 32; l++) {
        int lo = g >= 2 ? ql[l] >> 4 : ql[l] & 0x0F;
        int hi = (qh[l] >> (2 * g)) & 3;
        q[l] = (float)((lo | (hi << 4)) - 32);
    }
}

// ---------------------------------------------------------------- scalar kernels

static void dot_k_scalar(const uint8_t *base, size_t stride, size_t off_scales, size_t off_qh, size_t off_qs,
                         const float *x, int64_t xs, const float *xsum, int ntok, int64_t n, float *out) {
    const int64_t nb = n / QK, nb32 = n / 32;
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + t * xs;
        const float *st = xsum + t * nb32 * 8;
        float acc[2][8] = {{0}};
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *k = base + (size_t)b * stride;
            uint16_t d16, dmin16;
            memcpy(&d16, k, 2);
            memcpy(&dmin16, k + 2, 2);
            float dl[8], ml[8];
            k4_scales(d16, dmin16, k + off_scales, dl, ml);
            for (int j = 0; j < 8; j++) {
                float q[32];
                codes_k_sub(k + off_qs, off_qh ? k + off_qh : NULL, j, q);
                sq_block_fma8(acc[j & 1], dl[j], q, xt + b * QK + 32 * j);
                sq_lane_fma8(acc[j & 1], -ml[j], st + (b * 8 + j) * 8);
            }
        }
        out[t] = sq_finish8(acc);
    }
}

static void dot_q4_K_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    dot_k_scalar(row, sizeof(sq_block_q4_K), offsetof(sq_block_q4_K, scales), 0, offsetof(sq_block_q4_K, qs), x, xs,
                 xsum, ntok, n, out);
}

static void dot_q5_K_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    dot_k_scalar(row, sizeof(sq_block_q5_K), offsetof(sq_block_q5_K, scales), offsetof(sq_block_q5_K, qh),
                 offsetof(sq_block_q5_K, qs), x, xs, xsum, ntok, n, out);
}

static void dot_q6_K_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    (void)xsum;
    const sq_block_q6_K *blk = row;
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + t * xs;
        float acc[2][8] = {{0}};
        for (int64_t b = 0; b < n / QK; b++) {
            float d = sq_h2f(blk[b].d);
            for (int h = 0; h < 2; h++)
                for (int g = 0; g < 4; g++) {
                    float q[32];
                    codes_q6_K_quarter(&blk[b], h, g, q);
                    const float *p = xt + b * QK + 128 * h + 32 * g;
                    float da = d * (float)blk[b].scales[8 * h + 2 * g], db = d * (float)blk[b].scales[8 * h + 2 * g + 1];
                    for (int j = 0; j < 8; j++) {
                        float sa = fmaf(q[8 + j], p[8 + j], q[j] * p[j]);
                        float sb = fmaf(q[24 + j], p[24 + j], q[16 + j] * p[16 + j]);
                        acc[0][j] = fmaf(da, sa, acc[0][j]);
                        acc[1][j] = fmaf(db, sb, acc[1][j]);
                    }
                }
        }
        out[t] = sq_finish8(acc);
    }
}

// ---------------------------------------------------------------- scalar fast dequantizers

static void deq_k_scalar(const uint8_t *base, size_t stride, size_t off_scales, size_t off_qh, size_t off_qs,
                         float *dst, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *k = base + (size_t)b * stride;
        uint16_t d16, dmin16;
        memcpy(&d16, k, 2);
        memcpy(&dmin16, k + 2, 2);
        float dl[8], ml[8];
        k4_scales(d16, dmin16, k + off_scales, dl, ml);
        for (int j = 0; j < 8; j++) {
            float q[32];
            codes_k_sub(k + off_qs, off_qh ? k + off_qh : NULL, j, q);
            for (int l = 0; l < 32; l++) {
                float dq = dl[j] * q[l];
                dst[b * QK + 32 * j + l] = dq - ml[j];
            }
        }
    }
}

static void deq_q4_K_scalar(const void *src, float *dst, int64_t n) {
    deq_k_scalar(src, sizeof(sq_block_q4_K), offsetof(sq_block_q4_K, scales), 0, offsetof(sq_block_q4_K, qs), dst, n);
}
static void deq_q5_K_scalar(const void *src, float *dst, int64_t n) {
    deq_k_scalar(src, sizeof(sq_block_q5_K), offsetof(sq_block_q5_K, scales), offsetof(sq_block_q5_K, qh),
                 offsetof(sq_block_q5_K, qs), dst, n);
}
static void deq_q6_K_scalar(const void *src, float *dst, int64_t n) {
    const sq_block_q6_K *blk = src;
    for (int64_t b = 0; b < n / QK; b++) {
        float d = sq_h2f(blk[b].d);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++) {
                float q[32];
                codes_q6_K_quarter(&blk[b], h, g, q);
                float da = d * (float)blk[b].scales[8 * h + 2 * g], db = d * (float)blk[b].scales[8 * h + 2 * g + 1];
                float *y = dst + b * QK + 128 * h + 32 * g;
                for (int l = 0; l < 16; l++) y[l] = da * q[l];
                for (int l = 16; l < 32; l++) y[l] = db * q[l];
            }
    }
}

// ---------------------------------------------------------------- AVX2 kernels

#if SQ_X86
// Codes of sub-block j of a Q4_K/Q5_K block as four vectors of 8 floats (elements 0-7, ..., 24-31).
// qh == NULL for Q4_K. Decoded 32 bytes at a time: 16-bit shifts move bits across the two bytes of
// a lane, but the byte masks keep only each byte's own bits.
SQ_AVX2 SQ_ALWAYS_INLINE void codes_k_sub_avx2(const uint8_t *qs, const uint8_t *qh, int j, __m256 q[4]) {
    __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));
    __m256i v = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(4 * (j & 1))), _mm256_set1_epi8(0x0F));
    if (qh) {
        __m256i h = _mm256_loadu_si256((const __m256i *)qh);  // bit j of byte l -> bit 4
        h = _mm256_slli_epi16(_mm256_srl_epi16(h, _mm_cvtsi32_si128(j)), 4);
        v = _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
    u8x32_to_ps(v, q);
}

// Signed codes (q - 32) of elements 128h + 32g + [0, 32) of a Q6_K block.
SQ_AVX2 SQ_ALWAYS_INLINE void codes_q6_K_quarter_avx2(const sq_block_q6_K *k, int h, int g, __m256 q[4]) {
    __m256i l = _mm256_loadu_si256((const __m256i *)(k->ql + 64 * h + 32 * (g & 1)));
    __m256i hh = _mm256_loadu_si256((const __m256i *)(k->qh + 32 * h));
    l = _mm256_and_si256(_mm256_srl_epi16(l, _mm_cvtsi32_si128(g >= 2 ? 4 : 0)), _mm256_set1_epi8(0x0F));
    hh = _mm256_slli_epi16(_mm256_srl_epi16(hh, _mm_cvtsi32_si128(2 * g)), 4);  // bits 2g, 2g+1 -> 4, 5
    hh = _mm256_and_si256(hh, _mm256_set1_epi8(0x30));
    i8x32_to_ps(_mm256_sub_epi8(_mm256_or_si256(l, hh), _mm256_set1_epi8(32)), q);
}

SQ_AVX2 SQ_ALWAYS_INLINE void k4_scales_avx2(uint16_t d16, uint16_t dmin16, const uint8_t *scales, float dl[8],
                                             float ml[8]) {
    float d = sq_h2f_f16c(d16), dmin = sq_h2f_f16c(dmin16);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        dl[j] = d * (float)sc;
        ml[j] = dmin * (float)m;
    }
}

#define SQ_K_AVX2_BODY(NAME, BLOCK, QH)                                                                                \
    SQ_AVX2 SQ_ALWAYS_INLINE void NAME##_body(const void *row, const float *x, int64_t xs, const float *xsum,          \
                                              int ntok, int64_t n, float *out) {                                       \
        const BLOCK *blk = row;                                                                                        \
        const int64_t nb = n / QK, nb32 = n / 32;                                                                      \
        __m256 acc[SQ_TILE][2];                                                                                        \
        for (int t = 0; t < ntok; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();                                    \
        for (int64_t b = 0; b < nb; b++) {                                                                             \
            float dl[8], ml[8];                                                                                        \
            k4_scales_avx2(blk[b].d, blk[b].dmin, blk[b].scales, dl, ml);                                              \
            for (int j = 0; j < 8; j++) {                                                                              \
                __m256 q[4];                                                                                           \
                codes_k_sub_avx2(blk[b].qs, QH, j, q);                                                                 \
                __m256 d = _mm256_set1_ps(dl[j]);                                                                      \
                for (int t = 0; t < ntok; t++) {                                                                       \
                    __m256 a = sq_block_fma_avx2(acc[t][j & 1], d, q, x + t * xs + b * QK + 32 * j);                   \
                    acc[t][j & 1] = sq_lane_fma_avx2(a, -ml[j], xsum + t * nb32 * 8 + (b * 8 + j) * 8);                \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
        for (int t = 0; t < ntok; t++) out[t] = sq_hsum256(_mm256_add_ps(acc[t][0], acc[t][1]));                       \
    }
SQ_K_AVX2_BODY(dot_q4_K_avx2, sq_block_q4_K, NULL)
SQ_K_AVX2_BODY(dot_q5_K_avx2, sq_block_q5_K, blk[b].qh)
SQ_DOT_DISPATCH(dot_q4_K_avx2)
SQ_DOT_DISPATCH(dot_q5_K_avx2)

SQ_AVX2 SQ_ALWAYS_INLINE void dot_q6_K_avx2_body(const void *row, const float *x, int64_t xs, const float *xsum,
                                                 int ntok, int64_t n, float *out) {
    (void)xsum;
    const sq_block_q6_K *blk = row;
    __m256 acc[SQ_TILE][2];
    for (int t = 0; t < ntok; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        float d = sq_h2f_f16c(blk[b].d);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++) {
                __m256 q[4];
                codes_q6_K_quarter_avx2(&blk[b], h, g, q);
                __m256 da = _mm256_set1_ps(d * (float)blk[b].scales[8 * h + 2 * g]);
                __m256 db = _mm256_set1_ps(d * (float)blk[b].scales[8 * h + 2 * g + 1]);
                for (int t = 0; t < ntok; t++) {
                    const float *p = x + t * xs + b * QK + 128 * h + 32 * g;
                    __m256 sa = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(p + 8), _mm256_mul_ps(q[0], _mm256_loadu_ps(p)));
                    __m256 sb = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(p + 24), _mm256_mul_ps(q[2], _mm256_loadu_ps(p + 16)));
                    acc[t][0] = _mm256_fmadd_ps(da, sa, acc[t][0]);
                    acc[t][1] = _mm256_fmadd_ps(db, sb, acc[t][1]);
                }
            }
    }
    for (int t = 0; t < ntok; t++) out[t] = sq_hsum256(_mm256_add_ps(acc[t][0], acc[t][1]));
}
SQ_DOT_DISPATCH(dot_q6_K_avx2)

// Fast dequantizers: (dl * q) - ml and dl * (q - 32), the same roundings as the references.
#define SQ_K_AVX2_DEQ(NAME, BLOCK, QH)                                                                                 \
    SQ_AVX2 static void NAME(const void *src, float *dst, int64_t n) {                                                 \
        const BLOCK *blk = src;                                                                                        \
        for (int64_t b = 0; b < n / QK; b++) {                                                                         \
            float dl[8], ml[8];                                                                                        \
            k4_scales_avx2(blk[b].d, blk[b].dmin, blk[b].scales, dl, ml);                                              \
            for (int j = 0; j < 8; j++) {                                                                              \
                __m256 q[4];                                                                                           \
                codes_k_sub_avx2(blk[b].qs, QH, j, q);                                                                 \
                __m256 d = _mm256_set1_ps(dl[j]), m = _mm256_set1_ps(ml[j]);                                           \
                for (int k = 0; k < 4; k++)                                                                            \
                    _mm256_storeu_ps(dst + b * QK + 32 * j + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d, q[k]), m));         \
            }                                                                                                          \
        }                                                                                                              \
    }
SQ_K_AVX2_DEQ(deq_q4_K_avx2, sq_block_q4_K, NULL)
SQ_K_AVX2_DEQ(deq_q5_K_avx2, sq_block_q5_K, blk[b].qh)

SQ_AVX2 static void deq_q6_K_avx2(const void *src, float *dst, int64_t n) {
    const sq_block_q6_K *blk = src;
    for (int64_t b = 0; b < n / QK; b++) {
        float d = sq_h2f_f16c(blk[b].d);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++) {
                __m256 q[4];
                codes_q6_K_quarter_avx2(&blk[b], h, g, q);
                __m256 da = _mm256_set1_ps(d * (float)blk[b].scales[8 * h + 2 * g]);
                __m256 db = _mm256_set1_ps(d * (float)blk[b].scales[8 * h + 2 * g + 1]);
                float *y = dst + b * QK + 128 * h + 32 * g;
                _mm256_storeu_ps(y, _mm256_mul_ps(da, q[0]));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(da, q[1]));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(db, q[2]));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(db, q[3]));
            }
    }
}
#endif

// ---------------------------------------------------------------- type table

#if SQ_X86
#define SQ_DEQ_DISPATCH(NAME)                                                                                          \
    static void NAME(const void *src, float *dst, int64_t n) {                                                         \
        if (sq_use_avx2()) NAME##_avx2(src, dst, n);                                                                   \
        else NAME##_scalar(src, dst, n);                                                                               \
    }
#define AVX2_OR_NULL(f) f
#else
#define SQ_DEQ_DISPATCH(NAME)                                                                                          \
    static void NAME(const void *src, float *dst, int64_t n) { NAME##_scalar(src, dst, n); }
#define AVX2_OR_NULL(f) NULL
#endif
SQ_DEQ_DISPATCH(deq_q4_K)
SQ_DEQ_DISPATCH(deq_q5_K)
SQ_DEQ_DISPATCH(deq_q6_K)

const sq_type_traits sq_traits_q4_K = {QK, 144, deq_q4_K, deq_q4_K_ref, AVX2_OR_NULL(dot_q4_K_avx2), dot_q4_K_scalar};
const sq_type_traits sq_traits_q5_K = {QK, 176, deq_q5_K, deq_q5_K_ref, AVX2_OR_NULL(dot_q5_K_avx2), dot_q5_K_scalar};
const sq_type_traits sq_traits_q6_K = {QK, 210, deq_q6_K, deq_q6_K_ref, AVX2_OR_NULL(dot_q6_K_avx2), dot_q6_K_scalar};
