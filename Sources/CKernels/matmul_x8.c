// Int8-activation matrix products on weights repacked eight rows at a time (the fast path of
// the q8 activations; Q4_1 and Q8_0 weights).
//
// Layout of a group of 8 rows, block b (32 elements of each row):
//   Q4_1: d[8] (f16), m[8] (f16), qs[128]: for v in 0..3, row r in 0..7: bytes 4v..4v+3 of row
//         r's qs (low nibbles: elements 4v..4v+3, high nibbles: 16+4v..16+4v+3).   160 bytes.
//   Q8_0: d[8] (f16), qs[256]: for k in 0..7, row r in 0..7: elements 4k..4k+3 of row r. 272 bytes.
// One 32-byte vector thus holds four consecutive elements of each of the 8 rows; an activation
// dword broadcast against it and pmaddubsw/pmaddwd give all 8 rows' partial sums in lanes,
// without horizontal reductions. The last group is padded with zero rows.
//
// Arithmetic of one output (row r, token t), identical on every path, whatever ntok or the row
// range (batch invariance): I_b = the exact integer dot product of block b, sc_b = d_w(b) * d_x(b)
// (rounded), acc = fma((float) I_b, sc_b, acc) over b in order; for Q4_1 also
// M = fma(m_w(b), s_x(b), M) over b in order; result = acc + M (acc for Q8_0).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "sq_internal.h"

#define GROUP 8

int sq_q8_supported(int type) { return type == SQ_TYPE_Q4_1 || type == SQ_TYPE_Q8_0; }

/// Bytes of one block of one group in the repacked layout (0 if the type is unsupported).
static size_t group_block_bytes(int type) {
    return type == SQ_TYPE_Q4_1 ? 16 + 16 + 128 : type == SQ_TYPE_Q8_0 ? 16 + 256 : 0;
}

size_t sq_repack_x8_bytes(int type, int64_t rows, int64_t n) {
    if (!sq_q8_supported(type) || n <= 0 || n % 32 || rows <= 0) return 0;
    return (size_t)((rows + GROUP - 1) / GROUP) * (size_t)(n / 32) * group_block_bytes(type);
}

int sq_repack_x8(int type, const void *w, size_t row_bytes, int64_t rows, int64_t n, void *dst) {
    const size_t gbb = group_block_bytes(type);
    if (!gbb || n <= 0 || n % 32 || rows <= 0) return -1;
    const int64_t nb = n / 32, groups = (rows + GROUP - 1) / GROUP;
    uint8_t *out = dst;
    memset(out, 0, sq_repack_x8_bytes(type, rows, n));
    for (int64_t g = 0; g < groups; g++) {
        for (int r = 0; r < GROUP; r++) {
            const int64_t row = g * GROUP + r;
            if (row >= rows) break;
            const char *src = (const char *)w + (size_t)row * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = out + (size_t)(g * nb + b) * gbb;
                if (type == SQ_TYPE_Q4_1) {
                    const sq_block_q4_1 *s = (const sq_block_q4_1 *)src + b;
                    memcpy(blk + 2 * r, &s->d, 2);
                    memcpy(blk + 16 + 2 * r, &s->m, 2);
                    for (int v = 0; v < 4; v++) memcpy(blk + 32 + 32 * v + 4 * r, s->qs + 4 * v, 4);
                } else {
                    const sq_block_q8_0 *s = (const sq_block_q8_0 *)src + b;
                    memcpy(blk + 2 * r, &s->d, 2);
                    for (int k = 0; k < 8; k++) memcpy(blk + 16 + 32 * k + 4 * r, s->qs + 4 * k, 4);
                }
            }
        }
    }
    return 0;
}

int sq_dequantize_x8_row(int type, const void *wx8, int64_t n, int64_t row, float *dst) {
    const size_t gbb = group_block_bytes(type);
    if (!gbb || n <= 0 || n % 32 || row < 0) return -1;
    const int64_t nb = n / 32;
    const uint8_t *grp = (const uint8_t *)wx8 + (size_t)(row / GROUP) * (size_t)nb * gbb;
    const int r = (int)(row % GROUP);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + (size_t)b * gbb;
        uint16_t d;
        memcpy(&d, blk + 2 * r, 2);
        float *out = dst + b * 32;
        if (type == SQ_TYPE_Q4_1) {
            uint16_t m;
            memcpy(&m, blk + 16 + 2 * r, 2);
            for (int v = 0; v < 4; v++)
                for (int j = 0; j < 4; j++) {
                    const uint8_t q = blk[32 + 32 * v + 4 * r + j];
                    // The expressions of the plain dequantizer (quant.c), for the same bits.
                    out[4 * v + j] = sq_h2f(d) * (float)(q & 15) + sq_h2f(m);
                    out[16 + 4 * v + j] = sq_h2f(d) * (float)(q >> 4) + sq_h2f(m);
                }
        } else {
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) out[4 * k + j] = sq_h2f(d) * (float)(int8_t)blk[16 + 32 * k + 4 * r + j];
        }
    }
    return 0;
}

// ---------------------------------------------------------------- scalar

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/// Output of lane r of a repacked group (blocks `grp`, nb of them) against token x.
static float dot_x8_scalar(int type, const uint8_t *grp, int r, const sq_block_q8a *x, int64_t nb) {
    const size_t gbb = group_block_bytes(type);
    float acc = 0, msum = 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + (size_t)b * gbb;
        int isum = 0;
        if (type == SQ_TYPE_Q4_1) {
            for (int v = 0; v < 4; v++)
                for (int j = 0; j < 4; j++) {
                    const uint8_t q = blk[32 + 32 * v + 4 * r + j];
                    isum += (q & 15) * x[b].qs[4 * v + j] + (q >> 4) * x[b].qs[16 + 4 * v + j];
                }
        } else {
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) isum += (int8_t)blk[16 + 32 * k + 4 * r + j] * x[b].qs[4 * k + j];
        }
        const float sc = sq_h2f(load_u16(blk + 2 * r)) * x[b].d;
        acc = fmaf((float)isum, sc, acc);
    }
    if (type == SQ_TYPE_Q4_1)
        for (int64_t b = 0; b < nb; b++) msum = fmaf(sq_h2f(load_u16(grp + (size_t)b * gbb + 16 + 2 * r)), x[b].s, msum);
    return acc + msum;
}

/// The same arithmetic on the plain GGML layout (one row).
static float dot_plain_scalar(int type, const void *row, const sq_block_q8a *x, int64_t nb) {
    float acc = 0, msum = 0;
    for (int64_t b = 0; b < nb; b++) {
        int isum = 0;
        float dw;
        if (type == SQ_TYPE_Q4_1) {
            const sq_block_q4_1 *blk = (const sq_block_q4_1 *)row + b;
            for (int j = 0; j < 16; j++) isum += (blk->qs[j] & 15) * x[b].qs[j] + (blk->qs[j] >> 4) * x[b].qs[16 + j];
            dw = sq_h2f(blk->d);
        } else {
            const sq_block_q8_0 *blk = (const sq_block_q8_0 *)row + b;
            for (int j = 0; j < 32; j++) isum += blk->qs[j] * x[b].qs[j];
            dw = sq_h2f(blk->d);
        }
        const float sc = dw * x[b].d;
        acc = fmaf((float)isum, sc, acc);
    }
    if (type == SQ_TYPE_Q4_1)
        for (int64_t b = 0; b < nb; b++) msum = fmaf(sq_h2f(((const sq_block_q4_1 *)row + b)->m), x[b].s, msum);
    return acc + msum;
}

int sq_matmul_q8(int type, const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq, int64_t ntok, float *y,
                 int64_t y_stride, int64_t row_begin, int64_t row_end) {
    if (!sq_q8_supported(type) || n % 32) return -1;
    const int64_t nb = n / 32;
    for (int64_t r = row_begin; r < row_end; r++) {
        const void *row = (const char *)w + (size_t)r * row_bytes;
        for (int64_t t = 0; t < ntok; t++) y[t * y_stride + r] = dot_plain_scalar(type, row, xq + t * nb, nb);
    }
    return 0;
}

#if SQ_X86
// ---------------------------------------------------------------- AVX2

#define TMAX 4  // tokens per tile
// Software prefetch distance in bytes (about 12 blocks ahead, into the next group at a group's
// end): decode streams the weights from DRAM once per token, and the hardware prefetcher alone
// left a third of the bandwidth unused (micro-benchmark: 88 MB of Q4_1 in 7.1 ms -> 4.7 ms).
#define PREFETCH_Q4_1 2048
#define PREFETCH_Q8_0 3072

// acc[t] = fma((float) isum[t], d_w * d_x(t), acc[t]) for block b: the 8 rows' f16 scales are
// the block's first 16 bytes.
SQ_AVX2 static inline __attribute__((always_inline)) void block_fma(__m256 acc[TMAX], const __m256i isum[TMAX],
                                                                   const uint8_t *blk, const sq_block_q8a *const *x,
                                                                   int64_t b, int T) {
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_broadcast_ss(&x[t][b].d)), acc[t]);
}

// One group of 8 rows against T tokens (1..TMAX, a constant after inlining): out[t] = the 8 lanes.
SQ_AVX2 static inline __attribute__((always_inline)) void group_q4_1(const uint8_t *grp, const sq_block_q8a *const *x,
                                                                    int64_t nb, int T, __m256 out[TMAX]) {
    const __m256i mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[TMAX];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + (size_t)b * 160;
        for (int l = 0; l < 192; l += 64) _mm_prefetch((const char *)blk + PREFETCH_Q4_1 + l, _MM_HINT_T0);
        __m256i s[TMAX];
        for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
        for (int v = 0; v < 4; v++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * v));
            const __m256i lo = _mm256_and_si256(raw, mask);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
            for (int t = 0; t < T; t++) {
                int xl, xh;
                memcpy(&xl, x[t][b].qs + 4 * v, 4);
                memcpy(&xh, x[t][b].qs + 16 + 4 * v, 4);
                // Per 16-bit lane at most 16 products of 15 * 127: no overflow.
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
            }
        }
        for (int t = 0; t < T; t++) s[t] = _mm256_madd_epi16(s[t], ones);
        block_fma(acc, s, blk, x, b, T);
    }
    __m256 msum[TMAX];
    for (int t = 0; t < T; t++) msum[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(grp + (size_t)b * 160 + 16)));
        for (int t = 0; t < T; t++) msum[t] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(&x[t][b].s), msum[t]);
    }
    for (int t = 0; t < T; t++) out[t] = _mm256_add_ps(acc[t], msum[t]);
}

SQ_AVX2 static inline __attribute__((always_inline)) void group_q8_0(const uint8_t *grp, const sq_block_q8a *const *x,
                                                                    int64_t nb, int T, __m256 out[TMAX]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[TMAX];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + (size_t)b * 272;
        for (int l = 0; l < 320; l += 64) _mm_prefetch((const char *)blk + PREFETCH_Q8_0 + l, _MM_HINT_T0);
        __m256i s[TMAX];
        for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
        for (int k = 0; k < 8; k++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * k));
            const __m256i aw = _mm256_sign_epi8(w, w);
            for (int t = 0; t < T; t++) {
                int xv;
                memcpy(&xv, x[t][b].qs + 4 * k, 4);
                // |w| <= 128, |x| <= 127: a pair fits in 16 bits, so widen to 32 bits at once.
                const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(xv), w));
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p, ones));
            }
        }
        block_fma(acc, s, blk, x, b, T);
    }
    for (int t = 0; t < T; t++) out[t] = acc[t];
}

SQ_AVX2 static void matmul_x8_avx2(int type, const uint8_t *wx, int64_t nb, const sq_block_q8a *xq, int64_t ntok,
                                   float *y, int64_t ys, int64_t r0, int64_t r1) {
    const size_t gstride = (size_t)nb * group_block_bytes(type);
    // Tokens in blocks of 32 (their activations stay in L1/L2); per group, tiles of TMAX tokens.
    for (int64_t tb = 0; tb < ntok; tb += 32) {
        const int64_t te = tb + 32 < ntok ? tb + 32 : ntok;
        for (int64_t g = r0 / GROUP; g * GROUP < r1; g++) {
            const uint8_t *grp = wx + (size_t)g * gstride;
            for (int64_t t = tb; t < te; t += TMAX) {
                const int T = te - t < TMAX ? (int)(te - t) : TMAX;
                const sq_block_q8a *x[TMAX];
                for (int i = 0; i < TMAX; i++) x[i] = xq + (t + (i < T ? i : 0)) * nb;
                __m256 out[TMAX];
                if (type == SQ_TYPE_Q4_1) {
                    switch (T) {
                    case 4: group_q4_1(grp, x, nb, 4, out); break;
                    case 3: group_q4_1(grp, x, nb, 3, out); break;
                    case 2: group_q4_1(grp, x, nb, 2, out); break;
                    default: group_q4_1(grp, x, nb, 1, out); break;
                    }
                } else {
                    switch (T) {
                    case 4: group_q8_0(grp, x, nb, 4, out); break;
                    case 3: group_q8_0(grp, x, nb, 3, out); break;
                    case 2: group_q8_0(grp, x, nb, 2, out); break;
                    default: group_q8_0(grp, x, nb, 1, out); break;
                    }
                }
                const int64_t lo = g * GROUP < r0 ? r0 - g * GROUP : 0;
                const int64_t hi = g * GROUP + GROUP > r1 ? r1 - g * GROUP : GROUP;
                for (int i = 0; i < T; i++) {
                    float *dst = y + (t + i) * ys + g * GROUP;
                    if (lo == 0 && hi == GROUP) {
                        // A whole group: one store (a copy loop here became a memmove call per group).
                        _mm256_storeu_ps(dst, out[i]);
                        continue;
                    }
                    float lanes[GROUP];
                    _mm256_storeu_ps(lanes, out[i]);
                    for (int64_t r = lo; r < hi; r++) dst[r] = lanes[r];
                }
            }
        }
    }
}
#endif

int sq_matmul_q8_x8(int type, const void *wx8, int64_t n, const sq_block_q8a *xq, int64_t ntok, float *y,
                    int64_t y_stride, int64_t row_begin, int64_t row_end) {
    if (!sq_q8_supported(type) || n <= 0 || n % 32) return -1;
    const int64_t nb = n / 32;
#if SQ_X86
    if (sq_use_avx2()) {
        matmul_x8_avx2(type, wx8, nb, xq, ntok, y, y_stride, row_begin, row_end);
        return 0;
    }
#endif
    const size_t gstride = (size_t)nb * group_block_bytes(type);
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *grp = (const uint8_t *)wx8 + (size_t)(r / GROUP) * gstride;
        for (int64_t t = 0; t < ntok; t++) y[t * y_stride + r] = dot_x8_scalar(type, grp, (int)(r % GROUP), xq + t * nb, nb);
    }
    return 0;
}
