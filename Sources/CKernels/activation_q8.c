// Int8 activations (as llama.cpp does for speed): x is quantized per block of 32 to
// d * q (q in [-127, 127]) with s = d * sum(q). The matrix products that use them are in
// matmul_x8.c.
#include <math.h>
#include <string.h>
#include "sq_internal.h"

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
