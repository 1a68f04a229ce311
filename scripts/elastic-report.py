#!/usr/bin/env python3
"""Measures a re-partition under load: a local coordinator with two workers serves 8 greedy
requests; a third worker joins after --join seconds and is drained after --drain seconds (or,
with --kill, is killed with SIGKILL then: its caches are lost and every sequence is replayed).
Prints the token rate over time (every request's tokens, stamped as they arrive), the dip around
each re-plan, and the coordinator's own account of each move (caches shipped or replayed).

    scripts/elastic-report.py [--replay-only] [--kill] [--kv squat] [--max-tokens 300]

Needs a release build (.build/release/squat, or SQUAT_BINARY) and the default model
(scripts/setup.sh). Process logs: /tmp/elastic-NAME.log.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SQUAT_BINARY: another build, e.g. a ThreadSanitizer one (.build-tsan/…/release/squat).
squat = os.environ.get("SQUAT_BINARY") or os.path.join(root, ".build", "release", "squat")
model = os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

ap = argparse.ArgumentParser()
ap.add_argument("--replay-only", action="store_true")
ap.add_argument("--kv", default="squat")
ap.add_argument("--max-tokens", type=int, default=300)
ap.add_argument("--join", type=float, default=3.0, help="seconds after the first token")
ap.add_argument("--drain", type=float, default=8.0, help="seconds after the first token")
ap.add_argument("--kill", action="store_true", help="SIGKILL w3 instead of draining it")
ap.add_argument("--port", type=int, default=5791)
args = ap.parse_args()

endpoint = f"tcp://127.0.0.1:{args.port}"
procs = []
logs = {}


def start(name, argv):
    log = open(f"/tmp/elastic-{name}.log", "w")
    logs[name] = log.name
    p = subprocess.Popen([squat] + argv, stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def worker(name):
    return start(name, ["worker", "--model", model, "--coordinator", endpoint, "--threads", "1", "--id", name,
                        "--kv", args.kv])


try:
    start("coordinator", ["coordinator", "--bind", endpoint, "--model", model, "--workers", "2", "--kv", args.kv]
          + (["--replay-only"] if args.replay_only else []))
    worker("w1")
    worker("w2")
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run([squat, "status", "--coordinator", endpoint], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.count("ready") >= 2:
            break
        time.sleep(0.3)
    else:
        sys.exit("the pipeline did not become ready")

    topics = ["the history of the printing press", "how a steam engine works", "the life cycle of stars",
              "why the sky is blue", "the rules of chess", "how vaccines train the immune system",
              "the water cycle", "the causes of the French Revolution"]
    stamps = []
    lock = threading.Lock()

    def client(i):
        prompt = (f"Write a long, detailed essay about {topics[i]}. Cover its origins, the key ideas, the people "
                  "involved, and what changed because of it. Use several paragraphs.")
        p = subprocess.Popen([squat, "submit", "--coordinator", endpoint, "--chat", "--temperature", "0",
                              "--max-tokens", str(args.max_tokens), "--ignore-eos", "--json", prompt],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in p.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "token":
                with lock:
                    stamps.append(time.monotonic())
        p.wait()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    wait_until = time.time() + 120
    while time.time() < wait_until:
        with lock:
            if stamps:
                break
        time.sleep(0.01)
    else:
        sys.exit("no token arrived")
    t0 = time.monotonic()
    events = []
    time.sleep(args.join)
    events.append(("w3 joins", time.monotonic() - t0))
    w3 = worker("w3")
    time.sleep(max(0, args.drain - args.join))
    if args.kill:
        events.append(("w3 killed", time.monotonic() - t0))
        w3.kill()
    else:
        events.append(("w3 drained", time.monotonic() - t0))
        subprocess.run([squat, "drain", "--coordinator", endpoint, "w3"], capture_output=True)
    for t in threads:
        t.join()
    status = subprocess.run([squat, "status", "--coordinator", endpoint], capture_output=True, text=True).stdout
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

times = sorted(s - t0 for s in stamps if s >= t0)
print(f"{len(stamps)} tokens; {'replay only' if args.replay_only else 'caches shipped'}; kv {args.kv}")
width = 0.25
bins = [0] * (int(times[-1] / width) + 1)
for t in times:
    bins[int(t / width)] += 1
rates = [b / width for b in bins]
print("tokens/s per 0.25 s: " + " ".join(f"{r:.0f}" for r in rates))
for name, at in events:
    before = [r for i, r in enumerate(rates) if at - 2.0 <= i * width < at - 0.25]
    after = rates[int(at / width):int((at + 2.0) / width)]
    # the slowest second after the event, against the two seconds before it
    window = [sum(after[i:i + 4]) / 4 for i in range(max(1, len(after) - 3))]
    low = min(window) if window else 0
    base = statistics.median(before) if before else 0
    gap = 0.0
    for a, b in zip(times, times[1:]):
        if a >= at - 0.1 and b - a > gap and a < at + 3:
            gap = b - a
    print(f"{name} at {at:.2f} s: median {base:.0f} tok/s in the 2 s before, slowest 1 s after {low:.0f} tok/s "
          f"({(low / base * 100 if base else 0):.0f}%), longest pause between tokens {gap * 1000:.0f} ms")
with open(logs["coordinator"]) as f:
    for line in f:
        if any(k in line for k in ("moving", "moved", "replaying", "failed", "drained", "planned", "lost", "recovered")):
            print("  " + line.rstrip())
print(status)
