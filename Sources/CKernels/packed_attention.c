// Attention that reads 2/4/8-bit packed KV codes directly (SQuat and KIVI caches), never a
// dequantized copy of the cache.
//
// Packed layout of one token's D codes of `bits` bits: D*bits/8 bytes; with k = 8/bits codes per
// byte and w = D/k bytes, byte i holds the code of channel i + j*w at bit j*bits (j < k).
// Keys: codes per token, scale/min (f16) per channel per group of `key_group` tokens.
// Values: codes per token, scale/min (f16) per token per group of `value_group` channels.
//
// Keys stored before RoPE are rotated on the fly without reading a cos/sin row per token: for a
// key at position p in the group starting at a (a multiple of key_group), q . R(p) k is computed
// as (R(a)^T q) . (R(p - a) k), so only the group's anchor row and the first key_group rows of
// the table are read. The scalar and AVX2 paths do the same operations in the same order and
// agree bit for bit; a token's score never depends on the other tokens of the call.
//
// Keys stored after RoPE need no rotation, so the group's scales fold into the query: q . (s c + m)
// is computed as (q s) . c + q . m, with q s and q . m once per key group and head; a key then
// costs its codes' conversion and the dot product alone.
//
// Codes are read without shifting: the code of channel i, at bit sh = (i / w) * bits of its byte,
// is taken masked in place as c * 2^sh, and the power of two is cancelled exactly elsewhere: keys
// use the scale times 2^-sh (fma(c 2^sh, s 2^-sh, m) is fma(c, s, m) unless s 2^-sh underflows),
// values accumulate p * scale * c * 2^sh per channel and multiply the sum by 2^-sh at the end.
#include <math.h>
#include "sq_simd.h"

void sq_pack_codes(const uint8_t *codes, int D, int bits, uint8_t *out) {
    const int k = 8 / bits, w = D / k;
    for (int i = 0; i < w; i++) {
        uint8_t b = 0;
        for (int j = 0; j < k; j++) b |= (uint8_t)(codes[i + j * w] << (j * bits));
        out[i] = b;
    }
}

void sq_unpack_codes(const uint8_t *packed, int D, int bits, uint8_t *codes) {
    const int k = 8 / bits, w = D / k;
    const uint8_t mask = (uint8_t)((1u << bits) - 1);
    for (int i = 0; i < w; i++)
        for (int j = 0; j < k; j++) codes[i + j * w] = (packed[i] >> (j * bits)) & mask;
}

// Codes of one token in place (channel i: its bits masked, not shifted: c * 2^shift_of(i)).
static void codes_in_place(const uint8_t *packed, int D, int bits, float *out) {
    const int k = 8 / bits, w = D / k;
    const unsigned mask = (1u << bits) - 1;
    for (int i = 0; i < w; i++)
        for (int j = 0; j < k; j++) out[i + j * w] = (float)(packed[i] & (mask << (j * bits)));
}

// The factor 2^-shift that cancels channel i's in-place code.
static inline float unshift(int D, int bits, int i) { return 1.0f / (float)(1u << (i / (D * bits / 8) * bits)); }

// A scale or minimum stored as f32 or f16.
static inline float load_scale(const void *p, int64_t i, int f32) {
    return f32 ? ((const float *)p)[i] : sq_f16_to_f32(((const uint16_t *)p)[i]);
}

// R(a)^T q for one head (halves layout): the query rotated back by the anchor's angle.
static inline void unrotate_query_scalar(const float *q, int D, const float *c, const float *sn, float *out) {
    const int h = D / 2;
    for (int i = 0; i < h; i++) {
        float a = q[i], b = q[i + h];
        out[i] = fmaf(a, c[i], b * sn[i]);
        out[i + h] = fmaf(b, c[i], -(a * sn[i]));
    }
}

// Lane j accumulates q[i+j] k[i+j] over i = 0, 8, ...; lanes summed ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
static inline float dot_scalar8(const float *q, const float *k, int D) {
    float acc[8] = {0};
    for (int i = 0; i < D; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = fmaf(q[i + j], k[i + j], acc[j]);
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    return (a0 + a2) + (a1 + a3);
}

// The packed key kernel's order for keys after RoPE: lane j accumulates the even 8-channel runs
// (i = 0, 16, ...) and the odd ones (i = 8, 24, ...) separately, adds the two, then sums lanes as
// dot_scalar8 does.
static inline float dot_split_scalar8(const float *q, const float *k, int D) {
    float even[8] = {0}, odd[8] = {0}, acc[8];
    for (int i = 0; i < D; i += 16)
        for (int j = 0; j < 8; j++) {
            even[j] = fmaf(q[i + j], k[i + j], even[j]);
            if (i + 8 < D) odd[j] = fmaf(q[i + 8 + j], k[i + 8 + j], odd[j]);
        }
    for (int j = 0; j < 8; j++) acc[j] = even[j] + odd[j];
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    return (a0 + a2) + (a1 + a3);
}

// The token of lane l within a block of eight in the packed key kernel for keys before RoPE (see
// codes_by_byte).
static const int sq_lane_tokens[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Work buffers of the kernels, on the stack: these bound the fast and scalar paths.
#define SQ_PACKED_MAX_D 256
#define SQ_PACKED_MAX_QD 4096  // g * D
#define SQ_VALUE_ROWS 64       // g * channel groups, rows of the AVX2 value kernel's weight table

static void scores_packed_scalar(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                                 const void *kmin, int scale_f32, int key_group, int64_t pos0, const float *rope_cos,
                                 const float *rope_sin, int64_t n, float scale, float *scores, int64_t stride) {
    const int pb = D * bits / 8, h = D / 2;
    float s[SQ_PACKED_MAX_D], m[SQ_PACKED_MAX_D], qr[SQ_PACKED_MAX_D], c[SQ_PACKED_MAX_D];
    float qs[SQ_PACKED_MAX_D], qm = 0;  // keys after RoPE: the query times the group's scales, and q . m
    for (int j = 0; j < g; j++) {
        int64_t group = -1;
        for (int64_t t = 0; t < n; t++) {
            const int64_t pos = pos0 + t, gi = pos / key_group;
            if (gi != group) {
                group = gi;
                for (int i = 0; i < D; i++) {
                    s[i] = load_scale(kscale, gi * D + i, scale_f32) * unshift(D, bits, i);
                    m[i] = load_scale(kmin, gi * D + i, scale_f32);
                }
                if (rope_cos) {
                    unrotate_query_scalar(q + j * D, D, rope_cos + gi * key_group * h, rope_sin + gi * key_group * h, qr);
                } else {
                    for (int i = 0; i < D; i++) qs[i] = q[j * D + i] * s[i];
                    qm = dot_scalar8(q + j * D, m, D);
                }
            }
            codes_in_place(codes + t * pb, D, bits, c);
            if (!rope_cos) {
                scores[j * stride + t] = (dot_split_scalar8(qs, c, D) + qm) * scale;
                continue;
            }
            // Each pair (i, i + h) dequantized, rotated by its in-group row and dotted at once, one
            // accumulator in channel order (the AVX2 kernel's lane order, a token per lane).
            const float *cr = rope_cos + (pos - gi * key_group) * h, *sr = rope_sin + (pos - gi * key_group) * h;
            float acc = 0;
            for (int i = 0; i < h; i++) {
                const float a = fmaf(c[i], s[i], m[i]), b = fmaf(c[i + h], s[i + h], m[i + h]);
                acc = fmaf(qr[i], fmaf(a, cr[i], -(b * sr[i])), acc);
                acc = fmaf(qr[i + h], fmaf(a, sr[i], b * cr[i]), acc);
            }
            scores[j * stride + t] = acc * scale;
        }
    }
}

// out[j*D + i] += acc * 2^-shift + mterm, acc = sum_t fma(p*scale_t, code_t[i] * 2^shift, acc) in
// token order and mterm = sum_t fma(p, min_t, mterm) per channel group.
static void values_packed_scalar(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                 const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n,
                                 float *out) {
    const int pb = D * bits / 8, ng = D / value_group;
    float c[SQ_PACKED_MAX_D], acc[SQ_PACKED_MAX_D], mterm[8 * SQ_PACKED_MAX_D];  // mterm: 8 lanes (t mod 8) per group
    for (int j = 0; j < g; j++) {
        for (int i = 0; i < D; i++) acc[i] = 0;
        for (int i = 0; i < 8 * ng; i++) mterm[i] = 0;
        for (int64_t t = 0; t < n; t++) {
            const float pt = p[j * p_stride + t];
            codes_in_place(codes + t * pb, D, bits, c);
            for (int gi = 0; gi < ng; gi++) {
                const float w = pt * load_scale(vscale, t * ng + gi, scale_f32);
                for (int i = gi * value_group; i < (gi + 1) * value_group; i++) acc[i] = fmaf(w, c[i], acc[i]);
                float *lane = mterm + gi * 8 + t % 8;
                *lane = fmaf(pt, load_scale(vmin, t * ng + gi, scale_f32), *lane);
            }
        }
        for (int gi = 0; gi < ng; gi++) {
            const float *l = mterm + gi * 8;
            const float mt = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
            for (int i = gi * value_group; i < (gi + 1) * value_group; i++)
                out[j * D + i] += acc[i] * unshift(D, bits, i) + mt;
        }
    }
}

#if SQ_X86
#define SQ_INLINE_AVX2 SQ_AVX2 static inline __attribute__((always_inline))

// Byte run r (bytes 8r..8r+7) of one token's codes, widened to eight int32 lanes.
SQ_INLINE_AVX2 __m256i byte_run(const uint8_t *packed, int r) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(packed + 8 * r)));
}

// Channels v..v+7 in place (c * 2^shift, codes_in_place's values) from the token's byte runs X.
SQ_INLINE_AVX2 __m256 run_in_place(const __m256i *X, int D, int bits, int v) {
    const int w = D * bits / 8;
    __m256i x = X[(v % w) / 8];
    if (bits < 8) x = _mm256_and_si256(x, _mm256_set1_epi32(((1 << bits) - 1) << ((v / w) * bits)));
    return _mm256_cvtepi32_ps(x);
}

SQ_INLINE_AVX2 __m256 load8_scale(const void *p, int64_t i, int f32) {
    return f32 ? _mm256_loadu_ps((const float *)p + i)
               : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}

// Key group gi's scales (times each channel's 2^-shift) and minimums as floats.
SQ_INLINE_AVX2 void group_scales(const void *kscale, const void *kmin, int scale_f32, int64_t gi, int D, int bits,
                                 float *s, float *m) {
    for (int v = 0; v < D; v += 8) {
        _mm256_storeu_ps(s + v, _mm256_mul_ps(load8_scale(kscale, gi * D + v, scale_f32),
                                              _mm256_set1_ps(unshift(D, bits, v))));
        _mm256_storeu_ps(m + v, load8_scale(kmin, gi * D + v, scale_f32));
    }
}

// One key at packed dotted with G (<= 4) query heads qs, keys after RoPE: qs holds the query times
// the group's scales and the key is its codes in place. out[j] holds head j's eight lane sums (the
// even and odd 8-channel runs' accumulators added), reduced later eight keys at a time.
SQ_INLINE_AVX2 void key_lanes(const uint8_t *packed, int D, int bits, const float *qs, int G, __m256 *out) {
    const int w = D * bits / 8;
    const __m256 zero = _mm256_setzero_ps();
    // Two accumulators per head halve the FMA chains.
    __m256 even[4] = {zero, zero, zero, zero}, odd[4] = {zero, zero, zero, zero}, k[SQ_PACKED_MAX_D / 8];
    __m256i X[SQ_PACKED_MAX_D / 8];
    for (int r = 0; r < w / 8; r++) X[r] = byte_run(packed, r);
    for (int v = 0; v < D; v += 8) k[v / 8] = run_in_place(X, D, bits, v);
    for (int v = 0; v < D; v += 16)
        for (int j = 0; j < G; j++) {
            even[j] = _mm256_fmadd_ps(_mm256_loadu_ps(qs + j * D + v), k[v / 8], even[j]);
            odd[j] = _mm256_fmadd_ps(_mm256_loadu_ps(qs + j * D + v + 8), k[v / 8 + 1], odd[j]);
        }
    for (int j = 0; j < G; j++) out[j] = _mm256_add_ps(even[j], odd[j]);
}

// Lane t of the result: ((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7)) of v[t], dot_scalar8's lane order
// (sq_reduce4_avx2 on two sets of four keys, then one permute back to key order).
SQ_INLINE_AVX2 __m256 reduce8_keys(const __m256 *v) {
    __m256 w[4];
    for (int i = 0; i < 4; i++)  // [v(2i) lanes k + k+4 | v(2i+1) lanes k + k+4]
        w[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    // [v0, v0, v2, v2 | v1, v1, v3, v3] (pairs (b0+b2), (b1+b3)) and the same for v4..v7.
    const __m256 u0 = _mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], 0x44), _mm256_shuffle_ps(w[0], w[1], 0xEE));
    const __m256 u1 = _mm256_add_ps(_mm256_shuffle_ps(w[2], w[3], 0x44), _mm256_shuffle_ps(w[2], w[3], 0xEE));
    // [v0, v2, v4, v6 | v1, v3, v5, v7]
    const __m256 h = _mm256_hadd_ps(u0, u1);
    return _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Scores of keys after RoPE [t, t + nb) (nb <= 8, one key group) for G heads starting at head j0:
// per-key lane sums go to a small buffer, then each head's eight keys are reduced together, plus
// qm[j], the query's dot product with the group's minimums.
SQ_INLINE_AVX2 void key_block(const uint8_t *codes, int pb, int D, int bits, const float *qs, const float *qm, int G,
                              int64_t t, int nb, __m256 scale, float *scores, int64_t stride, int j0) {
    __m256 lanes[4][8];
    for (int i = 0; i < nb; i++) {
        __m256 out[4];
        key_lanes(codes + (t + i) * pb, D, bits, qs, G, out);
        for (int j = 0; j < G; j++) lanes[j][i] = out[j];
    }
    for (int j = 0; j < G; j++) {
        for (int i = nb; i < 8; i++) lanes[j][i] = _mm256_setzero_ps();
        const __m256 r = _mm256_mul_ps(_mm256_add_ps(reduce8_keys(lanes[j]), _mm256_set1_ps(qm[j])), scale);
        float *dst = scores + (int64_t)(j0 + j) * stride + t;
        if (nb == 8) {
            _mm256_storeu_ps(dst, r);
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, r);
            for (int i = 0; i < nb; i++) dst[i] = tmp[i];
        }
    }
}

// ---- keys before RoPE: eight tokens per vector
//
// A block of eight tokens is transposed so that each code byte becomes eight 32-bit lanes, one per
// token; a channel pair (i, i + D/2) is then dequantized, rotated by each lane's in-group row and
// dotted with the queries for all eight tokens at once, and a block's scores come out as a vector
// (no horizontal sums). The transposition leaves the tokens in lane order sq_lane_tokens; the
// RoPE rows (sq_rope_group_rows) are laid out in the same order, and the scores are permuted back
// to token order (lane of token t: the same list) before they are stored.
#define SQ_LANES_TO_TOKENS _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
// Bounds of the in-group RoPE rows by frequency (key_group x D/2 floats each, on the stack).
#define SQ_GROUP_ROWS_MAX 4096

// One block of eight tokens' codes (pb bytes each, pb a multiple of 8) by byte: out + 8i holds
// byte i of each token, in lane order.
SQ_INLINE_AVX2 void codes_by_byte(const uint8_t *p, int pb, uint8_t *out) {
    // The dwords of (0, 2, 4, 6 | 1, 3, 5, 7) interleaved across the halves: the same permutation
    // that puts the lanes back in token order.
    const __m256i to_columns = SQ_LANES_TO_TOKENS;
    for (int s = 0; s < pb; s += 16) {
        const int whole = pb - s >= 16;
        __m256i y[4];
        for (int k = 0; k < 4; k++) {  // [token 2k | token 2k + 1]
            const uint8_t *a = p + (2 * k) * pb + s, *b = p + (2 * k + 1) * pb + s;
            const __m128i lo = whole ? _mm_loadu_si128((const __m128i *)a) : _mm_loadl_epi64((const __m128i *)a);
            const __m128i hi = whole ? _mm_loadu_si128((const __m128i *)b) : _mm_loadl_epi64((const __m128i *)b);
            y[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        }
        // Bytes of tokens (0, 2 | 1, 3) and (4, 6 | 5, 7) interleaved, then (0, 2, 4, 6 | 1, 3, 5, 7)
        // per byte, then each byte's two halves side by side.
        const __m256i a0 = _mm256_unpacklo_epi8(y[0], y[1]), a1 = _mm256_unpackhi_epi8(y[0], y[1]);
        const __m256i a2 = _mm256_unpacklo_epi8(y[2], y[3]), a3 = _mm256_unpackhi_epi8(y[2], y[3]);
        __m256i *o = (__m256i *)(out + 8 * s);
        _mm256_storeu_si256(o, _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi16(a0, a2), to_columns));
        _mm256_storeu_si256(o + 1, _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi16(a0, a2), to_columns));
        if (whole) {
            _mm256_storeu_si256(o + 2, _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi16(a1, a3), to_columns));
            _mm256_storeu_si256(o + 3, _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi16(a1, a3), to_columns));
        }
    }
}

// The codes of the block(s) from token t0 of the call by byte into cols: two blocks (returns 2)
// when sixteen tokens from t0 lie in [t, end), one otherwise, then with the tokens outside
// [t, end) read as zero codes (returns 1).
SQ_INLINE_AVX2 int block_codes(const uint8_t *codes, int pb, int64_t t0, int64_t t, int64_t end, uint8_t *cols) {
    if (t0 >= t && t0 + 8 <= end) {
        codes_by_byte(codes + t0 * pb, pb, cols);
        if (t0 + 16 > end) return 1;
        codes_by_byte(codes + (t0 + 8) * pb, pb, cols + 8 * pb);
        return 2;
    }
    uint8_t part[8 * SQ_PACKED_MAX_D];
    for (int l = 0; l < 8; l++)
        for (int i = 0; i < pb; i++) part[l * pb + i] = t0 + l >= t && t0 + l < end ? codes[(t0 + l) * pb + i] : 0;
    codes_by_byte(part, pb, cols);
    return 1;
}

// Channel pair (i, i + h) of one block (codes by byte in cb; the channels' bytes ba, bb and masks
// ma, mb) dequantized with the group's s/m and rotated by the lanes' rows c/sn: lo and hi.
SQ_INLINE_AVX2 void rotate_pair(const uint8_t *cb, int i, int h, int ba, int bb, int bits, __m256i ma, __m256i mb,
                                const float *s, const float *m, const float *ct, const float *st, __m256 *lo,
                                __m256 *hi) {
    const __m256i xa = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(cb + 8 * ba)));
    const __m256i xb = ba == bb ? xa : _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(cb + 8 * bb)));
    const __m256 ka = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bits < 8 ? _mm256_and_si256(xa, ma) : xa),
                                      _mm256_broadcast_ss(s + i), _mm256_broadcast_ss(m + i));
    const __m256 kb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bits < 8 ? _mm256_and_si256(xb, mb) : xb),
                                      _mm256_broadcast_ss(s + i + h), _mm256_broadcast_ss(m + i + h));
    const __m256 c = _mm256_loadu_ps(ct), sn = _mm256_loadu_ps(st);
    *lo = _mm256_fmsub_ps(ka, c, _mm256_mul_ps(kb, sn));
    *hi = _mm256_fmadd_ps(ka, sn, _mm256_mul_ps(kb, c));
}

// Scores of NB consecutive blocks of eight tokens (codes by byte in cols, pb * 8 bytes per block)
// for G (<= 4) heads of qr, the queries rotated back by the group's anchor; ct/st hold the blocks'
// in-group RoPE rows by frequency (row i: kg entries). acc[j][b]: head j, block b, a token per lane.
// The rotated pair stays in registers; rotating the block into memory first and dotting it there
// (rope_keys_rotate + rope_keys_dot, what several rows share) is ~9% slower for one row.
SQ_INLINE_AVX2 void rope_keys_lanes(const uint8_t *cols, int pb, int D, int bits, const float *s, const float *m,
                                    const float *ct, const float *st, int kg, const float *qr, int G, int NB,
                                    __m256 acc[4][2]) {
    const int h = D / 2, w = D * bits / 8, seg = w < h ? w : h;
    for (int j = 0; j < G; j++)
        for (int b = 0; b < NB; b++) acc[j][b] = _mm256_setzero_ps();
    // Channels i and i + h keep their slots in the byte over a segment of seg channels.
    for (int i0 = 0; i0 < h; i0 += seg) {
        const int sa = i0 / w * bits, sb = (i0 + h) / w * bits;
        const __m256i ma = _mm256_set1_epi32(((1 << bits) - 1) << sa), mb = _mm256_set1_epi32(((1 << bits) - 1) << sb);
        for (int i = i0; i < i0 + seg; i++) {
            const int ba = i % w, bb = (i + h) % w;
            __m256 lo[2], hi[2];
            for (int b = 0; b < NB; b++) {
                rotate_pair(cols + b * 8 * pb, i, h, ba, bb, bits, ma, mb, s, m, ct + i * kg + 8 * b,
                            st + i * kg + 8 * b, &lo[b], &hi[b]);
            }
            for (int j = 0; j < G; j++) {
                const __m256 qa = _mm256_broadcast_ss(qr + j * D + i), qb = _mm256_broadcast_ss(qr + j * D + i + h);
                for (int b = 0; b < NB; b++) {
                    acc[j][b] = _mm256_fmadd_ps(qa, lo[b], acc[j][b]);
                    acc[j][b] = _mm256_fmadd_ps(qb, hi[b], acc[j][b]);
                }
            }
        }
    }
}

// CALL(G, NB) with G (1...4) and NB (1, 2) as constants, so that the loops they bound unroll.
#define SQ_HEADS_BLOCKS(G, NB, CALL)                                                                              \
    do {                                                                                                          \
        if (NB == 2) {                                                                                            \
            if (G == 3) CALL(3, 2);                                                                               \
            else if (G == 4) CALL(4, 2);                                                                          \
            else if (G == 2) CALL(2, 2);                                                                          \
            else CALL(1, 2);                                                                                      \
        } else {                                                                                                  \
            if (G == 3) CALL(3, 1);                                                                               \
            else if (G == 4) CALL(4, 1);                                                                          \
            else if (G == 2) CALL(2, 1);                                                                          \
            else CALL(1, 1);                                                                                      \
        }                                                                                                         \
    } while (0)

// Scores of G heads x NB blocks of eight keys from token t0 (a token per lane, in lane order) times
// scale, back in token order into scores (head j at j * stride); only tokens in [lo, hi) are stored.
SQ_INLINE_AVX2 void store_key_lanes(__m256 acc[4][2], int G, int NB, __m256 scale, int64_t t0, int64_t lo, int64_t hi,
                                    float *scores, int64_t stride) {
    for (int j = 0; j < G; j++)
        for (int b = 0; b < NB; b++) {
            const __m256 r = _mm256_permutevar8x32_ps(_mm256_mul_ps(acc[j][b], scale), SQ_LANES_TO_TOKENS);
            const int64_t first = t0 + 8 * b;
            float *dst = scores + j * stride;
            if (first >= lo && first + 8 <= hi) {
                _mm256_storeu_ps(dst + first, r);
            } else {
                float tmp[8];
                _mm256_storeu_ps(tmp, r);
                for (int l = 0; l < 8; l++)
                    if (first + l >= lo && first + l < hi) dst[first + l] = tmp[l];
            }
        }
}

// Heads [j0, j0 + G) of NB blocks starting at token t0 of the call; lanes outside [lo, hi) (tokens
// of the call) are computed on zero codes and not stored.
SQ_INLINE_AVX2 void rope_keys_store(const uint8_t *cols, int pb, int D, int bits, const float *s, const float *m,
                                    const float *ct, const float *st, int kg, const float *qr, int g, int NB,
                                    int64_t t0, int64_t lo, int64_t hi, __m256 scale, float *scores, int64_t stride) {
    for (int j0 = 0; j0 < g; j0 += 4) {
        const int G = g - j0 < 4 ? g - j0 : 4;
        __m256 acc[4][2];
        // Constant head and block counts let the channel loop keep its accumulators in registers.
#define SQ_ROPE_LANES(GG, BB) rope_keys_lanes(cols, pb, D, bits, s, m, ct, st, kg, qr + j0 * D, GG, BB, acc)
        SQ_HEADS_BLOCKS(G, NB, SQ_ROPE_LANES);
#undef SQ_ROPE_LANES
        store_key_lanes(acc, G, NB, scale, t0, lo, hi, scores + (int64_t)j0 * stride, stride);
    }
}

// Whether the eight-tokens-per-vector kernel takes keys before RoPE of this shape.
static int rope_lanes_ok(int D, int bits, int key_group) {
    return key_group % 8 == 0 && (int64_t)key_group * (D / 2) <= SQ_GROUP_ROWS_MAX && (D * bits / 8) % 8 == 0;
}

// R(a)^T q for g heads (unrotate_query_scalar's operations): the queries rotated back by the
// anchor row c/sn.
SQ_INLINE_AVX2 void unrotate_queries(const float *q, int g, int D, const float *c, const float *sn, float *qr) {
    const int h = D / 2;
    for (int j = 0; j < g; j++)
        for (int v = 0; v < h; v += 8) {
            __m256 a = _mm256_loadu_ps(q + j * D + v), b = _mm256_loadu_ps(q + j * D + v + h);
            __m256 cv = _mm256_loadu_ps(c + v), sv = _mm256_loadu_ps(sn + v);
            _mm256_storeu_ps(qr + j * D + v, _mm256_fmadd_ps(a, cv, _mm256_mul_ps(b, sv)));
            _mm256_storeu_ps(qr + j * D + v + h, _mm256_fmsub_ps(b, cv, _mm256_mul_ps(a, sv)));
        }
}

SQ_INLINE_AVX2 void scores_rope_lanes(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                                      const void *kmin, int scale_f32, int kg, int64_t pos0, const float *rope_cos,
                                      const float *rope_sin, const float *group_rows, int64_t n, float scale,
                                      float *scores, int64_t stride) {
    const int pb = D * bits / 8, h = D / 2;
    float s[SQ_PACKED_MAX_D], m[SQ_PACKED_MAX_D], qr[SQ_PACKED_MAX_QD];
    uint8_t cols[2 * 8 * SQ_PACKED_MAX_D];
    const __m256 vscale = _mm256_set1_ps(scale);
    float built[2 * SQ_GROUP_ROWS_MAX];
    if (!group_rows) {
        sq_rope_group_rows(rope_cos, rope_sin, D, kg, pos0 + n < kg ? pos0 + n : kg, built);
        group_rows = built;
    }
    const float *ct = group_rows, *st = group_rows + (int64_t)kg * h;
    int64_t t = 0;
    while (t < n) {
        const int64_t gi = (pos0 + t) / kg, anchor = gi * kg;
        const int64_t end = anchor + kg - pos0 < n ? anchor + kg - pos0 : n;
        group_scales(kscale, kmin, scale_f32, gi, D, bits, s, m);
        unrotate_queries(q, g, D, rope_cos + anchor * h, rope_sin + anchor * h, qr);
        // Blocks of eight in-group rows from the one holding token t; token t0 of the call is lane
        // 0 of the block.
        for (int64_t o = (pos0 + t - anchor) / 8 * 8; anchor + o < pos0 + end; ) {
            const int64_t t0 = anchor + o - pos0;
            const int NB = block_codes(codes, pb, t0, t, end, cols);
            rope_keys_store(cols, pb, D, bits, s, m, ct + o, st + o, kg, qr, g, NB, t0, t, end, vscale, scores, stride);
            o += 8 * NB;
        }
        t = end;
    }
}

// ---- keys before RoPE, several query rows against the same keys
//
// The rows share each block's dequantized and rotated keys: a block of eight or sixteen keys is
// dequantized and rotated once into L (rope_keys_lanes' operations), then every row's heads are
// dotted with it in rope_keys_lanes' order, so each score has the bits the one-row kernel gives.

// L[(2i) * NB + b] and L[(2i + 1) * NB + b]: pair i's rotated channels (i, i + D/2) of block b.
SQ_INLINE_AVX2 void rope_keys_rotate(const uint8_t *cols, int pb, int D, int bits, const float *s, const float *m,
                                     const float *ct, const float *st, int kg, int NB, __m256 *L) {
    const int h = D / 2, w = D * bits / 8, seg = w < h ? w : h;
    for (int i0 = 0; i0 < h; i0 += seg) {
        const int sa = i0 / w * bits, sb = (i0 + h) / w * bits;
        const __m256i ma = _mm256_set1_epi32(((1 << bits) - 1) << sa), mb = _mm256_set1_epi32(((1 << bits) - 1) << sb);
        for (int i = i0; i < i0 + seg; i++) {
            const int ba = i % w, bb = (i + h) % w;
            for (int b = 0; b < NB; b++) {
                rotate_pair(cols + b * 8 * pb, i, h, ba, bb, bits, ma, mb, s, m, ct + i * kg + 8 * b,
                            st + i * kg + 8 * b, &L[(2 * i) * NB + b], &L[(2 * i + 1) * NB + b]);
            }
        }
    }
}

// acc[j][b] = sum over pairs, in rope_keys_lanes' order, of head j's rotated-back query times L.
SQ_INLINE_AVX2 void rope_keys_dot(const __m256 *L, int D, const float *qr, int G, int NB, __m256 acc[4][2]) {
    const int h = D / 2;
    for (int j = 0; j < G; j++)
        for (int b = 0; b < NB; b++) acc[j][b] = _mm256_setzero_ps();
    for (int i = 0; i < h; i++)
        for (int j = 0; j < G; j++) {
            const __m256 qa = _mm256_broadcast_ss(qr + j * D + i), qb = _mm256_broadcast_ss(qr + j * D + i + h);
            for (int b = 0; b < NB; b++) {
                acc[j][b] = _mm256_fmadd_ps(qa, L[(2 * i) * NB + b], acc[j][b]);
                acc[j][b] = _mm256_fmadd_ps(qb, L[(2 * i + 1) * NB + b], acc[j][b]);
            }
        }
}

// Rows whose rotated-back queries fit the stack buffer at once.
#define SQ_ROWS_QR 8192

SQ_INLINE_AVX2 void scores_rows_lanes(const float *q, int64_t q_stride, int rows, const int64_t *row_keys, int g,
                                      int D, const uint8_t *codes, int bits, const void *kscale, const void *kmin,
                                      int scale_f32, int kg, int64_t pos0, const float *rope_cos,
                                      const float *rope_sin, const float *group_rows, float scale, float *scores,
                                      int64_t row_stride, int64_t stride) {
    const int pb = D * bits / 8, h = D / 2;
    int64_t n = 0;
    for (int r = 0; r < rows; r++) n = row_keys[r] > n ? row_keys[r] : n;
    if (n <= 0) return;
    float s[SQ_PACKED_MAX_D], m[SQ_PACKED_MAX_D], qr[SQ_ROWS_QR];
    uint8_t cols[2 * 8 * SQ_PACKED_MAX_D];
    __m256 L[SQ_PACKED_MAX_D * 2];
    const __m256 vscale = _mm256_set1_ps(scale);
    const float *ct = group_rows, *st = group_rows + (int64_t)kg * h;
    const int batch = SQ_ROWS_QR / (g * D) < 32 ? SQ_ROWS_QR / (g * D) : 32;
    for (int r0 = 0; r0 < rows; r0 += batch) {
        const int r1 = r0 + batch < rows ? r0 + batch : rows;
        int64_t t = 0;
        while (t < n) {
            const int64_t gi = (pos0 + t) / kg, anchor = gi * kg;
            const int64_t end = anchor + kg - pos0 < n ? anchor + kg - pos0 : n;
            group_scales(kscale, kmin, scale_f32, gi, D, bits, s, m);
            for (int r = r0; r < r1; r++)
                if (row_keys[r] > t)
                    unrotate_queries(q + r * q_stride, g, D, rope_cos + anchor * h, rope_sin + anchor * h,
                                     qr + (r - r0) * g * D);
            for (int64_t o = (pos0 + t - anchor) / 8 * 8; anchor + o < pos0 + end;) {
                const int64_t t0 = anchor + o - pos0;
                const int NB = block_codes(codes, pb, t0, t, end, cols);
                if (NB == 2) rope_keys_rotate(cols, pb, D, bits, s, m, ct + o, st + o, kg, 2, L);
                else rope_keys_rotate(cols, pb, D, bits, s, m, ct + o, st + o, kg, 1, L);
                for (int r = r0; r < r1; r++) {
                    const int64_t hi = end < row_keys[r] ? end : row_keys[r];
                    if (hi <= t0 || hi <= t) continue;
                    const float *qrr = qr + (r - r0) * g * D;
                    for (int j0 = 0; j0 < g; j0 += 4) {
                        const int G = g - j0 < 4 ? g - j0 : 4;
                        __m256 acc[4][2];
#define SQ_ROWS_DOT(GG, BB) rope_keys_dot(L, D, qrr + j0 * D, GG, BB, acc)
                        SQ_HEADS_BLOCKS(G, NB, SQ_ROWS_DOT);
#undef SQ_ROWS_DOT
                        store_key_lanes(acc, G, NB, vscale, t0, t, hi, scores + r * row_stride + (int64_t)j0 * stride,
                                        stride);
                    }
                }
                o += 8 * NB;
            }
            t = end;
        }
    }
}

SQ_AVX2 static void scores_rows_avx2(const float *q, int64_t q_stride, int rows, const int64_t *row_keys, int g, int D,
                                     const uint8_t *codes, int bits, const void *kscale, const void *kmin,
                                     int scale_f32, int kg, int64_t pos0, const float *rope_cos, const float *rope_sin,
                                     const float *group_rows, float scale, float *scores, int64_t row_stride,
                                     int64_t stride) {
#define SQ_ROWS_CASE(DD, BB)                                                                                       \
    if (D == DD && bits == BB) {                                                                                   \
        scores_rows_lanes(q, q_stride, rows, row_keys, g, DD, codes, BB, kscale, kmin, scale_f32, kg, pos0,        \
                          rope_cos, rope_sin, group_rows, scale, scores, row_stride, stride);                      \
        return;                                                                                                    \
    }
    SQ_ROWS_CASE(64, 2) SQ_ROWS_CASE(64, 4) SQ_ROWS_CASE(128, 2) SQ_ROWS_CASE(128, 4)
#undef SQ_ROWS_CASE
    scores_rows_lanes(q, q_stride, rows, row_keys, g, D, codes, bits, kscale, kmin, scale_f32, kg, pos0, rope_cos,
                      rope_sin, group_rows, scale, scores, row_stride, stride);
}

SQ_INLINE_AVX2 void scores_packed_impl(const float *q, int g, int D, const uint8_t *codes, int bits,
                                       const void *kscale, const void *kmin, int scale_f32, int key_group, int64_t pos0,
                                       const float *rope_cos, const float *rope_sin, const float *group_rows,
                                       int64_t n, float scale, float *scores, int64_t stride) {
    if (rope_cos) {
        scores_rope_lanes(q, g, D, codes, bits, kscale, kmin, scale_f32, key_group, pos0, rope_cos, rope_sin,
                          group_rows, n, scale, scores, stride);
        return;
    }
    const int pb = D * bits / 8;
    float s[SQ_PACKED_MAX_D], m[SQ_PACKED_MAX_D];
    float qs[SQ_PACKED_MAX_QD], qm[SQ_PACKED_MAX_QD / 8];
    const __m256 vscale = _mm256_set1_ps(scale);
    int64_t t = 0;
    while (t < n) {
        const int64_t gi = (pos0 + t) / key_group, anchor = gi * key_group;
        const int64_t end = anchor + key_group - pos0 < n ? anchor + key_group - pos0 : n;
        group_scales(kscale, kmin, scale_f32, gi, D, bits, s, m);
        // The scales fold into the query; q . m in dot_scalar8's order.
        for (int j = 0; j < g; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int v = 0; v < D; v += 8) {
                const __m256 qv = _mm256_loadu_ps(q + j * D + v);
                _mm256_storeu_ps(qs + j * D + v, _mm256_mul_ps(qv, _mm256_loadu_ps(s + v)));
                acc = _mm256_fmadd_ps(qv, _mm256_loadu_ps(m + v), acc);
            }
            float l[8];
            _mm256_storeu_ps(l, acc);
            qm[j] = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        }
        for (; t < end; t += 8) {
            const int nb = end - t < 8 ? (int)(end - t) : 8;
            if (t + 16 < n) _mm_prefetch((const char *)(codes + (t + 16) * pb), _MM_HINT_T0);
            for (int j0 = 0; j0 < g; j0 += 4) {
                const int G = g - j0 < 4 ? g - j0 : 4;
                const float *qj = qs + j0 * D, *qmj = qm + j0;
                // Constant head counts let the per-key loops unroll.
                if (G == 3) key_block(codes, pb, D, bits, qj, qmj, 3, t, nb, vscale, scores, stride, j0);
                else if (G == 4) key_block(codes, pb, D, bits, qj, qmj, 4, t, nb, vscale, scores, stride, j0);
                else if (G == 2) key_block(codes, pb, D, bits, qj, qmj, 2, t, nb, vscale, scores, stride, j0);
                else key_block(codes, pb, D, bits, qj, qmj, 1, t, nb, vscale, scores, stride, j0);
            }
        }
        t = end;
    }
}

SQ_AVX2 static void scores_packed_avx2(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                                       const void *kmin, int scale_f32, int key_group, int64_t pos0,
                                       const float *rope_cos, const float *rope_sin, const float *group_rows,
                                       int64_t n, float scale, float *scores, int64_t stride) {
    // Specialised for the common head sizes and widths so that the per-token loops unroll.
#define SQ_SCORES_CASE(DD, BB)                                                                                      \
    if (D == DD && bits == BB) {                                                                                    \
        scores_packed_impl(q, g, DD, codes, BB, kscale, kmin, scale_f32, key_group, pos0, rope_cos, rope_sin,       \
                           group_rows, n, scale, scores, stride);                                                   \
        return;                                                                                                     \
    }
    SQ_SCORES_CASE(64, 2) SQ_SCORES_CASE(64, 4) SQ_SCORES_CASE(128, 2) SQ_SCORES_CASE(128, 4)
#undef SQ_SCORES_CASE
    scores_packed_impl(q, g, D, codes, bits, kscale, kmin, scale_f32, key_group, pos0, rope_cos, rope_sin, group_rows,
                       n, scale, scores, stride);
}

// Tokens per block of the value kernel's weight table.
#define SQ_VALUE_BLOCK 64

// G (<= 3) heads x runs k0 and k0 + 1 of the channels that share byte run r (channels 8r + k*w),
// over the block's tokens: acc (in registers meanwhile) sums p * scale * c * 2^shift per channel.
// Six accumulators, two masks and the weights fit the registers: a spilled accumulator would put
// a store and a reload on every token's dependency chain.
SQ_INLINE_AVX2 void values_slab(int G, int D, int bits, const uint8_t *codes, int pb, int r, int k0, int value_group,
                                const float *W, int ng, int nb, float *acc) {
    const int K = 8 / bits - k0 < 2 ? 8 / bits - k0 : 2, w = D * bits / 8;
    __m256 o[3][2];
    __m256i mask[2];
    int gk[2];
    for (int k = 0; k < K; k++) {
        const int c = 8 * r + (k0 + k) * w;
        gk[k] = c / value_group;
        mask[k] = _mm256_set1_epi32(((1 << bits) - 1) << ((k0 + k) * bits));
        for (int j = 0; j < G; j++) o[j][k] = _mm256_loadu_ps(acc + j * D + c);
    }
    for (int t = 0; t < nb; t++) {
        const __m256i x = byte_run(codes + t * pb, r);
        for (int k = 0; k < K; k++) {
            const __m256 f = _mm256_cvtepi32_ps(bits < 8 ? _mm256_and_si256(x, mask[k]) : x);
            for (int j = 0; j < G; j++)
                o[j][k] = _mm256_fmadd_ps(_mm256_broadcast_ss(W + ((int64_t)j * ng + gk[k]) * SQ_VALUE_BLOCK + t), f,
                                          o[j][k]);
        }
    }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < G; j++) _mm256_storeu_ps(acc + j * D + 8 * r + (k0 + k) * w, o[j][k]);
}

// The value kernel's weights for one block of nb tokens: W[j][group][t] = p * scale and the min
// terms mt[j][group] += p * min, lane l taking the tokens t = l mod 8 in order (tokens past nb
// count as zero). Any number of channel groups, scales read one at a time.
SQ_INLINE_AVX2 void values_weights(const float *p, int64_t p_stride, int g, int ng, const void *vscale,
                                   const void *vmin, int scale_f32, int64_t t0, int nb, float *W, __m256 *mt) {
    float sc[SQ_PACKED_MAX_D / 8 * SQ_VALUE_BLOCK], mn[SQ_PACKED_MAX_D / 8 * SQ_VALUE_BLOCK];  // [group][token]
    float pj[SQ_VALUE_BLOCK];
    const int nb8 = (nb + 7) & ~7;
    for (int t = 0; t < nb; t++)
        for (int gi = 0; gi < ng; gi++) {
            const int64_t si = (t0 + t) * ng + gi;
            sc[gi * SQ_VALUE_BLOCK + t] =
                scale_f32 ? ((const float *)vscale)[si] : _cvtsh_ss(((const uint16_t *)vscale)[si]);
            mn[gi * SQ_VALUE_BLOCK + t] = scale_f32 ? ((const float *)vmin)[si] : _cvtsh_ss(((const uint16_t *)vmin)[si]);
        }
    for (int t = nb; t < nb8; t++)
        for (int gi = 0; gi < ng; gi++) sc[gi * SQ_VALUE_BLOCK + t] = mn[gi * SQ_VALUE_BLOCK + t] = 0;
    for (int j = 0; j < g; j++) {
        for (int t = 0; t < nb; t++) pj[t] = p[j * p_stride + t0 + t];
        for (int t = nb; t < nb8; t++) pj[t] = 0;
        for (int gi = 0; gi < ng; gi++)
            for (int t = 0; t < nb8; t += 8) {
                __m256 pv = _mm256_loadu_ps(pj + t);
                _mm256_storeu_ps(W + (j * ng + gi) * SQ_VALUE_BLOCK + t,
                                 _mm256_mul_ps(pv, _mm256_loadu_ps(sc + gi * SQ_VALUE_BLOCK + t)));
                mt[j * ng + gi] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(mn + gi * SQ_VALUE_BLOCK + t), mt[j * ng + gi]);
            }
    }
}

// values_weights for two channel groups (a 64-wide head in groups of 32) and whole 8-token runs:
// each run's 16 interleaved scales (token-major) are converted at once and split into the two
// groups' rows, and p is read in place. The same products and sums in the same order.
SQ_INLINE_AVX2 void values_weights_2groups(const float *p, int64_t p_stride, int g, const void *vscale,
                                           const void *vmin, int scale_f32, int64_t t0, int nb, float *W, __m256 *mt) {
    for (int t = 0; t < nb; t += 8) {
        const int64_t si = (t0 + t) * 2;
        __m256 sa, sb, ma, mb;  // [t0g0 t0g1 ... t3g1], [t4g0 ... t7g1]
        if (scale_f32) {
            sa = _mm256_loadu_ps((const float *)vscale + si), sb = _mm256_loadu_ps((const float *)vscale + si + 8);
            ma = _mm256_loadu_ps((const float *)vmin + si), mb = _mm256_loadu_ps((const float *)vmin + si + 8);
        } else {
            sa = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vscale + si)));
            sb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vscale + si + 8)));
            ma = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vmin + si)));
            mb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vmin + si + 8)));
        }
        // Even lanes are group 0, odd ones group 1; the shuffle leaves 64-bit pairs of tokens in the
        // order (0 1)(4 5)(2 3)(6 7), which the permute puts back in token order.
        const __m256 s0 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(sa, sb, 0x88)), 0xD8));
        const __m256 s1 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(sa, sb, 0xDD)), 0xD8));
        const __m256 m0 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(ma, mb, 0x88)), 0xD8));
        const __m256 m1 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(ma, mb, 0xDD)), 0xD8));
        for (int j = 0; j < g; j++) {
            const __m256 pv = _mm256_loadu_ps(p + j * p_stride + t);
            _mm256_storeu_ps(W + (j * 2) * SQ_VALUE_BLOCK + t, _mm256_mul_ps(pv, s0));
            _mm256_storeu_ps(W + (j * 2 + 1) * SQ_VALUE_BLOCK + t, _mm256_mul_ps(pv, s1));
            mt[j * 2] = _mm256_fmadd_ps(pv, m0, mt[j * 2]);
            mt[j * 2 + 1] = _mm256_fmadd_ps(pv, m1, mt[j * 2 + 1]);
        }
    }
}

SQ_INLINE_AVX2 void values_packed_impl(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                       const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n,
                                       float *out) {
    const int pb = D * bits / 8, ng = D / value_group;
    float acc[SQ_PACKED_MAX_QD];
    __m256 mt[SQ_VALUE_ROWS];                               // [j][group]: lane l sums tokens t = l mod 8
    float W[SQ_VALUE_ROWS * SQ_VALUE_BLOCK];                // [j][group][token of block]: p * scale
    for (int i = 0; i < g * D; i++) acc[i] = 0;
    for (int i = 0; i < g * ng; i++) mt[i] = _mm256_setzero_ps();
    for (int64_t t0 = 0; t0 < n; t0 += SQ_VALUE_BLOCK) {
        const int nb = n - t0 < SQ_VALUE_BLOCK ? (int)(n - t0) : SQ_VALUE_BLOCK;
        if (ng == 2 && nb % 8 == 0) {
            values_weights_2groups(p + t0, p_stride, g, vscale, vmin, scale_f32, t0, nb, W, mt);
        } else {
            values_weights(p, p_stride, g, ng, vscale, vmin, scale_f32, t0, nb, W, mt);
        }
        const uint8_t *cb = codes + t0 * pb;
        for (int r = 0; r < pb / 8; r++)
            for (int k0 = 0; k0 < 8 / bits; k0 += 2)
                for (int j0 = 0; j0 < g; j0 += 3) {
                    const int G = g - j0 < 3 ? g - j0 : 3;
                    const float *Wj = W + (int64_t)j0 * ng * SQ_VALUE_BLOCK;
                    if (G == 3) values_slab(3, D, bits, cb, pb, r, k0, value_group, Wj, ng, nb, acc + j0 * D);
                    else if (G == 2) values_slab(2, D, bits, cb, pb, r, k0, value_group, Wj, ng, nb, acc + j0 * D);
                    else values_slab(1, D, bits, cb, pb, r, k0, value_group, Wj, ng, nb, acc + j0 * D);
                }
    }
    for (int j = 0; j < g; j++)
        for (int gi = 0; gi < ng; gi++) {
            float lanes[8];
            _mm256_storeu_ps(lanes, mt[j * ng + gi]);
            const float mterm = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
            for (int i = gi * value_group; i < (gi + 1) * value_group; i++)
                out[j * D + i] += acc[j * D + i] * unshift(D, bits, i) + mterm;
        }
}

SQ_AVX2 static void values_packed_avx2(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                       const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n,
                                       float *out) {
#define SQ_VALUES_CASE(DD, BB, VG)                                                                                   \
    if (D == DD && bits == BB && value_group == VG) {                                                                \
        values_packed_impl(p, p_stride, g, DD, codes, BB, vscale, vmin, scale_f32, VG, n, out);                      \
        return;                                                                                                      \
    }
    SQ_VALUES_CASE(64, 2, 32) SQ_VALUES_CASE(64, 4, 32) SQ_VALUES_CASE(128, 2, 32) SQ_VALUES_CASE(128, 4, 32)
#undef SQ_VALUES_CASE
    values_packed_impl(p, p_stride, g, D, codes, bits, vscale, vmin, scale_f32, value_group, n, out);
}
#endif

void sq_rope_group_rows(const float *rope_cos, const float *rope_sin, int D, int key_group, int64_t rows, float *out) {
    // By frequency (row i: key_group entries), each block of eight rows in the kernel's lane order;
    // cos, then sin. (The kernel takes key groups of whole blocks; others keep the rows in order.)
    const int h = D / 2;
    for (int o = 0; o < key_group; o++) {
        const int64_t row = key_group % 8 == 0 ? o - o % 8 + sq_lane_tokens[o % 8] : o;
        for (int i = 0; i < h; i++) {
            out[(int64_t)i * key_group + o] = row < rows ? rope_cos[row * h + i] : 0;
            out[(int64_t)(h + i) * key_group + o] = row < rows ? rope_sin[row * h + i] : 0;
        }
    }
}

// The AVX2 paths need whole 8-channel runs of codes and bounded work buffers.
static int packed_avx2_ok(int g, int D, int bits) {
    return sq_use_avx2() && (bits == 2 || bits == 4 || bits == 8) && D % 32 == 0 && D <= SQ_PACKED_MAX_D &&
           g * D <= SQ_PACKED_MAX_QD;
}

void sq_scores_packed_keys(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                           const void *kmin, int scale_f32, int key_group, int64_t first_position, const float *rope_cos,
                           const float *rope_sin, const float *rope_group_rows, int64_t n, float scale, float *scores,
                           int64_t score_stride) {
    if (n <= 0 || g <= 0 || D <= 0 || D > SQ_PACKED_MAX_D || D % 8 != 0 || key_group <= 0) return;
#if SQ_X86
    if (packed_avx2_ok(g, D, bits) && (!rope_cos || rope_lanes_ok(D, bits, key_group))) {
        scores_packed_avx2(q, g, D, codes, bits, kscale, kmin, scale_f32, key_group, first_position, rope_cos, rope_sin,
                           rope_group_rows, n, scale, scores, score_stride);
        return;
    }
#endif
    scores_packed_scalar(q, g, D, codes, bits, kscale, kmin, scale_f32, key_group, first_position, rope_cos, rope_sin, n,
                         scale, scores, score_stride);
}

void sq_scores_packed_keys_rows(const float *q, int64_t q_stride, int rows, const int64_t *row_keys, int g, int D,
                                const uint8_t *codes, int bits, const void *kscale, const void *kmin, int scale_f32,
                                int key_group, int64_t first_position, const float *rope_cos, const float *rope_sin,
                                const float *rope_group_rows, float scale, float *scores, int64_t row_stride,
                                int64_t score_stride) {
    if (rows <= 0 || g <= 0 || D <= 0 || D > SQ_PACKED_MAX_D || D % 8 != 0 || key_group <= 0) return;
#if SQ_X86
    if (rows > 1 && rope_cos && rope_group_rows && packed_avx2_ok(g, D, bits) &&
        rope_lanes_ok(D, bits, key_group)) {
        scores_rows_avx2(q, q_stride, rows, row_keys, g, D, codes, bits, kscale, kmin, scale_f32, key_group,
                         first_position, rope_cos, rope_sin, rope_group_rows, scale, scores, row_stride, score_stride);
        return;
    }
#endif
    for (int r = 0; r < rows; r++)
        sq_scores_packed_keys(q + r * q_stride, g, D, codes, bits, kscale, kmin, scale_f32, key_group, first_position,
                              rope_cos, rope_sin, rope_group_rows, row_keys[r], scale, scores + r * row_stride,
                              score_stride);
}

void sq_accumulate_packed_values(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                 const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n,
                                 float *out) {
    if (n <= 0 || g <= 0 || D <= 0 || D > SQ_PACKED_MAX_D || value_group <= 0 || D % value_group != 0) return;
#if SQ_X86
    if (packed_avx2_ok(g, D, bits) && value_group % 8 == 0 && g * (D / value_group) <= SQ_VALUE_ROWS) {
        values_packed_avx2(p, p_stride, g, D, codes, bits, vscale, vmin, scale_f32, value_group, n, out);
        return;
    }
#endif
    values_packed_scalar(p, p_stride, g, D, codes, bits, vscale, vmin, scale_f32, value_group, n, out);
}

// ---------------------------------------------------------------- full-precision residual window

#if SQ_X86
SQ_AVX2 static void scores_f32_avx2(const float *q, int g, int D, const float *keys, int64_t n, float scale, float *scores,
                                    int64_t score_stride) {
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < g; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < D; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + j * D + i), _mm256_loadu_ps(keys + t * D + i), acc);
            scores[j * score_stride + t] = sq_hsum256(acc) * scale;
        }
}
// `runs` 8-channel runs of one head's output, accumulated over the tokens in the scalar loop's
// order; with a constant `runs` the accumulators stay in registers.
SQ_INLINE_AVX2 void values_f32_runs(const float *p, int runs, int D, const float *values, int64_t n, float *o) {
    __m256 acc[8];
    for (int k = 0; k < runs; k++) acc[k] = _mm256_loadu_ps(o + 8 * k);
    for (int64_t t = 0; t < n; t++) {
        const __m256 w = _mm256_set1_ps(p[t]);
        const float *v = values + t * D;
        for (int k = 0; k < runs; k++) acc[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * k), acc[k]);
    }
    for (int k = 0; k < runs; k++) _mm256_storeu_ps(o + 8 * k, acc[k]);
}

// Per head, 64 channels at a time.
SQ_AVX2 static void values_f32_avx2(const float *p, int64_t p_stride, int g, int D, const float *values, int64_t n,
                                    float *out) {
    for (int j = 0; j < g; j++)
        for (int c0 = 0; c0 < D; c0 += 64) {
            const float *pj = p + j * p_stride;
            float *o = out + j * D + c0;
            if (D - c0 >= 64) values_f32_runs(pj, 8, D, values + c0, n, o);
            else values_f32_runs(pj, (D - c0) / 8, D, values + c0, n, o);
        }
}
#endif

void sq_scores_f32_keys(const float *q, int g, int D, const float *keys, int64_t n, float scale, float *scores,
                        int64_t score_stride) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0) {
        scores_f32_avx2(q, g, D, keys, n, scale, scores, score_stride);
        return;
    }
#endif
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < g; j++) scores[j * score_stride + t] = dot_scalar8(q + j * D, keys + t * D, D) * scale;
}

void sq_accumulate_f32_values(const float *p, int64_t p_stride, int g, int D, const float *values, int64_t n,
                              float *out) {
#if SQ_X86
    if (sq_use_avx2() && D % 8 == 0) {
        values_f32_avx2(p, p_stride, g, D, values, n, out);
        return;
    }
#endif
    for (int j = 0; j < g; j++)
        for (int64_t t = 0; t < n; t++) {
            float pt = p[j * p_stride + t];
            for (int i = 0; i < D; i++) out[j * D + i] = fmaf(pt, values[t * D + i], out[j * D + i]);
        }
}

void sq_rope_table(float *x, int D, const float *c, const float *sn) {
    const int h = D / 2;
    for (int i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        x[i] = a * c[i] - b * sn[i];
        x[i + h] = a * sn[i] + b * c[i];
    }
}
