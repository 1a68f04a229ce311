#!/usr/bin/env python3
"""Runs the command lines of deploy/ with a built squat on 127.0.0.1 (no systemd, Docker or
Kubernetes needed), to check that they parse and that a cluster started with them answers:

  coordinator  ExecStart of systemd/squat-coordinator.service, variables from
               coordinator.env.example (expanded as systemd does: ${X} one word, $X split)
  worker a     ExecStart of systemd/squat-worker@.service (%i = smoke-a), worker.env.example
  worker b     the args of kubernetes/worker.yaml ($(VAR) as Kubernetes expands them)
  worker c     the command of container/compose.yaml's worker (${X:-default} as Compose does)
  and the Kubernetes and Compose coordinators' command lines in rounds 2 and 3.

Addresses, model and thread counts are overridden for loopback. Then: `squat submit` answers,
`squat status` lists both workers, SIGTERM to the coordinator drains the workers (exit 0); a
killed coordinator makes a worker exit 3; a worker with another model file is refused
(exit 2). These are the exit codes the units' Restart= settings rely on.

  deploy/smoke.py [--squat .build/release/squat] [--model models/....gguf]

Needs PyYAML. Every process it starts is ended before it exits.
"""

import argparse
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
procs: list[subprocess.Popen] = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_file(path):
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2).strip().strip('"')
    return values


def systemd_argv(unit, instance, overrides):
    """ExecStart of `unit`, with Environment= defaults, the example env file and overrides."""
    text = unit.read_text(encoding="utf-8")
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    example = "worker.env.example" if "worker" in unit.name else "coordinator.env.example"
    env.update(env_file(DEPLOY / "systemd" / example))
    env.update(overrides)
    line = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).replace("%i", instance)
    argv = []
    for word in line.split():
        if re.fullmatch(r"\$\w+", word):
            argv += env.get(word[1:], "").split()  # $X: split at whitespace, zero or more words
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv[1:]  # drop /usr/local/bin/squat


def kubernetes_argv(path, container, env, replace):
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        for c in doc["spec"]["template"]["spec"]["containers"]:
            if c["name"] == container:
                args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], str(a)) for a in c["args"]]
                for old, new in replace.items():
                    args = [a.replace(old, new) for a in args]
                return args
    raise SystemExit(f"no container {container} in {path}")


def compose_argv(service, replace):
    doc = yaml.safe_load((DEPLOY / "container" / "compose.yaml").read_text(encoding="utf-8"))
    command = doc["services"][service]["command"]
    command = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), command)
    for old, new in replace.items():
        command = command.replace(old, new)
    return shlex.split(command)


def start(squat, name, argv, logdir):
    log = open(logdir / f"{name}.log", "w")
    print(f"  start {name}: squat {shlex.join(argv)}")
    p = subprocess.Popen([squat] + argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    p.name = name
    procs.append(p)
    return p


def wait_exit(p, timeout):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        if wait_exit(p, 10) is None:
            p.kill()
            p.wait()


def wait_ready(squat, endpoint, workers, running, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run([squat, "status", "--coordinator", endpoint], capture_output=True, text=True, timeout=30)
        lines = [l for l in r.stdout.splitlines()[2:] if "\t" in l and not l.startswith("  ")]
        if r.returncode == 0 and sum(1 for l in lines if "ready" in l) >= workers:
            return r.stdout
        for p in running:
            if p.poll() is not None:
                raise SystemExit(f"{p.name} exited with {p.returncode} before the cluster was ready")
        time.sleep(1)
    raise SystemExit(f"the cluster was not ready within {timeout} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--squat", default=str(ROOT / ".build" / "release" / "squat"))
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--keep-logs", action="store_true")
    a = ap.parse_args()
    squat = os.path.abspath(a.squat)
    model = os.path.abspath(a.model)
    for f in (squat, model):
        if not os.path.exists(f):
            raise SystemExit(f"not found: {f}")
    logdir = pathlib.Path(tempfile.mkdtemp(prefix="squat-smoke-"))
    failures = []
    checks = []

    def check(ok, what):
        checks.append(what)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    def coordinator(port, workers=2):
        return start(squat, "coordinator", systemd_argv(
            DEPLOY / "systemd" / "squat-coordinator.service", "",
            {"SQUAT_BIND": f"tcp://127.0.0.1:{port}", "SQUAT_MODEL": model, "SQUAT_WORKERS": str(workers)}), logdir)

    def worker_a(port, model_path=model, name="smoke-a"):
        return start(squat, name, systemd_argv(
            DEPLOY / "systemd" / "squat-worker@.service", name,
            {"SQUAT_COORDINATOR": f"tcp://127.0.0.1:{port}", "SQUAT_MODEL": model_path,
             "SQUAT_DATA_BIND": "tcp://lo:0", "SQUAT_THREADS": "1"}), logdir)

    try:
        print("round 1: systemd coordinator, a systemd, a Kubernetes and a Compose worker; submit; SIGTERM")
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        c = coordinator(port, workers=3)
        wa = worker_a(port)
        wb = start(squat, "smoke-b", kubernetes_argv(
            DEPLOY / "kubernetes" / "worker.yaml", "worker",
            {"SQUAT_MODEL": model, "POD_IP": "127.0.0.1", "POD_NAME": "smoke-b", "SQUAT_THREADS": "1",
             "SQUAT_MEMORY_BUDGET": "1024"},
            {"tcp://squat-coordinator:5555": endpoint, ":5556": f":{free_port()}"}), logdir)
        wc = start(squat, "compose-worker", compose_argv("worker", {
            "tcp://coordinator:5555": endpoint, "tcp://eth0:5556": "tcp://lo:0",
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf": model}), logdir)
        status = wait_ready(squat, endpoint, 3, [c, wa, wb, wc])
        check("smoke-a" in status and "smoke-b" in status, "status lists smoke-a, smoke-b and a third (compose) worker")
        check("127.0.0.1:" in status and "0.0.0.0" not in status, "data endpoints are 127.0.0.1 (tcp://lo:0 bound lo's address)")
        r = subprocess.run([squat, "submit", "--coordinator", endpoint, "--max-tokens", "8", "--temperature", "0",
                            "The capital of France is"], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and r.stdout.strip() != "", f"submit answered: {r.stdout.strip()!r}")
        c.send_signal(signal.SIGTERM)
        check(wait_exit(c, 15) == 0, "coordinator exits 0 on SIGTERM")
        check(wait_exit(wa, 15) == 0, "systemd worker exits 0 when drained")
        check(wait_exit(wb, 15) == 0, "Kubernetes worker exits 0 when drained")
        check(wait_exit(wc, 15) == 0, "Compose worker exits 0 when drained")

        print("round 2: the Kubernetes coordinator, SIGKILLed: the worker exits 3 (it is restarted)")
        port = free_port()
        c = start(squat, "k8s-coordinator", kubernetes_argv(
            DEPLOY / "kubernetes" / "coordinator.yaml", "coordinator",
            {"SQUAT_MODEL": model, "SQUAT_WORKERS": "1", "SQUAT_KV": "squat", "SQUAT_K_BITS": "4", "SQUAT_V_BITS": "4"},
            {"tcp://0.0.0.0:5555": f"tcp://127.0.0.1:{port}"}), logdir)
        wa = worker_a(port, name="smoke-c")
        wait_ready(squat, f"tcp://127.0.0.1:{port}", 1, [c, wa])
        c.kill()
        c.wait()
        check(wait_exit(wa, 20) == 3, f"worker exits 3 when the coordinator is lost (got {wa.returncode})")

        print("round 3: the Compose coordinator; a worker with another model file is refused, exit 2")
        other = logdir / "other-model.gguf"
        shutil.copyfile(model, other)
        with open(other, "ab") as f:
            f.write(b"\0" * 32)  # another size: another fingerprint, same tensors
        port = free_port()
        c = start(squat, "compose-coordinator", compose_argv("coordinator", {
            "tcp://0.0.0.0:5555": f"tcp://127.0.0.1:{port}", "/models/SmolLM2-135M-Instruct.Q4_1.gguf": model}), logdir)
        wd = worker_a(port, model_path=str(other), name="smoke-d")
        check(wait_exit(wd, 60) == 2, f"worker with another model exits 2 (got {wd.returncode})")
        c.send_signal(signal.SIGTERM)
        check(wait_exit(c, 15) == 0, "Compose coordinator exits 0 on SIGTERM")
    finally:
        stop_all()
    print(f"{len(checks) - len(failures)} passed, {len(failures)} failed (logs: {logdir})")
    if not failures and not a.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
