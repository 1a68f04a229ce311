// Micro-benchmark of one KV head's decode attention at depth, per token of context: the packed
// kernels (keys with RoPE from the table, softmax, values) against the f16 partial kernel, over
// SQ_ATTENTION_CHUNK-sized chunks as the cache calls them. With one head (HEADS = 1) the data
// stays in the last-level cache, so this measures compute; with HEADS = 90 (SmolLM2's 30 layers x
// 3 KV heads, each its own buffers) every pass streams from memory as a decode step does.
// Usage: packed_attention_bench BITS [REPEATS] [HEADS]   (prints the best of REPEATS runs)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "sq_kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

int main(int argc, char **argv) {
    const int D = 64, g = 3, T = 8000, KG = 32, VG = 32, chunk = SQ_ATTENTION_CHUNK;
    const int bits = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 15;
    const int H = argc > 3 ? atoi(argv[3]) : 1;
    if ((bits != 2 && bits != 4 && bits != 8) || H < 1 || H > 1000) {
        fprintf(stderr, "bits must be 2, 4 or 8 and heads 1...1000\n");
        return 2;
    }
    unsigned seed = 1;
    const int pb = D * bits / 8;
    uint8_t *kc[H], *vc[H];
    uint16_t *ks[H], *km[H], *vs[H], *vm[H], *K16[H], *V16[H];
    for (int h = 0; h < H; h++) {
        kc[h] = malloc((size_t)T * pb), vc[h] = malloc((size_t)T * pb);
        for (int i = 0; i < T * pb; i++) kc[h][i] = (uint8_t)rand(), vc[h][i] = (uint8_t)rand();
        ks[h] = malloc(2 * (T / KG + 1) * D), km[h] = malloc(2 * (T / KG + 1) * D);
        vs[h] = malloc(2 * T * D / VG), vm[h] = malloc(2 * T * D / VG);
        for (int i = 0; i < (T / KG + 1) * D; i++)
            ks[h][i] = sq_f32_to_f16(0.1f + 0.01f * frand(&seed)), km[h][i] = sq_f32_to_f16(frand(&seed));
        for (int i = 0; i < T * D / VG; i++)
            vs[h][i] = sq_f32_to_f16(0.1f + 0.01f * frand(&seed)), vm[h][i] = sq_f32_to_f16(frand(&seed));
        K16[h] = malloc(2 * (size_t)T * D), V16[h] = malloc(2 * (size_t)T * D);
        for (int i = 0; i < T * D; i++) K16[h][i] = sq_f32_to_f16(frand(&seed)), V16[h][i] = sq_f32_to_f16(frand(&seed));
    }
    float *cs = malloc(sizeof(float) * T * D / 2), *sn = malloc(sizeof(float) * T * D / 2);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            double w = pow(10000.0, -2.0 * i / D);
            cs[t * D / 2 + i] = (float)cos(t * w), sn[t * D / 2 + i] = (float)sin(t * w);
        }
    float rows[KG * D];  // the in-group RoPE rows, as the cache keeps them
    sq_rope_group_rows(cs, sn, D, KG, T, rows);
    float q[3 * 64], out[3 * 64], ml[6], *sc = malloc(sizeof(float) * g * chunk), check = 0;
    for (int i = 0; i < g * D; i++) q[i] = frand(&seed);
    double best = 1e9, bestK = 1e9, bestV = 1e9, best16 = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now(), tk = 0, tv = 0;
        for (int h = 0; h < H; h++)
            for (int c0 = 0; c0 < T; c0 += chunk) {
                const int n = c0 + chunk <= T ? chunk : T - c0;
                double a = now();
                sq_scores_packed_keys(q, g, D, kc[h] + (int64_t)c0 * pb, bits, ks[h], km[h], 0, KG, c0, cs, sn, rows, n,
                                      0.125f, sc, n);
                double b = now();
                for (int j = 0; j < g; j++) sq_exp_sum(sc + j * n, n, sq_max(sc + j * n, n));
                for (int i = 0; i < g * D; i++) out[i] = 0;
                double c = now();
                sq_accumulate_packed_values(sc, n, g, D, vc[h] + (int64_t)c0 * pb, bits, vs[h] + (int64_t)c0 * D / VG,
                                            vm[h] + (int64_t)c0 * D / VG, 0, VG, n, out);
                tk += b - a, tv += now() - c, check += out[5];
            }
        double t1 = now();
        for (int h = 0; h < H; h++)
            for (int c0 = 0; c0 < T; c0 += chunk) {
                const int n = c0 + chunk <= T ? chunk : T - c0;
                sq_attend_partial_f16(q, g, D, K16[h] + (int64_t)c0 * D, V16[h] + (int64_t)c0 * D, D, n, 0.125f, out, ml,
                                      sc);
                check += out[3];
            }
        double t2 = now();
        if (t1 - t0 < best) best = t1 - t0;
        if (t2 - t1 < best16) best16 = t2 - t1;
        if (tk < bestK) bestK = tk;
        if (tv < bestV) bestV = tv;
    }
    const double per = 1e9 / ((double)T * H);
    printf("%d-bit packed, %d head(s): %.1f ns per context token and head (keys %.1f, values %.1f); f16: %.1f  "
           "[check %g]\n",
           bits, H, best * per, bestK * per, bestV * per, best16 * per, check);
    return 0;
}
