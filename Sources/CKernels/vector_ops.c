// Small vector operations of the forward pass: RMSNorm, SwiGLU, residual add.
#include <math.h>
#include <string.h>
#include "sq_simd.h"

void sq_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

// ---------------------------------------------------------------- expf for SiLU
//
// exp(x) = 2^(k/32) * 2^(r/32), k = round(x * 32/ln2), |r| <= 1/2, evaluated in double with a
// cubic polynomial and one rounding to float at the end: the table-driven method of glibc's
// expf, with its constants and the fused operations of its FMA build (the one glibc runs on
// x86-64 with FMA). On this machine sq_expf equals glibc's expf for every float (checked
// exhaustively once; the tests compare millions of inputs), and the AVX2 path computes the same
// operations per lane, so SwiGLU gives the bits it gave with libm's expf. Without AVX2 and FMA,
// SwiGLU keeps libm's expf: there glibc runs its non-FMA build, and emulated fused operations
// would be slow.

// Bits of 2^(i/32) (correctly rounded doubles) minus i << 47: adding k << 47 then puts the
// exponent of 2^(k/32) in place.
static const uint64_t exp2_table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
#define EXP_INV_LN2_32 (0x1.71547652b82fep+0 * 32)
#define EXP_SHIFT 0x1.8p+52
#define EXP_C0 (0x1.c6af84b912394p-5 / 32 / 32 / 32)
#define EXP_C1 (0x1.ebfce50fac4f3p-3 / 32 / 32)
#define EXP_C2 (0x1.62e42ff0c52d6p-1 / 32)

// sq_expf's body, inlined into a plain and an FMA-targeted function (where fma() is one
// instruction instead of a library call).
static inline __attribute__((always_inline)) float expf_body(float x) {
#pragma clang fp contract(off)
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if (((bits >> 20) & 0x7ff) >= 0x42b) {                 // |x| >= 88 or NaN
        if (bits == 0xff800000u) return 0.0f;             // -inf
        if (((bits >> 20) & 0x7ff) >= 0x7f8) return x + x;  // +inf, NaN
        if (x > 0x1.62e42ep6f) return INFINITY;             // above log(2^128)
        if (x < -0x1.9fe368p6f) return 0.0f;                // below log(2^-150)
    }
    const double xd = x;
    double kd = fma(EXP_INV_LN2_32, xd, EXP_SHIFT);
    uint64_t ki;
    memcpy(&ki, &kd, 8);
    kd -= EXP_SHIFT;
    const double r = fma(EXP_INV_LN2_32, xd, -kd);
    const uint64_t t = exp2_table[ki % 32] + (ki << 47);
    double s;
    memcpy(&s, &t, 8);
    const double p = fma(EXP_C0, r, EXP_C1), r2 = r * r;
    double y = fma(EXP_C2, r, 1.0);
    y = fma(p, r2, y);
    return (float)(y * s);
}

#if SQ_X86
// expf_body compiled for FMA: its fma() calls become single instructions.
SQ_AVX2 static float expf_fma(float x) { return expf_body(x); }

// sq_expf of four floats, lane by lane the same operations (x within range).
SQ_AVX2 static inline __m128 expf4_avx2(__m128 x) {
    const __m256d xd = _mm256_cvtps_pd(x), shift = _mm256_set1_pd(EXP_SHIFT), inv = _mm256_set1_pd(EXP_INV_LN2_32);
    __m256d kd = _mm256_fmadd_pd(inv, xd, shift);
    const __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    const __m256d r = _mm256_fmsub_pd(inv, xd, kd);
    const __m256i tab = _mm256_i64gather_epi64((const long long *)exp2_table, _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
    const __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(tab, _mm256_slli_epi64(ki, 47)));
    const __m256d p = _mm256_fmadd_pd(_mm256_set1_pd(EXP_C0), r, _mm256_set1_pd(EXP_C1)), r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(_mm256_set1_pd(EXP_C2), r, _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(p, r2, y);
    return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

// True when some lane of x has |x| >= 88 or is NaN: such runs take expf_body's range checks.
SQ_AVX2 static inline int expf8_out_of_range(__m256 x) {
    const __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 20), _mm256_set1_epi32(0x7ff));
    return !_mm256_testz_si256(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(0x42b - 1)), _mm256_set1_epi32(-1));
}

SQ_AVX2 static inline __m256 expf8_avx2(__m256 x) {
    return _mm256_set_m128(expf4_avx2(_mm256_extractf128_ps(x, 1)), expf4_avx2(_mm256_castps256_ps128(x)));
}

// x[i] = exp(x[i]) one at a time (out-of-range runs and tails of the 8-lane loop).
SQ_AVX2 static void expf_n_fma(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = expf_body(x[i]);
}

SQ_AVX2 static void expf_n_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (expf8_out_of_range(v)) expf_n_fma(x + i, 8);
        else _mm256_storeu_ps(x + i, expf8_avx2(v));
    }
    expf_n_fma(x + i, n - i);
}

// a[i] = silu(a[i]) * b[i] one at a time, with expf_body (as expf_n_fma).
SQ_AVX2 static void swiglu_fma(float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf_body(-a[i])) * b[i];
}

SQ_AVX2 static void swiglu_avx2(float *a, const float *b, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(a + i), x = _mm256_xor_ps(v, sign);
        if (expf8_out_of_range(x)) swiglu_fma(a + i, b + i, 8);
        else _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, expf8_avx2(x))), _mm256_loadu_ps(b + i)));
    }
    swiglu_fma(a + i, b + i, n - i);
}
#endif

float sq_expf(float x) {
#if SQ_X86
    if (sq_use_avx2()) return expf_fma(x);
#endif
    return expf_body(x);
}

void sq_expf_n(float *x, int64_t n) {
#if SQ_X86
    if (sq_use_avx2()) {
        expf_n_avx2(x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) x[i] = expf_body(x[i]);
}

void sq_swiglu(float *a, const float *b, int64_t n) {
#if SQ_X86
    if (sq_use_avx2()) {
        swiglu_avx2(a, b, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float v = a[i];
        a[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

void sq_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
