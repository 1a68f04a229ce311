// Legacy GGML block formats of 32 elements: Q4_0, Q5_0 and Q5_1.
//
//   Q4_0  {f16 d; u8 qs[16]}           x = d * (q - 8)
//   Q5_0  {f16 d; u8 qh[4]; u8 qs[16]} x = d * (q - 16)
//   Q5_1  {f16 d, m; u8 qh[4]; u8 qs[16]} x = d * q + m
//
// Byte j of qs holds the low 4 bits of element j (low nibble) and of element j + 16 (high
// nibble). For the 5-bit formats bit i of the little-endian u32 qh is bit 4 of element i.
//
// Dot products take f32 activations. Per block and token: s = sum_j q_j x_j in 8 lanes
// (elements i, i+8, i+16, i+24 of lane i: s01 + s23), acc[b & 1] += d * s, and for Q5_1 then
// acc[b & 1] += m * xsum lanes, as in Q4_1. The scalar kernels repeat the AVX2 lane arithmetic
// exactly, so both paths give the same bits.
#include <math.h>
#include <string.h>
#include "sq_simd.h"

#pragma STDC FP_CONTRACT OFF

static inline uint32_t load_qh(const uint8_t qh[4]) {
    uint32_t v;
    memcpy(&v, qh, 4);
    return v;  // little-endian hosts only (as GGUF files are)
}

// Unsigned 4/5-bit code of element j (0..31) of a block.
static inline int nib(const uint8_t *qs, int j) { return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4); }
static inline int q5(const uint8_t *qs, uint32_t qh, int j) { return nib(qs, j) | (int)(((qh >> j) & 1) << 4); }

// ---------------------------------------------------------------- reference dequantizers

static void deq_q4_0_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q4_0 *k = &b[i / 32];
        dst[i] = sq_h2f(k->d) * (float)(nib(k->qs, (int)(i % 32)) - 8);
    }
}

static void deq_q5_0_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q5_0 *b = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q5_0 *k = &b[i / 32];
        dst[i] = sq_h2f(k->d) * (float)(q5(k->qs, load_qh(k->qh), (int)(i % 32)) - 16);
    }
}

static void deq_q5_1_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q5_1 *b = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q5_1 *k = &b[i / 32];
        float dq = sq_h2f(k->d) * (float)q5(k->qs, load_qh(k->qh), (int)(i % 32));
        dst[i] = dq + sq_h2f(k->m);  // two roundings, like GGML and gguf-py (no fused multiply-add)
    }
}

// ---------------------------------------------------------------- scalar kernels

// Decodes a block into q[32] (signed codes as float: exact).
static inline void codes_q4_0(const sq_block_q4_0 *k, float q[32]) {
    for (int j = 0; j < 32; j++) q[j] = (float)(nib(k->qs, j) - 8);
}
static inline void codes_q5_0(const sq_block_q5_0 *k, float q[32]) {
    uint32_t qh = load_qh(k->qh);
    for (int j = 0; j < 32; j++) q[j] = (float)(q5(k->qs, qh, j) - 16);
}
static inline void codes_q5_1(const sq_block_q5_1 *k, float q[32]) {
    uint32_t qh = load_qh(k->qh);
    for (int j = 0; j < 32; j++) q[j] = (float)q5(k->qs, qh, j);
}

#define SQ_LEGACY_SCALAR_DOT(NAME, BLOCK, CODES)                                                                       \
    static void NAME(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,              \
                     float *out) {                                                                                     \
        (void)xsum;                                                                                                    \
        const BLOCK *blk = row;                                                                                        \
        for (int t = 0; t < ntok; t++) {                                                                               \
            const float *xt = x + t * xs;                                                                              \
            float acc[2][8] = {{0}};                                                                                   \
            for (int64_t b = 0; b < n / 32; b++) {                                                                     \
                float q[32];                                                                                           \
                CODES(&blk[b], q);                                                                                     \
                sq_block_fma8(acc[b & 1], sq_h2f(blk[b].d), q, xt + b * 32);                                           \
            }                                                                                                          \
            out[t] = sq_finish8(acc);                                                                                  \
        }                                                                                                              \
    }
SQ_LEGACY_SCALAR_DOT(dot_q4_0_scalar, sq_block_q4_0, codes_q4_0)
SQ_LEGACY_SCALAR_DOT(dot_q5_0_scalar, sq_block_q5_0, codes_q5_0)

static void dot_q5_1_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    const sq_block_q5_1 *blk = row;
    const int64_t nb = n / 32;
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + t * xs;
        const float *st = xsum + t * nb * 8;
        float acc[2][8] = {{0}};
        for (int64_t b = 0; b < nb; b++) {
            float q[32];
            codes_q5_1(&blk[b], q);
            sq_block_fma8(acc[b & 1], sq_h2f(blk[b].d), q, xt + b * 32);
            sq_lane_fma8(acc[b & 1], sq_h2f(blk[b].m), st + b * 8);
        }
        out[t] = sq_finish8(acc);
    }
}

// ---------------------------------------------------------------- AVX2 kernels

#if SQ_X86
// Low 4 bits of the 32 codes of a block, element l in byte l: qs low nibbles (elements 0-15) in
// the low 128-bit lane, high nibbles (elements 16-31) in the high lane.
SQ_AVX2 SQ_ALWAYS_INLINE __m256i nibbles32(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// 0x10 in byte l where bit l of qh is set: each qh byte spread over 8 bytes, then one bit tested per byte.
SQ_AVX2 SQ_ALWAYS_INLINE __m256i high_bits32(const uint8_t *qhp) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)load_qh(qhp)), spread);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits), _mm256_set1_epi8(0x10));
}

// Q4_0 stays in 128-bit registers (measured faster than nibbles32 for it): 16 signed codes per half.
SQ_AVX2 SQ_ALWAYS_INLINE void codes_q4_0_avx2(const sq_block_q4_0 *k, __m256 q[4]) {
    const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m128i raw = _mm_loadu_si128((const __m128i *)k->qs);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, mask), eight);
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), eight);
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}
SQ_AVX2 SQ_ALWAYS_INLINE void codes_q5_0_avx2(const sq_block_q5_0 *k, __m256 q[4]) {
    __m256i v = _mm256_or_si256(nibbles32(k->qs), high_bits32(k->qh));
    i8x32_to_ps(_mm256_sub_epi8(v, _mm256_set1_epi8(16)), q);
}
SQ_AVX2 SQ_ALWAYS_INLINE void codes_q5_1_avx2(const sq_block_q5_1 *k, __m256 q[4]) {
    u8x32_to_ps(_mm256_or_si256(nibbles32(k->qs), high_bits32(k->qh)), q);
}

// Kernel bodies take ntok as a compile-time constant after inlining (see the dispatchers below):
// the accumulators then live in registers. Each token's arithmetic is the same whatever ntok is.
#define SQ_LEGACY_AVX2_BODY(NAME, BLOCK, CODES, HAS_MIN, MINF)                                                         \
    SQ_AVX2 SQ_ALWAYS_INLINE void NAME##_body(const void *row, const float *x, int64_t xs, const float *xsum,          \
                                              int ntok, int64_t n, float *out) {                                       \
        const BLOCK *blk = row;                                                                                        \
        const int64_t nb = n / 32;                                                                                     \
        __m256 acc[SQ_TILE][2];                                                                                        \
        for (int t = 0; t < ntok; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();                                    \
        for (int64_t b = 0; b < nb; b++) {                                                                             \
            __m256 q[4];                                                                                               \
            CODES(&blk[b], q);                                                                                         \
            __m256 d = _mm256_set1_ps(sq_h2f_f16c(blk[b].d));                                                          \
            float m = MINF(&blk[b]);                                                                                   \
            for (int t = 0; t < ntok; t++) {                                                                           \
                __m256 a = sq_block_fma_avx2(acc[t][b & 1], d, q, x + t * xs + b * 32);                                \
                acc[t][b & 1] = HAS_MIN ? sq_lane_fma_avx2(a, m, xsum + t * nb * 8 + b * 8) : a;                       \
            }                                                                                                          \
        }                                                                                                              \
        for (int t = 0; t < ntok; t++) out[t] = sq_hsum256(_mm256_add_ps(acc[t][0], acc[t][1]));                       \
    }

// Formats without a minimum pass NO_MIN (never evaluated at run time: HAS_MIN is 0).
#define NO_MIN(k) 0.0f
#define MIN_Q5_1(k) sq_h2f_f16c((k)->m)
SQ_LEGACY_AVX2_BODY(dot_q4_0_avx2, sq_block_q4_0, codes_q4_0_avx2, 0, NO_MIN)
SQ_LEGACY_AVX2_BODY(dot_q5_0_avx2, sq_block_q5_0, codes_q5_0_avx2, 0, NO_MIN)
SQ_LEGACY_AVX2_BODY(dot_q5_1_avx2, sq_block_q5_1, codes_q5_1_avx2, 1, MIN_Q5_1)
SQ_DOT_DISPATCH(dot_q4_0_avx2)
SQ_DOT_DISPATCH(dot_q5_0_avx2)
SQ_DOT_DISPATCH(dot_q5_1_avx2)

// Fast dequantizers: the same single multiply (and, for Q5_1, separate add) as the references.
#define SQ_LEGACY_AVX2_DEQ(NAME, BLOCK, CODES, HAS_MIN, MINF)                                                          \
    SQ_AVX2 static void NAME(const void *src, float *dst, int64_t n) {                                                 \
        const BLOCK *blk = src;                                                                                        \
        for (int64_t b = 0; b < n / 32; b++) {                                                                         \
            __m256 q[4];                                                                                               \
            CODES(&blk[b], q);                                                                                         \
            __m256 d = _mm256_set1_ps(sq_h2f_f16c(blk[b].d)), m = _mm256_set1_ps(MINF(&blk[b]));                       \
            for (int k = 0; k < 4; k++) {                                                                              \
                __m256 v = _mm256_mul_ps(d, q[k]);                                                                     \
                if (HAS_MIN) v = _mm256_add_ps(v, m);                                                                  \
                _mm256_storeu_ps(dst + b * 32 + 8 * k, v);                                                             \
            }                                                                                                          \
        }                                                                                                              \
    }
SQ_LEGACY_AVX2_DEQ(deq_q4_0_avx2, sq_block_q4_0, codes_q4_0_avx2, 0, NO_MIN)
SQ_LEGACY_AVX2_DEQ(deq_q5_0_avx2, sq_block_q5_0, codes_q5_0_avx2, 0, NO_MIN)
SQ_LEGACY_AVX2_DEQ(deq_q5_1_avx2, sq_block_q5_1, codes_q5_1_avx2, 1, MIN_Q5_1)
#endif

// ---------------------------------------------------------------- fast dequantizers

// Scalar fallbacks decode a block at a time (the references recompute the block per element).
static void deq_q4_0_scalar(const void *src, float *dst, int64_t n) {
    const sq_block_q4_0 *blk = src;
    for (int64_t b = 0; b < n / 32; b++) {
        float q[32], d = sq_h2f(blk[b].d);
        codes_q4_0(&blk[b], q);
        for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * q[j];
    }
}
static void deq_q5_0_scalar(const void *src, float *dst, int64_t n) {
    const sq_block_q5_0 *blk = src;
    for (int64_t b = 0; b < n / 32; b++) {
        float q[32], d = sq_h2f(blk[b].d);
        codes_q5_0(&blk[b], q);
        for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * q[j];
    }
}
static void deq_q5_1_scalar(const void *src, float *dst, int64_t n) {
    const sq_block_q5_1 *blk = src;
    for (int64_t b = 0; b < n / 32; b++) {
        float q[32], d = sq_h2f(blk[b].d), m = sq_h2f(blk[b].m);
        codes_q5_1(&blk[b], q);
        for (int j = 0; j < 32; j++) {
            float dq = d * q[j];
            dst[b * 32 + j] = dq + m;
        }
    }
}

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
SQ_DEQ_DISPATCH(deq_q4_0)
SQ_DEQ_DISPATCH(deq_q5_0)
SQ_DEQ_DISPATCH(deq_q5_1)

const sq_type_traits sq_traits_q4_0 = {32, 18, deq_q4_0, deq_q4_0_ref, AVX2_OR_NULL(dot_q4_0_avx2), dot_q4_0_scalar};
const sq_type_traits sq_traits_q5_0 = {32, 22, deq_q5_0, deq_q5_0_ref, AVX2_OR_NULL(dot_q5_0_avx2), dot_q5_0_scalar};
const sq_type_traits sq_traits_q5_1 = {32, 24, deq_q5_1, deq_q5_1_ref, AVX2_OR_NULL(dot_q5_1_avx2), dot_q5_1_scalar};
