#!/usr/bin/env bash
# Regenerates the protoc-c output for proto/squat/v1/*.proto into the C target
# Sources/SquatProto: `.c` files at the target root, headers under include/squat/v1/ (SwiftPM
# makes include/ the module's umbrella directory). Idempotent: the same inputs give the same bytes.
#
#   scripts/gen-proto.sh            # write into Sources/SquatProto
#   scripts/gen-proto.sh OUT_DIR    # write the same tree into OUT_DIR (the staleness test)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/Sources/SquatProto"}

if ! command -v protoc-c >/dev/null 2>&1; then
  echo "gen-proto: protoc-c not found; run scripts/setup.sh (installs protobuf-c-compiler)" >&2
  exit 127
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$root/proto"
mapfile -t protos < <(find squat/v1 -name '*.proto' | LC_ALL=C sort)
if [ ${#protos[@]} -eq 0 ]; then
  echo "gen-proto: no .proto files under proto/squat/v1" >&2
  exit 1
fi
protoc-c -I . --c_out="$tmp" "${protos[@]}"

mkdir -p "$out/include/squat/v1"
# Drop generated files whose .proto is gone, so the tree mirrors proto/ exactly.
find "$out" -maxdepth 1 -name '*.pb-c.c' -delete
find "$out/include/squat/v1" -maxdepth 1 -name '*.pb-c.h' -delete

for p in "${protos[@]}"; do
  base=${p%.proto}
  cp "$tmp/$base.pb-c.c" "$out/$(basename "$base").pb-c.c"
  cp "$tmp/$base.pb-c.h" "$out/include/$base.pb-c.h"
done
