// Attention over a full-precision (f16 or f32) KV cache, and RoPE.
#include <math.h>
#include "sq_internal.h"

// Scalar and AVX2 twins follow the same order: 8 lanes, 8-lane partial sums reduced pairwise.
static inline float dot_row_scalar(const float *q, const float *k, int D) {
    float acc[8] = {0};
    for (int i = 0; i < D; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = fmaf(q[i + j], k[i + j], acc[j]);
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    return (a0 + a2) + (a1 + a3);
}

static void softmax_rows(float *scores, int g, int64_t T) {
    for (int j = 0; j < g; j++) sq_softmax(scores + (int64_t)j * T, T);
}

#define SQ_ATTEND_SCALAR(NAME, ELEM, TOF)                                                                   \
    static void NAME##_scalar(const float *q, int g, int D, const ELEM *K, const ELEM *V, int64_t st, int64_t T, \
                              float scale, float *out, float *scores) {                                    \
        float kbuf[512];                                                                                   \
        for (int64_t t = 0; t < T; t++) {                                                                  \
            for (int i = 0; i < D; i++) kbuf[i] = TOF(K[t * st + i]);                                      \
            for (int j = 0; j < g; j++) scores[(int64_t)j * T + t] = dot_row_scalar(q + j * D, kbuf, D) * scale; \
        }                                                                                                  \
        softmax_rows(scores, g, T);                                                                        \
        for (int j = 0; j < g; j++) {                                                                      \
            float *o = out + j * D;                                                                        \
            for (int i = 0; i < D; i++) o[i] = 0;                                                          \
            for (int64_t t = 0; t < T; t++) {                                                              \
                float p = scores[(int64_t)j * T + t];                                                      \
                for (int i = 0; i < D; i++) o[i] = fmaf(p, TOF(V[t * st + i]), o[i]);                      \
            }                                                                                              \
        }                                                                                                  \
    }
#define F16TOF(h) sq_f16_to_f32(h)
#define F32TOF(f) (f)
SQ_ATTEND_SCALAR(attend_f16, uint16_t, F16TOF)
SQ_ATTEND_SCALAR(attend_f32, float, F32TOF)

#if SQ_X86
SQ_AVX2 static inline float hsum8_avx(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}
SQ_AVX2 static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
SQ_AVX2 static inline __m256 ld_f32(const float *p) { return _mm256_loadu_ps(p); }

// D <= 256 and a multiple of 8 on this path.
#define SQ_ATTEND_AVX2(NAME, ELEM, LD)                                                                      \
    SQ_AVX2 static void NAME##_avx2(const float *q, int g, int D, const ELEM *K, const ELEM *V, int64_t st, \
                                    int64_t T, float scale, float *out, float *scores) {                   \
        const int nv = D / 8;                                                                              \
        for (int64_t t = 0; t < T; t++) {                                                                  \
            __m256 k[32];                                                                                  \
            for (int v = 0; v < nv; v++) k[v] = LD(K + t * st + v * 8);                                    \
            for (int j = 0; j < g; j++) {                                                                  \
                const float *qj = q + j * D;                                                               \
                __m256 acc = _mm256_setzero_ps();                                                          \
                for (int v = 0; v < nv; v++) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qj + v * 8), k[v], acc); \
                scores[(int64_t)j * T + t] = hsum8_avx(acc) * scale;                                      \
            }                                                                                              \
        }                                                                                                  \
        softmax_rows(scores, g, T);                                                                        \
        for (int j = 0; j < g; j++) {                                                                      \
            __m256 o[32];                                                                                  \
            for (int v = 0; v < nv; v++) o[v] = _mm256_setzero_ps();                                       \
            const float *pj = scores + (int64_t)j * T;                                                     \
            for (int64_t t = 0; t < T; t++) {                                                              \
                __m256 p = _mm256_set1_ps(pj[t]);                                                          \
                for (int v = 0; v < nv; v++) o[v] = _mm256_fmadd_ps(p, LD(V + t * st + v * 8), o[v]);      \
            }                                                                                              \
            for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + j * D + v * 8, o[v]);                      \
        }                                                                                                  \
    }
SQ_ATTEND_AVX2(attend_f16, uint16_t, ld_f16)
SQ_ATTEND_AVX2(attend_f32, float, ld_f32)
#endif

void sq_attend_f16(const float *q, int g, int D, const uint16_t *K, const uint16_t *V, int64_t st, int64_t T,
                   float scale, float *out, float *scores) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0 && D <= 256) {
        attend_f16_avx2(q, g, D, K, V, st, T, scale, out, scores);
        return;
    }
#endif
    if (D % 8 != 0 || D > 512) return;
    attend_f16_scalar(q, g, D, K, V, st, T, scale, out, scores);
}

void sq_attend_f32(const float *q, int g, int D, const float *K, const float *V, int64_t st, int64_t T, float scale,
                   float *out, float *scores) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0 && D <= 256) {
        attend_f32_avx2(q, g, D, K, V, st, T, scale, out, scores);
        return;
    }
#endif
    if (D % 8 != 0 || D > 512) return;
    attend_f32_scalar(q, g, D, K, V, st, T, scale, out, scores);
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
