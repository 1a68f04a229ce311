// Attention over a full-precision (f16 or f32) KV cache, split in fixed chunks of keys
// (flash-decoding style) so that one sequence's attention spreads over threads while every
// result stays independent of the thread count; and RoPE.
#include <math.h>
#include "sq_simd.h"

// ---------------------------------------------------------------- exp

// exp(x) for the softmax: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial; relative error
// ~2e-7. Inputs below -87 give 0. The scalar twin computes the same operations.
static inline float exp_scalar(float x) {
    if (x < -87.0f) return 0.0f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r);
    p = p + 1.0f;
    return ldexpf(p, (int)n);
}

#if SQ_X86
SQ_AVX2 static inline __m256 exp_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 out = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(small, out);
}
#endif

// exp(x[i] - m) for i < n into out (none stored when out is NULL); returns their sum (8 lane
// partial sums, reduced pairwise).
static float exp_sum_scalar(const float *x, float *out, int64_t n, float m) {
    float lanes[8] = {0};
    int64_t i = 0;
    for (; i < n; i += 8)
        for (int j = 0; j < 8 && i + j < n; j++) {
            const float e = exp_scalar(x[i + j] - m);
            if (out) out[i + j] = e;
            lanes[j] += e;
        }
    float a0 = lanes[0] + lanes[4], a1 = lanes[1] + lanes[5], a2 = lanes[2] + lanes[6], a3 = lanes[3] + lanes[7];
    return (a0 + a2) + (a1 + a3);
}

#if SQ_X86
SQ_AVX2 static float exp_sum_avx2(const float *x, float *out, int64_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (out) _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        float tmp[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        for (int j = 0; i + j < n; j++) tmp[j] = x[i + j];
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(tmp), vm));
        _mm256_storeu_ps(tmp, e);
        if (out)
            for (int j = 0; i + j < n; j++) out[i + j] = tmp[j];
        acc = _mm256_add_ps(acc, e);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}
#endif

float sq_exp_sum(float *x, int64_t n, float m) {
#if SQ_X86
    if (sq_use_avx2()) return exp_sum_avx2(x, x, n, m);
#endif
    return exp_sum_scalar(x, x, n, m);
}

float sq_sum_exp(const float *x, int64_t n, float m) {
#if SQ_X86
    if (sq_use_avx2()) return exp_sum_avx2(x, NULL, n, m);
#endif
    return exp_sum_scalar(x, NULL, n, m);
}

// ---------------------------------------------------------------- argmax

// The sampler's rule in one pass: best starts at 0 and moves to i whenever x[i] > x[best], so
// ties keep the lowest id and a NaN never wins (nor loses its place at 0).
static int64_t argmax_scalar(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

#if SQ_X86
// The same answer: when x[0] is a number, best ends at the first index holding the largest
// number (NaNs never compare greater); when x[0] is NaN nothing compares greater than it.
SQ_AVX2 static int64_t argmax_avx2(const float *x, int64_t n) {
    if (n < 16 || x[0] != x[0]) return argmax_scalar(x, n);
    __m256 vmax = _mm256_set1_ps(x[0]);
    int64_t i = 0;
    // max(v, acc) returns acc when v is NaN, so NaNs drop out.
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(x + i), vmax);
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float m = lanes[0];
    for (int j = 1; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 target = _mm256_set1_ps(m);
    for (i = 0; i + 8 <= n; i += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), target, _CMP_EQ_OQ));
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
    for (; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}
#endif

int64_t sq_argmax(const float *x, int64_t n) {
    if (n <= 0) return 0;
#if SQ_X86
    if (sq_use_avx2()) return argmax_avx2(x, n);
#endif
    return argmax_scalar(x, n);
}

// ---------------------------------------------------------------- partial attention

static inline float max_of(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// Lane j accumulates q[i+j] k[i+j] over i = 0, 8, ... (fma); the lanes are summed as
// ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), as the AVX2 kernel's sq_reduce4_avx2 does for each key.
static inline float dot_row_scalar(const float *q, const float *k, int D) {
    float acc[8] = {0};
    for (int i = 0; i < D; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = fmaf(q[i + j], k[i + j], acc[j]);
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    return (a0 + a2) + (a1 + a3);
}

#define SQ_PARTIAL_SCALAR(NAME, ELEM, TOF)                                                                   \
    static void NAME##_scalar(const float *q, int g, int D, const ELEM *K, const ELEM *V, int64_t st, int64_t T, \
                              float scale, float *out, float *ml, float *scores) {                          \
        float kbuf[512];                                                                                    \
        for (int64_t t = 0; t < T; t++) {                                                                   \
            for (int i = 0; i < D; i++) kbuf[i] = TOF(K[t * st + i]);                                       \
            for (int j = 0; j < g; j++) scores[(int64_t)j * T + t] = dot_row_scalar(q + j * D, kbuf, D) * scale; \
        }                                                                                                   \
        for (int j = 0; j < g; j++) {                                                                       \
            float *sj = scores + (int64_t)j * T;                                                            \
            float m = max_of(sj, T);                                                                        \
            ml[2 * j] = m;                                                                                  \
            ml[2 * j + 1] = sq_exp_sum(sj, T, m);                                                           \
            float *o = out + j * D;                                                                         \
            for (int i = 0; i < D; i++) o[i] = 0;                                                           \
            for (int64_t t = 0; t < T; t++)                                                                 \
                for (int i = 0; i < D; i++) o[i] = fmaf(sj[t], TOF(V[t * st + i]), o[i]);                  \
        }                                                                                                   \
    }
#define F16TOF(h) sq_f16_to_f32(h)
#define F32TOF(f) (f)
SQ_PARTIAL_SCALAR(partial_f16, uint16_t, F16TOF)
SQ_PARTIAL_SCALAR(partial_f32, float, F32TOF)

#if SQ_X86
SQ_AVX2 static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
SQ_AVX2 static inline __m256 ld_f32(const float *p) { return _mm256_loadu_ps(p); }

SQ_AVX2 static inline float max_avx2(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 0x55));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

// Scores: G (<= 3) query heads x 4 keys per step, each key row converted once for all heads;
// values: per key, each 32-channel slice converted once and accumulated into the G heads.
// D <= 256 and a multiple of 8 (scores) / 32 (values) on this path.
#define SQ_PARTIAL_AVX2(NAME, ELEM, LD)                                                                      \
    SQ_AVX2 static inline __attribute__((always_inline)) void NAME##_scores_g(                              \
        const float *q, int G, int D, const ELEM *K, int64_t st, int64_t T, float scale, float *scores, int64_t sstride) { \
        const int nv = D / 8;                                                                               \
        const __m256 zero = _mm256_setzero_ps();                                                            \
        int64_t t = 0;                                                                                      \
        for (; t + 4 <= T; t += 4) {                                                                        \
            __m256 acc[3][4];                                                                               \
            for (int j = 0; j < G; j++)                                                                     \
                for (int k = 0; k < 4; k++) acc[j][k] = zero;                                               \
            for (int v = 0; v < nv; v++) {                                                                  \
                __m256 k0 = LD(K + t * st + v * 8), k1 = LD(K + (t + 1) * st + v * 8);                      \
                __m256 k2 = LD(K + (t + 2) * st + v * 8), k3 = LD(K + (t + 3) * st + v * 8);                \
                for (int j = 0; j < G; j++) {                                                               \
                    __m256 qv = _mm256_loadu_ps(q + j * D + v * 8);                                         \
                    acc[j][0] = _mm256_fmadd_ps(qv, k0, acc[j][0]);                                         \
                    acc[j][1] = _mm256_fmadd_ps(qv, k1, acc[j][1]);                                         \
                    acc[j][2] = _mm256_fmadd_ps(qv, k2, acc[j][2]);                                         \
                    acc[j][3] = _mm256_fmadd_ps(qv, k3, acc[j][3]);                                         \
                }                                                                                           \
            }                                                                                               \
            for (int j = 0; j < G; j++)                                                                     \
                _mm_storeu_ps(scores + j * sstride + t,                                                     \
                              _mm_mul_ps(sq_reduce4_avx2(acc[j][0], acc[j][1], acc[j][2], acc[j][3]), _mm_set1_ps(scale))); \
        }                                                                                                   \
        for (; t < T; t++) {                                                                                \
            __m256 acc[3];                                                                                  \
            for (int j = 0; j < G; j++) acc[j] = zero;                                                      \
            for (int v = 0; v < nv; v++) {                                                                  \
                __m256 k0 = LD(K + t * st + v * 8);                                                         \
                for (int j = 0; j < G; j++) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + j * D + v * 8), k0, acc[j]); \
            }                                                                                               \
            for (int j = 0; j < G; j++)                                                                     \
                scores[j * sstride + t] = _mm_cvtss_f32(sq_reduce4_avx2(acc[j], zero, zero, zero)) * scale;         \
        }                                                                                                   \
    }                                                                                                       \
    SQ_AVX2 static void NAME##_avx2_scores(const float *q, int g, int D, const ELEM *K, int64_t st, int64_t T, \
                                           float scale, float *scores) {                                   \
        for (int j0 = 0; j0 < g; j0 += 3) {                                                                 \
            const int G = g - j0 < 3 ? g - j0 : 3;                                                          \
            const float *qj = q + j0 * D;                                                                   \
            float *sj = scores + (int64_t)j0 * T;                                                           \
            if (G == 3) NAME##_scores_g(qj, 3, D, K, st, T, scale, sj, T);                                  \
            else if (G == 2) NAME##_scores_g(qj, 2, D, K, st, T, scale, sj, T);                             \
            else NAME##_scores_g(qj, 1, D, K, st, T, scale, sj, T);                                         \
        }                                                                                                   \
    }                                                                                                       \
    SQ_AVX2 static inline __attribute__((always_inline)) void NAME##_values_g(                              \
        int G, int D, const ELEM *V, int64_t st, int64_t T, const float *p, int64_t pstride, float *out) {  \
        for (int c = 0; c < D; c += 32) {                                                                   \
            __m256 o[3][4];                                                                                 \
            for (int j = 0; j < G; j++)                                                                     \
                for (int v = 0; v < 4; v++) o[j][v] = _mm256_setzero_ps();                                  \
            for (int64_t t = 0; t < T; t++) {                                                               \
                const ELEM *vr = V + t * st + c;                                                            \
                __m256 v0 = LD(vr), v1 = LD(vr + 8), v2 = LD(vr + 16), v3 = LD(vr + 24);                    \
                for (int j = 0; j < G; j++) {                                                               \
                    __m256 w = _mm256_broadcast_ss(p + j * pstride + t);                                    \
                    o[j][0] = _mm256_fmadd_ps(w, v0, o[j][0]);                                              \
                    o[j][1] = _mm256_fmadd_ps(w, v1, o[j][1]);                                              \
                    o[j][2] = _mm256_fmadd_ps(w, v2, o[j][2]);                                              \
                    o[j][3] = _mm256_fmadd_ps(w, v3, o[j][3]);                                              \
                }                                                                                           \
            }                                                                                               \
            for (int j = 0; j < G; j++)                                                                     \
                for (int v = 0; v < 4; v++) _mm256_storeu_ps(out + j * D + c + v * 8, o[j][v]);             \
        }                                                                                                   \
    }                                                                                                       \
    SQ_AVX2 static void NAME##_avx2_values(int g, int D, const ELEM *V, int64_t st, int64_t T, const float *p, \
                                           float *out) {                                                   \
        const int nv = D / 8;                                                                               \
        if (D % 32 == 0) {                                                                                  \
            for (int j0 = 0; j0 < g; j0 += 3) {                                                             \
                const int G = g - j0 < 3 ? g - j0 : 3;                                                      \
                const float *pj = p + (int64_t)j0 * T;                                                      \
                float *oj = out + j0 * D;                                                                   \
                if (G == 3) NAME##_values_g(3, D, V, st, T, pj, T, oj);                                     \
                else if (G == 2) NAME##_values_g(2, D, V, st, T, pj, T, oj);                                \
                else NAME##_values_g(1, D, V, st, T, pj, T, oj);                                            \
            }                                                                                               \
            return;                                                                                         \
        }                                                                                                   \
        for (int j = 0; j < g; j++) {                                                                       \
            __m256 o[32];                                                                                   \
            for (int v = 0; v < nv; v++) o[v] = _mm256_setzero_ps();                                        \
            const float *pj = p + (int64_t)j * T;                                                           \
            for (int64_t t = 0; t < T; t++) {                                                               \
                __m256 w = _mm256_set1_ps(pj[t]);                                                           \
                for (int v = 0; v < nv; v++) o[v] = _mm256_fmadd_ps(w, LD(V + t * st + v * 8), o[v]);      \
            }                                                                                               \
            for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + j * D + v * 8, o[v]);                       \
        }                                                                                                   \
    }
SQ_PARTIAL_AVX2(partial_f16, uint16_t, ld_f16)
SQ_PARTIAL_AVX2(partial_f32, float, ld_f32)
#endif

float sq_max(const float *x, int64_t n) {
#if SQ_X86
    if (sq_use_avx2()) return max_avx2(x, n);
#endif
    return max_of(x, n);
}

void sq_attend_partial_f16(const float *q, int g, int D, const uint16_t *K, const uint16_t *V, int64_t st, int64_t T,
                           float scale, float *out, float *ml, float *scores) {
    if (D % 8 != 0 || D > 256 || T <= 0) return;
#if SQ_X86
    if (sq_use_avx2()) {
        partial_f16_avx2_scores(q, g, D, K, st, T, scale, scores);
        for (int j = 0; j < g; j++) {
            float *sj = scores + (int64_t)j * T;
            ml[2 * j] = max_avx2(sj, T);
            ml[2 * j + 1] = sq_exp_sum(sj, T, ml[2 * j]);
        }
        partial_f16_avx2_values(g, D, V, st, T, scores, out);
        return;
    }
#endif
    partial_f16_scalar(q, g, D, K, V, st, T, scale, out, ml, scores);
}

void sq_attend_partial_f32(const float *q, int g, int D, const float *K, const float *V, int64_t st, int64_t T,
                           float scale, float *out, float *ml, float *scores) {
    if (D % 8 != 0 || D > 256 || T <= 0) return;
#if SQ_X86
    if (sq_use_avx2()) {
        partial_f32_avx2_scores(q, g, D, K, st, T, scale, scores);
        for (int j = 0; j < g; j++) {
            float *sj = scores + (int64_t)j * T;
            ml[2 * j] = max_avx2(sj, T);
            ml[2 * j + 1] = sq_exp_sum(sj, T, ml[2 * j]);
        }
        partial_f32_avx2_values(g, D, V, st, T, scores, out);
        return;
    }
#endif
    partial_f32_scalar(q, g, D, K, V, st, T, scale, out, ml, scores);
}

// One body for both paths: built with FMA (fmaf an instruction, the channel loops vectorised) and
// without (fmaf a library call); the operations and their order are the same.
SQ_ALWAYS_INLINE void attend_combine_body(int g, int D, int nchunks, const float *outs, const float *mls, float *out) {
    for (int j = 0; j < g; j++) {
        float M = -INFINITY;
        for (int c = 0; c < nchunks; c++) {
            float m = mls[(int64_t)c * 2 * g + 2 * j];
            M = m > M ? m : M;
        }
        float *o = out + j * D;
        for (int i = 0; i < D; i++) o[i] = 0;
        float L = 0;
        for (int c = 0; c < nchunks; c++) {
            const float *ml = mls + (int64_t)c * 2 * g + 2 * j;
            float w = expf(ml[0] - M);
            L = fmaf(w, ml[1], L);
            const float *oc = outs + ((int64_t)c * g + j) * D;
            for (int i = 0; i < D; i++) o[i] = fmaf(w, oc[i], o[i]);
        }
        float inv = 1.0f / L;
        for (int i = 0; i < D; i++) o[i] *= inv;
    }
}

#if SQ_X86
SQ_AVX2 static void attend_combine_avx2(int g, int D, int nchunks, const float *outs, const float *mls, float *out) {
    attend_combine_body(g, D, nchunks, outs, mls, out);
}
#endif

void sq_attend_combine(int g, int D, int nchunks, const float *outs, const float *mls, float *out) {
#if SQ_X86
    if (sq_use_avx2()) {
        attend_combine_avx2(g, D, nchunks, outs, mls, out);
        return;
    }
#endif
    attend_combine_body(g, D, nchunks, outs, mls, out);
}

void sq_rope(float *x, int heads, int D, int64_t pos, const float *inv_freq) {
    const int half = D / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        for (int h = 0; h < heads; h++) {
            float *p = x + h * D;
            float a = p[i], b = p[i + half];
            p[i] = a * c - b * s;
            p[i + half] = a * s + b * c;
        }
    }
}
