// Int8 activations (as llama.cpp does for speed): x is quantized per block of 32 to
// d * q (q in [-127, 127]) with s = d * sum(q); weights are then multiplied with integer dot
// products. Supported weight types: Q4_1 and Q8_0; others use the f32 path.
#include <math.h>
#include <string.h>
#include "sq_internal.h"

int sq_q8_supported(int type) { return type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q8_0; }

void sq_quantize_q8(const float *x, int64_t n, sq_block_q8a *out) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *p = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(p[j]));
        float d = amax / 127.0f;
        float id = d > 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)nearbyintf(p[j] * id);
            out[b].qs[j] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

// ---------------------------------------------------------------- scalar kernels
// Twins of the AVX2 kernels: lane k of a block holds the integer dot product of elements
// 4k..4k+3; four accumulators of 8 lanes; the same final reduction. Same bits on both paths.
static inline float reduce_lanes(const float acc[4][8]) {
    float v[8];
    for (int k = 0; k < 8; k++) v[k] = (acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k]);
    float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
    return (s0 + s2) + (s1 + s3);
}

static float dot_q4_1_q8_scalar(const sq_block_q4_1 *w, const sq_block_q8a *x, int64_t nb) {
    float acc[4][8] = {{0}}, macc[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
        int q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = w[b].qs[j] & 15;
            q[j + 16] = w[b].qs[j] >> 4;
        }
        float d = sq_h2f(w[b].d) * x[b].d;
        for (int k = 0; k < 8; k++) {
            int isum = 0;
            for (int j = 4 * k; j < 4 * k + 4; j++) isum += q[j] * x[b].qs[j];
            acc[b & 3][k] = fmaf(d, (float)isum, acc[b & 3][k]);
        }
        macc[b & 3] = fmaf(sq_h2f(w[b].m), x[b].s, macc[b & 3]);
    }
    return reduce_lanes(acc) + ((macc[0] + macc[1]) + (macc[2] + macc[3]));
}

static float dot_q8_0_q8_scalar(const sq_block_q8_0 *w, const sq_block_q8a *x, int64_t nb) {
    float acc[4][8] = {{0}};
    for (int64_t b = 0; b < nb; b++) {
        float d = sq_h2f(w[b].d) * x[b].d;
        for (int k = 0; k < 8; k++) {
            int isum = 0;
            for (int j = 4 * k; j < 4 * k + 4; j++) isum += w[b].qs[j] * x[b].qs[j];
            acc[b & 3][k] = fmaf(d, (float)isum, acc[b & 3][k]);
        }
    }
    return reduce_lanes(acc);
}

#if SQ_X86
// 8 lanes of int32 partial dot products of 32 unsigned weight bytes with 32 signed activations.
SQ_AVX2 static inline __m256i dot_u8_i8(__m256i u, __m256i s) {
    __m256i p16 = _mm256_maddubs_epi16(u, s);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}
SQ_AVX2 static inline __m256i dot_i8_i8(__m256i a, __m256i b) {
    // maddubs needs unsigned first operand: |a| * sign(b, a).
    return dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// Sum of four 8-lane accumulators: (a0 + a1) + (a2 + a3), then lanes pairwise.
SQ_AVX2 static inline float hsum_lanes(const __m256 a[4]) {
    __m256 v = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

// Per token: acc_e/acc_o are vectors of floats (lanes), the min term a scalar chain. The lane
// order is fixed, so results do not depend on how many tokens share a call.
SQ_AVX2 static void rows_q4_1_q8_avx2(const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq, int64_t ntok,
                                      float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; r++) {
        const sq_block_q4_1 *blk = (const sq_block_q4_1 *)((const char *)w + (size_t)r * row_bytes);
        for (int64_t t = 0; t < ntok; t++) {
            const sq_block_q8a *xb = xq + t * nb;
            // Four accumulators in registers, block b feeding accumulator b % 4.
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
#define Q41_BLOCK(B, A, M)                                                                                  \
    do {                                                                                                    \
        __m128i raw = _mm_loadu_si128((const __m128i *)blk[B].qs);                                          \
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), mask);                  \
        __m256i xs = _mm256_loadu_si256((const __m256i *)xb[B].qs);                                         \
        __m256 p = _mm256_cvtepi32_ps(dot_u8_i8(q, xs));                                                    \
        A = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(blk[B].d) * xb[B].d), p, A);                            \
        M = fmaf(_cvtsh_ss(blk[B].m), xb[B].s, M);                                                          \
    } while (0)
            int64_t b = 0;
            for (; b + 4 <= nb; b += 4) {
                Q41_BLOCK(b, a0, m0);
                Q41_BLOCK(b + 1, a1, m1);
                Q41_BLOCK(b + 2, a2, m2);
                Q41_BLOCK(b + 3, a3, m3);
            }
            if (b < nb) Q41_BLOCK(b, a0, m0);
            if (b + 1 < nb) Q41_BLOCK(b + 1, a1, m1);
            if (b + 2 < nb) Q41_BLOCK(b + 2, a2, m2);
#undef Q41_BLOCK
            __m256 acc[4] = {a0, a1, a2, a3};
            float macc[4] = {m0, m1, m2, m3};
            y[t * ys + r] = hsum_lanes(acc) + ((macc[0] + macc[1]) + (macc[2] + macc[3]));
        }
    }
}

SQ_AVX2 static void rows_q8_0_q8_avx2(const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq, int64_t ntok,
                                      float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32;
    for (int64_t r = r0; r < r1; r++) {
        const sq_block_q8_0 *blk = (const sq_block_q8_0 *)((const char *)w + (size_t)r * row_bytes);
        for (int64_t t = 0; t < ntok; t++) {
            const sq_block_q8a *xb = xq + t * nb;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#define Q80_BLOCK(B, A)                                                                                     \
    do {                                                                                                    \
        __m256i q = _mm256_loadu_si256((const __m256i *)blk[B].qs);                                         \
        __m256i xs = _mm256_loadu_si256((const __m256i *)xb[B].qs);                                         \
        __m256 p = _mm256_cvtepi32_ps(dot_i8_i8(q, xs));                                                    \
        A = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(blk[B].d) * xb[B].d), p, A);                            \
    } while (0)
            int64_t b = 0;
            for (; b + 4 <= nb; b += 4) {
                Q80_BLOCK(b, a0);
                Q80_BLOCK(b + 1, a1);
                Q80_BLOCK(b + 2, a2);
                Q80_BLOCK(b + 3, a3);
            }
            if (b < nb) Q80_BLOCK(b, a0);
            if (b + 1 < nb) Q80_BLOCK(b + 1, a1);
            if (b + 2 < nb) Q80_BLOCK(b + 2, a2);
#undef Q80_BLOCK
            __m256 acc[4] = {a0, a1, a2, a3};
            y[t * ys + r] = hsum_lanes(acc);
        }
    }
}
#endif

int sq_matmul_q8(int type, const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq, int64_t ntok, float *y,
                 int64_t y_stride, int64_t row_begin, int64_t row_end) {
    if (!sq_q8_supported(type) || n % 32) return -1;
    const int64_t nb = n / 32;
#if SQ_X86
    if (sq_use_avx2()) {
        if (type == SQ_TYPE_Q4_1)
            rows_q4_1_q8_avx2(w, row_bytes, n, xq, ntok, y, y_stride, row_begin, row_end);
        else
            rows_q8_0_q8_avx2(w, row_bytes, n, xq, ntok, y, y_stride, row_begin, row_end);
        return 0;
    }
#endif
    for (int64_t r = row_begin; r < row_end; r++) {
        const void *row = (const char *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < ntok; t++) {
            y[t * y_stride + r] = type == SQ_TYPE_Q4_1 ? dot_q4_1_q8_scalar(row, xq + t * nb, nb)
                                                       : dot_q8_0_q8_scalar(row, xq + t * nb, nb);
        }
    }
    return 0;
}
