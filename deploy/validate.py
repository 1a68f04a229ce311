#!/usr/bin/env python3
"""Checks of deploy/ that need only Python and PyYAML (run by deploy/validate.sh).

  validate.py yaml FILE...   every document parses; no mapping repeats a key
  validate.py flags ROOT     every squat flag in deploy/ exists in the CLI sources
  validate.py refs ROOT      names that files refer to exist (env vars, ConfigMap keys, ...)
  validate.py keys ROOT      every recipe runs with CURVE keys that its processes can read

Each prints one line per problem and exits 1 if there is any.
"""

import pathlib
import re
import shlex
import sys

import yaml

problems: list[str] = []


def problem(where, message):
    problems.append(f"{where}: {message}")


# ---------------------------------------------------------------- YAML


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last)."""


def _mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def check_yaml(files):
    for f in files:
        try:
            docs = load_all(f)
        except yaml.YAMLError as e:
            problem(f, f"YAML: {e}".replace("\n", " "))
            continue
        if not docs:
            problem(f, "no YAML document")


# ---------------------------------------------------------------- CLI flags from the sources


def kebab(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()


_STRING = r'"(?:[^"\\]|\\.)*"'
_ARGS = rf"\((?:[^()\"]|{_STRING}|\((?:[^()\"]|{_STRING})*\))*\)"
_OPTION = re.compile(rf"@(Option|Flag)\s*(?P<args>{_ARGS})?\s*(?:var|let)\s+(?P<name>\w+)")
_GROUP = re.compile(r"@OptionGroup(?:\([^)]*\))?\s*var\s+\w+\s*:\s*(?P<type>\w+)")
_STRUCT = re.compile(r"^(?:public\s+)?struct\s+(\w+)", re.M)
_COMMAND_NAME = re.compile(r'commandName:\s*"([^"]+)"')


def cli_flags(root):
    """{subcommand: set of --flags}, read from Sources/squat/*.swift (no build needed)."""
    structs = {}  # name -> (own flags, option-group types, command name)
    for path in sorted((root / "Sources" / "squat").glob("*.swift")):
        text = path.read_text(encoding="utf-8")
        starts = [(m.start(), m.group(1)) for m in _STRUCT.finditer(text)] + [(len(text), None)]
        for (start, name), (end, _) in zip(starts, starts[1:]):
            body = text[start:end]
            own = set()
            for m in _OPTION.finditer(body):
                custom = re.search(r'\.customLong\("([^"]+)"', m.group("args") or "")
                own.add("--" + (custom.group(1) if custom else kebab(m.group("name"))))
            groups = [m.group("type") for m in _GROUP.finditer(body)]
            command = _COMMAND_NAME.search(body)
            structs[name] = (own, groups, command.group(1) if command else None)

    def flags_of(name, depth=0):
        own, groups, _ = structs.get(name, (set(), [], None))
        result = set(own) | {"--help"}
        for g in groups:
            if depth < 5:
                result |= flags_of(g, depth + 1)
        return result

    return {cmd: flags_of(name) for name, (_, _, cmd) in structs.items() if cmd}


_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def flags_in(words):
    return [m.group(1) for w in words for m in [_FLAG.match(w)] if m]


def check_flags(root):
    known = cli_flags(root)
    for cmd in ("coordinator", "worker"):
        if cmd not in known or len(known[cmd]) < 5:
            problem("Sources/squat", f"could not read the flags of `squat {cmd}` from the sources")
            return
    deploy = root / "deploy"
    uses = []  # (where, subcommand, flag, commented)

    def add(where, cmd, words, commented=False):
        for flag in flags_in(words):
            uses.append((where, cmd, flag, commented))

    def command_words(line):
        words = line.split()
        if "squat" in "".join(words[:1]) and len(words) > 1:
            return words[1], words[2:]
        return None, words

    # systemd units: ExecStart=/usr/local/bin/squat SUBCOMMAND --flags ...
    for unit in sorted((deploy / "systemd").glob("*.service")):
        for n, line in enumerate(unit.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("ExecStart="):
                cmd, rest = command_words(line[len("ExecStart="):])
                add(f"{unit.relative_to(root)}:{n}", cmd, rest)
    # environment files: *_ARGS=... values, commented examples included
    env_files = [(p, None) for p in sorted((deploy / "systemd").glob("*.env.example"))]
    env_files.append((deploy / "container" / "env.example", "compose"))
    for path, kind in env_files:
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r"^(#?)\s*(SQUAT_\w*ARGS)=(.*)$", line)
            if not m:
                continue
            if kind == "compose":
                cmd = "worker" if "WORKER" in m.group(2) else "coordinator"
            else:
                cmd = "worker" if path.name.startswith("worker") else "coordinator"
            add(f"{path.relative_to(root)}:{n}", cmd, shlex.split(m.group(3)), commented=bool(m.group(1)))
    # compose: services' command strings
    compose = deploy / "container" / "compose.yaml"
    if compose.exists():
        for doc in load_all(compose):
            for name, service in (doc.get("services") or {}).items():
                command = service.get("command")
                words = command.split() if isinstance(command, str) else list(command or [])
                if words:
                    add(f"{compose.relative_to(root)} ({name})", words[0], words[1:])
    # kubernetes: containers' args (first: the subcommand), and commented-out args
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        file_cmd = None
        for doc in load_all(path):
            spec = (doc.get("spec") or {}).get("template", {}).get("spec", {}) if isinstance(doc, dict) else {}
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                args = [str(a) for a in c.get("args", [])]
                if args and args[0] in known:
                    file_cmd = args[0]
                    add(f"{path.relative_to(root)} ({c.get('name')})", args[0], args[1:])
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r"^\s*#\s*-\s*(--[a-z][a-z0-9-]*)", line)
            if m and file_cmd:
                add(f"{path.relative_to(root)}:{n}", file_cmd, [m.group(1)], commented=True)

    # `squat SUBCOMMAND --flags` in scripts (Compose entrypoints, Kubernetes init containers), in
    # the comments of deploy/ and in README.md's "Deploying": the steps shown there. A wrapper
    # `squat "$@" --flags` (Compose's client service) must suit submit, status and drain.
    def add_script(where, text):
        for line in text.splitlines():
            for cmd, words in squat_commands(line):
                for c in (["submit", "status", "drain"] if cmd == "$@" else [cmd]):
                    add(where, c, words, commented=True)

    if compose.exists():
        for doc in load_all(compose):
            for name, service in (doc.get("services") or {}).items():
                entrypoint = service.get("entrypoint")
                if entrypoint and "sh" in str(entrypoint[0] if isinstance(entrypoint, list) else entrypoint):
                    parts = (entrypoint if isinstance(entrypoint, list) else [entrypoint]) + list(service.get("command") or [])
                    add_script(f"{compose.relative_to(root)} ({name} script)", "\n".join(map(str, parts)))
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for doc in load_all(path):
            spec = (doc.get("spec") or {}).get("template", {}).get("spec", {}) if isinstance(doc, dict) else {}
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if c.get("command"):
                    add_script(f"{path.relative_to(root)} ({c.get('name')} command)",
                               "\n".join(map(str, c.get("command", []) + c.get("args", []))))
    texts = [p for p in sorted(deploy.rglob("*")) if p.is_file() and p.suffix in (".yaml", ".service", ".example", ".sysusers")]
    texts += [deploy / "container" / "Dockerfile", deploy / "README.md"]
    for path in texts:
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.lstrip().startswith("#") or path.suffix == ".md":
                    add_script(f"{path.relative_to(root)}:{n}", line)
    readme = root / "README.md"
    if readme.exists():
        section = deploying_section(readme.read_text(encoding="utf-8"))
        for n, line in enumerate(section.splitlines(), 1):
            for cmd, words in squat_commands(line):
                add(f"README.md (Deploying, line {n})", cmd, words, commented=True)

    if not uses:
        problem("deploy", "found no squat flags to check")
    for where, cmd, flag, commented in uses:
        if cmd not in known:
            if not commented:
                problem(where, f"`squat {cmd}` is not a subcommand of the CLI")
        elif flag not in known[cmd]:
            problem(where, f"`squat {cmd}` has no flag {flag}")
    in_commands = sum(1 for u in uses if not u[3])
    print(f"  {in_commands} flag uses in command lines and {len(uses) - in_commands} in scripts, comments and "
          "README.md checked against the CLI sources")


_SQUAT_COMMAND = re.compile(r"""(?:^|[\s`'"(])squat\s+("\$\$?@"|[a-z]+\b)([^`;|&)]*)""")


def squat_commands(line):
    """(subcommand, words) of each `squat SUBCOMMAND ...` in a line of text; "$@" for a wrapper."""
    found = []
    for m in _SQUAT_COMMAND.finditer(line):
        cmd = m.group(1)
        found.append(("$@" if "@" in cmd else cmd, m.group(2).replace("=", " ").split()))
    return found


def deploying_section(readme):
    m = re.search(r"^## Deploying\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    return m.group(1) if m else ""


# ---------------------------------------------------------------- cross references


def check_refs(root):
    deploy = root / "deploy"

    # systemd: every ${VAR}/$VAR of ExecStart is set by the unit or by its example env file.
    for unit in sorted((deploy / "systemd").glob("*.service")):
        text = unit.read_text(encoding="utf-8")
        defined = set(unit_environment(text))
        example = deploy / "systemd" / ("worker.env.example" if unit.name.startswith("squat-worker") else "coordinator.env.example")
        if example.exists():
            defined |= set(re.findall(r"^(\w+)=", example.read_text(encoding="utf-8"), re.M))
        else:
            problem(unit.relative_to(root), f"no {example.name}")
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                for var in re.findall(r"\$\{?(\w+)\}?", line):
                    if var not in defined:
                        problem(unit.relative_to(root), f"ExecStart uses ${var}, set neither in the unit nor in {example.name}")
        for f in re.findall(r"^EnvironmentFile=-?(\S+)", text, re.M):
            if not f.startswith("/etc/squat/"):
                problem(unit.relative_to(root), f"EnvironmentFile {f} is outside /etc/squat")

    # compose: every ${VAR} is documented in env.example; depends_on names exist; the workers'
    # coordinator endpoint names a service.
    compose = deploy / "container" / "compose.yaml"
    env_example = deploy / "container" / "env.example"
    if compose.exists():
        raw = compose.read_text(encoding="utf-8")
        documented = set(re.findall(r"^#?(\w+)=", env_example.read_text(encoding="utf-8"), re.M)) if env_example.exists() else set()
        code_lines = "\n".join(l for l in raw.splitlines() if not l.lstrip().startswith("#"))
        for var in sorted(set(re.findall(r"\$\{(\w+)", code_lines))):
            if var not in documented:
                problem(compose.relative_to(root), f"${{{var}}} is not described in env.example")
        doc = load_all(compose)[0]
        services = doc.get("services", {})
        for name, s in services.items():
            deps = s.get("depends_on", [])
            for d in deps if isinstance(deps, list) else list(deps):
                if d not in services:
                    problem(compose.relative_to(root), f"{name} depends on unknown service {d}")
            for v in s.get("volumes", []):
                source = v.get("source") if isinstance(v, dict) else (v.split(":")[0] if ":" in v else None)
                kind = v.get("type") if isinstance(v, dict) else ("bind" if source and source[0] in "./~$" else "volume")
                if kind == "volume" and source and source not in (doc.get("volumes") or {}):
                    problem(compose.relative_to(root), f"{name} mounts volume {source}, not declared under volumes:")
            command = s.get("command", "")
            for host in re.findall(r"--coordinator[ =]tcp://([\w.-]+):\d+", command if isinstance(command, str) else " ".join(command)):
                if host not in services:
                    problem(compose.relative_to(root), f"{name} connects to {host}, not a service")

    # Dockerfile: every COPY source (from the build context, the repository root) exists and
    # is let in by Dockerfile.dockerignore ("*" then "!path" lines).
    dockerfile = deploy / "container" / "Dockerfile"
    ignore = deploy / "container" / "Dockerfile.dockerignore"
    if dockerfile.exists():
        allowed = [l[1:].rstrip("/") for l in ignore.read_text(encoding="utf-8").splitlines() if l.startswith("!")] if ignore.exists() else None
        for n, line in enumerate(dockerfile.read_text(encoding="utf-8").splitlines(), 1):
            words = line.split()
            if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
                continue
            for src in [w for w in words[1:-1] if not w.startswith("--")]:
                src = src.rstrip("/")
                if not list(root.glob(src)):
                    problem(f"{dockerfile.relative_to(root)}:{n}", f"COPY {src}: not in the repository")
                elif allowed is not None and not any(src == a or src.startswith(a + "/") for a in allowed):
                    problem(f"{dockerfile.relative_to(root)}:{n}", f"COPY {src}: left out by {ignore.name}")

    # kubernetes
    kdir = deploy / "kubernetes"
    docs = []
    for path in sorted(kdir.glob("*.yaml")):
        for d in load_all(path):
            docs.append((path, d))
    readme = root / "README.md"
    documented_secrets = set(re.findall(r"kubectl create secret generic ([\w.-]+)",
                                        deploying_section(readme.read_text(encoding="utf-8")) if readme.exists() else ""))
    kust = [d for p, d in docs if d.get("kind") == "Kustomization"]
    for k in kust:
        for r in k.get("resources", []):
            if not (kdir / r).exists():
                problem("deploy/kubernetes/kustomization.yaml", f"resource {r} does not exist")
    listed = {r for k in kust for r in k.get("resources", [])}
    by_kind = {}
    for p, d in docs:
        by_kind.setdefault(d.get("kind"), {})[d.get("metadata", {}).get("name")] = (p, d)
    configmaps = {n: set((d.get("data") or {}).keys()) for n, (_, d) in by_kind.get("ConfigMap", {}).items()}
    pvcs = set(by_kind.get("PersistentVolumeClaim", {}))
    services = by_kind.get("Service", {})
    for kind in ("Deployment", "Pod"):
        for name, (path, d) in by_kind.get(kind, {}).items():
            where = f"{path.relative_to(root)} ({kind} {name})"
            if kind == "Deployment":
                selector = d["spec"]["selector"].get("matchLabels", {})
                labels = d["spec"]["template"]["metadata"].get("labels", {})
                if any(labels.get(k) != v for k, v in selector.items()):
                    problem(where, "selector does not match the pod template's labels")
                pod = d["spec"]["template"]["spec"]
            else:
                pod = d["spec"]
            containers = pod.get("containers", [])
            names = {c["name"] for c in containers}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for v in volumes.values():
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                if claim and claim not in pvcs:
                    problem(where, f"claims unknown PVC {claim}")
                secret = v.get("secret")
                if (secret and not secret.get("optional") and secret.get("secretName") not in by_kind.get("Secret", {})
                        and secret.get("secretName") not in documented_secrets):
                    problem(where, f"Secret {secret.get('secretName')} is not in the manifests, not optional, and "
                            "no `kubectl create secret generic` in README.md's \"Deploying\" makes it")
            for c in containers:
                env_names = {e["name"] for e in c.get("env", [])}
                for e in c.get("env", []):
                    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                    if ref and not ref.get("optional"):
                        if ref["name"] not in configmaps:
                            problem(where, f"env {e['name']}: unknown ConfigMap {ref['name']}")
                        elif ref["key"] not in configmaps[ref["name"]]:
                            problem(where, f"env {e['name']}: ConfigMap {ref['name']} has no key {ref['key']}")
                    sref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if (sref and not sref.get("optional") and sref.get("name") not in by_kind.get("Secret", {})
                            and sref.get("name") not in documented_secrets):
                        problem(where, f"env {e['name']}: Secret {sref.get('name')} is not in the manifests, not "
                                "optional, and no `kubectl create secret generic` in README.md's \"Deploying\" makes it")
                    rf = (e.get("valueFrom") or {}).get("resourceFieldRef")
                    if rf and rf.get("containerName", c["name"]) not in names:
                        problem(where, f"env {e['name']}: no container {rf.get('containerName')}")
                for a in c.get("args", []) + c.get("command", []):
                    for var in re.findall(r"\$\((\w+)\)", str(a)):
                        if var not in env_names:
                            problem(where, f"argument {a} uses $({var}), not in the container's env")
                    m = re.match(r"--coordinator=tcp://([\w.-]+):(\d+)$", str(a))
                    if m:
                        svc = services.get(m.group(1))
                        if not svc:
                            problem(where, f"--coordinator names {m.group(1)}, not a Service of the manifests")
                        elif int(m.group(2)) not in [p["port"] for p in svc[1]["spec"].get("ports", [])]:
                            problem(where, f"Service {m.group(1)} has no port {m.group(2)}")
                for m in c.get("volumeMounts", []):
                    if m["name"] not in volumes:
                        problem(where, f"mounts unknown volume {m['name']}")
            if kind == "Deployment" and path.name not in listed and kust:
                problem(where, "not listed in kustomization.yaml")
    for name, (path, s) in services.items():
        selector = s["spec"].get("selector", {})
        matched = [
            n for n, (_, d) in by_kind.get("Deployment", {}).items()
            if all(d["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        if len(matched) != 1:
            problem(f"{path.relative_to(root)} (Service {name})", f"selector matches {len(matched)} Deployments, not 1")

# ---------------------------------------------------------------- CURVE keys


def local_only(endpoint):
    """Mirrors Curve.isLocalOnly (Sources/Wire/Curve.swift): what squat binds without keys."""
    if endpoint.startswith(("inproc://", "ipc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].split(";")[0]
    if host.startswith("["):
        if "]" not in host:
            return False
        host = host[1:host.index("]")]
    elif ":" in host:
        host = host[:host.rindex(":")]
    return host in ("localhost", "::1") or host.startswith("127.")


def http_token_in_environment(recipe, context):
    """Whether the process gets SQUAT_HTTP_TOKEN from its recipe (Compose service environment,
    Kubernetes container env), which squat reads in place of --http-token."""
    if recipe == "compose":
        env = context.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [str(e).split("=", 1)[0] for e in env]
        return "SQUAT_HTTP_TOKEN" in names
    if recipe == "kubernetes":
        _, container = context
        return any(e.get("name") == "SQUAT_HTTP_TOKEN" for e in container.get("env", []))
    return False


_VALUED = {"--bind", "--data-bind", "--http", "--http-token", "--coordinator", "--curve-secret",
           "--curve-server-key", "--authorized-keys"}
_KEY_PAIRS = {"coordinator": ("--curve-secret", "--authorized-keys"),
              "worker": ("--curve-secret", "--curve-server-key"),
              "submit": ("--curve-secret", "--curve-server-key"),
              "status": ("--curve-secret", "--curve-server-key"),
              "drain": ("--curve-secret", "--curve-server-key")}


def options_of(words):
    """{flag: value} of the flags that matter here (valueless flags map to True)."""
    opts, i = {}, 0
    while i < len(words):
        w = words[i]
        if w.startswith("--"):
            name, eq, value = w.partition("=")
            if eq:
                opts[name] = value
            elif name in _VALUED and i + 1 < len(words):
                opts[name] = words[i + 1]
                i += 1
            else:
                opts[name] = True
        i += 1
    return opts


def unit_environment(text):
    """Environment= assignments of a unit (quoted ones included), in order."""
    env = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line[len("Environment="):]):
                k, _, v = word.partition("=")
                env[k] = v
    return env


def expand_exec(line, env):
    """ExecStart as systemd expands it: ${X} one word, $X split at whitespace."""
    argv = []
    for word in line.split():
        if re.fullmatch(r"\$\w+", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def expand_compose(text):
    """${X:-default} and ${X-default} as their defaults, ${X} as empty, $$ as $."""
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)
    return text.replace("$$", "$")


def check_keys(root):
    """Every recipe runs with CURVE keys its processes can read; --insecure only in comments."""
    deploy = root / "deploy"
    lines = []  # (where, recipe, subcommand, opts, context)

    # systemd: ExecStart with the unit's defaults alone (an env file that sets nothing) and with
    # the example env file.
    for unit in sorted((deploy / "systemd").glob("*.service")):
        text = unit.read_text(encoding="utf-8")
        example = deploy / "systemd" / ("worker.env.example" if unit.name.startswith("squat-worker") else "coordinator.env.example")
        defaults = unit_environment(text)
        with_example = dict(defaults)
        if example.exists():
            with_example.update(env_file_values(example))
        exec_line = re.search(r"^ExecStart=(.*)$", text, re.M)
        if not exec_line:
            continue
        sandbox = {k: v for k, v in re.findall(r"^(ProtectHome|PrivateTmp|InaccessiblePaths|TemporaryFileSystem)=(.*)$", text, re.M)}
        for label, env in (("unit defaults", defaults), (example.name, with_example)):
            argv = expand_exec(exec_line.group(1).replace("%i", "w1"), env)
            lines.append((f"{unit.relative_to(root)} ({label})", "systemd", argv[1], options_of(argv[2:]), sandbox))

    # Compose: each service's squat command line (sh wrappers: their `squat ...` commands).
    compose = deploy / "container" / "compose.yaml"
    compose_doc = load_all(compose)[0] if compose.exists() else {}
    for name, s in (compose_doc.get("services") or {}).items():
        entrypoint = s.get("entrypoint")
        command = s.get("command")
        if entrypoint:
            parts = (entrypoint if isinstance(entrypoint, list) else [entrypoint]) + (command if isinstance(command, list) else [command or ""])
            for line in expand_compose("\n".join(map(str, parts))).splitlines():
                for cmd, words in squat_commands(line):
                    lines.append((f"{compose.relative_to(root)} ({name})", "compose", "submit" if cmd == "$@" else cmd,
                                  options_of(words), s))
        elif command:
            words = shlex.split(expand_compose(command)) if isinstance(command, str) else list(command)
            lines.append((f"{compose.relative_to(root)} ({name})", "compose", words[0], options_of(words[1:]), s))

    # Kubernetes: containers' args.
    pods = []
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for doc in load_all(path):
            spec = (doc.get("spec") or {}).get("template", {}).get("spec") if isinstance(doc, dict) else None
            if not spec:
                continue
            pods.append((path, doc["metadata"]["name"], spec))
            for c in spec.get("containers", []):
                args = [str(a) for a in c.get("args", [])]
                if args:
                    lines.append((f"{path.relative_to(root)} ({c['name']})", "kubernetes", args[0], options_of(args[1:]), (spec, c)))

    keyed = {}  # recipe -> {subcommand: [has keys]}
    for where, recipe, cmd, opts, context in lines:
        if cmd not in _KEY_PAIRS:
            continue
        first, second = _KEY_PAIRS[cmd]
        has = first in opts and second in opts
        if (first in opts) != (second in opts):
            problem(where, f"{first} and {second} go together")
        if opts.get("--insecure"):
            problem(where, "--insecure in a command line: the recipes run with keys (show the opt-out in a comment)")
        bind = {"coordinator": opts.get("--bind", "tcp://127.0.0.1:5555"),
                "worker": opts.get("--data-bind", "tcp://127.0.0.1:0")}.get(cmd)
        if bind and not local_only(bind) and not has:
            problem(where, f"binds {bind} without CURVE keys ({first} {second}): squat refuses that")
        http = opts.get("--http")
        if (isinstance(http, str) and not re.match(r"^(127\.|localhost:|\[::1\]:)", http)
                and "--http-token" not in opts and not http_token_in_environment(recipe, context)):
            problem(where, f"--http {http} without --http-token or SQUAT_HTTP_TOKEN: squat refuses that")
        if cmd in ("coordinator", "worker"):
            keyed.setdefault(recipe, {}).setdefault(cmd, []).append(has)
        if not has:
            continue
        paths = [opts[first], opts[second]]
        if recipe == "systemd":
            for path in paths:
                hidden = []
                if context.get("ProtectHome", "no") != "no":
                    hidden += ["/home", "/root", "/run/user"]
                if context.get("PrivateTmp", "no") != "no":
                    hidden += ["/tmp", "/var/tmp"]
                hidden += context.get("InaccessiblePaths", "").split() + context.get("TemporaryFileSystem", "").split()
                if not path.startswith("/"):
                    problem(where, f"key path {path} is relative")
                for h in hidden:
                    h = h.lstrip("-+").split(":")[0]
                    if h and under(path, h):
                        problem(where, f"key path {path} is hidden from the unit by its sandbox ({h})")
        elif recipe == "compose":
            mounts = {}
            for v in context.get("volumes", []):
                if isinstance(v, dict):
                    mounts[v.get("target")] = v.get("source")
                else:
                    bits = v.split(":")
                    mounts[bits[1] if len(bits) > 1 else bits[0]] = bits[0]
            for path in paths:
                if not any(under(path, t) or under(t, path) for t in mounts):
                    problem(where, f"key path {path} is on no volume of the service")
            secret_volume = mounts.get(opts[first])
            for other, s in (compose_doc.get("services") or {}).items():
                if s is context:
                    continue
                if s.get("entrypoint") and "keygen" in str(s.get("command")):
                    continue  # the service that writes the keys
                for v in s.get("volumes", []):
                    if not isinstance(v, dict) and v.split(":")[0] == secret_volume:
                        problem(where, f"its secret key's volume {secret_volume} is mounted by {other} too")
        elif recipe == "kubernetes":
            spec, c = context
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for path in paths:
                if not any(under(path, mp) or under(mp, path) for mp in mounts):
                    problem(where, f"key path {path} is on no volume of the container")
            volume = volumes.get(mounts.get(opts[first]), {})
            fs_group = (spec.get("securityContext") or {}).get("fsGroup")
            if "secret" in volume:
                mode = volume["secret"].get("defaultMode", 0o644)
                if fs_group is not None or mode & 0o077:
                    problem(where, f"{first} is the Secret volume {volume['name']}: its files are group- or "
                            "other-readable (fsGroup, defaultMode; kubernetes#57923) and squat refuses such a "
                            "secret key: copy it into an emptyDir with an init container")
            elif "emptyDir" in volume:
                fillers = [i["name"] for i in spec.get("initContainers", [])
                           if any(m["name"] == volume["name"] and not m.get("readOnly") for m in i.get("volumeMounts", []))]
                if not fillers:
                    problem(where, f"{first} is the emptyDir {volume['name']}, which no init container fills")
    for path, name, spec in pods:
        for v in spec.get("volumes", []):
            secret = v.get("secret")
            if secret and secret.get("secretName", "").endswith("-key") and secret.get("defaultMode", 0o644) & 0o007:
                problem(f"{path.relative_to(root)} ({name})", f"Secret {secret['secretName']} (a secret key) is "
                        f"readable by others: defaultMode {secret.get('defaultMode', 0o644):04o}")
    for recipe, by_cmd in keyed.items():
        if len({h for hs in by_cmd.values() for h in hs}) > 1:
            problem(f"deploy ({recipe})", "the coordinator and the workers do not agree on CURVE keys "
                    "(a keyed coordinator refuses a keyless worker, and the other way round)")

    # --insecure: only in comments (the explicit opt-out), never in a line that runs.
    for path in sorted(deploy.rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".pyc", ".sh", ".md") or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not a text file of the recipes
        for n, line in enumerate(text.splitlines(), 1):
            if "--insecure" in line and not line.lstrip().startswith("#"):
                problem(f"{path.relative_to(root)}:{n}", "--insecure outside a comment")
    print(f"  {len(lines)} command lines: every non-loopback bind has CURVE keys, on paths the process can read")


def under(path, folder):
    """Whether path is folder or inside it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def env_file_values(path):
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2).strip().strip('"')
    return values


def main(argv):
    if len(argv) < 2 or argv[1] not in ("yaml", "flags", "refs", "keys"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[1] == "yaml":
            check_yaml(argv[2:])
        elif argv[1] == "flags":
            check_flags(pathlib.Path(argv[2]).resolve())
        elif argv[1] == "keys":
            check_keys(pathlib.Path(argv[2]).resolve())
        else:
            check_refs(pathlib.Path(argv[2]).resolve())
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, OSError) as e:
        problem(argv[1], f"cannot check: {type(e).__name__}: {e}".replace("\n", " "))
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
