// squat compute kernels: quantized block formats (GGML layouts), dot products, matmul,
// attention helpers. Each hot kernel has an AVX2/FMA/F16C variant chosen at run time and a
// scalar variant with the same arithmetic order; the *_ref functions are plain references for tests.
#ifndef SQ_KERNELS_H
#define SQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Tensor type ids (GGML's numbering).
enum {
    SQ_TYPE_F32 = 0,
    SQ_TYPE_F16 = 1,
    SQ_TYPE_Q4_0 = 2,
    SQ_TYPE_Q4_1 = 3,
    SQ_TYPE_Q5_0 = 6,
    SQ_TYPE_Q5_1 = 7,
    SQ_TYPE_Q8_0 = 8,
    SQ_TYPE_Q4_K = 12,
    SQ_TYPE_Q5_K = 13,
    SQ_TYPE_Q6_K = 14,
    SQ_TYPE_BF16 = 30,
};

/// Elements per block of `type`, or 0 if the type is unknown.
int sq_block_size(int type);
/// Bytes per block of `type`, or 0 if the type is unknown.
int sq_block_bytes(int type);
/// 1 when the AVX2/FMA/F16C kernels are in use on this CPU.
int sq_have_avx2(void);
/// Forces the scalar kernels on the calling thread (for tests); returns the previous setting.
int sq_force_scalar(int on);

/// Dequantizes `n` elements (a whole number of blocks) of `type` at `src` into `dst`.
/// Returns 0, or -1 for an unknown type.
int sq_dequantize(int type, const void *src, float *dst, int64_t n);

/// Dot product of one row of `n` elements of `type` with the f32 vector `x`.
/// Fast kernel; result equals, bit for bit, what sq_matmul computes for the same row and x.
float sq_dot(int type, const void *row, const float *x, int64_t n);

/// Plain reference: dequantize with the scalar reference and accumulate sum(w[i]*x[i]) in double.
double sq_dot_ref(int type, const void *row, const float *x, int64_t n);
/// Plain scalar reference dequantization (one element at a time, straight from the format spec).
int sq_dequantize_ref(int type, const void *src, float *dst, int64_t n);

/// y[t*y_stride + r] = dot(row r of W, x[t*x_stride ...]) for rows [row_begin, row_end) and
/// tokens t in [0, ntok). W has rows of `n` elements of `type`, `row_bytes` apart.
/// Each output is bit-identical to sq_dot(type, row r, x_t, n): results never depend on ntok
/// or on how rows are split between threads (batch invariance).
void sq_matmul(int type, const void *w, size_t row_bytes, int64_t n, const float *x, int64_t x_stride,
               int64_t ntok, float *y, int64_t y_stride, int64_t row_begin, int64_t row_end);

// --- int8 activations (fast path, as llama.cpp) ---
/// A block of 32 activations quantized to int8: x[j] ~ d * qs[j]; s = d * sum(qs).
typedef struct {
    float d;
    float s;
    int8_t qs[32];
} sq_block_q8a;
/// 1 when the int8-activation products support weights of `type` (Q4_1, Q8_0).
int sq_q8_supported(int type);
/// Quantizes n (a multiple of 32) floats into n/32 blocks (round to nearest even).
void sq_quantize_q8(const float *x, int64_t n, sq_block_q8a *out);
/// Arithmetic of every int8-activation product, for row r and token t: per block b the exact
/// integer dot product I_b, sc_b = d_w(b) * d_x(b), acc = fma(I_b, sc_b, acc) over b in order; for
/// Q4_1 also M = fma(m_w(b), s_x(b), M) over b in order; result acc + M. The same bits on every
/// path and layout, whatever ntok or the row range (batch invariance).
/// Plain GGML layout, scalar (a reference; the fast path is the repacked one below). ntok tokens
/// of n/32 blocks each, contiguous. Returns -1 (and writes nothing) when the type is not supported.
int sq_matmul_q8(int type, const void *w, size_t row_bytes, int64_t n, const sq_block_q8a *xq, int64_t ntok, float *y,
                 int64_t y_stride, int64_t row_begin, int64_t row_end);
/// Bytes of the repacked (8 rows interleaved) form of `rows` rows of n elements; 0 if unsupported.
size_t sq_repack_x8_bytes(int type, int64_t rows, int64_t n);
/// Repacks `rows` rows (row_bytes apart) into dst (sq_repack_x8_bytes bytes); -1 if unsupported.
int sq_repack_x8(int type, const void *w, size_t row_bytes, int64_t rows, int64_t n, void *dst);
/// Row `row` of repacked weights (n elements) into dst: the same floats as sq_dequantize on the
/// plain row. -1 if unsupported.
int sq_dequantize_x8_row(int type, const void *wx8, int64_t n, int64_t row, float *dst);
/// sq_matmul_q8 on repacked weights (AVX2 when available). Row ranges starting at a multiple
/// of 8 avoid computing a group twice.
int sq_matmul_q8_x8(int type, const void *wx8, int64_t n, const sq_block_q8a *xq, int64_t ntok, float *y,
                    int64_t y_stride, int64_t row_begin, int64_t row_end);

// --- f16 / bf16 conversion ---
float sq_f16_to_f32(uint16_t h);
uint16_t sq_f32_to_f16(float f);   // round to nearest even
void sq_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void sq_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n);

// --- small vector helpers used by the forward pass ---
/// out = x * rsqrt(mean(x^2) + eps) * w  (n elements)
void sq_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/// a[i] = silu(a[i]) * b[i]
void sq_swiglu(float *a, const float *b, int64_t n);
/// exp(x) in float by glibc's expf method (the same bits as glibc's FMA build); SwiGLU's AVX2
/// path uses it.
float sq_expf(float x);
/// x[i] = sq_expf(x[i]) (eight lanes at a time on AVX2).
void sq_expf_n(float *x, int64_t n);
/// y[i] += x[i]
void sq_add(float *y, const float *x, int64_t n);

// --- attention over a full-precision cache ---
/// Keys are processed in chunks of this many positions (aligned to absolute positions), each
/// chunk's partial softmax combined in order: results never depend on the thread count.
#define SQ_ATTENTION_CHUNK 512

/// Partial attention of `g` query heads (q: g*D floats, RoPE applied) over `T` keys/values of
/// one KV head, rows of D elements `kv_stride` apart, in f16 or f32. Writes the unnormalised
/// out[j*D..] = sum_t exp(s_t - m_j) v_t and ml[2j] = m_j (max score), ml[2j+1] = sum_t exp(s_t - m_j),
/// with s_t = q_j . k_t * scale. scores: scratch of g*T floats.
void sq_attend_partial_f16(const float *q, int g, int D, const uint16_t *K, const uint16_t *V, int64_t kv_stride,
                           int64_t T, float scale, float *out, float *ml, float *scores);
void sq_attend_partial_f32(const float *q, int g, int D, const float *K, const float *V, int64_t kv_stride,
                           int64_t T, float scale, float *out, float *ml, float *scores);
/// Combines `nchunks` partials (outs: [chunk][g][D], mls: [chunk][g][2]) into the normalised
/// attention output out[g][D], in chunk order.
void sq_attend_combine(int g, int D, int nchunks, const float *outs, const float *mls, float *out);
/// max of x[0..<n] (-inf when n is 0).
float sq_max(const float *x, int64_t n);
/// x[i] = exp(x[i] - m) (softmax numerator, rel. error ~2e-7); returns the sum, in a fixed order.
float sq_exp_sum(float *x, int64_t n, float m);
/// sq_exp_sum's sum (the same bits) without storing the exps.
float sq_sum_exp(const float *x, int64_t n, float m);
/// The first index of the largest of x[0..<n] that a scan keeping the lowest index on ties
/// finds (a NaN never wins; a NaN at 0 keeps 0); 0 when n is 0.
int64_t sq_argmax(const float *x, int64_t n);

// --- attention on packed (2/4/8-bit) KV codes ---
/// Packs one token's D codes: with k = 8/bits codes per byte and w = D/k bytes, byte i holds
/// the code of channel i + j*w at bit j*bits. D*bits/8 bytes.
void sq_pack_codes(const uint8_t *codes, int D, int bits, uint8_t *out);
void sq_unpack_codes(const uint8_t *packed, int D, int bits, uint8_t *codes);
/// scores[j*stride + t] = q_j . RoPE_p(k_t) * scale for n packed key tokens at positions
/// p = first_position + t, k_t = code*scale+min with scale/min (f32 if scale_f32, else f16; D per
/// group) of group p / key_group. With rope_cos/rope_sin (pre-RoPE keys): the [position][D/2]
/// cos/sin table from position 0; RoPE_p is applied as R(a) R(p - a), a = the group's first
/// position, reading rows a and 0..key_group-1 only; rope_group_rows (or NULL, then the call
/// builds them) holds rows 0..key_group-1 as sq_rope_group_rows lays them out. Without rope_cos:
/// keys are used as stored. Each score is a fixed sequence of operations on its own key's codes.
void sq_scores_packed_keys(const float *q, int g, int D, const uint8_t *codes, int bits, const void *kscale,
                           const void *kmin, int scale_f32, int key_group, int64_t first_position, const float *rope_cos,
                           const float *rope_sin, const float *rope_group_rows, int64_t n, float scale, float *scores,
                           int64_t score_stride);
/// sq_scores_packed_keys for `rows` query rows (row r at q + r*q_stride) against the same n
/// packed keys: row r scores keys [0, row_keys[r]) into scores + r*row_stride, each score with the
/// bits the one-row call gives it. With keys before RoPE and rope_group_rows, a block of keys is
/// dequantized and rotated once for all the rows; otherwise each row is its own call.
void sq_scores_packed_keys_rows(const float *q, int64_t q_stride, int rows, const int64_t *row_keys, int g, int D,
                                const uint8_t *codes, int bits, const void *kscale, const void *kmin, int scale_f32,
                                int key_group, int64_t first_position, const float *rope_cos, const float *rope_sin,
                                const float *rope_group_rows, float scale, float *scores, int64_t row_stride,
                                int64_t score_stride);
/// Rows 0..key_group-1 of a [position][D/2] RoPE cos/sin table (`rows` of them present, the rest
/// read as zero) in the layout the packed key kernel reads: key_group * D floats into out.
void sq_rope_group_rows(const float *rope_cos, const float *rope_sin, int D, int key_group, int64_t rows, float *out);
/// scores for n full-precision keys (already rotated), rows of D floats.
void sq_scores_f32_keys(const float *q, int g, int D, const float *keys, int64_t n, float scale, float *scores,
                        int64_t score_stride);
/// out[j*D + i] += sum_t p[j*p_stride + t] * v_t[i] for n packed value tokens (scale/min per
/// token per group of value_group channels, f32 if scale_f32 else f16), in a fixed order: the
/// scale terms in token order, the minimum terms in 8 lanes (t mod 8) summed pairwise.
void sq_accumulate_packed_values(const float *p, int64_t p_stride, int g, int D, const uint8_t *codes, int bits,
                                 const void *vscale, const void *vmin, int scale_f32, int value_group, int64_t n,
                                 float *out);
void sq_accumulate_f32_values(const float *p, int64_t p_stride, int g, int D, const float *values, int64_t n,
                              float *out);

/// Rotates one head of D channels (halves layout) by precomputed cos/sin (D/2 each), as sq_rope.
void sq_rope_table(float *x, int D, const float *c, const float *sn);

/// Applies RoPE in place to `heads` heads of D channels in the `halves` layout: channel i and
/// i + D/2 rotate by angle pos * inv_freq[i].
void sq_rope(float *x, int heads, int D, int64_t pos, const float *inv_freq);

// --- SQuat query subspace ---
/// Adds x_r^T x_r to the upper triangle (j >= i) of the D x D row-major double matrix g for
/// `rows` float rows x + r*stride. Entries below the diagonal are scratch. The same result,
/// bit for bit, with or without AVX2.
void sq_gram_f64(const float *x, int64_t rows, int64_t stride, int D, double *g);

/// Eigen-decomposition of the symmetric n x n row-major double matrix in vt (both triangles),
/// EISPACK tred2 + tql2: on return d holds the eigenvalues (unsorted) and row k of vt the unit
/// eigenvector of d[k]; e (n doubles) is scratch. Returns the number of QL iterations. The same
/// bits with or without AVX2. vt, d and e must not overlap.
int sq_symmetric_eigen_f64(double *vt, double *d, double *e, int n);

/// Inverse of the n x n row-major double matrix a into out, by Gauss-Jordan elimination with
/// partial pivoting; work holds 2*n*n doubles. A singular matrix gives non-finite entries. The
/// same bits with or without AVX2. work and out must not overlap each other or a.
void sq_inverse_f64(const double *a, int n, double *work, double *out);

/// Inverse of the symmetric positive definite n x n row-major double matrix a into out, by
/// Cholesky (about a third of Gauss-Jordan's work); work holds n*n doubles. Returns 0, or 1 with
/// out untouched when a is not positive definite in double (or n > 512). The same bits with or
/// without AVX2. work and out must not overlap each other or a.
int sq_spd_inverse_f64(const double *a, int n, double *work, double *out);

#ifdef __cplusplus
}
#endif
#endif
