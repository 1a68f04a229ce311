// What this core's vector units allow per cycle, measured with fixed instruction mixes in inline
// assembly (x86-64, AVX2 + FMA): multiply-adds alone, with broadcasts, with full-width loads as
// memory operands, with byte widening, and the instruction mix of one iteration of the packed key
// kernel's loop (a channel pair of two 8-token blocks, three query heads). Cycles assume the clock
// that a chain of dependent integer adds shows, printed first.
// Build: cc -O2 port_limits.c -o port_limits      Usage: port_limits
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float data[8192] __attribute__((aligned(64)));
static double ghz = 3.0;

#define CLOBBERS                                                                                         \
    "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
// Best of three runs of n iterations of BODY, in cycles per iteration. The registers start at zero
// (no subnormal operands); each accumulator's chain is short enough not to bound the loop.
#define MEASURE(NAME, BODY)                                                                 \
    do {                                                                                    \
        const long n = 20000000;                                                            \
        double best = 1e30;                                                                 \
        for (int run = 0; run < 3; run++) {                                                 \
            __asm__ volatile("vzeroall" ::: CLOBBERS);                                      \
            const double t0 = now();                                                        \
            for (long i = 0; i < n; i++) __asm__ volatile(BODY ::"r"(data) : CLOBBERS);    \
            const double c = (now() - t0) * ghz * 1e9 / n;                                  \
            if (c < best) best = c;                                                         \
        }                                                                                   \
        printf("%-52s %6.2f cycles\n", NAME, best);                                         \
    } while (0)

// Twelve multiply-adds into ymm0..11 (twelve chains, one link per iteration, from ymm14 and ymm15).
#define F(r) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #r "\n"
#define F12 F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)
#define FM(o, r) "vfmadd231ps " #o "(%0), %%ymm15, %%ymm" #r "\n"
#define B(o) "vbroadcastss " #o "(%0), %%ymm12\n"
#define L(o) "vmovups " #o "(%0), %%ymm13\n"
#define W(o) "vpmovzxbd " #o "(%0), %%ymm12\n"
#define P "vpand %%ymm14, %%ymm15, %%ymm13\n"
#define C "vcvtdq2ps %%ymm14, %%ymm13\n"

// One iteration of the key loop: widen the pair's code byte for two blocks, dequantize both
// channels (masks and scales as in the kernel), rotate by the blocks' RoPE rows (memory operands)
// and dot with three heads' broadcast queries into six accumulators. %0 stands for every pointer.
#define KEY_LOOP                                                                                           \
    "vpmovzxbd (%0), %%ymm6\n vpmovzxbd 128(%0), %%ymm7\n vbroadcastss 4(%0), %%ymm8\n"                    \
    "vbroadcastss 8(%0), %%ymm9\n vpand 64(%0), %%ymm6, %%ymm10\n vpand 64(%0), %%ymm7, %%ymm11\n"         \
    "vcvtdq2ps %%ymm10, %%ymm10\n vcvtdq2ps %%ymm11, %%ymm11\n vfmadd213ps %%ymm9, %%ymm8, %%ymm10\n"      \
    "vfmadd213ps %%ymm9, %%ymm8, %%ymm11\n vbroadcastss 12(%0), %%ymm8\n vbroadcastss 16(%0), %%ymm9\n"    \
    "vpand 96(%0), %%ymm6, %%ymm6\n vpand 96(%0), %%ymm7, %%ymm7\n vcvtdq2ps %%ymm6, %%ymm6\n"             \
    "vcvtdq2ps %%ymm7, %%ymm7\n vfmadd213ps %%ymm9, %%ymm8, %%ymm6\n vfmadd213ps %%ymm9, %%ymm8, %%ymm7\n"  \
    "vmulps 256(%0), %%ymm6, %%ymm12\n vfmsub231ps 288(%0), %%ymm10, %%ymm12\n"                            \
    "vmulps 288(%0), %%ymm6, %%ymm6\n vfmadd231ps 256(%0), %%ymm10, %%ymm6\n"                              \
    "vmulps 320(%0), %%ymm7, %%ymm13\n vfmsub231ps 352(%0), %%ymm11, %%ymm13\n"                            \
    "vmulps 352(%0), %%ymm7, %%ymm7\n vfmadd231ps 320(%0), %%ymm11, %%ymm7\n"                              \
    "vbroadcastss 20(%0), %%ymm14\n vbroadcastss 24(%0), %%ymm15\n"                                        \
    "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n"                        \
    "vfmadd231ps %%ymm6, %%ymm15, %%ymm0\n vfmadd231ps %%ymm7, %%ymm15, %%ymm1\n"                          \
    "vbroadcastss 28(%0), %%ymm14\n vbroadcastss 32(%0), %%ymm15\n"                                        \
    "vfmadd231ps %%ymm12, %%ymm14, %%ymm2\n vfmadd231ps %%ymm13, %%ymm14, %%ymm3\n"                        \
    "vfmadd231ps %%ymm6, %%ymm15, %%ymm2\n vfmadd231ps %%ymm7, %%ymm15, %%ymm3\n"                          \
    "vbroadcastss 36(%0), %%ymm14\n vbroadcastss 40(%0), %%ymm15\n"                                        \
    "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n"                        \
    "vfmadd231ps %%ymm6, %%ymm15, %%ymm4\n vfmadd231ps %%ymm7, %%ymm15, %%ymm5\n"

int main(void) {
    // A chain of dependent adds retires one per cycle: its rate is the clock.
    double best = 0;
    for (int run = 0; run < 3; run++) {
        long x = 0;
        const long n = 400000000;
        const double t0 = now();
        __asm__ volatile("mov %1, %%rcx\n1: add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n dec %%rcx\n jnz 1b"
                         : "+r"(x)
                         : "r"(n / 4)
                         : "rcx", "cc");
        const double g = n / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    ghz = best;
    printf("clock: %.2f GHz\n", ghz);
    MEASURE("12 multiply-adds", F12);
    MEASURE("12 multiply-adds + 6 broadcasts", F12 B(0) B(4) B(8) B(12) B(16) B(20));
    MEASURE("12 multiply-adds + 6 ymm loads", F12 L(0) L(32) L(64) L(96) L(128) L(160));
    MEASURE("24 multiply-adds (12 with a memory operand)",
            F12 FM(0, 0) FM(32, 1) FM(64, 2) FM(96, 3) FM(128, 4) FM(160, 5) FM(192, 6) FM(224, 7)
                FM(256, 8) FM(288, 9) FM(320, 10) FM(352, 11));
    MEASURE("  the same + 12 broadcasts",
            F12 FM(0, 0) FM(32, 1) FM(64, 2) FM(96, 3) FM(128, 4) FM(160, 5) FM(192, 6) FM(224, 7)
                FM(256, 8) FM(288, 9) FM(320, 10) FM(352, 11) B(0) B(4) B(8) B(12) B(16) B(20) B(24) B(28) B(32)
                    B(36) B(40) B(44));
    MEASURE("12 multiply-adds + 6 byte widenings (vpmovzxbd)", F12 W(0) W(8) W(16) W(24) W(32) W(40));
    MEASURE("12 multiply-adds + 6 conversions + 6 ands", F12 C C C C C C P P P P P P);
    MEASURE("12 multiply-adds + 12 ands", F12 P P P P P P P P P P P P);
    MEASURE("12 multiply-adds + 24 ands", F12 P P P P P P P P P P P P P P P P P P P P P P P P);
    MEASURE("key loop iteration (24 mul-class, 24 loads, 44 ops)", KEY_LOOP);
    return 0;
}
