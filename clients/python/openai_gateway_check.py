#!/usr/bin/env python3
"""Exercises `squat coordinator --http` with the official `openai` client and scrapes /metrics
with `prometheus_client`'s parser; prints what it saw as one JSON object (the Swift test
Tests/ClusterTests/HTTPGatewayTests.swift checks it). Needs the pinned packages of
scripts/setup.sh (openai, prometheus-client).

    python3 clients/python/openai_gateway_check.py --base-url http://127.0.0.1:8000 --token T \
        --chat-prompt "What is the tallest mountain in the world?" --max-tokens 40
"""
import argparse
import json
import sys
import urllib.error
import urllib.request
from importlib.metadata import version

import openai

from prometheus_client.parser import text_string_to_metric_families


def http_get(url, token=None):
    """(status, body text) of a GET, errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(base, token):
    """The metric families of /metrics, parsed by prometheus_client: name -> type and samples."""
    status, text = http_get(base + "/metrics", token)
    if status != 200:
        raise SystemExit(f"/metrics answered {status}: {text}")
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    return families


def error_of(call):
    """Runs `call`, which must fail with an openai.APIStatusError: its status and JSON body."""
    try:
        call()
    except openai.APIStatusError as e:
        return {"status": e.status_code, "type": type(e).__name__, "body": e.response.json()}
    raise SystemExit("the call was expected to fail")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--chat-prompt", required=True)
    ap.add_argument("--completion-prompt", default="The capital of France is")
    ap.add_argument("--max-tokens", type=int, default=40)
    ap.add_argument("--stop", action="append", default=[])
    a = ap.parse_args()
    base = a.base_url.rstrip("/")
    out = {"versions": {"openai": openai.__version__, "prometheus_client": version("prometheus-client")}}

    client = openai.OpenAI(base_url=base + "/v1", api_key=a.token, max_retries=0, timeout=300)
    models = client.models.list()
    model = models.data[0].id
    out["models"] = [m.id for m in models.data]
    out["metrics_before"] = scrape(base, a.token)

    # Completion, not streaming.
    c = client.completions.create(model=model, prompt=a.completion_prompt, max_tokens=16, temperature=0)
    out["completion"] = {
        "object": c.object,
        "text": c.choices[0].text,
        "finish_reason": c.choices[0].finish_reason,
        "usage": c.usage.model_dump(),
    }

    # Chat, not streaming, then streaming: the same greedy answer.
    messages = [{"role": "user", "content": a.chat_prompt}]
    full = client.chat.completions.create(model=model, messages=messages, max_tokens=a.max_tokens, temperature=0)
    out["chat"] = {
        "object": full.object,
        "role": full.choices[0].message.role,
        "content": full.choices[0].message.content,
        "finish_reason": full.choices[0].finish_reason,
        "usage": full.usage.model_dump(),
    }
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=a.max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True})
    deltas, roles, finish, usage, chunks = [], [], None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                deltas.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    out["chat_stream"] = {"deltas": deltas, "content": "".join(deltas), "roles": roles, "finish_reason": finish,
                          "usage": usage, "chunks": chunks}

    # Chat with stop strings, streaming.
    if a.stop:
        stream = client.chat.completions.create(
            model=model, messages=messages, max_tokens=a.max_tokens, temperature=0, stop=a.stop, stream=True)
        deltas, finish = [], None
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    deltas.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        out["chat_stop"] = {"content": "".join(deltas), "finish_reason": finish}

    # Errors in OpenAI's shape.
    bad = openai.OpenAI(base_url=base + "/v1", api_key="not-" + a.token, max_retries=0, timeout=60)
    out["bad_auth"] = error_of(lambda: bad.chat.completions.create(model=model, messages=messages, max_tokens=4))
    out["bad_request"] = error_of(
        lambda: client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=7))
    out["bad_model"] = error_of(
        lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=4))
    out["metrics_no_token"] = http_get(base + "/metrics")[0]
    out["health_no_token"] = http_get(base + "/health")

    out["metrics_after"] = scrape(base, a.token)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
