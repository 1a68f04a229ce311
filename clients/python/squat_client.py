#!/usr/bin/env python3
"""A small Python client for a squat coordinator: pyzmq plus the repository's .proto files.

The client's DEALER sends one frame per message, a serialized `squat.v1.Envelope`
(protocol_version 1 and one body: Submit, Cancel or StatusRequest), and receives one
Envelope frame per answer: TokenEvent..., then Finished (or Error), or a Status. There is no
empty delimiter frame (see proto/README.md).

The message classes are built at run time from proto/squat/v1/*.proto: `protoc` (Debian's
protobuf-compiler) writes a descriptor set and the `protobuf` runtime makes classes from it,
so no generated Python is kept and protoc's version need not match the runtime's.
Requirements: scripts/setup.sh installs them (protoc, pyzmq, protobuf).

    python3 clients/python/squat_client.py --coordinator tcp://127.0.0.1:5555 "The capital of France is"
"""
import argparse, codecs, subprocess, sys, tempfile, time, uuid
from pathlib import Path

try:
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    from google.protobuf import descriptor_pb2, message_factory
except ImportError as e:
    sys.exit(f"squat_client: {e}: run scripts/setup.sh")

PROTOCOL_VERSION = 1
PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"


def load_messages(proto_root=PROTO_ROOT):
    """{"Envelope": class, "Submit": class, ...} for every message of package squat.v1."""
    files = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "squat" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "squat.desc"
        try:
            subprocess.run(["protoc", f"-I{proto_root}", "--include_imports", f"--descriptor_set_out={out}", *files],
                           check=True)
        except FileNotFoundError:
            sys.exit("squat_client: protoc not found: run scripts/setup.sh")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {name.removeprefix("squat.v1."): cls for name, cls in message_factory.GetMessages(fds.file).items()}


pb = load_messages()


def enum_name(message, field):
    """The name of an enum field's value, e.g. enum_name(finished, "reason") == "FINISH_REASON_MAX_TOKENS"."""
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(message, field)].name


def read_key(path):
    """The Z85 key in a `squat keygen` file: its first line that is not empty or a # comment."""
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if len(line) != 40:
                raise ValueError(f"{path}: '{line[:48]}' is not a CURVE key (expected 40 Z85 characters)")
            return line
    raise ValueError(f"{path}: no key in the file")


def load_curve_pair(directory):
    """(public, secret) Z85 keys of the one NAME.key in `directory` (as `squat keygen --out` wrote it)."""
    secrets = sorted(Path(directory).glob("*.key"))
    if len(secrets) != 1:
        raise ValueError(f"{directory}: expected exactly one NAME.key, found {len(secrets)}")
    secret = read_key(secrets[0])
    return zmq.curve_public(secret.encode()).decode(), secret


HANDSHAKE_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused this client's CURVE key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "security handshake failed (protocol)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "security handshake failed",
}


class SquatClient:
    """A DEALER connected to the coordinator's ROUTER; with `curve_secret` (a directory holding
    this client's key pair) and `curve_server_key` (the coordinator's .pub file), over CURVE."""

    def __init__(self, endpoint="tcp://127.0.0.1:5555", timeout=120.0, curve_secret=None, curve_server_key=None):
        self.endpoint, self.timeout = endpoint, timeout
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if (curve_secret is None) != (curve_server_key is None):
            raise ValueError("curve_secret and curve_server_key go together")
        if curve_secret is not None:
            public, secret = load_curve_pair(curve_secret)
            self.socket.curve_publickey, self.socket.curve_secretkey = public.encode(), secret.encode()
            self.socket.curve_serverkey = read_key(curve_server_key).encode()
        # Handshake failures end a request with a clear error instead of a silence.
        self.monitor = self.socket.get_monitor_socket(sum(HANDSHAKE_FAILURES))
        self.socket.connect(endpoint)

    def close(self):
        self.socket.disable_monitor()
        self.monitor.close()
        self.socket.close()

    def _check_handshake(self):
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] in HANDSHAKE_FAILURES:
                raise ConnectionRefusedError(
                    f"the coordinator at {self.endpoint}: {HANDSHAKE_FAILURES[event['event']]} (status {event['value']}); "
                    "check --curve-secret / --curve-server-key and the coordinator's --authorized-keys")

    def _send(self, flags=0, **body):
        self.socket.send(pb["Envelope"](protocol_version=PROTOCOL_VERSION, **body).SerializeToString(), flags)

    def _receive(self, timeout):
        """(body name, body message) of the next envelope; TimeoutError after `timeout` seconds of silence."""
        deadline = time.monotonic() + timeout
        while not self.socket.poll(200):
            self._check_handshake()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the coordinator at {self.endpoint} for {timeout} s")
        envelope = pb["Envelope"].FromString(self.socket.recv())
        if envelope.protocol_version != PROTOCOL_VERSION:
            raise RuntimeError(f"coordinator speaks protocol version {envelope.protocol_version}")
        kind = envelope.WhichOneof("body")
        return kind, getattr(envelope, kind) if kind else None

    def submit(self, prompt, *, max_tokens=256, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
               repeat_penalty=1.0, repeat_last_n=64, seed=0, stop=(), request_id=None):
        """Generates events for one request: ("token", TokenEvent) with the raw `piece` bytes,
        then ("finished", Finished) with `reason`, `usage`, `timings`; or ("error", Error).
        `prompt` is a str, a list of (role, content) chat messages, or a list of token ids.
        The Submit goes out when the loop starts; leaving the loop early cancels the request."""
        submit = pb["Submit"](request_id=request_id or uuid.uuid4().hex)
        if isinstance(prompt, str):
            submit.text = prompt
        elif all(isinstance(p, int) for p in prompt):
            submit.tokens.SetInParent()  # present even when empty
            submit.tokens.ids.extend(prompt)
        else:
            submit.chat.messages.extend(pb["ChatMessage"](role=r, content=c) for r, c in prompt)
        sampler = submit.sampling.sampler
        sampler.temperature, sampler.top_k, sampler.top_p, sampler.min_p = temperature, top_k, top_p, min_p
        sampler.repetition_penalty, sampler.repetition_window, sampler.seed = repeat_penalty, repeat_last_n, seed
        submit.sampling.max_tokens = max_tokens
        submit.sampling.stop.extend(stop)
        self._send(submit=submit)
        done = False
        try:
            while not done:
                kind, body = self._receive(self.timeout)
                if kind not in ("token_event", "finished", "error") or body.request_id not in (submit.request_id, ""):
                    continue  # a status, or an event of another request
                if kind == "token_event":
                    yield "token", body
                elif kind == "finished":
                    done = True
                    yield "finished", body
                else:
                    # An admitted request's Finished(error) follows UNAVAILABLE / INTERNAL; a refused one ends here.
                    done = enum_name(body, "code") not in ("ERROR_CODE_UNAVAILABLE", "ERROR_CODE_INTERNAL")
                    yield "error", body
        finally:
            if not done:
                self.cancel(submit.request_id)

    def cancel(self, request_id):
        """Stops a request; its generator then ends with Finished(FINISH_REASON_CANCELLED)."""
        try:
            # Never blocks: after a failed handshake there is no connection to queue on.
            self._send(zmq.NOBLOCK, cancel=pb["Cancel"](request_id=request_id))
        except zmq.Again:
            pass

    def status(self, include_sequences=True, timeout=5.0):
        """The cluster as the coordinator sees it: a squat.v1.Status (epoch, workers, sequences)."""
        self._send(status_request=pb["StatusRequest"](include_sequences=include_sequences))
        while True:
            kind, body = self._receive(timeout)
            if kind == "status":
                return body


class TextAssembler:
    """Text from token bytes as `squat generate` prints it: whole UTF-8 characters only, text
    that may begin a stop string held back, nothing from a stop string on."""

    def __init__(self, stops=()):
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.stops, self.pending, self.stopped = [s for s in stops if s], "", False

    def append(self, piece, final=False):
        if self.stopped:
            return ""
        self.pending += self.decoder.decode(piece, final)
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self.pending[:min(hits)]
        keep = 0 if final else max((n for s in self.stops for n in range(1, len(s)) if self.pending.endswith(s[:n])),
                                   default=0)
        out, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return out

    def finish(self):
        return self.append(b"", final=True)


def main():
    ap = argparse.ArgumentParser(description="Send a prompt to a squat coordinator; the text streams to stdout.")
    ap.add_argument("prompt", nargs="?", help="the prompt (or --tokens)")
    ap.add_argument("--coordinator", default="tcp://127.0.0.1:5555")
    ap.add_argument("--chat", action="store_true", help="apply the model's chat template (as a user message)")
    ap.add_argument("--system", help="system message for --chat")
    ap.add_argument("--tokens", help="comma-separated prompt token ids instead of text")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-p", type=float, default=0.05)
    ap.add_argument("--repeat-penalty", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds of silence before giving up")
    ap.add_argument("--status", action="store_true", help="print the coordinator's status instead")
    ap.add_argument("--curve-secret", help="directory with this client's CURVE key pair (squat keygen --out DIR)")
    ap.add_argument("--curve-server-key", help="the coordinator's public key file (its NAME.pub)")
    args = ap.parse_args()
    try:
        client = SquatClient(args.coordinator, timeout=args.timeout, curve_secret=args.curve_secret,
                             curve_server_key=args.curve_server_key)
    except (ValueError, OSError) as e:
        sys.exit(f"squat_client: {e}")
    if args.status:
        s = client.status()
        print(f"epoch {s.epoch}, model {s.model_fingerprint}, {len(s.sequences)} live sequence(s)")
        for w in s.workers:
            print(f"{w.worker_id}\t{w.layers.start}..<{w.layers.end}\t{enum_name(w, 'state')}\t{w.data_endpoint}")
        return 0
    if args.tokens:
        prompt = [int(t) for t in args.tokens.split(",")]
    elif args.prompt is None:
        ap.error("give a PROMPT or --tokens")
    elif args.chat:
        prompt = ([("system", args.system)] if args.system else []) + [("user", args.prompt)]
    else:
        prompt = args.prompt
    text, out, failed = TextAssembler(args.stop), sys.stdout.buffer, False
    for kind, ev in client.submit(prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                  repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop):
        if kind == "token":
            out.write(text.append(ev.piece).encode())
            out.flush()
        elif kind == "finished":
            out.write(text.finish().encode())
            out.flush()
            print(f"\n[{ev.usage.prompt_tokens} prompt tokens, {ev.usage.completion_tokens} generated; "
                  f"finish: {enum_name(ev, 'reason')}]", file=sys.stderr)
        else:
            failed = True
            print(f"error ({enum_name(ev, 'code')}): {ev.message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConnectionRefusedError, TimeoutError) as e:
        sys.exit(f"squat_client: {e}")
