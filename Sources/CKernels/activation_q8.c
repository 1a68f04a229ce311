// Int8 activations (as llama.cpp does for speed): x is quantized per block of 32 to
// d * q (q in [-127, 127]) with s = d * sum(q); weights are then multiplied with integer dot
// products. Supported weight types: Q4_1 and Q8_0; others use the f32 path.
//
// Arithmetic of one output (row r, token t), the same on the scalar and AVX2 paths and whatever
// the batch, tile or row range (batch invariance). Per block b: f_j(b) = (float) exact integer
// dot product of elements 4j..4j+3 (what maddubs + madd give), sc(b) = d_w[b] * d_x[b] and, for
// Q4_1, mt(b) = m_w[b] * s_x[b] (rounded products). Blocks in pairs (a, b):
//     acc[j] = acc[j] + fma(f_j(b), sc(b), f_j(a) * sc(a)),   msum = msum + (mt(a) + mt(b));
// an odd last block: acc[j] = fma(f_j, sc, acc[j]), msum = msum + mt;
// result = (((acc0+acc4)+(acc2+acc6)) + ((acc1+acc5)+(acc3+acc7))) + msum.
#include <math.h>
#include <string.h>
#include "sq_internal.h"

int sq_q8_supported(int type) { return type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q8_0; }

// ---------------------------------------------------------------- quantization

static void quantize_scalar(const float *x, int64_t n, sq_block_q8a *out) {
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

#if SQ_X86
// The same numbers as quantize_scalar: max is exact, x * id rounds the same, and cvtps_epi32
// rounds to nearest even as nearbyintf does in the default rounding mode.
SQ_AVX2 static void quantize_avx2(const float *x, int64_t n, sq_block_q8a *out) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *p = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8), v2 = _mm256_loadu_ps(p + 16),
               v3 = _mm256_loadu_ps(p + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 0x55));
        float amax = _mm_cvtss_f32(h);
        float d = amax / 127.0f;
        float id = d > 0 ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        int sum = _mm_cvtsi128_si32(s4);
        // packs interleave 128-bit lanes: (i0lo i1lo i0hi i1hi) -> bytes in dword order 0,2,4,6,1,3,5,7.
        __m256i w01 = _mm256_packs_epi32(i0, i1), w23 = _mm256_packs_epi32(i2, i3);
        __m256i b8 = _mm256_packs_epi16(w01, w23);
        b8 = _mm256_permutevar8x32_epi32(b8, perm);
        _mm256_storeu_si256((__m256i *)out[b].qs, b8);
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}
#endif

void sq_quantize_q8(const float *x, int64_t n, sq_block_q8a *out) {
#if SQ_X86
    if (sq_use_avx2()) {
        quantize_avx2(x, n, out);
        return;
    }
#endif
    quantize_scalar(x, n, out);
}

// ---------------------------------------------------------------- scalar kernels

// Block b of a row: integer lane sums isum[j] (elements 4j..4j+3), the scale d_w * d_x and the
// minimum term m_w * s_x (0 for Q8_0).
static inline void block_scalar(int type, const void *row, const sq_block_q8a *x, int64_t b, float f[8], float *sc,
                                float *mterm) {
    int q[32];
    float dw;
    *mterm = 0;
    if (type == SQ_TYPE_Q4_1) {
        const sq_block_q4_1 *blk = (const sq_block_q4_1 *)row + b;
        for (int j = 0; j < 16; j++) {
            q[j] = blk->qs[j] & 15;
            q[j + 16] = blk->qs[j] >> 4;
        }
        dw = sq_h2f(blk->d);
        *mterm = sq_h2f(blk->m) * x[b].s;
    } else {
        const sq_block_q8_0 *blk = (const sq_block_q8_0 *)row + b;
        for (int j = 0; j < 32; j++) q[j] = blk->qs[j];
        dw = sq_h2f(blk->d);
    }
    *sc = dw * x[b].d;
    for (int j = 0; j < 8; j++) {
        int isum = 0;
        for (int k = 4 * j; k < 4 * j + 4; k++) isum += q[k] * x[b].qs[k];
        f[j] = (float)isum;
    }
}

static float dot_q8_scalar(int type, const void *row, const sq_block_q8a *x, int64_t nb) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, msum = 0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        float fa[8], fb[8], sa, sb, ma, mb;
        block_scalar(type, row, x, b, fa, &sa, &ma);
        block_scalar(type, row, x, b + 1, fb, &sb, &mb);
        for (int j = 0; j < 8; j++) {
            const float pa = fa[j] * sa;  // separate statements: never contracted to an fma
            const float t = fmaf(fb[j], sb, pa);
            acc[j] = acc[j] + t;
        }
        const float m2 = ma + mb;
        msum = msum + m2;
    }
    if (b < nb) {
        float fa[8], sa, ma;
        block_scalar(type, row, x, b, fa, &sa, &ma);
        for (int j = 0; j < 8; j++) acc[j] = fmaf(fa[j], sa, acc[j]);
        msum = msum + ma;
    }
    float s0 = acc[0] + acc[4], s1 = acc[1] + acc[5], s2 = acc[2] + acc[6], s3 = acc[3] + acc[7];
    return ((s0 + s2) + (s1 + s3)) + msum;
}

#if SQ_X86
// ---------------------------------------------------------------- AVX2 kernels

#define RT 6  // rows per tile (batches of tokens)

SQ_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

// One block of one row against one or two tokens: the integer dot products as floats (f0, f1)
// and prod = [d*dx0, m*sx0, d*dx1, m*sx1] (the f16 pair (d, m) of the block times the tokens'
// (d, s) pairs; m = d for Q8_0, unused).
#define Q8_BLOCK(TYPE, ROW, B, XDS, XV0, XV1, T, F0, F1, PROD)                                              \
    do {                                                                                                    \
        __m256i q0_, q1_;                                                                                   \
        if ((TYPE) == SQ_TYPE_Q4_1) {                                                                       \
            const sq_block_q4_1 *blk_ = (const sq_block_q4_1 *)(ROW) + (B);                                 \
            int dm_;                                                                                        \
            memcpy(&dm_, blk_, 4);                                                                          \
            PROD = _mm_mul_ps(_mm_cvtph_ps(_mm_set1_epi32(dm_)), XDS);                                      \
            __m256i q_ = _mm256_and_si256(                                                                  \
                _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)blk_->qs)), shift), mask); \
            q0_ = _mm256_maddubs_epi16(q_, XV0);                                                            \
            if ((T) == 2) q1_ = _mm256_maddubs_epi16(q_, XV1);                                              \
        } else {                                                                                            \
            const sq_block_q8_0 *blk_ = (const sq_block_q8_0 *)(ROW) + (B);                                 \
            PROD = _mm_mul_ps(_mm_cvtph_ps(_mm_set1_epi16((short)blk_->d)), XDS);                           \
            __m256i w_ = _mm256_loadu_si256((const __m256i *)blk_->qs);                                     \
            __m256i aw_ = _mm256_sign_epi8(w_, w_);                                                         \
            q0_ = _mm256_maddubs_epi16(aw_, _mm256_sign_epi8(XV0, w_));                                     \
            if ((T) == 2) q1_ = _mm256_maddubs_epi16(aw_, _mm256_sign_epi8(XV1, w_));                       \
        }                                                                                                   \
        F0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(q0_, ones));                                              \
        if ((T) == 2) F1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(q1_, ones));                                \
    } while (0)

// One tile of R rows x T tokens (T = 1 or 2; constants after inlining), blocks in pairs (a, b):
// acc += fma(f_b, sc_b, f_a * sc_a) and msum += m_a*s_a + m_b*s_b, which halves the length of
// the dependency chains; an odd last block: acc = fma(f, sc, acc), msum += m*s.
SQ_AVX2 static inline __attribute__((always_inline)) void tile_q8(int type, const char *const *rows,
                                                                  const sq_block_q8a *x0, const sq_block_q8a *x1,
                                                                  int64_t nb, int R, int T, float *out /* [R][2] */) {
    const __m256i mask = _mm256_set1_epi8(0x0F), shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[RT][2];
    __m128 accm[RT];
    for (int r = 0; r < R; r++) {
        accm[r] = _mm_setzero_ps();
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m128 xa = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&x0[b]));
        __m128 xb = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&x0[b + 1]));
        if (T == 2) {
            xa = _mm_loadh_pi(xa, (const __m64 *)&x1[b]);
            xb = _mm_loadh_pi(xb, (const __m64 *)&x1[b + 1]);
        }
        const __m256i xa0 = _mm256_loadu_si256((const __m256i *)x0[b].qs);
        const __m256i xb0 = _mm256_loadu_si256((const __m256i *)x0[b + 1].qs);
        const __m256i xa1 = T == 2 ? _mm256_loadu_si256((const __m256i *)x1[b].qs) : xa0;
        const __m256i xb1 = T == 2 ? _mm256_loadu_si256((const __m256i *)x1[b + 1].qs) : xb0;
        for (int r = 0; r < R; r++) {
            __m256 fa0, fa1 = _mm256_setzero_ps(), fb0, fb1 = _mm256_setzero_ps();
            __m128 pa, pb;
            Q8_BLOCK(type, rows[r], b, xa, xa0, xa1, T, fa0, fa1, pa);
            Q8_BLOCK(type, rows[r], b + 1, xb, xb0, xb1, T, fb0, fb1, pb);
            acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_fmadd_ps(fb0, _mm256_broadcastss_ps(pb),
                                                                 _mm256_mul_ps(fa0, _mm256_broadcastss_ps(pa))));
            if (T == 2)
                acc[r][1] = _mm256_add_ps(
                    acc[r][1], _mm256_fmadd_ps(fb1, _mm256_broadcastss_ps(_mm_movehl_ps(pb, pb)),
                                               _mm256_mul_ps(fa1, _mm256_broadcastss_ps(_mm_movehl_ps(pa, pa)))));
            if (type == SQ_TYPE_Q4_1) accm[r] = _mm_add_ps(accm[r], _mm_add_ps(pa, pb));
        }
    }
    if (b < nb) {
        __m128 xa = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&x0[b]));
        if (T == 2) xa = _mm_loadh_pi(xa, (const __m64 *)&x1[b]);
        const __m256i xa0 = _mm256_loadu_si256((const __m256i *)x0[b].qs);
        const __m256i xa1 = T == 2 ? _mm256_loadu_si256((const __m256i *)x1[b].qs) : xa0;
        for (int r = 0; r < R; r++) {
            __m256 fa0, fa1 = _mm256_setzero_ps();
            __m128 pa;
            Q8_BLOCK(type, rows[r], b, xa, xa0, xa1, T, fa0, fa1, pa);
            acc[r][0] = _mm256_fmadd_ps(fa0, _mm256_broadcastss_ps(pa), acc[r][0]);
            if (T == 2) acc[r][1] = _mm256_fmadd_ps(fa1, _mm256_broadcastss_ps(_mm_movehl_ps(pa, pa)), acc[r][1]);
            if (type == SQ_TYPE_Q4_1) accm[r] = _mm_add_ps(accm[r], pa);
        }
    }
    for (int r = 0; r < R; r++) {
        float m[4];
        _mm_storeu_ps(m, accm[r]);
        out[r * 2] = hsum_ps(acc[r][0]) + (type == SQ_TYPE_Q4_1 ? m[1] : 0.0f);
        if (T == 2) out[r * 2 + 1] = hsum_ps(acc[r][1]) + (type == SQ_TYPE_Q4_1 ? m[3] : 0.0f);
    }
}

SQ_AVX2 static void rows_q8_avx2(int type, const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq,
                                 int64_t ntok, float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32;
    // Tokens in blocks of 16 (their activations stay in L1), rows in tiles of RT, token pairs.
    for (int64_t tb = 0; tb < ntok; tb += 16) {
        const int64_t te = tb + 16 < ntok ? tb + 16 : ntok;
        for (int64_t r = r0; r < r1;) {
            // One token (decode): rows one by one, a single sequential stream of weights that the
            // hardware prefetcher follows; several tokens: tiles of RT rows sharing the activations.
            const int R = ntok == 1 || r1 - r < RT ? 1 : RT;
            const char *rows[RT];
            for (int i = 0; i < R; i++) rows[i] = (const char *)w + (size_t)(r + i) * row_bytes;
            for (int64_t t = tb; t < te;) {
                const int T = te - t >= 2 ? 2 : 1;
                const sq_block_q8a *x0 = xq + t * nb, *x1 = x0 + (T - 1) * nb;
                float out[RT * 2];
                if (type == SQ_TYPE_Q4_1) {
                    if (R == RT) {
                        if (T == 2) tile_q8(SQ_TYPE_Q4_1, rows, x0, x1, nb, RT, 2, out);
                        else tile_q8(SQ_TYPE_Q4_1, rows, x0, x1, nb, RT, 1, out);
                    } else {
                        if (T == 2) tile_q8(SQ_TYPE_Q4_1, rows, x0, x1, nb, 1, 2, out);
                        else tile_q8(SQ_TYPE_Q4_1, rows, x0, x1, nb, 1, 1, out);
                    }
                } else {
                    if (R == RT) {
                        if (T == 2) tile_q8(SQ_TYPE_Q8_0, rows, x0, x1, nb, RT, 2, out);
                        else tile_q8(SQ_TYPE_Q8_0, rows, x0, x1, nb, RT, 1, out);
                    } else {
                        if (T == 2) tile_q8(SQ_TYPE_Q8_0, rows, x0, x1, nb, 1, 2, out);
                        else tile_q8(SQ_TYPE_Q8_0, rows, x0, x1, nb, 1, 1, out);
                    }
                }
                for (int i = 0; i < R; i++)
                    for (int k = 0; k < T; k++) y[(t + k) * ys + r + i] = out[i * 2 + k];
                t += T;
            }
            r += R;
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
        rows_q8_avx2(type, w, row_bytes, n, xq, ntok, y, y_stride, row_begin, row_end);
        return 0;
    }
#endif
    for (int64_t r = row_begin; r < row_end; r++) {
        const void *row = (const char *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < ntok; t++) y[t * y_stride + r] = dot_q8_scalar(type, row, xq + t * nb, nb);
    }
    return 0;
}
