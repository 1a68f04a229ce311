// Small dense double linear algebra for SQuat's per-KV-head matrices (order <= a few hundred):
// Gauss-Jordan and Cholesky inverses and the symmetric eigen-decomposition (EISPACK tred2 +
// tql2, as in JAMA).
//
// The eigen-decomposition works on the transpose of JAMA's V, so that every O(n^3) loop walks
// contiguous memory: the element-wise loops vectorise, and tql2's rotations touch two rows.
// Each element sees JAMA's operations, except that tred2's sums run in four interleaved lanes
// (dot_lanes4: four dependency chains, whole vectors) and sqrt(x^2 + y^2) replaces hypot where
// that is safe. Nothing is contracted into fma and nothing is reassociated by the compiler, so
// the AVX2 build and the plain build give the same bits.
#include <math.h>
#include "sq_internal.h"

#pragma clang fp contract(off)

// Bodies inlined into both the plain and the AVX2-targeted entry points.
#define DENSE_INLINE static inline __attribute__((always_inline))

// y[k] -= f * a[k] + g * b[k] for k < len.
DENSE_INLINE void update2(double *restrict y, const double *restrict a, const double *restrict b, double f, double g,
                              int len) {
    for (int k = 0; k < len; k++) y[k] -= f * a[k] + g * b[k];
}

// y[k] -= g * x[k] for k < len.
DENSE_INLINE void axpy_minus(double *restrict y, const double *restrict x, double g, int64_t len) {
    for (int64_t k = 0; k < len; k++) y[k] -= g * x[k];
}

// sum of a[k] * b[k] for k < len, in four lanes (lane k mod 4, each in order), then
// (l0 + l1) + (l2 + l3): four dependency chains instead of one, and whole vectors.
DENSE_INLINE double dot_lanes4(const double *restrict a, const double *restrict b, int len) {
    double l0 = 0, l1 = 0, l2 = 0, l3 = 0;
    int k = 0;
    for (; k + 4 <= len; k += 4) {
        l0 += a[k] * b[k];
        l1 += a[k + 1] * b[k + 1];
        l2 += a[k + 2] * b[k + 2];
        l3 += a[k + 3] * b[k + 3];
    }
    if (k < len) l0 += a[k] * b[k];
    if (k + 1 < len) l1 += a[k + 1] * b[k + 1];
    if (k + 2 < len) l2 += a[k + 2] * b[k + 2];
    return (l0 + l1) + (l2 + l3);
}

// sum of |a[k]| for k < len, in dot_lanes4's lanes and order.
DENSE_INLINE double abs_sum_lanes4(const double *a, int len) {
    double l0 = 0, l1 = 0, l2 = 0, l3 = 0;
    int k = 0;
    for (; k + 4 <= len; k += 4) {
        l0 += fabs(a[k]);
        l1 += fabs(a[k + 1]);
        l2 += fabs(a[k + 2]);
        l3 += fabs(a[k + 3]);
    }
    if (k < len) l0 += fabs(a[k]);
    if (k + 1 < len) l1 += fabs(a[k + 1]);
    if (k + 2 < len) l2 += fabs(a[k + 2]);
    return (l0 + l1) + (l2 + l3);
}

// The Householder reduction of a symmetric matrix to tridiagonal form (diagonal d, subdiagonal
// e[1..n-1]); vt (row-major, both triangles on entry) becomes the transpose of the accumulated
// orthogonal transformation.
DENSE_INLINE void tred2_body(double *vt, double *d, double *e, int n) {
#define VT(row, col) vt[(int64_t)(row) * n + (col)]
    for (int j = 0; j < n; j++) d[j] = VT(j, n - 1);
    for (int i = n - 1; i > 0; i--) {
        double scale = abs_sum_lanes4(d, i), h = 0;
        if (scale == 0) {
            e[i] = d[i - 1];
            for (int j = 0; j < i; j++) {
                d[j] = VT(j, i - 1);
                VT(j, i) = 0;
                VT(i, j) = 0;
            }
        } else {
            for (int k = 0; k < i; k++) d[k] /= scale;
            h = dot_lanes4(d, d, i);
            double f = d[i - 1];
            double g = sqrt(h);
            if (f > 0) g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int j = 0; j < i; j++) e[j] = 0;
            for (int j = 0; j < i; j++) {
                f = d[j];
                VT(i, j) = f;
                const double *col = vt + (int64_t)j * n;
                for (int k = j + 1; k <= i - 1; k++) e[k] += col[k] * f;
                e[j] = (e[j] + col[j] * f) + dot_lanes4(col + j + 1, d + j + 1, i - 1 - j);
            }
            for (int j = 0; j < i; j++) e[j] /= h;
            f = dot_lanes4(e, d, i);
            const double hh = f / (h + h);
            for (int j = 0; j < i; j++) e[j] -= hh * d[j];
            for (int j = 0; j < i; j++) {
                double *col = vt + (int64_t)j * n;
                update2(col + j, e + j, d + j, d[j], e[j], i - j);
                d[j] = col[i - 1];
                col[i] = 0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for (int i = 0; i < n - 1; i++) {
        VT(i, n - 1) = VT(i, i);
        VT(i, i) = 1;
        const double h = d[i + 1];
        double *next = vt + (int64_t)(i + 1) * n;
        if (h != 0) {
            for (int k = 0; k <= i; k++) d[k] = next[k] / h;
            for (int j = 0; j <= i; j++) {
                double *col = vt + (int64_t)j * n;
                axpy_minus(col, d, dot_lanes4(next, col, i + 1), i + 1);
            }
        }
        for (int k = 0; k <= i; k++) next[k] = 0;
    }
    for (int j = 0; j < n; j++) {
        d[j] = VT(j, n - 1);
        VT(j, n - 1) = 0;
    }
    VT(n - 1, n - 1) = 1;
    e[0] = 0;
#undef VT
}

// sqrt(x^2 + y^2): directly where neither square can overflow or lose precision to underflow
// (glibc's hypot costs ~30 ns, and tql2 calls it once per rotation), hypot otherwise.
DENSE_INLINE double norm2(double x, double y) {
    const double ax = fabs(x), ay = fabs(y), big = ax > ay ? ax : ay;
    if (big < 0x1p500 && big > 0x1p-450) return sqrt(x * x + y * y);
    return hypot(x, y);
}

// Rows a and b of the eigenvector matrix rotated by (c, s): b' = s*a + c*b, a' = c*a - s*b.
DENSE_INLINE void rotate_rows(double *restrict a, double *restrict b, double c, double s, int n) {
    for (int k = 0; k < n; k++) {
        const double h = b[k];
        b[k] = s * a[k] + c * h;
        a[k] = c * a[k] - s * h;
    }
}

// Largest order whose QL rotations are deferred (stack buffers), and whose Cholesky inverse runs.
#define SQ_EIGEN_MAX_N 512

// The rotations k = pending-1 down to 0 of a QL iteration (rows pl + k, pl + k + 1).
DENSE_INLINE void flush_rotations(double *vt, const double *c, const double *s, int pl, int pending, int n) {
    for (int k = pending - 1; k >= 0; k--)
        rotate_rows(vt + (int64_t)(pl + k) * n, vt + (int64_t)(pl + k + 1) * n, c[k], s[k], n);
}

// The implicit QL algorithm on the tridiagonal (d, e), rotating the rows of vt. Returns the
// number of QL iterations. Each iteration's chain of square roots and divisions is latency
// bound; the previous iteration's row rotations (ready to run) are interleaved with it, one per
// step, and the rotations keep their original order, so the result is the same bits as rotating
// at once (which orders above SQ_EIGEN_MAX_N still do).
DENSE_INLINE int tql2_body(double *vt, double *d, double *e, int n) {
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0;
    double f = 0, tst1 = 0;
    const double eps = 0x1p-52;
    // Rotations of the previous QL iteration not applied yet: k < pending rotates rows pl + k
    // and pl + k + 1 by (pc[k], ps[k]), highest k first.
    double buf[4 * SQ_EIGEN_MAX_N], *pc = buf, *ps = buf + SQ_EIGEN_MAX_N, *cc = buf + 2 * SQ_EIGEN_MAX_N,
                                  *cs = buf + 3 * SQ_EIGEN_MAX_N;
    int pending = 0, pl = 0;
    const int defer = n <= SQ_EIGEN_MAX_N;
    int iterations = 0;
    for (int l = 0; l < n; l++) {
        const double t = fabs(d[l]) + fabs(e[l]);
        if (t > tst1) tst1 = t;
        int m = l;
        while (m < n) {
            if (fabs(e[m]) <= eps * tst1) break;
            m++;
        }
        if (m == n) m = n - 1;
        if (m > l) {
            do {
                iterations++;
                double g = d[l];
                double p = (d[l + 1] - g) / (2 * e[l]);
                double r = norm2(p, 1);
                if (p < 0) r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                const double dl1 = d[l + 1];
                double h = g - d[l];
                for (int i = l + 2; i < n; i++) d[i] -= h;
                f += h;
                p = d[m];
                double c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
                const double el1 = e[l + 1];
                for (int i = m - 1; i >= l; i--) {
                    if (pending > 0) {
                        pending--;
                        rotate_rows(vt + (int64_t)(pl + pending) * n, vt + (int64_t)(pl + pending + 1) * n,
                                    pc[pending], ps[pending], n);
                    }
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = norm2(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if (defer)
                        cc[i - l] = c, cs[i - l] = s;
                    else
                        rotate_rows(vt + (int64_t)i * n, vt + (int64_t)(i + 1) * n, c, s, n);
                }
                flush_rotations(vt, pc, ps, pl, pending, n);
                if (defer) {
                    pending = m - l, pl = l;
                    double *swap = pc;
                    pc = cc, cc = swap;
                    swap = ps, ps = cs, cs = swap;
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (fabs(e[l]) > eps * tst1 && iterations < 30 * n);
        }
        d[l] = d[l] + f;
        e[l] = 0;
    }
    flush_rotations(vt, pc, ps, pl, pending, n);
    return iterations;
}

DENSE_INLINE int eigen_body(double *vt, double *d, double *e, int n) {
    tred2_body(vt, d, e, n);
    return tql2_body(vt, d, e, n);
}

// Gauss-Jordan elimination with partial pivoting on the n x 2n block [a | I] in work.
DENSE_INLINE void inverse_body(const double *a, int n, double *work, double *out) {
    const int64_t w = 2 * (int64_t)n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            work[i * w + j] = a[(int64_t)i * n + j];
            work[i * w + n + j] = i == j ? 1 : 0;
        }
    }
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabs(work[r * w + col]) > fabs(work[piv * w + col])) piv = r;
        if (piv != col) {
            for (int64_t j = 0; j < w; j++) {
                const double t = work[piv * w + j];
                work[piv * w + j] = work[col * w + j];
                work[col * w + j] = t;
            }
        }
        // Left-half columns before col never feed the right half again (pivots and factors come
        // from column col onwards), so the row operations start at col.
        double *prow = work + col * w;
        const double inv = 1 / prow[col];
        for (int64_t j = col; j < w; j++) prow[j] *= inv;
        for (int r = 0; r < n; r++) {
            if (r == col) continue;
            double *row = work + r * w;
            const double f = row[col];
            if (f != 0) axpy_minus(row + col, prow + col, f, w - col);
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) out[(int64_t)i * n + j] = work[i * w + n + j];
}

// Inverse of a symmetric positive definite matrix by Cholesky: A = L L^T, W = L^-1 row by row
// (each row a sum of earlier rows), A^-1 = W^T W as a sum of outer products of W's rows; about a
// third of Gauss-Jordan's work, every inner loop contiguous. work: n*n doubles. Returns 0, or 1
// (out untouched) when a pivot is not positive: A is not positive definite in double.
DENSE_INLINE int spd_inverse_body(const double *a, int n, double *work, double *out) {
    double *L = work;  // lower triangle, row-major; then W in place
    for (int i = 0; i < n; i++) {
        for (int j = 0; j <= i; j++) {
            const double s = a[(int64_t)i * n + j] - dot_lanes4(L + (int64_t)i * n, L + (int64_t)j * n, j);
            if (j == i) {
                if (!(s > 0)) return 1;
                L[(int64_t)i * n + i] = sqrt(s);
            } else {
                L[(int64_t)i * n + j] = s / L[(int64_t)j * n + j];
            }
        }
    }
    // W = L^-1, row i: (e_i - sum_{k<i} L[i][k] W[k]) / L[i][i], overwriting L's row i from the left.
    for (int i = 0; i < n; i++) {
        double *li = L + (int64_t)i * n;
        double row[SQ_EIGEN_MAX_N];
        for (int q = 0; q <= i; q++) row[q] = 0;
        for (int k = 0; k < i; k++) axpy_minus(row, L + (int64_t)k * n, li[k], k + 1);
        const double inv = 1 / li[i];
        for (int q = 0; q < i; q++) li[q] = row[q] * inv;
        li[i] = inv;
    }
    for (int64_t p = 0; p < (int64_t)n * n; p++) out[p] = 0;
    for (int i = 0; i < n; i++) {
        const double *wi = L + (int64_t)i * n;
        for (int p = 0; p <= i; p++) axpy_minus(out + (int64_t)p * n, wi, -wi[p], p + 1);
    }
    for (int p = 0; p < n; p++)
        for (int q = p + 1; q < n; q++) out[(int64_t)p * n + q] = out[(int64_t)q * n + p];
    return 0;
}

#if SQ_X86
SQ_AVX2 static int eigen_avx2(double *vt, double *d, double *e, int n) { return eigen_body(vt, d, e, n); }
SQ_AVX2 static void inverse_avx2(const double *a, int n, double *work, double *out) { inverse_body(a, n, work, out); }
SQ_AVX2 static int spd_inverse_avx2(const double *a, int n, double *work, double *out) {
    return spd_inverse_body(a, n, work, out);
}
#endif

int sq_symmetric_eigen_f64(double *vt, double *d, double *e, int n) {
    if (n <= 0) return 0;
#if SQ_X86
    if (sq_use_avx2()) return eigen_avx2(vt, d, e, n);
#endif
    return eigen_body(vt, d, e, n);
}

void sq_inverse_f64(const double *a, int n, double *work, double *out) {
    if (n <= 0) return;
#if SQ_X86
    if (sq_use_avx2()) {
        inverse_avx2(a, n, work, out);
        return;
    }
#endif
    inverse_body(a, n, work, out);
}

int sq_spd_inverse_f64(const double *a, int n, double *work, double *out) {
    if (n <= 0) return 0;
    if (n > SQ_EIGEN_MAX_N) return 1;
#if SQ_X86
    if (sq_use_avx2()) return spd_inverse_avx2(a, n, work, out);
#endif
    return spd_inverse_body(a, n, work, out);
}
