#!/usr/bin/env bash
# Builds and runs the packed-attention and int8 matrix-product micro-benchmarks against the
# kernels in Sources/CKernels (clang from the Swift toolchain, the package's kernel flags), then,
# on x86-64 with AVX2 and FMA, what the core's vector units allow per cycle (port_limits.c).
# Usage: run.sh [REPEATS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
clang -O3 -fno-math-errno -Wall -I"$root/Sources/CKernels/include" -I"$root/Sources/CKernels" \
    "$root/scripts/kernel-bench/packed_attention_bench.c" "$root"/Sources/CKernels/*.c -o "$out/bench" -lm
for bits in 2 4; do "$out/bench" "$bits" "${1:-15}"; done
clang -O3 -fno-math-errno -Wall -I"$root/Sources/CKernels/include" -I"$root/Sources/CKernels" \
    "$root/scripts/kernel-bench/matmul_bench.c" "$root"/Sources/CKernels/*.c -o "$out/matmul" -lm
echo "repacked weights on huge pages (as LlamaStage places them):"
"$out/matmul" "${1:-15}"
echo "each matrix in its own allocation (4 KiB pages):"
"$out/matmul" "${1:-15}" 4k
if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    clang -O2 -Wall "$root/scripts/kernel-bench/port_limits.c" -o "$out/port_limits"
    echo "vector units, cycles per iteration of fixed instruction mixes:"
    "$out/port_limits"
fi
