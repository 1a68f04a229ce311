// Micro-benchmark of one KV head's decode attention at depth, per token of context: the packed
// kernels (keys with RoPE from the table, softmax, values) against the f16 partial kernel, over
// SQ_ATTENTION_CHUNK-sized chunks as the cache calls them. Data stays in the last-level cache
// here (one head), so this measures compute; `squat bench` measures the whole model.
// Usage: packed_attention_bench BITS [REPEATS]   (prints the best of REPEATS runs)
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
    if (bits != 2 && bits != 4 && bits != 8) {
        fprintf(stderr, "bits must be 2, 4 or 8\n");
        return 2;
    }
    unsigned seed = 1;
    const int pb = D * bits / 8;
    uint8_t *kc = malloc((size_t)T * pb), *vc = malloc((size_t)T * pb);
    for (int i = 0; i < T * pb; i++) kc[i] = (uint8_t)rand(), vc[i] = (uint8_t)rand();
    uint16_t *ks = malloc(2 * (T / KG + 1) * D), *km = malloc(2 * (T / KG + 1) * D);
    uint16_t *vs = malloc(2 * T * D / VG), *vm = malloc(2 * T * D / VG);
    for (int i = 0; i < (T / KG + 1) * D; i++) ks[i] = sq_f32_to_f16(0.1f + 0.01f * frand(&seed)), km[i] = sq_f32_to_f16(frand(&seed));
    for (int i = 0; i < T * D / VG; i++) vs[i] = sq_f32_to_f16(0.1f + 0.01f * frand(&seed)), vm[i] = sq_f32_to_f16(frand(&seed));
    float *cs = malloc(sizeof(float) * T * D / 2), *sn = malloc(sizeof(float) * T * D / 2);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            double w = pow(10000.0, -2.0 * i / D);
            cs[t * D / 2 + i] = (float)cos(t * w), sn[t * D / 2 + i] = (float)sin(t * w);
        }
    uint16_t *K16 = malloc(2 * (size_t)T * D), *V16 = malloc(2 * (size_t)T * D);
    for (int i = 0; i < T * D; i++) K16[i] = sq_f32_to_f16(frand(&seed)), V16[i] = sq_f32_to_f16(frand(&seed));
    float q[3 * 64], out[3 * 64], ml[6], *sc = malloc(sizeof(float) * g * chunk), check = 0;
    for (int i = 0; i < g * D; i++) q[i] = frand(&seed);
    double best = 1e9, bestK = 1e9, bestV = 1e9, best16 = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now(), tk = 0, tv = 0;
        for (int c0 = 0; c0 < T; c0 += chunk) {
            const int n = c0 + chunk <= T ? chunk : T - c0;
            double a = now();
            sq_scores_packed_keys(q, g, D, kc + (int64_t)c0 * pb, bits, ks, km, 0, KG, c0, cs, sn, n, 0.125f, sc, n);
            double b = now();
            for (int j = 0; j < g; j++) sq_exp_sum(sc + j * n, n, sq_max(sc + j * n, n));
            for (int i = 0; i < g * D; i++) out[i] = 0;
            double c = now();
            sq_accumulate_packed_values(sc, n, g, D, vc + (int64_t)c0 * pb, bits, vs + (int64_t)c0 * D / VG,
                                        vm + (int64_t)c0 * D / VG, 0, VG, n, out);
            tk += b - a, tv += now() - c, check += out[5];
        }
        double t1 = now();
        for (int c0 = 0; c0 < T; c0 += chunk) {
            const int n = c0 + chunk <= T ? chunk : T - c0;
            sq_attend_partial_f16(q, g, D, K16 + (int64_t)c0 * D, V16 + (int64_t)c0 * D, D, n, 0.125f, out, ml, sc);
            check += out[3];
        }
        double t2 = now();
        if (t1 - t0 < best) best = t1 - t0;
        if (t2 - t1 < best16) best16 = t2 - t1;
        if (tk < bestK) bestK = tk;
        if (tv < bestV) bestV = tv;
    }
    printf("%d-bit packed: %.1f ns per context token (keys %.1f, values %.1f); f16: %.1f  [check %g]\n", bits,
           best / T * 1e9, bestK / T * 1e9, bestV / T * 1e9, best16 / T * 1e9, check);
    return 0;
}
