#!/usr/bin/env python3
"""Runs the command lines of deploy/ with a built squat on 127.0.0.1 (no systemd, Docker or
Kubernetes needed), to check that they parse and that a cluster started with them answers:

  coordinator  ExecStart of systemd/squat-coordinator.service, variables from
               coordinator.env.example (expanded as systemd does: ${X} one word, $X split)
  worker a     ExecStart of systemd/squat-worker@.service (%i = smoke-a), worker.env.example
  worker b     the args of kubernetes/worker.yaml ($(VAR) as Kubernetes expands them), after
               its init container's command
  worker c     the command of container/compose.yaml's worker (${X:-default} as Compose does)
  client       container/compose.yaml's client service (its entrypoint wrapper) for status
               and submit
  and the Kubernetes and Compose coordinators' command lines in rounds 2 and 3.

CURVE keys as each recipe makes them: Compose's keygen service script (run twice: the second
run keeps the keys); for systemd, the README's steps (a coordinator pair, a worker pair per
host, the public halves copied); for Kubernetes, the Secrets made by the README's `kubectl
create secret generic` lines (files mode 0440, as the kubelet leaves them with fsGroup), the
init containers' copies, the pods' mounts. Every process sees its recipe's paths: a folder per
container whose /etc/squat/... mount points link to the volumes, Secrets and emptyDirs it
mounts (so a missing mount fails here too). All recipes share one coordinator pair (made by the
Compose keygen), so workers of one recipe can join the coordinator of another.

Addresses, model and thread counts are overridden for loopback. Then: `squat submit` answers,
`squat status` lists the workers, a keyless `squat status` is refused, a secret key read
straight from a Secret volume is refused; SIGTERM to the coordinator drains the workers (exit
0); a worker whose coordinator was killed stays up and registers with the restarted one; a
worker with another model file is refused (exit 2), and so is a worker whose key the
coordinator does not admit (exit 2). These are the exit codes the units' Restart= settings
rely on.

  deploy/smoke.py [--squat .build/release/squat] [--model models/....gguf] [--keep-logs]

Needs PyYAML. Every process it starts is ended before it exits.
"""

import argparse
import base64
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import yaml

from validate import env_file_values  # the same KEY=value reader the offline checks use

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
procs: list[subprocess.Popen] = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replace_all(words, replace):
    for old, new in replace.items():
        words = [w.replace(old, new) for w in words]
    return words


def systemd_argv(unit, instance, overrides, replace):
    """ExecStart of `unit`, with Environment= defaults, the example env file and overrides."""
    text = unit.read_text(encoding="utf-8")
    env = {}
    for line in re.findall(r"^Environment=(.*)$", text, re.M):
        for word in shlex.split(line):  # Environment="X=a b" is one assignment
            k, _, v = word.partition("=")
            env[k] = v
    example = "worker.env.example" if "worker" in unit.name else "coordinator.env.example"
    env.update(env_file_values(DEPLOY / "systemd" / example))
    env.update(overrides)
    line = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).replace("%i", instance)
    argv = []
    for word in line.split():
        if re.fullmatch(r"\$\w+", word):
            argv += env.get(word[1:], "").split()  # $X: split at whitespace, zero or more words
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return replace_all(argv[1:], replace)  # drop /usr/local/bin/squat


def link_mounts(root, mounts):
    """A container's view: root + mountPath is a link to the host folder of each mount."""
    for target, source in mounts.items():
        link = root / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(source)


# ---------------------------------------------------------------- Kubernetes


def kubernetes_pod(path):
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc.get("kind") == "Deployment":
            return doc["spec"]["template"]["spec"]
    raise SystemExit(f"no Deployment in {path}")


class KubernetesPod:
    """A pod of deploy/kubernetes: its volumes as folders (Secrets from `secrets`, emptyDirs
    new), each container's mounts linked under its own root."""

    def __init__(self, path, secrets, workdir):
        self.spec = kubernetes_pod(path)
        self.workdir = workdir
        self.volumes = {}
        for v in self.spec.get("volumes", []):
            if "secret" in v:
                name = v["secret"]["secretName"]
                if name not in secrets:
                    raise SystemExit(f"{path.name}: no `kubectl create secret generic {name}` in README.md")
                self.volumes[v["name"]] = secrets[name]
            elif "emptyDir" in v:
                d = workdir / "volumes" / v["name"]
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, 0o777)  # an emptyDir: rwxrwxrwx (group fsGroup)
                self.volumes[v["name"]] = d

    def container(self, name, init=False):
        for c in self.spec.get("initContainers" if init else "containers", []):
            if c["name"] == name:
                root = self.workdir / (("init-" if init else "") + c["name"])
                link_mounts(root, {m["mountPath"]: self.volumes[m["name"]]
                                   for m in c.get("volumeMounts", []) if m["name"] in self.volumes})
                return c, root
        raise SystemExit(f"no container {name}")

    def run_init(self, name):
        c, root = self.container(name, init=True)
        command = [w.replace("/etc/squat", f"{root}/etc/squat") for w in c["command"] + c.get("args", [])]
        return subprocess.run(confined(command), capture_output=True, text=True, timeout=30)

    def argv(self, name, env, replace):
        c, root = self.container(name)
        args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], str(a)) for a in c["args"]]
        return replace_all(args, {"/etc/squat": f"{root}/etc/squat", **replace})

    def secret_env(self, name):
        """The container's environment taken from Secrets (`secretKeyRef`), as README.md's
        `kubectl create secret generic NAME --from-literal=KEY=...` lines make them: a fresh value
        each, since those lines draw random ones."""
        c, _ = self.container(name)
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        env = {}
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if not re.search(rf"kubectl create secret generic {re.escape(ref['name'])} --from-literal={ref['key']}=", readme):
                raise SystemExit(f"{name}: no `kubectl create secret generic {ref['name']} --from-literal={ref['key']}=` in README.md")
            env[e["name"]] = secrets_token()
        return env


def readme_secrets(keys_dir, out):
    """The Secrets that README.md's `kubectl create secret generic NAME --from-file=...` lines
    make from keys_dir (the `keys/` folder of those lines), as folders of mode-0440 files: what
    the kubelet mounts for them with fsGroup (kubernetes/kubernetes#57923)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    secrets = {}
    for m in re.finditer(r"kubectl create secret generic ([\w.-]+)((?:\s+--from-file=\S+)+)", readme):
        d = out / m.group(1)
        d.mkdir(parents=True, exist_ok=True)
        for source in re.findall(r"--from-file=(\S+)", m.group(2)):
            key, _, path = source.rpartition("=")
            path = keys_dir.parent / path
            files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
            for f in files:
                dest = d / (key or f.name)
                shutil.copyfile(f, dest)
                os.chmod(dest, 0o440)
        secrets[m.group(1)] = d
    return secrets


# ---------------------------------------------------------------- Compose


def compose_doc():
    return yaml.safe_load((DEPLOY / "container" / "compose.yaml").read_text(encoding="utf-8"))


def compose_expand(text):
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), text)
    return text.replace("$$", "$")


class ComposeProject:
    """compose.yaml's services: named volumes as folders, each service's mounts linked under
    its own root."""

    def __init__(self, workdir):
        self.doc = compose_doc()
        self.workdir = workdir
        self.volumes = {}
        for name in self.doc.get("volumes") or {}:
            d = workdir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)  # the image's mount points: owned by squat, 0700 (public: 0755)
            self.volumes[name] = d

    def root(self, service):
        root = self.workdir / service
        mounts = {}
        for v in self.doc["services"][service].get("volumes", []):
            if isinstance(v, str) and v.split(":")[0] in self.volumes:
                mounts[v.split(":")[1]] = self.volumes[v.split(":")[0]]
        link_mounts(root, mounts)
        return root

    def environment(self, service):
        """The service's `environment:` as Compose sets it, variables from container/env.example
        (the .env the README copies from it)."""
        values = env_file_values(DEPLOY / "container" / "env.example")
        out = {}
        for key, value in (self.doc["services"][service].get("environment") or {}).items():
            def var(m):
                if m.group(1) not in values and m.group(2) == "?":
                    raise SystemExit(f"compose.yaml: {service} needs {m.group(1)}, which env.example does not set")
                return values.get(m.group(1), m.group(3) if m.group(2) == "-" else "")
            out[key] = re.sub(r"\$\{(\w+)(?::?([-?])([^}]*))?\}", var, str(value))
        return out

    def argv(self, service, replace, extra=()):
        """The service's process: its command, or its sh entrypoint with `extra` as $@."""
        s = self.doc["services"][service]
        root = self.root(service)
        replace = {"/etc/squat": f"{root}/etc/squat", **replace}
        if s.get("entrypoint"):
            entry = [compose_expand(str(w)) for w in s["entrypoint"]]
            command = list(extra) or [compose_expand(str(w)) for w in (s.get("command") or [])]
            return replace_all(entry + command, replace)
        return replace_all(shlex.split(compose_expand(s["command"])), replace)


# ---------------------------------------------------------------- processes


def confined(argv):
    """argv, unless a path of it still points at the real /etc/squat (a missed rewrite)."""
    for word in argv:
        if re.search(r"(^|[\s=\"'])/etc/squat", word):
            raise SystemExit(f"not rewritten to the test's folders: {word!r}")
    return argv


def secrets_token():
    return base64.b64encode(os.urandom(24)).decode()


def start(squat, name, argv, logdir, env=None):
    log = open(logdir / f"{name}.log", "w")
    shown = argv if argv[0] == "/bin/sh" else ["squat"] + argv
    print(f"  start {name}: {shlex.join(shown)}" + (f" (environment: {', '.join(sorted(env))})" if env else ""))
    p = subprocess.Popen(confined(argv if argv[0] == "/bin/sh" else [squat] + argv),
                         stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})
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


def wait_ready(status, workers, running, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = status()
        # The worker table: from its WORKER header to the "live sequence(s)" line; STATE is column 3.
        rows, table = [], False
        for l in r.stdout.splitlines():
            table = table or l.startswith("WORKER")
            if table and "live sequence" in l:
                break
            if table and not l.startswith("WORKER"):
                rows.append(l.split())
        if r.returncode == 0 and sum(1 for f in rows if len(f) > 2 and f[2] == "ready") >= workers:
            return r.stdout
        for p in running:
            if p.poll() is not None:
                raise SystemExit(f"{p.name} exited with {p.returncode} before the cluster was ready")
        time.sleep(1)
    raise SystemExit(f"the cluster was not ready within {timeout} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--squat", default=os.environ.get("SQUAT_BINARY", str(ROOT / ".build" / "release" / "squat")))
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

    # `squat` on PATH for the scripts (Compose's keygen and client services).
    bindir = logdir / "bin"
    bindir.mkdir()
    (bindir / "squat").symlink_to(squat)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    def run(argv, timeout=120):
        return subprocess.run(confined(argv if argv[0] == "/bin/sh" else [squat] + argv), capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=ROOT)

    try:
        print("keys: Compose's keygen service, the README's systemd steps and Kubernetes Secrets")
        compose = ComposeProject(logdir / "compose")
        r1 = run(compose.argv("keygen", {}))
        vols = compose.volumes
        pairs = {role: vols[f"squat-keys-{role}"] for role in ("coordinator", "worker", "client")}
        before = {f: f.read_text() for d in pairs.values() for f in d.iterdir()}
        r2 = run(compose.argv("keygen", {}))
        after = {f: f.read_text() for d in pairs.values() for f in d.iterdir()}
        check(r1.returncode == 0 and r2.returncode == 0 and len(before) == 6 and before == after
              and (vols["squat-keys-public"] / "authorized" / "workers" / "worker.pub").exists(),
              "Compose keygen wrote 3 pairs and the public keys; a second run keeps them"
              + ("" if r1.returncode == 0 else f" ({r1.stderr.strip()})"))
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for d in pairs.values() for f in d.iterdir()}
        check(all(m == 0o600 for n, m in modes.items() if n.endswith(".key")), "secret keys are mode 0600")

        # systemd, as README.md's steps: the coordinator's pair, a worker pair for this "host",
        # the public halves copied; the Compose/Kubernetes worker pair is admitted too.
        sd = logdir / "systemd" / "etc" / "squat" / "keys"
        (sd / "authorized" / "workers").mkdir(parents=True)
        (sd / "authorized" / "clients").mkdir()
        shutil.copytree(pairs["coordinator"], sd / "coordinator")
        r = run(["keygen", "--out", str(sd / "worker"), "--name", "smoke-host"])
        check(r.returncode == 0, "squat keygen made the systemd worker host's pair")
        shutil.copy(sd / "worker" / "smoke-host.pub", sd / "authorized" / "workers")
        shutil.copy(pairs["worker"] / "worker.pub", sd / "authorized" / "workers")
        shutil.copy(pairs["client"] / "client.pub", sd / "authorized" / "clients")
        shutil.copy(pairs["coordinator"] / "coordinator.pub", sd / "coordinator.pub")
        sd_replace = {"/etc/squat": f"{logdir / 'systemd'}/etc/squat"}

        # Kubernetes: the keys/ folder of README.md's commands, then the Secrets made from it.
        kk = logdir / "kubernetes" / "keys"
        for role in ("coordinator", "worker", "client"):
            shutil.copytree(pairs[role], kk / role)
        (kk / "authorized" / "workers").mkdir(parents=True)
        (kk / "authorized" / "clients").mkdir()
        shutil.copy(pairs["worker"] / "worker.pub", kk / "authorized" / "workers")
        shutil.copy(sd / "worker" / "smoke-host.pub", kk / "authorized" / "workers")
        shutil.copy(pairs["client"] / "client.pub", kk / "authorized" / "clients")
        secrets = readme_secrets(kk, logdir / "kubernetes" / "secrets")
        check(len(secrets) >= 5, f"README.md makes {len(secrets)} Secrets: {', '.join(sorted(secrets))}")

        def k8s_pod(file, workdir):
            pod = KubernetesPod(DEPLOY / "kubernetes" / file, secrets, logdir / "kubernetes" / workdir)
            for init in pod.spec.get("initContainers", []):
                r = pod.run_init(init["name"])
                if r.returncode != 0:
                    raise SystemExit(f"{file}: init container {init['name']} failed: {r.stderr.strip()}")
            return pod

        def client(endpoint, *args):
            return run(compose.argv("client", {"tcp://coordinator:5555": endpoint}, extra=args))

        print("round 1: systemd coordinator, a systemd, a Kubernetes and a Compose worker; submit; SIGTERM")
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"

        def coordinator(port, workers=2):
            return start(squat, "coordinator", systemd_argv(
                DEPLOY / "systemd" / "squat-coordinator.service", "",
                {"SQUAT_BIND": f"tcp://127.0.0.1:{port}", "SQUAT_MODEL": model, "SQUAT_WORKERS": str(workers)},
                sd_replace), logdir)

        def worker_a(port, model_path=model, name="smoke-a"):
            return start(squat, name, systemd_argv(
                DEPLOY / "systemd" / "squat-worker@.service", name,
                {"SQUAT_COORDINATOR": f"tcp://127.0.0.1:{port}", "SQUAT_MODEL": model_path,
                 "SQUAT_DATA_BIND": "tcp://lo:0", "SQUAT_THREADS": "1"}, sd_replace), logdir)

        def compose_worker(port, model_path=model, name="compose-worker"):
            return start(squat, name, compose.argv("worker", {
                "tcp://coordinator:5555": f"tcp://127.0.0.1:{port}", "tcp://eth0:5556": "tcp://lo:0",
                "/models/SmolLM2-135M-Instruct.Q4_1.gguf": model_path}), logdir)

        c = coordinator(port, workers=3)
        wa = worker_a(port)
        kw = k8s_pod("worker.yaml", "worker-pod")
        wb = start(squat, "smoke-b", kw.argv(
            "worker", {"SQUAT_MODEL": model, "POD_IP": "127.0.0.1", "POD_NAME": "smoke-b", "SQUAT_THREADS": "1",
                       "SQUAT_MEMORY_BUDGET": "1024"},
            {"tcp://squat-coordinator:5555": endpoint, ":5556": f":{free_port()}"}), logdir)
        wc = compose_worker(port)
        status = wait_ready(lambda: client(endpoint, "status"), 3, [c, wa, wb, wc])
        check("smoke-a" in status and "smoke-b" in status, "status (Compose client) lists smoke-a, smoke-b and a third (compose) worker")
        check("127.0.0.1:" in status and "0.0.0.0" not in status, "data endpoints are 127.0.0.1 (tcp://lo:0 bound lo's address)")
        m = re.search(r"CURVE: key \S+, (\d+ worker and \d+ client keys admitted)", (logdir / "coordinator.log").read_text())
        check(m is not None, f"the coordinator runs with CURVE keys ({m.group(1) if m else 'no CURVE line in its log'})")
        r = client(endpoint, "submit", "--max-tokens", "8", "--temperature", "0", "The capital of France is")
        check(r.returncode == 0 and r.stdout.strip() != "", f"submit (Compose client) answered: {r.stdout.strip()!r}")
        r = run(["status", "--coordinator", endpoint], timeout=30)
        check(r.returncode != 0, f"a keyless `squat status` is refused (exit {r.returncode})")
        r = run(["status", "--coordinator", endpoint, "--curve-secret", str(secrets["squat-worker-key"]),
                 "--curve-server-key", str(sd / "coordinator.pub")], timeout=30)
        check(r.returncode != 0 and "readable by others" in r.stderr,
              "a secret key read straight from a Secret volume (0440) is refused: hence the init containers")
        c.send_signal(signal.SIGTERM)
        check(wait_exit(c, 15) == 0, "coordinator exits 0 on SIGTERM")
        check(wait_exit(wa, 15) == 0, "systemd worker exits 0 when drained")
        check(wait_exit(wb, 15) == 0, "Kubernetes worker exits 0 when drained")
        check(wait_exit(wc, 15) == 0, "Compose worker exits 0 when drained")

        print("round 2: the Kubernetes coordinator, SIGKILLed and started again: the worker stays and registers again")
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"

        def k8s_coordinator(name):
            pod = k8s_pod("coordinator.yaml", "coordinator-pod")
            return start(squat, name, pod.argv(
                "coordinator",
                {"SQUAT_MODEL": model, "SQUAT_WORKERS": "1", "SQUAT_KV": "squat", "SQUAT_K_BITS": "4", "SQUAT_V_BITS": "4"},
                {"tcp://0.0.0.0:5555": endpoint}), logdir, env=pod.secret_env("coordinator"))

        c = k8s_coordinator("k8s-coordinator")
        wa = worker_a(port, name="smoke-c")
        wait_ready(lambda: client(endpoint, "status"), 1, [c, wa])
        c.kill()
        c.wait()
        time.sleep(6)  # past the 4 s liveness: the worker notices the silence
        check(wa.poll() is None, "the worker stays up when its coordinator is killed")
        c = k8s_coordinator("k8s-coordinator-2")
        status = wait_ready(lambda: client(endpoint, "status"), 1, [c, wa])
        check("smoke-c" in status, "the worker registers with the restarted coordinator")
        c.send_signal(signal.SIGTERM)
        check(wait_exit(c, 15) == 0 and wait_exit(wa, 15) == 0, "SIGTERM: coordinator and worker exit 0")

        print("round 3: the Compose coordinator; refused workers exit 2: another model file, a key not admitted")
        other = logdir / "other-model.gguf"
        shutil.copyfile(model, other)
        with open(other, "ab") as f:
            f.write(b"\0" * 32)  # another size: another fingerprint, same tensors
        port = free_port()
        c = start(squat, "compose-coordinator", compose.argv("coordinator", {
            "tcp://0.0.0.0:5555": f"tcp://127.0.0.1:{port}", "/models/SmolLM2-135M-Instruct.Q4_1.gguf": model}), logdir,
            env=compose.environment("coordinator"))
        wd = compose_worker(port, model_path=str(other), name="compose-other-model")
        check(wait_exit(wd, 60) == 2, f"worker with another model exits 2 (got {wd.returncode})")
        we = worker_a(port, name="smoke-e")  # the systemd host's key: not in Compose's authorized/workers
        check(wait_exit(we, 60) == 2, f"worker whose key is not admitted exits 2 (got {we.returncode})")
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
