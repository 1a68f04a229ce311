// Micro-benchmark of the int8-activation matrix products on repacked weights, shaped like
// SmolLM2-135M (30 layers of Q4_1 q/k/v/o/gate/up/down, a 49152 x 576 Q8_0 output head) with
// random codes: milliseconds per pass over all layers and over the head, and the weight bytes
// streamed per second, for 1, 4 and 16 tokens at once (best of REPEATS passes).
// Usage: matmul_bench [REPEATS] [huge|4k]: the repacked matrices in one 2 MiB-aligned region
// marked MADV_HUGEPAGE, as LlamaStage places them (default), or each in its own allocation.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#include "sq_internal.h"
#include "sq_kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int use_arena = 1;
static uint8_t *arena;
static size_t arena_used, arena_cap;

// A slice of the huge-page region (reserved once, 2 MiB-aligned), or its own allocation.
static void *weight_alloc(size_t bytes) {
    if (!use_arena) return aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!arena) {
        arena_cap = (size_t)128 << 20;
        arena = aligned_alloc((size_t)2 << 20, arena_cap);
#ifdef MADV_HUGEPAGE
        madvise(arena, arena_cap, MADV_HUGEPAGE);
#endif
    }
    void *p = arena + arena_used;
    arena_used += (bytes + 63) / 64 * 64;
    if (arena_used > arena_cap) {
        fprintf(stderr, "arena too small\n");
        exit(1);
    }
    return p;
}

typedef struct {
    int type, rows, cols;
    size_t bytes;
    void *packed;
} matrix;

static matrix make(int type, int rows, int cols) {
    const size_t block = type == SQ_TYPE_Q4_1 ? sizeof(sq_block_q4_1) : sizeof(sq_block_q8_0);
    const size_t row_bytes = (size_t)cols / 32 * block;
    uint8_t *plain = malloc(row_bytes * (size_t)rows);
    for (size_t i = 0; i < row_bytes * (size_t)rows; i++) plain[i] = (uint8_t)rand();
    const uint16_t d = sq_f32_to_f16(0.01f);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / 32; b++) {
            uint8_t *blk = plain + (size_t)r * row_bytes + (size_t)b * block;
            memcpy(blk, &d, 2);
            if (type == SQ_TYPE_Q4_1) memcpy(blk + 2, &d, 2);
        }
    matrix m = {type, rows, cols, sq_repack_x8_bytes(type, rows, cols), NULL};
    m.packed = weight_alloc(m.bytes);
    sq_repack_x8(type, plain, row_bytes, rows, cols, m.packed);
    free(plain);
    return m;
}

int main(int argc, char **argv) {
    const int repeats = argc > 1 ? atoi(argv[1]) : 15;
    use_arena = !(argc > 2 && strcmp(argv[2], "4k") == 0);
    enum { LAYERS = 30, HIDDEN = 576, KV = 192, FFN = 1536, VOCAB = 49152, MAXTOK = 16 };
    matrix m[LAYERS * 7];
    int k = 0;
    size_t layer_bytes = 0;
    for (int l = 0; l < LAYERS; l++) {
        const int shapes[7][2] = {{HIDDEN, HIDDEN}, {KV, HIDDEN}, {KV, HIDDEN}, {HIDDEN, HIDDEN},
                                  {FFN, HIDDEN},    {FFN, HIDDEN}, {HIDDEN, FFN}};
        for (int i = 0; i < 7; i++) {
            m[k] = make(SQ_TYPE_Q4_1, shapes[i][0], shapes[i][1]);
            layer_bytes += m[k++].bytes;
        }
    }
    const matrix head = make(SQ_TYPE_Q8_0, VOCAB, HIDDEN);
    float *x = malloc(sizeof(float) * FFN * MAXTOK);
    for (int i = 0; i < FFN * MAXTOK; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    sq_block_q8a *xq = malloc(sizeof(sq_block_q8a) * FFN / 32 * MAXTOK);
    float *y = malloc(sizeof(float) * VOCAB * MAXTOK);
    const int tokens[] = {1, 4, 16};
    for (int ti = 0; ti < 3; ti++) {
        const int nt = tokens[ti];
        double best_layers = 1e9, best_head = 1e9;
        for (int rep = 0; rep < repeats; rep++) {
            double t0 = now();
            for (int i = 0; i < k; i++) {
                sq_quantize_q8(x, (int64_t)m[i].cols * nt, xq);
                sq_matmul_q8_x8(m[i].type, m[i].packed, m[i].cols, xq, nt, y, m[i].rows, 0, m[i].rows);
            }
            double t1 = now();
            sq_quantize_q8(x, (int64_t)HIDDEN * nt, xq);
            sq_matmul_q8_x8(SQ_TYPE_Q8_0, head.packed, HIDDEN, xq, nt, y, VOCAB, 0, VOCAB);
            double t2 = now();
            if (t1 - t0 < best_layers) best_layers = t1 - t0;
            if (t2 - t1 < best_head) best_head = t2 - t1;
        }
        printf("%2d token(s): layers %.2f ms (%.1f GB/s), head %.2f ms (%.1f GB/s); %.3f ms per token\n", nt,
               best_layers * 1e3, (double)layer_bytes / best_layers / 1e9, best_head * 1e3,
               (double)head.bytes / best_head / 1e9, (best_layers + best_head) * 1e3 / nt);
    }
    return 0;
}
