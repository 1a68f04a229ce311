// SQuat query subspace: the Gram matrix M^T M of float rows, accumulated in double.
#include <math.h>
#include "sq_internal.h"

// Both paths compute every element the same way: per block of 4 rows, g = fma(x_r[i], x_r[j], g)
// for r = 0..3 in order, then the leftover rows one at a time. Products of two floats are exact
// in double, so only the additions round, identically in both paths.

static void gram_rows_scalar(const double *x, int nrows, int D, double *g) {
    for (int i = 0; i < D; i++) {
        double *gi = g + (int64_t)i * D;
        for (int j = i; j < D; j++) {
            double s = gi[j];
            for (int r = 0; r < nrows; r++) s = fma(x[r * D + i], x[r * D + j], s);
            gi[j] = s;
        }
    }
}

#if SQ_X86
SQ_AVX2 static void gram_rows4_avx2(const double *x, int D, double *g) {
    const double *x0 = x, *x1 = x + D, *x2 = x + 2 * D, *x3 = x + 3 * D;
    for (int i = 0; i < D; i++) {
        double *gi = g + (int64_t)i * D;
        const __m256d a0 = _mm256_set1_pd(x0[i]), a1 = _mm256_set1_pd(x1[i]);
        const __m256d a2 = _mm256_set1_pd(x2[i]), a3 = _mm256_set1_pd(x3[i]);
        int j = i;
        // Scalar head up to a multiple of 4, then 4 doubles at a time, then a scalar tail.
        for (; j < D && (j & 3); j++) {
            double s = gi[j];
            s = fma(x0[i], x0[j], s);
            s = fma(x1[i], x1[j], s);
            s = fma(x2[i], x2[j], s);
            s = fma(x3[i], x3[j], s);
            gi[j] = s;
        }
        for (; j + 4 <= D; j += 4) {
            __m256d s = _mm256_loadu_pd(gi + j);
            s = _mm256_fmadd_pd(a0, _mm256_loadu_pd(x0 + j), s);
            s = _mm256_fmadd_pd(a1, _mm256_loadu_pd(x1 + j), s);
            s = _mm256_fmadd_pd(a2, _mm256_loadu_pd(x2 + j), s);
            s = _mm256_fmadd_pd(a3, _mm256_loadu_pd(x3 + j), s);
            _mm256_storeu_pd(gi + j, s);
        }
        for (; j < D; j++) {
            double s = gi[j];
            s = fma(x0[i], x0[j], s);
            s = fma(x1[i], x1[j], s);
            s = fma(x2[i], x2[j], s);
            s = fma(x3[i], x3[j], s);
            gi[j] = s;
        }
    }
}
#endif

void sq_gram_f64(const float *x, int64_t rows, int64_t stride, int D, double *g) {
    if (D <= 0 || rows <= 0) return;
    double buf[4 * D];
    const int avx2 = sq_use_avx2();
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < D; i++) buf[k * D + i] = (double)x[(r + k) * stride + i];
#if SQ_X86
        if (avx2) {
            gram_rows4_avx2(buf, D, g);
            continue;
        }
#endif
        (void)avx2;
        gram_rows_scalar(buf, 4, D, g);
    }
    for (; r < rows; r++) {
        for (int i = 0; i < D; i++) buf[i] = (double)x[r * stride + i];
        gram_rows_scalar(buf, 1, D, g);
    }
}
