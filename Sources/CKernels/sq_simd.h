// Small helpers shared by the block-format kernel files. Every AVX2 helper has a scalar twin
// doing the same operations in the same order per lane (sq_hsum8 / sq_hsum256,
// sq_block_fma8 / sq_block_fma_avx2, sq_lane_fma8 / sq_lane_fma_avx2), so the scalar and AVX2
// kernels built on them agree bit for bit.
#ifndef SQ_SIMD_H
#define SQ_SIMD_H
#include <math.h>
#include "sq_internal.h"

#define SQ_ALWAYS_INLINE static inline __attribute__((always_inline))

// ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7))
static inline float sq_hsum8(const float v[8]) {
    float a0 = v[0] + v[4], a1 = v[1] + v[5], a2 = v[2] + v[6], a3 = v[3] + v[7];
    float b0 = a0 + a2, b1 = a1 + a3;
    return b0 + b1;
}

// Lane arithmetic shared by the block kernels (scalar twin of sq_block_fma_avx2): lane j gets
// acc[j] += d * ((q[j] x[j] + q[j+8] x[j+8]) + (q[j+16] x[j+16] + q[j+24] x[j+24])), the first product
// of each pair rounded, the second fused.
static inline void sq_block_fma8(float acc[8], float d, const float q[32], const float *p) {
    for (int j = 0; j < 8; j++) {
        float s01 = fmaf(q[8 + j], p[8 + j], q[j] * p[j]);
        float s23 = fmaf(q[24 + j], p[24 + j], q[16 + j] * p[16 + j]);
        acc[j] = fmaf(d, s01 + s23, acc[j]);
    }
}

// Minimum term, lane-wise: acc[j] += m * xs8[j], xs8 the 8 lane sums of x for the block (see
// sq_block_sums: xs8[j] = (x[j] + x[j+8]) + (x[j+16] + x[j+24])), so sum_lanes = m * sum(x).
static inline void sq_lane_fma8(float acc[8], float m, const float *xs8) {
    for (int j = 0; j < 8; j++) acc[j] = fmaf(m, xs8[j], acc[j]);
}

static inline float sq_finish8(float acc[2][8]) {
    float v[8];
    for (int j = 0; j < 8; j++) v[j] = acc[0][j] + acc[1][j];
    return sq_hsum8(v);
}

#if SQ_X86
// Scores of four keys (accumulators a, b, c, d, 8 lanes each) reduced together; each key's lanes
// are summed as ((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7)), the order of a single key's hsum (and
// of dot_row_scalar). Returns [a, b, c, d].
SQ_AVX2 static inline __m128 sq_reduce4_avx2(__m256 a, __m256 b, __m256 c, __m256 d) {
    // [a0+a4, a1+a5, a2+a6, a3+a7 | b0+b4, ...] and the same for c, d.
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    // [(a0+a4)+(a2+a6), (a1+a5)+(a3+a7), (c..), (c..) | (b..), (b..), (d..), (d..)]
    __m256 u = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
    // [a, c, a, c | b, d, b, d]
    __m256 h = _mm256_hadd_ps(u, u);
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

SQ_AVX2 static inline float sq_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);                    // lanes (0+4, 1+5, 2+6, 3+7)
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));           // (0+4)+(2+6), (1+5)+(3+7)
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

/// f16 -> f32 with F16C: equal to sq_f16_to_f32 for every non-NaN input (the conversion is exact).
SQ_AVX2 static inline float sq_h2f_f16c(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// acc += d * ((q0 x0 + q1 x1) + (q2 x2 + q3 x3)), lane-wise.
SQ_AVX2 SQ_ALWAYS_INLINE __m256 sq_block_fma_avx2(__m256 acc, __m256 d, const __m256 q[4], const float *p) {
    __m256 s01 = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(p + 8), _mm256_mul_ps(q[0], _mm256_loadu_ps(p)));
    __m256 s23 = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(p + 24), _mm256_mul_ps(q[2], _mm256_loadu_ps(p + 16)));
    return _mm256_fmadd_ps(d, _mm256_add_ps(s01, s23), acc);
}

SQ_AVX2 SQ_ALWAYS_INLINE __m256 sq_lane_fma_avx2(__m256 acc, float m, const float *xs8) {
    return _mm256_fmadd_ps(_mm256_set1_ps(m), _mm256_loadu_ps(xs8), acc);
}

// 32 code bytes (element l in byte l) -> four vectors of 8 floats (elements 0-7, ..., 24-31).
SQ_AVX2 SQ_ALWAYS_INLINE void u8x32_to_ps(__m256i v, __m256 q[4]) {
    __m128i a = _mm256_castsi256_si128(v), b = _mm256_extracti128_si256(v, 1);
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
}
SQ_AVX2 SQ_ALWAYS_INLINE void i8x32_to_ps(__m256i v, __m256 q[4]) {
    __m128i a = _mm256_castsi256_si128(v), b = _mm256_extracti128_si256(v, 1);
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
}

/// Defines the sq_dot_multi_fn NAME from NAME##_body(row, x, xs, xsum, ntok, n, out), an always-inline
/// body: each case inlines it with a constant ntok so that the per-token accumulators stay in registers.
/// A body must do the same arithmetic for a token whatever ntok is.
#define SQ_DOT_DISPATCH(NAME)                                                                                          \
    SQ_AVX2 static void NAME(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,      \
                             float *out) {                                                                             \
        switch (ntok) {                                                                                                \
        case 1: NAME##_body(row, x, xs, xsum, 1, n, out); break;                                                       \
        case 2: NAME##_body(row, x, xs, xsum, 2, n, out); break;                                                       \
        case 3: NAME##_body(row, x, xs, xsum, 3, n, out); break;                                                       \
        default: NAME##_body(row, x, xs, xsum, SQ_TILE, n, out); break;                                                \
        }                                                                                                              \
    }
#endif

#endif
