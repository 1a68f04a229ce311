// Internal declarations shared by the kernel files.
#ifndef SQ_INTERNAL_H
#define SQ_INTERNAL_H
#include "sq_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SQ_X86 1
#define SQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define SQ_X86 0
#define SQ_AVX2
#endif

/// 1 when the AVX2 path is usable and not disabled by sq_force_scalar.
int sq_use_avx2(void);

// GGML block layouts (little-endian, packed).
typedef struct { uint16_t d; int8_t qs[32]; } sq_block_q8_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[16]; } sq_block_q4_1;
typedef struct { uint16_t d; uint8_t qs[16]; } sq_block_q4_0;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } sq_block_q5_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; } sq_block_q5_1;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; } sq_block_q4_K;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } sq_block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } sq_block_q6_K;

_Static_assert(sizeof(sq_block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(sq_block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(sq_block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(sq_block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(sq_block_q5_1) == 24, "q5_1");
_Static_assert(sizeof(sq_block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(sq_block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(sq_block_q6_K) == 210, "q6_K");

/// A dot-product kernel for one row of `n` elements against `ntok` (1...SQ_TILE) f32 vectors
/// x + t*x_stride, writing out[t]. `xsum` holds, per token (stride n/4), 8 lane sums per block
/// of 32 x elements: lane j = (x[j] + x[8+j]) + (x[16+j] + x[24+j]) (see sq_block_sums), for
/// formats with a per-block minimum (fold m * xsum lanes into the vector accumulator).
/// out[t] must not depend on ntok: the same operations in the same order for each token.
typedef void (*sq_dot_multi_fn)(const void *row, const float *x, int64_t x_stride, const float *xsum, int ntok,
                                int64_t n, float *out);
#define SQ_TILE 4

/// sums[8b + j] = (x[32b+j] + x[32b+8+j]) + (x[32b+16+j] + x[32b+24+j]) for b < n/32, j < 8.
void sq_block_sums(const float *x, int64_t n, float *sums);

/// Per-type kernels: dequantize a whole number of blocks, the reference dequantizer, and the dot.
typedef struct {
    int block_size;
    int block_bytes;
    void (*dequantize)(const void *src, float *dst, int64_t n);
    void (*dequantize_ref)(const void *src, float *dst, int64_t n);
    sq_dot_multi_fn dot_avx2;
    sq_dot_multi_fn dot_scalar;
} sq_type_traits;

/// Traits for a type, or NULL when unknown. Defined in quant.c; other files provide the
/// per-type functions it points to.
const sq_type_traits *sq_traits(int type);

// Types implemented in quant_legacy.c and quant_kquants.c.
// Weak so that the table links while a format is absent; sq_traits returns NULL for it then.
extern const sq_type_traits sq_traits_q4_0 __attribute__((weak)), sq_traits_q5_0 __attribute__((weak)),
    sq_traits_q5_1 __attribute__((weak));
extern const sq_type_traits sq_traits_q4_K __attribute__((weak)), sq_traits_q5_K __attribute__((weak)),
    sq_traits_q6_K __attribute__((weak));

static inline float sq_h2f(uint16_t h) { return sq_f16_to_f32(h); }
// NOTE for AVX2 kernels: never call a non-AVX function (like sq_h2f) inside an AVX2 loop: the
// compiler then emits vzeroupper around each call, which measured 50x slower here. Use F16C's
// _cvtsh_ss inside SQ_AVX2 functions.

#endif
