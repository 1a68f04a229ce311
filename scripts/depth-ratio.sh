#!/usr/bin/env bash
# Issue 3's memory and speed comparison in one command: `squat bench --context N` with the f16
# cache and with a quantized cache, interleaved (f16, quantized, f16, quantized, ...) so that a
# drifting machine weighs on both, one process per run (peak RSS is the whole run's). Prints each
# run's figures, then per round the quantized/f16 ratios of decode tok/s, KV bytes and peak RSS,
# and their medians.
# Usage: depth-ratio.sh [ROUNDS] [CONTEXT] [THREADS] [-- extra flags for the quantized runs]
#   defaults: 2 rounds, 8000 tokens, 1 thread, quantized = --kv squat --k-bits 2 --v-bits 2
# Env: SQUAT (binary, default .build/release/squat), MODEL (default models/…Q4_1.gguf).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
positional=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    positional+=("$1")
    shift
done
[ $# -gt 0 ] && shift  # the "--"
rounds="${positional[0]:-2}"
context="${positional[1]:-8000}"
threads="${positional[2]:-1}"
quantized=("$@")
[ ${#quantized[@]} -eq 0 ] && quantized=(--kv squat --k-bits 2 --v-bits 2)
squat="${SQUAT:-$root/.build/release/squat}"
model="${MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -x "$squat" ] || { echo "depth-ratio: no squat binary at $squat (swift build -c release)" >&2; exit 2; }
[ -f "$model" ] || { echo "depth-ratio: no model at $model (scripts/setup.sh)" >&2; exit 2; }

# One run: prints "tok/s kv-bytes-per-token peak-MiB" after echoing the bench's lines.
run() {
    local out
    out="$("$squat" bench --model "$model" --context "$context" --threads "$threads" --decode-tokens 128 "$@")"
    echo "$out" | sed 's/^/    /' >&2
    local tps kv rss
    tps="$(echo "$out" | sed -n 's/^decode .* at depth .*: \([0-9.]*\) tok\/s.*/\1/p')"
    kv="$(echo "$out" | sed -n 's/^KV bytes: .* \([0-9.]*\) per token.*/\1/p')"
    rss="$(echo "$out" | sed -n 's/^peak RSS: \([0-9.]*\) MiB.*/\1/p')"
    if [ -z "$tps" ] || [ -z "$kv" ] || [ -z "$rss" ]; then
        echo "depth-ratio: could not read the bench's output" >&2
        exit 1
    fi
    echo "$tps $kv $rss"
}

ratios=()
for r in $(seq 1 "$rounds"); do
    ft="" qt=""  # a failed run must not leave the previous round's figures behind
    echo "round $r: f16" >&2
    read -r ft fk fr < <(run --kv full) || true
    echo "round $r: ${quantized[*]}" >&2
    read -r qt qk qr < <(run "${quantized[@]}") || true
    [ -n "$ft" ] && [ -n "$qt" ] || { echo "depth-ratio: a run failed" >&2; exit 1; }
    line="$(awk -v ft="$ft" -v qt="$qt" -v fk="$fk" -v qk="$qk" -v fr="$fr" -v qr="$qr" \
        'BEGIN { printf "%.3f %.3f %.3f", qt / ft, qk / fk, qr / fr }')"
    read -r dr kr rr <<<"$line"
    echo "round $r: decode ${qt} / ${ft} tok/s = ${dr}x, KV bytes ${kr}x, peak RSS ${qr} / ${fr} MiB = ${rr}x"
    ratios+=("$line")
done
printf '%s\n' "${ratios[@]}" | awk '
    { d[NR] = $1; k[NR] = $2; r[NR] = $3 }
    function median(a, n,    i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "medians over %d round(s): decode %.3fx, KV bytes %.3fx, peak RSS %.3fx\n", NR, median(d, NR), median(k, NR), median(r, NR) }'
