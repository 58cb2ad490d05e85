#!/usr/bin/env python
"""Measure every bench.py workload in alternating rounds and write the performance page.

    python scripts/performance.py --rounds 6 --out scripts/performance.md
    python scripts/performance.py --rounds 6 --compare "python twin.py {threads}" --compare-name PyTorch

Each round runs, one after the other: the fast backend on 1 and on 2 threads, the reference backend on 1
thread, and (with --compare) an outside command that times the same workloads in another library and
prints one JSON object {"workload": median ms, ...} (this project never imports one: the command is yours).
The page reports the median over rounds of each round's median, the per-round ratios, and how it was made:
the command line, the commit, the machine, NumPy and its BLAS. Run it on a quiet machine: other
processes on the same cores slow every number by 2-10x.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = [("fast", 1), ("fast", 2), ("reference", 1)]


def bench(backend: str, threads: int, workloads: list, repeats: int) -> dict:
    command = [sys.executable, os.path.join(HERE, "bench.py"), *workloads, "--json", "--repeats", str(repeats),
               "--backend", backend, "--threads", str(threads)]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return {r["workload"]: r["median_ms"] for r in report["results"]}


def compare(command: str, threads: int) -> dict:
    done = subprocess.run(command.format(threads=threads), shell=True, capture_output=True, text=True, check=True)
    return {k: v for k, v in json.loads(done.stdout).items() if isinstance(v, (int, float))}


def machine() -> str:
    blas = "?"
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i['version']}" for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        pass
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, NumPy {np.__version__} ({blas})"


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def table(rounds: list, workloads: list, name: str | None) -> list:
    def median(key, workload):
        values = [r[key][workload] for r in rounds if workload in r.get(key, {})]
        return float(np.median(values)) if values else None

    def ratio(a, b, workload):
        pairs = [r[a][workload] / r[b][workload] for r in rounds if workload in r.get(a, {}) and workload in r.get(b, {})]
        return (float(np.median(pairs)), pairs) if pairs else (None, [])
    head = ["workload", "fast, 1 thread", "fast, 2 threads", "reference, 1 thread", "reference / fast"]
    if name:
        head += [f"{name}, 1 thread", "fast / " + name, f"{name}, 2 threads", "fast / " + name]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        cells = [w] + [_ms(median(k, w)) for k in ("fast-1", "fast-2", "reference-1")]
        cells.append(_x(ratio("reference-1", "fast-1", w)[0]))
        if name:
            for t in (1, 2):
                cells += [_ms(median(f"compare-{t}", w)), _x(ratio(f"fast-{t}", f"compare-{t}", w)[0])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Per-round ratios (fast / reference / compare): " + "; ".join(
        f"{w}: " + ", ".join(f"{k} [{' '.join(f'{x:.2f}' for x in ratio(a, b, w)[1])}]"
                             for k, a, b in (("ref/fast 1 thr", "reference-1", "fast-1"),
                                             *((f"fast/{name} 1 thr", "fast-1", "compare-1"),
                                               (f"fast/{name} 2 thr", "fast-2", "compare-2")) * bool(name))
                             if ratio(a, b, w)[1]) for w in workloads) + ".")
    return lines


def _ms(value) -> str:
    return "" if value is None else (f"{value:.0f}" if value >= 1000 else f"{value:.1f}")


def _x(value) -> str:
    return "" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", help="bench.py workloads (default: all but 'save')")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per workload and setting")
    parser.add_argument("--compare", default=None, help="outside command printing {workload: ms}; {threads} is replaced")
    parser.add_argument("--compare-name", default="other")
    parser.add_argument("--out", default=os.path.join(HERE, "performance.md"))
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from bench import WORKLOADS
    workloads = args.workloads or [w for w in WORKLOADS if w != "save"]
    rounds = []
    for k in range(args.rounds):
        result = {f"{b}-{t}": bench(b, t, workloads, args.repeats) for b, t in SETTINGS}
        if args.compare:
            result.update({f"compare-{t}": compare(args.compare, t) for t in (1, 2)})
        rounds.append(result)
        print(f"round {k + 1} of {args.rounds} done", file=sys.stderr)
    name = args.compare_name if args.compare else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    page = ["# Performance", "",
            f"Milliseconds per step (the `-epochs` workloads: per whole run of epochs), median over {args.rounds} "
            f"rounds of each round's median of {args.repeats} steps; made by `python scripts/performance.py "
            + shlex.join(sys.argv[1:]) + f"` on commit {commit()}, {datetime.date.today()}, on {machine()}; "
            f"load average at the end {load}. The workloads are defined in `scripts/bench.py`; the threads setting "
            "is `bench.py --threads N` (nets/threads.py's policy)." + (
                f" The {name} column times the same workloads with an outside command (`--compare`)." if name else ""),
            ""] + table(rounds, workloads, name)
    with open(args.out, "w") as f:
        f.write("\n".join(page) + "\n")
    print("\n".join(page))


if __name__ == "__main__":
    main()
