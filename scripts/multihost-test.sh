#!/usr/bin/env bash
# Multi-host test: a coordinator, three workers and a client, each in its own network namespace
# with its own address, joined by veth pairs to one Linux bridge (10.77.0.0/24). Needs root
# (ip netns), iproute2 and a release build (.build/release/squat, or $SQUAT_BINARY).
#   (a) concurrent greedy `squat submit`s from the client's namespace give the bytes of
#       `squat generate` for the same prompts;
#   (b) again, and mid-generation one worker's link is cut (its veth on the bridge side set
#       down): every request still completes with the same bytes, `squat status` shows the
#       worker gone;
#   (c) the link comes back: the worker registers again and gets layers (status shows three
#       workers with layers), and a new request answers with generate's bytes.
# Prints timings; exits non-zero on any failed check with the logs' tails. Cleans up the
# namespaces, the bridge and the processes on exit, also on failure or Ctrl-C.
# Environment: SQUAT_BINARY, SQUAT_MODEL; MULTIHOST_CUT (w2: the worker whose link is cut);
# MULTIHOST_MAX_TOKENS (40); MULTIHOST_MAX_DETECT (12: the most seconds from the cut to
# "worker … lost"); MULTIHOST_KEEP_LOGS=1 keeps the logs on success. About a minute.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
B=${SQUAT_BINARY:-$root/.build/release/squat}
model=${SQUAT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
max_tokens=${MULTIHOST_MAX_TOKENS:-40}
# The longest the coordinator may take to notice the cut (ZMTP heartbeats: ~1 s + 4 s timeout).
max_detect=${MULTIHOST_MAX_DETECT:-12}
cut_worker=${MULTIHOST_CUT:-w2}
net=10.77.0
coord_addr=$net.1
client_addr=$net.10
port=5555
endpoint=tcp://$coord_addr:$port

say() { echo "multihost: $*" >&2; }
die() {
  say "FAIL: $*"
  exit 1
}

case "$cut_worker" in w1 | w2 | w3) ;; *) die "MULTIHOST_CUT must be w1, w2 or w3" ;; esac
[ "$(id -u)" -eq 0 ] || die "needs root (ip netns, veth, bridge): sudo $0"
command -v ip >/dev/null || die "ip not found: apt-get install iproute2"
[ -x "$B" ] || die "no squat binary at $B: swift build -c release --product squat (or set SQUAT_BINARY)"
[ -f "$model" ] || die "no model at $model: scripts/setup.sh"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

t0=$EPOCHREALTIME
# Names unique to this run (interface names ≤ 15 characters), so runs do not collide.
tag=$(printf '%x' $(($$ % 65536)))
bridge=sqbr$tag
nodes=(coord w1 w2 w3 client)
declare -A addr=([coord]=$coord_addr [w1]=$net.2 [w2]=$net.3 [w3]=$net.4 [client]=$client_addr)
ns() { echo "sqmh$tag-$1"; }        # namespace of a node
hostif() { echo "sq$tag$1"; }         # its veth's bridge side (root namespace)
logs=$(mktemp -d /tmp/multihost.XXXXXX)
pids=()
refs_pid=""

cleanup() {
  local status=$?
  set +e
  # The references' loop (root namespace) first: its subshell, then the generate it was running.
  if [ -n "$refs_pid" ]; then
    local kids
    kids=$(pgrep -P "$refs_pid")
    kill -KILL "$refs_pid" 2>/dev/null
    for p in $kids; do kill -KILL "$p" 2>/dev/null; done
  fi
  # The coordinator goes first: on SIGTERM it drains the workers, which then exit.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # Anything else still running inside our namespaces (started by this script).
  for n in "${nodes[@]}"; do
    for p in $(ip netns pids "$(ns "$n")" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  wait 2>/dev/null
  for n in "${nodes[@]}"; do
    ip link del "$(hostif "$n")" 2>/dev/null
    ip netns del "$(ns "$n")" 2>/dev/null
  done
  ip link del "$bridge" 2>/dev/null
  if [ $status -ne 0 ]; then
    say "failed (exit $status); logs in $logs; their tails:"
    for f in "$logs"/*.log; do
      [ -s "$f" ] || continue
      echo "--- $(basename "$f") (last 25 lines)" >&2
      tail -n 25 "$f" >&2
    done
  elif [ $status -eq 0 ] && [ -z "${MULTIHOST_KEEP_LOGS:-}" ]; then
    rm -rf "$logs"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stamp: prefixes each line with seconds since the start of the test (for the timings).
stamp() {
  local line
  while IFS= read -r line; do
    printf '%s %s\n' "$(elapsed_since "$t0")" "$line"
  done
}
elapsed_since() {
  local now=${EPOCHREALTIME/./} start=${1/./}
  local d=$((now - start))
  printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}
# at FILE PATTERN: the stamp of the first line of FILE matching PATTERN (empty if none).
at() { grep -m1 -- "$2" "$1" 2>/dev/null | cut -d' ' -f1 || true; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for SECONDS CMD...: until CMD succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}
has_line() { grep -q -- "$2" "$1" 2>/dev/null; }

# --- The network: one bridge, a veth pair per node, each node in its own namespace.
ip link add "$bridge" type bridge ||
  die "cannot create a bridge: network namespaces need root with CAP_NET_ADMIN (not an unprivileged container)"
ip link set "$bridge" up
for n in "${nodes[@]}"; do
  ip netns add "$(ns "$n")"
  ip link add "$(hostif "$n")" type veth peer name eth0 netns "$(ns "$n")"
  ip link set "$(hostif "$n")" master "$bridge" up
  ip -n "$(ns "$n")" addr add "${addr[$n]}/24" dev eth0
  ip -n "$(ns "$n")" link set eth0 up
  ip -n "$(ns "$n")" link set lo up
done
in_ns() {
  local n=$1
  shift
  ip netns exec "$(ns "$n")" "$@"
}
link_up() { ip -n "$(ns "$1")" link show eth0 | grep -q LOWER_UP; }
for n in "${nodes[@]}"; do wait_for 10 link_up "$n" || die "$(ns "$n")'s eth0 did not come up"; done
say "network: bridge $bridge, namespaces $(ns coord) ($coord_addr), $(ns w1)..$(ns w3) (${addr[w1]}..${addr[w3]}), $(ns client) ($client_addr)"

# --- The prompts and their references (single process, root namespace).
prompts=(
  "The capital of France is"
  "Once upon a time, in a small village by the sea,"
  "List three prime numbers and explain why they are prime:"
  "def fibonacci(n):"
  "The three laws of thermodynamics are"
  "Water boils at a lower temperature on a mountain because"
)
generate_refs() {
  local i
  for i in "${!prompts[@]}"; do
    "$B" generate --model "$model" --threads 1 --temperature 0 --max-tokens "$max_tokens" \
      "${prompts[$i]}" >"$logs/ref$i.out" 2>"$logs/ref$i.err" || return 1
  done
}
generate_refs &
refs_pid=$!

# --- Keys: every link is CURVE-encrypted and every peer authenticated (the addresses are not
# loopback, so the processes refuse to start without keys or --insecure).
keys="$logs/keys"
for k in coordinator w1 w2 w3 client; do
  "$B" keygen --out "$keys/$k" --name "$k" >/dev/null || die "squat keygen failed for $k"
done
mkdir -p "$keys/authorized/workers" "$keys/authorized/clients"
for w in w1 w2 w3; do cp "$keys/$w/$w.pub" "$keys/authorized/workers/"; done
cp "$keys/client/client.pub" "$keys/authorized/clients/"
server_key="$keys/coordinator/coordinator.pub"
client_keys=(--curve-secret "$keys/client" --curve-server-key "$server_key")

# --- The cluster: each process in its namespace, binding its own address.
# `ip netns exec` executes the command in place, so $! is the squat process itself.
ip netns exec "$(ns coord)" "$B" coordinator --model "$model" --bind "$endpoint" --workers 3 --kv squat \
  --curve-secret "$keys/coordinator" --authorized-keys "$keys/authorized" \
  > >(stamp >"$logs/coordinator.log") 2>&1 &
pids+=($!)
wait_for 30 has_line "$logs/coordinator.log" "listening on" || die "the coordinator did not start"
for w in w1 w2 w3; do
  ip netns exec "$(ns "$w")" "$B" worker --model "$model" --coordinator "$endpoint" \
    --data-bind "tcp://${addr[$w]}:0" --threads 1 --id "$w" \
    --curve-secret "$keys/$w" --curve-server-key "$server_key" \
    > >(stamp >"$logs/worker-$w.log") 2>&1 &
  pids+=($!)
done
wait_for 60 has_line "$logs/coordinator.log" "pipeline ready" || die "the pipeline did not become ready"
say "$(grep -m1 -o 'pipeline ready.*' "$logs/coordinator.log")"
wait "$refs_pid" || die "squat generate failed for the references (see ref*.err)"
refs_pid=""

status() { in_ns client "$B" status --coordinator "$endpoint" "${client_keys[@]}"; }
# A client without keys is turned away by the handshake, with a clear error, quickly.
if keyless=$(in_ns client timeout 30 "$B" submit --coordinator "$endpoint" --max-tokens 2 "Hi" 2>&1); then
  die "a client without keys was served"
fi
grep -q "handshake" <<<"$keyless" || die "a keyless client did not get a handshake error: $keyless"
say "PASS: a keyless client is refused: ${keyless##*: }"
# submit_all PHASE: starts every prompt at once from the client's namespace.
submit_pids=()
submit_all() {
  local i
  submit_pids=()
  for i in "${!prompts[@]}"; do
    ip netns exec "$(ns client)" timeout 100 "$B" submit --coordinator "$endpoint" "${client_keys[@]}" --temperature 0 \
      --max-tokens "$max_tokens" --timeout 60 "${prompts[$i]}" \
      >"$logs/$1-$i.out" 2> >(stamp >"$logs/$1-$i.err") &
    submit_pids+=($!)
  done
}
# check_all PHASE: every submit exited 0 and printed generate's bytes.
check_all() {
  local i rc bad=0
  for i in "${!prompts[@]}"; do
    rc=0
    wait "${submit_pids[$i]}" || rc=$?
    if [ $rc -eq 124 ]; then
      say "$1: request $i ('${prompts[$i]}') hung: no end within 100 s"
      bad=1
    elif [ $rc -ne 0 ]; then
      say "$1: request $i ('${prompts[$i]}') failed (exit $rc): $(tail -n 3 "$logs/$1-$i.err")"
      bad=1
    elif ! cmp -s "$logs/$1-$i.out" "$logs/ref$i.out"; then
      say "$1: request $i ('${prompts[$i]}') differs from generate:"
      say "  submit:   $(head -c 300 "$logs/$1-$i.out" | od -c | head -n 4)"
      say "  generate: $(head -c 300 "$logs/ref$i.out" | od -c | head -n 4)"
      bad=1
    fi
  done
  return $bad
}

# --- (a) Concurrent greedy requests: the same bytes as generate.
ta=$EPOCHREALTIME
submit_all a
check_all a || die "(a) concurrent requests do not match generate"
say "PASS (a): ${#prompts[@]} concurrent requests = generate, byte for byte ($(elapsed_since "$ta") s)"

# --- (b) Cut a worker's link mid-generation.
submit_all b
started() {
  local i
  for i in "${!prompts[@]}"; do [ -s "$logs/b-$i.out" ] || return 1; done
}
wait_for 60 started || die "(b) the requests produced no tokens within 60 s"
running=0
for p in "${submit_pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
t_cut=$(elapsed_since "$t0")
ip link set "$(hostif "$cut_worker")" down
say "cut $cut_worker's link at ${t_cut} s (all ${#prompts[@]} requests had tokens, $running still running)"
[ $running -gt 0 ] || die "(b) every request had finished before the cut; raise MULTIHOST_MAX_TOKENS"
check_all b || die "(b) requests did not complete with generate's bytes after $cut_worker's link was cut"
t_done=$(elapsed_since "$t0")
grep -q "worker $cut_worker lost" "$logs/coordinator.log" ||
  die "(b) the coordinator never logged 'worker $cut_worker lost'"
st=$(status) || die "(b) squat status failed"
echo "$st" >"$logs/status-b.txt"
# `squat status` rows: worker, layers, state, ... (space-aligned); a lost worker stays listed as LOST.
serving() { awk -v w="$1" '$1 == w && $3 != "LOST" { f = 1 } END { exit !f }'; }
if serving "$cut_worker" <<<"$st"; then
  # The requests may outrun a silent-worker detection; give the coordinator its timeout.
  not_serving() { ! ip netns exec "$(ns client)" "$B" status --coordinator "$endpoint" "${client_keys[@]}" | serving "$cut_worker"; }
  wait_for 40 not_serving || die "(b) squat status still lists $cut_worker as serving after its link was cut: $st"
fi
st=$(status) || die "(b) squat status failed"
grep -q "^$cut_worker[[:space:]].*LOST" <<<"$st" || die "(b) squat status does not list $cut_worker as LOST: $st"
t_lost=$(at "$logs/coordinator.log" "worker $cut_worker lost")
ready_line=$(awk -v t="$t_lost" '$1 >= t && /pipeline ready/ { print; exit }' "$logs/coordinator.log")
t_ready=${ready_line%% *}
[ -n "$ready_line" ] || die "(b) no 'pipeline ready' after $cut_worker was lost"
replaying=$(sed -n 's/.*replaying \([0-9]*\) live sequence.*/\1/p' <<<"$ready_line")
# Requests running at the cut cannot advance past the cut stage, so they must be replayed.
[ "${replaying:-0}" -gt 0 ] || die "(b) $running request(s) were running at the cut, yet the new plan replayed none"
say "PASS (b): all ${#prompts[@]} requests = generate after the cut; status lists $cut_worker as LOST, not serving"
say "  $(grep -m1 "worker $cut_worker lost" "$logs/coordinator.log")"
say "  ${ready_line}"
say "  loss noticed $(since "$t_cut" "$t_lost") s after the cut; pipeline ready again $(since "$t_cut" "$t_ready") s after the cut (replaying ${replaying:-0} live sequences); requests done $(since "$t_cut" "$t_done") s after the cut"
# Checked after (c), so that one run reports on the rejoin too.
late=""
awk -v a="$t_cut" -v b="$t_lost" -v m="$max_detect" 'BEGIN { exit !(b - a <= m) }' ||
  late="(b) the coordinator noticed the cut only $(since "$t_cut" "$t_lost") s after it (more than MULTIHOST_MAX_DETECT=$max_detect s): the ZMTP heartbeats did not close the connection"
[ -z "$late" ] || say "  FAIL (reported at the end): $late"

# --- (c) The link comes back: the worker registers again and gets layers.
reg_before=$(grep -c "worker $cut_worker registered" "$logs/coordinator.log" || true)
t_up=$(elapsed_since "$t0")
ip link set "$(hostif "$cut_worker")" up
three_with_layers() {
  local s w
  s=$(status 2>/dev/null) || return 1
  echo "$s" >"$logs/status-c.txt"
  for w in w1 w2 w3; do awk -v w="$w" '$1 == w && $3 == "ready" { f = 1 } END { exit !f }' <<<"$s" || return 1; done
  [ "$(grep -c "worker $cut_worker registered" "$logs/coordinator.log")" -gt "$reg_before" ] || return 1
  awk -v t="$(at_last_reg)" '$1 >= t && /pipeline ready/ { f = 1 } END { exit !f }' "$logs/coordinator.log"
}
at_last_reg() { grep "worker $cut_worker registered" "$logs/coordinator.log" | tail -n 1 | cut -d' ' -f1; }
wait_for 45 three_with_layers ||
  die "(c) $cut_worker did not register again with a new plan within 45 s of its link coming back; status: $(cat "$logs/status-c.txt" 2>/dev/null)"
t_reg=$(at_last_reg)
rejoin_ready=$(awk -v t="$t_reg" '$1 >= t && /pipeline ready/ { print; exit }' "$logs/coordinator.log")
grep -q "$cut_worker" <<<"${rejoin_ready#* }" || die "(c) the plan after $cut_worker registered again gives it no layers: $rejoin_ready"
say "PASS (c): $cut_worker registered again $(since "$t_up" "$t_reg") s after the link came back; pipeline ready $(since "$t_up" "${rejoin_ready%% *}") s after"
say "  $rejoin_ready"
submit_pids=()
in_ns client timeout 100 "$B" submit --coordinator "$endpoint" "${client_keys[@]}" --temperature 0 \
  --max-tokens "$max_tokens" --timeout 60 "${prompts[0]}" >"$logs/c-0.out" 2>"$logs/c-0.err" ||
  die "(c) a request after the rejoin failed: $(tail -n 3 "$logs/c-0.err")"
cmp -s "$logs/c-0.out" "$logs/ref0.out" || die "(c) the request after the rejoin differs from generate"
say "PASS (c): a request after the rejoin = generate"
status | sed 's/^/  /' >&2
[ -z "$late" ] || die "$late"
say "all checks passed in $(elapsed_since "$t0") s"
