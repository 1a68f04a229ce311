#!/usr/bin/env bash
# Runs the test suite under one sanitizer: scripts/sanitize.sh [address|thread] (default address).
#
#   swift test -c release --sanitize=S --scratch-path .build-asan|.build-tsan --skip ClusterTests
#   swift test -c release --sanitize=S --scratch-path .build-asan|.build-tsan --filter ClusterTests --no-parallel
#
# Each sanitizer has its own scratch path, so neither invalidates the other's build nor the plain
# .build. The cluster tests start the `squat` binary of the same scratch path: the coordinator and
# worker processes run instrumented too, and their sanitizer reports land in their logs (a
# report makes the process exit non-zero, so the test fails and prints the log's tail).
#
# NOT part of scripts/test or CI: on a 2-core machine each sanitizer build takes 10-20 minutes
# and the instrumented run is several times slower than the plain one, which does not fit CI's
# 30-minute budget. Run it by hand, alone on the machine. Extra arguments go to both commands.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-address}"
[ $# -gt 0 ] && shift
case "$kind" in
  address) scratch=.build-asan ;;
  thread) scratch=.build-tsan ;;
  *) echo "usage: scripts/sanitize.sh [address|thread] [swift test args…]" >&2; exit 64 ;;
esac
# Sanitizer options are the defaults (LeakSanitizer on with ASan on Linux), with the toolchain's
# own leaks suppressed by scripts/lsan.supp; set ASAN_OPTIONS / LSAN_OPTIONS / TSAN_OPTIONS to
# change them. See README "Sanitizers".
run=()
if [ "$kind" = address ] && [ -z "${LSAN_OPTIONS:-}" ]; then
  # Known toolchain leaks only (see the file); every other leak still fails the run.
  export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=1"
fi
if [ "$kind" = thread ]; then
  # Instrumented processes run 10-20x slower: stretch the cluster's deadlines (a busy stage's
  # silence, step and cache-move timeouts) and the tests' waits by the same factor.
  export SQUAT_TIME_SCALE="${SQUAT_TIME_SCALE:-20}"
fi
if [ "$kind" = thread ] && [ "$(uname -s)" = Linux ]; then
  # TSan maps its shadow memory at fixed addresses; with the kernel's high mmap randomisation
  # (vm.mmap_rnd_bits > 28) it can abort with "unexpected memory mapping". setarch -R turns
  # off address-space randomisation for this process tree only.
  if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
    run=(setarch "$(uname -m)" -R)
  fi
fi
set -x
"${run[@]}" swift test -c release --sanitize="$kind" --scratch-path "$scratch" --skip ClusterTests "$@"
"${run[@]}" swift test -c release --sanitize="$kind" --scratch-path "$scratch" --filter ClusterTests --no-parallel "$@"
