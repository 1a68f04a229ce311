// Block formats F32, F16, BF16, Q8_0 and Q4_1: dequantization, dot products, the type table,
// and the batch-invariant matmul driver shared by every format.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "sq_internal.h"

// ---------------------------------------------------------------- CPU features

// Thread-local: a test forcing the scalar path affects only its own thread.
static _Thread_local int g_force_scalar = 0;

// The answer is cached in an atomic: threads that race on the first call compute the same value,
// and the relaxed accesses make that race defined (ThreadSanitizer reported the plain int).
int sq_have_avx2(void) {
#if SQ_X86
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

int sq_force_scalar(int on) {
    int prev = g_force_scalar;
    g_force_scalar = on;
    return prev;
}

int sq_use_avx2(void) { return !g_force_scalar && sq_have_avx2(); }

// ---------------------------------------------------------------- f16 / bf16

float sq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {  // inf, or NaN made quiet with its payload kept (as F16C's vcvtph2ps does)
        bits = sign | 0x7F800000u | (mant ? 0x400000u | (mant << 13) : 0);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sq_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7FFFFFFF;
    if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((absx >> 13) & 0x3FF));  // quiet NaN, top payload bits (as F16C)
    if (absx == 0x7F800000u) return (uint16_t)(sign | 0x7C00);
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // rounds to >= 65536: inf
    if (absx < 0x38800000u) {  // below the smallest normal f16: subnormal or zero
        if (absx < 0x33000000u) return (uint16_t)sign;  // < 2^-25 rounds to 0
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e;  // value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e)
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = absx + 0xFFF + ((absx >> 13) & 1);  // round to nearest even
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

#if SQ_X86
SQ_AVX2 static void f16_to_f32_avx2(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = sq_f16_to_f32(src[i]);
}
SQ_AVX2 static void f32_to_f16_avx2(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = sq_f32_to_f16(src[i]);
}
#endif

void sq_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n) {
#if SQ_X86
    if (sq_use_avx2()) { f16_to_f32_avx2(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sq_f16_to_f32(src[i]);
}

void sq_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n) {
#if SQ_X86
    if (sq_use_avx2()) { f32_to_f16_avx2(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sq_f32_to_f16(src[i]);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Compiles NAME##_body once per token count so that accumulators stay in registers.
#define SQ_SPECIALISE_NTOK(NAME)                                                                            \
    SQ_AVX2 static void NAME(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n, \
                             float *out) {                                                                  \
        switch (ntok) {                                                                                     \
        case 1: NAME##_body(row, x, xs, xsum, 1, n, out); break;                                            \
        case 2: NAME##_body(row, x, xs, xsum, 2, n, out); break;                                            \
        case 3: NAME##_body(row, x, xs, xsum, 3, n, out); break;                                            \
        default: NAME##_body(row, x, xs, xsum, 4, n, out); break;                                           \
        }                                                                                                   \
    }

// ---------------------------------------------------------------- block sums

#if SQ_X86
SQ_AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);                    // lanes (0+4, 1+5, 2+6, 3+7)
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));           // (0+4)+(2+6), (1+5)+(3+7)
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}
#endif
// Scalar twin of hsum256 (same pairing).
static inline float hsum8(const float v[8]) {
    float a0 = v[0] + v[4], a1 = v[1] + v[5], a2 = v[2] + v[6], a3 = v[3] + v[7];
    float b0 = a0 + a2, b1 = a1 + a3;
    return b0 + b1;
}

void sq_block_sums(const float *x, int64_t n, float *sums) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *p = x + b * 32;
        for (int j = 0; j < 8; j++) sums[b * 8 + j] = (p[j] + p[8 + j]) + (p[16 + j] + p[24 + j]);
    }
}

// ---------------------------------------------------------------- F32 / F16 / BF16 rows

static void deq_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void deq_f16(const void *src, float *dst, int64_t n) { sq_f16_to_f32_row(src, dst, n); }
static void deq_f16_ref(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sq_f16_to_f32(s[i]);
}
static void deq_bf16(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
}

// Plain-float rows: 8 lanes x 4 accumulators over chunks of 32, then a scalar tail.
#define SQ_FLOAT_ROW_DOT(NAME, LOAD8, SCALAR)                                                              \
    static void NAME##_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok,      \
                              int64_t n, float *out) {                                                     \
        (void)xsum;                                                                                        \
        for (int t = 0; t < ntok; t++) {                                                                   \
            const float *xt = x + t * xs;                                                                  \
            float acc[4][8] = {{0}};                                                                       \
            int64_t i = 0;                                                                                 \
            for (; i + 32 <= n; i += 32)                                                                   \
                for (int a = 0; a < 4; a++)                                                                \
                    for (int j = 0; j < 8; j++) acc[a][j] = fmaf(SCALAR(row, i + a * 8 + j), xt[i + a * 8 + j], acc[a][j]); \
            float v[8];                                                                                    \
            for (int j = 0; j < 8; j++) v[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);          \
            float s = hsum8(v);                                                                            \
            for (; i < n; i++) s = fmaf(SCALAR(row, i), xt[i], s);                                         \
            out[t] = s;                                                                                    \
        }                                                                                                  \
    }

#define F32_AT(row, i) (((const float *)(row))[i])
#define F16_AT(row, i) sq_f16_to_f32(((const uint16_t *)(row))[i])
#define BF16_AT(row, i) bf16_to_f32(((const uint16_t *)(row))[i])
SQ_FLOAT_ROW_DOT(dot_f32, _, F32_AT)
SQ_FLOAT_ROW_DOT(dot_f16, _, F16_AT)
SQ_FLOAT_ROW_DOT(dot_bf16, _, BF16_AT)

#if SQ_X86
SQ_AVX2 static inline __m256 load8_f32(const void *row, int64_t i) { return _mm256_loadu_ps((const float *)row + i); }
SQ_AVX2 static inline __m256 load8_f16(const void *row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}
SQ_AVX2 static inline __m256 load8_bf16(const void *row, int64_t i) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#define SQ_FLOAT_ROW_DOT_AVX2(NAME, LOAD8, SCALAR)                                                        \
    SQ_AVX2 static void NAME##_avx2(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, \
                                    int64_t n, float *out) {                                               \
        (void)xsum;                                                                                        \
        __m256 acc[SQ_TILE][4];                                                                            \
        for (int t = 0; t < ntok; t++)                                                                     \
            for (int a = 0; a < 4; a++) acc[t][a] = _mm256_setzero_ps();                                   \
        int64_t i = 0;                                                                                     \
        for (; i + 32 <= n; i += 32) {                                                                     \
            __m256 w0 = LOAD8(row, i), w1 = LOAD8(row, i + 8), w2 = LOAD8(row, i + 16), w3 = LOAD8(row, i + 24); \
            for (int t = 0; t < ntok; t++) {                                                               \
                const float *xt = x + t * xs + i;                                                          \
                acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), acc[t][0]);                           \
                acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), acc[t][1]);                       \
                acc[t][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xt + 16), acc[t][2]);                      \
                acc[t][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xt + 24), acc[t][3]);                      \
            }                                                                                              \
        }                                                                                                  \
        for (int t = 0; t < ntok; t++) {                                                                   \
            const float *xt = x + t * xs;                                                                  \
            __m256 v = _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3])); \
            float s = hsum256(v);                                                                          \
            for (int64_t k = i; k < n; k++) s = fmaf(SCALAR(row, k), xt[k], s);                            \
            out[t] = s;                                                                                    \
        }                                                                                                  \
    }
SQ_FLOAT_ROW_DOT_AVX2(dot_f32, load8_f32, F32_AT)
SQ_FLOAT_ROW_DOT_AVX2(dot_f16, load8_f16, F16_AT)
SQ_FLOAT_ROW_DOT_AVX2(dot_bf16, load8_bf16, BF16_AT)
#endif

// ---------------------------------------------------------------- Q8_0: x = d * q

static void deq_q8_0_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sq_h2f(b[i / 32].d) * (float)b[i / 32].qs[i % 32];
}

static void dot_q8_0_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    (void)xsum;
    const sq_block_q8_0 *blk = row;
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + t * xs;
        float acc[2][8] = {{0}};
        for (int64_t b = 0; b < n / 32; b++) {
            const float *p = xt + b * 32;
            float d = sq_h2f(blk[b].d);
            for (int j = 0; j < 8; j++) {
                float s01 = fmaf((float)blk[b].qs[8 + j], p[8 + j], (float)blk[b].qs[j] * p[j]);
                float s23 = fmaf((float)blk[b].qs[24 + j], p[24 + j], (float)blk[b].qs[16 + j] * p[16 + j]);
                acc[b & 1][j] = fmaf(d, s01 + s23, acc[b & 1][j]);
            }
        }
        float v[8];
        for (int j = 0; j < 8; j++) v[j] = acc[0][j] + acc[1][j];
        out[t] = hsum8(v);
    }
}

#if SQ_X86
// One token's work on block pair (b: even accumulator, b+1: odd accumulator).
#define Q8_0_TOKEN(t, ACC)                                                                                  \
    do {                                                                                                    \
        const float *p = x + (t) * xs + b * 32;                                                             \
        __m256 s01 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(p + 8), _mm256_mul_ps(q0, _mm256_loadu_ps(p)));   \
        __m256 s23 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(p + 24), _mm256_mul_ps(q2, _mm256_loadu_ps(p + 16))); \
        ACC = _mm256_fmadd_ps(d, _mm256_add_ps(s01, s23), ACC);                                             \
    } while (0)
#define Q8_0_UNPACK()                                                                                       \
    __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d));                                                         \
    const int8_t *q = blk[b].qs;                                                                            \
    __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));              \
    __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8))));        \
    __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 16))));       \
    __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 24))))

SQ_AVX2 static void dot_q8_0_avx2(const void *row, const float *x, int64_t xs, const float *xsum, int ntok,
                                  int64_t n, float *out) {
    (void)xsum;
    const sq_block_q8_0 *blk = row;
    const int64_t nb = n / 32;
    if (ntok == 4) {
        __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
        for (int64_t b = 0; b < nb; b++) {
            Q8_0_UNPACK();
            if (b & 1) {
                Q8_0_TOKEN(0, o0); Q8_0_TOKEN(1, o1); Q8_0_TOKEN(2, o2); Q8_0_TOKEN(3, o3);
            } else {
                Q8_0_TOKEN(0, e0); Q8_0_TOKEN(1, e1); Q8_0_TOKEN(2, e2); Q8_0_TOKEN(3, e3);
            }
        }
        out[0] = hsum256(_mm256_add_ps(e0, o0));
        out[1] = hsum256(_mm256_add_ps(e1, o1));
        out[2] = hsum256(_mm256_add_ps(e2, o2));
        out[3] = hsum256(_mm256_add_ps(e3, o3));
        return;
    }
    for (int t = 0; t < ntok; t++) {
        __m256 e = _mm256_setzero_ps(), o = e;
        for (int64_t b = 0; b < nb; b++) {
            Q8_0_UNPACK();
            if (b & 1) Q8_0_TOKEN(t, o); else Q8_0_TOKEN(t, e);
        }
        out[t] = hsum256(_mm256_add_ps(e, o));
    }
}
#endif

// ---------------------------------------------------------------- Q4_1: x = d * q + m
// Byte j of qs holds element j (low nibble) and element j + 16 (high nibble).

static void deq_q4_1_ref(const void *src, float *dst, int64_t n) {
    const sq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n; i++) {
        const sq_block_q4_1 *k = &b[i / 32];
        int j = (int)(i % 32);
        int q = j < 16 ? (k->qs[j] & 0x0F) : (k->qs[j - 16] >> 4);
        dst[i] = sq_h2f(k->d) * (float)q + sq_h2f(k->m);
    }
}

// dot = sum over lanes of sum_b [ d_b * (q.x)_lane + m_b * xsum_lane ], as the AVX2 kernel.
static void dot_q4_1_scalar(const void *row, const float *x, int64_t xs, const float *xsum, int ntok, int64_t n,
                            float *out) {
    const sq_block_q4_1 *blk = row;
    const int64_t nb = n / 32;
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + t * xs;
        const float *st = xsum + t * nb * 8;
        float acc[2][8] = {{0}};
        for (int64_t b = 0; b < nb; b++) {
            const float *p = xt + b * 32;
            const uint8_t *q = blk[b].qs;
            float d = sq_h2f(blk[b].d), m = sq_h2f(blk[b].m);
            for (int j = 0; j < 8; j++) {
                float s01 = fmaf((float)(q[8 + j] & 15), p[8 + j], (float)(q[j] & 15) * p[j]);
                float s23 = fmaf((float)(q[8 + j] >> 4), p[24 + j], (float)(q[j] >> 4) * p[16 + j]);
                float a = fmaf(d, s01 + s23, acc[b & 1][j]);
                acc[b & 1][j] = fmaf(m, st[b * 8 + j], a);
            }
        }
        float v[8];
        for (int j = 0; j < 8; j++) v[j] = acc[0][j] + acc[1][j];
        out[t] = hsum8(v);
    }
}

#if SQ_X86
// xsum holds, per token, 8 lanes per block: lane j = (x[j] + x[8+j]) + (x[16+j] + x[24+j]).
#define Q4_1_TOKEN(t, ACC)                                                                                  \
    do {                                                                                                    \
        const float *p = x + (t) * xs + b * 32;                                                             \
        __m256 s01 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(p + 8), _mm256_mul_ps(q0, _mm256_loadu_ps(p)));   \
        __m256 s23 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(p + 24), _mm256_mul_ps(q2, _mm256_loadu_ps(p + 16))); \
        ACC = _mm256_fmadd_ps(d, _mm256_add_ps(s01, s23), ACC);                                             \
        ACC = _mm256_fmadd_ps(m, _mm256_loadu_ps(xsum + (t) * nb * 8 + b * 8), ACC);                        \
    } while (0)
#define Q4_1_UNPACK()                                                                                       \
    __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d));                                                         \
    __m256 m = _mm256_set1_ps(_cvtsh_ss(blk[b].m));                                                         \
    __m128i raw = _mm_loadu_si128((const __m128i *)blk[b].qs);                                              \
    __m128i lo = _mm_and_si128(raw, mask);                                                                  \
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);                                               \
    __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));                                               \
    __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));                            \
    __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));                                               \
    __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)))

SQ_AVX2 static void dot_q4_1_avx2(const void *row, const float *x, int64_t xs, const float *xsum, int ntok,
                                  int64_t n, float *out) {
    const sq_block_q4_1 *blk = row;
    const int64_t nb = n / 32;
    const __m128i mask = _mm_set1_epi8(0x0F);
    if (ntok == 4) {
        __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
        for (int64_t b = 0; b < nb; b++) {
            Q4_1_UNPACK();
            if (b & 1) {
                Q4_1_TOKEN(0, o0); Q4_1_TOKEN(1, o1); Q4_1_TOKEN(2, o2); Q4_1_TOKEN(3, o3);
            } else {
                Q4_1_TOKEN(0, e0); Q4_1_TOKEN(1, e1); Q4_1_TOKEN(2, e2); Q4_1_TOKEN(3, e3);
            }
        }
        out[0] = hsum256(_mm256_add_ps(e0, o0));
        out[1] = hsum256(_mm256_add_ps(e1, o1));
        out[2] = hsum256(_mm256_add_ps(e2, o2));
        out[3] = hsum256(_mm256_add_ps(e3, o3));
        return;
    }
    for (int t = 0; t < ntok; t++) {
        __m256 e = _mm256_setzero_ps(), o = e;
        for (int64_t b = 0; b < nb; b++) {
            Q4_1_UNPACK();
            if (b & 1) Q4_1_TOKEN(t, o); else Q4_1_TOKEN(t, e);
        }
        out[t] = hsum256(_mm256_add_ps(e, o));
    }
}
#endif

// Fast dequantizers are the reference ones for these simple formats.
#define deq_q8_0 deq_q8_0_ref
#define deq_q4_1 deq_q4_1_ref

// ---------------------------------------------------------------- type table

#if SQ_X86
#define AVX2_OR_NULL(f) f
#else
#define AVX2_OR_NULL(f) NULL
#endif

static const sq_type_traits traits_f32 = {1, 4, deq_f32, deq_f32, AVX2_OR_NULL(dot_f32_avx2), dot_f32_scalar};
static const sq_type_traits traits_f16 = {1, 2, deq_f16, deq_f16_ref, AVX2_OR_NULL(dot_f16_avx2), dot_f16_scalar};
static const sq_type_traits traits_bf16 = {1, 2, deq_bf16, deq_bf16, AVX2_OR_NULL(dot_bf16_avx2), dot_bf16_scalar};
static const sq_type_traits traits_q8_0 = {32, 34, deq_q8_0, deq_q8_0_ref, AVX2_OR_NULL(dot_q8_0_avx2), dot_q8_0_scalar};
static const sq_type_traits traits_q4_1 = {32, 20, deq_q4_1, deq_q4_1_ref, AVX2_OR_NULL(dot_q4_1_avx2), dot_q4_1_scalar};

const sq_type_traits *sq_traits(int type) {
    switch (type) {
    case SQ_TYPE_F32: return &traits_f32;
    case SQ_TYPE_F16: return &traits_f16;
    case SQ_TYPE_BF16: return &traits_bf16;
    case SQ_TYPE_Q8_0: return &traits_q8_0;
    case SQ_TYPE_Q4_1: return &traits_q4_1;
    case SQ_TYPE_Q4_0: return &sq_traits_q4_0 ? &sq_traits_q4_0 : NULL;
    case SQ_TYPE_Q5_0: return &sq_traits_q5_0 ? &sq_traits_q5_0 : NULL;
    case SQ_TYPE_Q5_1: return &sq_traits_q5_1 ? &sq_traits_q5_1 : NULL;
    case SQ_TYPE_Q4_K: return &sq_traits_q4_K ? &sq_traits_q4_K : NULL;
    case SQ_TYPE_Q5_K: return &sq_traits_q5_K ? &sq_traits_q5_K : NULL;
    case SQ_TYPE_Q6_K: return &sq_traits_q6_K ? &sq_traits_q6_K : NULL;
    default: return NULL;
    }
}

int sq_block_size(int type) {
    const sq_type_traits *tr = sq_traits(type);
    return tr ? tr->block_size : 0;
}

int sq_block_bytes(int type) {
    const sq_type_traits *tr = sq_traits(type);
    return tr ? tr->block_bytes : 0;
}

int sq_dequantize(int type, const void *src, float *dst, int64_t n) {
    const sq_type_traits *tr = sq_traits(type);
    if (!tr || n % tr->block_size) return -1;
    tr->dequantize(src, dst, n);
    return 0;
}

int sq_dequantize_ref(int type, const void *src, float *dst, int64_t n) {
    const sq_type_traits *tr = sq_traits(type);
    if (!tr || n % tr->block_size) return -1;
    tr->dequantize_ref(src, dst, n);
    return 0;
}

double sq_dot_ref(int type, const void *row, const float *x, int64_t n) {
    const sq_type_traits *tr = sq_traits(type);
    if (!tr || n % tr->block_size) return NAN;
    float buf[256];
    double s = 0;
    const int bs = tr->block_size, bb = tr->block_bytes;
    const int64_t chunk = bs >= 256 ? bs : 256 / bs * bs;  // whole blocks, at most 256 elements
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t len = n - i < chunk ? n - i : chunk;
        tr->dequantize_ref((const char *)row + i / bs * bb, buf, len);
        for (int64_t j = 0; j < len; j++) s += (double)buf[j] * (double)x[i + j];
    }
    return s;
}

void sq_matmul(int type, const void *w, size_t row_bytes, int64_t n, const float *x, int64_t x_stride,
               int64_t ntok, float *y, int64_t y_stride, int64_t row_begin, int64_t row_end) {
    const sq_type_traits *tr = sq_traits(type);
    if (!tr || ntok <= 0 || row_end <= row_begin) return;
    sq_dot_multi_fn dot = (sq_use_avx2() && tr->dot_avx2) ? tr->dot_avx2 : tr->dot_scalar;
    const int64_t nb32 = n / 32 * 8;  // 8 lane sums per block of 32
    // Block sums of x, for formats with a per-block minimum: computed once per call.
    float stack_sums[4096];
    float *sums = stack_sums;
    int heap = 0;
    if (nb32 * ntok > 4096) {
        sums = malloc((size_t)(nb32 * ntok) * sizeof(float));
        if (!sums) return;
        heap = 1;
    }
    for (int64_t t = 0; t < ntok; t++) sq_block_sums(x + t * x_stride, n, sums + t * nb32);
    float out[SQ_TILE];
    // Token blocks outer (their activations stay in cache), rows inner.
    const int64_t TB = 16;
    for (int64_t tb = 0; tb < ntok; tb += TB) {
        int64_t te = tb + TB < ntok ? tb + TB : ntok;
        for (int64_t r = row_begin; r < row_end; r++) {
            const void *row = (const char *)w + (size_t)r * row_bytes;
            for (int64_t t0 = tb; t0 < te; t0 += SQ_TILE) {
                int nt = (int)(te - t0 < SQ_TILE ? te - t0 : SQ_TILE);
                dot(row, x + t0 * x_stride, x_stride, sums + t0 * nb32, nt, n, out);
                for (int t = 0; t < nt; t++) y[(t0 + t) * y_stride + r] = out[t];
            }
        }
    }
    if (heap) free(sums);
}

float sq_dot(int type, const void *row, const float *x, int64_t n) {
    float y = NAN;
    sq_matmul(type, row, 0, n, x, n, 1, &y, 1, 0, 1);
    return y;
}
