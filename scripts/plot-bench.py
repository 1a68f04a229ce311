#!/usr/bin/env python3
"""Charts of `squat bench --json FILE` results (needs matplotlib: pip install matplotlib==3.11.2).

Two forms, told apart by their rows:

- single process (`squat bench --kv MODE --depths ... --json FILE`): rows {test, threads, depth,
  tokens, tokensPerSecond, tokensPerCPUSecond}. One file per cache mode; the chart shows decode
  tokens/s against context depth, one line per file (and thread count), wall clock on the left,
  per CPU-second on the right. (`squat bench --context N --json FILE` files, one depth each,
  add a point at depth N.)
- cluster (`squat bench --cluster N --concurrency 1 8 --json FILE`): rows {workers, concurrency,
  aggregateTokensPerSecond, aggregateTokensPerCPUSecond, perSequenceTokensPerSecond, ...}. The
  chart shows aggregate decode tokens/s against concurrent requests, one line per worker count
  (per-sequence tokens/s dashed), and aggregate tokens per CPU-second on the right.

Lines are labelled by file name (without .json) unless --label is given, once per file, in order.

    python3 scripts/plot-bench.py /tmp/full.json /tmp/squat-k2v2.json --label full \\
        --label "squat k2v2" -o docs/bench-decode.png
    python3 scripts/plot-bench.py /tmp/cluster1.json /tmp/cluster3.json -o cluster.png
"""

import argparse
import json
import os
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict) and "decode" in data and "context" in data:
        # `bench --context N`: one decode measurement at depth N.
        row = dict(data["decode"])
        row["depth"] = data["context"]
        return "decode", [row]
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a JSON list of rows from `squat bench --json`")
    if all("concurrency" in r and "workers" in r for r in data):
        return "cluster", data
    if all("test" in r and "depth" in r for r in data):
        return "decode", data
    raise ValueError(f"{path}: rows are neither single-process (test, depth, ...) nor cluster (workers, concurrency, ...)")


def plot_decode(series, title, out, plt):
    fig, (wall, cpu) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, rows in series:
        by_threads = defaultdict(list)
        for r in rows:
            if r.get("test") == "decode":
                by_threads[r["threads"]].append(r)
        if not by_threads:
            print(f"plot-bench: {label}: no decode rows", file=sys.stderr)
        for threads, rs in sorted(by_threads.items()):
            rs.sort(key=lambda r: r["depth"])
            name = label if len(by_threads) == 1 else f"{label}, {threads} thread{'s' if threads > 1 else ''}"
            depths = [r["depth"] for r in rs]
            line = wall.plot(depths, [r["tokensPerSecond"] for r in rs], marker="o", label=name)[0]
            cpu.plot(depths, [r["tokensPerCPUSecond"] for r in rs], marker="o", label=name, color=line.get_color())
    for ax, what in ((wall, "decode tokens/s (wall clock)"), (cpu, "decode tokens per CPU-second")):
        ax.set_xlabel("context depth (tokens already in the cache)")
        ax.set_ylabel(what)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Decode speed vs context depth, one line per cache mode")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_cluster(series, title, out, plt):
    fig, (wall, cpu) = plt.subplots(1, 2, figsize=(11, 4.5))
    lines = []
    for label, rows in series:
        by_workers = defaultdict(list)
        for r in rows:
            by_workers[(r["workers"], r.get("workerThreads", 1))].append(r)
        for (workers, threads), rs in sorted(by_workers.items()):
            lines.append((label, workers, threads, sorted(rs, key=lambda r: r["concurrency"])))
    # The file's label goes in front only where two files measured the same configuration.
    shared = len({(w, t) for _, w, t, _ in lines}) < len(lines)
    for label, workers, threads, rs in lines:
        name = f"{workers} worker{'s' if workers > 1 else ''} × {threads} thread{'s' if threads > 1 else ''}"
        if shared:
            name = f"{label}: {name}"
        xs = [r["concurrency"] for r in rs]
        line = wall.plot(xs, [r["aggregateTokensPerSecond"] for r in rs], marker="o", label=f"{name}, aggregate")[0]
        wall.plot(xs, [r["perSequenceTokensPerSecond"] for r in rs], marker=".", linestyle="--",
                  color=line.get_color(), label=f"{name}, per sequence")
        cpu.plot(xs, [r["aggregateTokensPerCPUSecond"] for r in rs], marker="o", label=name, color=line.get_color())
    concurrencies = sorted({x for *_, rs in lines for x in (r["concurrency"] for r in rs)})
    for ax, what in ((wall, "decode tokens/s (wall clock)"), (cpu, "aggregate tokens per CPU-second")):
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(what)
        ax.set_xticks(concurrencies)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or "Cluster decode throughput vs concurrency, one line per worker count")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="JSON files written by `squat bench --json`")
    p.add_argument("--label", action="append", default=[], help="a line's label, once per file in order")
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    p.add_argument("--title", help="the chart's title")
    args = p.parse_args()
    if args.label and len(args.label) != len(args.files):
        p.error(f"{len(args.label)} --label for {len(args.files)} files: give one per file, or none")
    try:
        import matplotlib
    except ImportError:
        sys.exit("plot-bench: needs matplotlib: python3 -m pip install matplotlib==3.11.2")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds, series = set(), []
    for i, path in enumerate(args.files):
        try:
            kind, rows = load(path)
        except (OSError, ValueError) as e:
            sys.exit(f"plot-bench: {e}")
        kinds.add(kind)
        label = args.label[i] if args.label else os.path.splitext(os.path.basename(path))[0]
        series.append((label, rows))
    if len(kinds) > 1:
        sys.exit("plot-bench: single-process and cluster results cannot share a chart; plot them separately")
    (plot_cluster if kinds == {"cluster"} else plot_decode)(series, args.title, args.output, plt)
    print(f"plot-bench: wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
