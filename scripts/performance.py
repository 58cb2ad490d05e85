#!/usr/bin/env python
"""Measure every bench.py workload in alternating rounds and write the performance page.

    python scripts/performance.py --rounds 6 --out scripts/performance.md
    python scripts/performance.py --rounds 6 --compare "PyTorch=python twin.py {threads}"

Each round runs, one after the other: the fast backend on 1 and on 2 threads, the reference backend on 1
thread, and (each --compare) an outside command that times the same workloads in another library and
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


def bench(backend: str, threads: int, workloads: list, repeats: int, run_repeats: int) -> dict:
    """{workload: median ms} from bench.py: `repeats` steps of each step workload, `run_repeats` whole runs
    of each `-epochs` workload (one run is itself many epochs)."""
    times = {}
    for group, count in (([w for w in workloads if not w.endswith("-epochs")], repeats),
                         ([w for w in workloads if w.endswith("-epochs")], run_repeats)):
        if group:
            command = [sys.executable, os.path.join(HERE, "bench.py"), *group, "--json", "--repeats", str(count),
                       "--backend", backend, "--threads", str(threads)]
            report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            times.update({r["workload"]: r["median_ms"] for r in report["results"]})
    return times


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


def table(rounds: list, workloads: list, names: list) -> list:
    def median(key, workload):
        values = [r[key][workload] for r in rounds if workload in r.get(key, {})]
        return float(np.median(values)) if values else None

    def ratios(a, b, workload):
        return [r[a][workload] / r[b][workload] for r in rounds if workload in r.get(a, {}) and workload in r.get(b, {})]

    def ratio(a, b, workload):
        pairs = ratios(a, b, workload)
        return float(np.median(pairs)) if pairs else None
    head = ["workload", "fast, 1 thread", "fast, 2 threads", "reference, 1 thread", "reference / fast"]
    for name in names:
        head += [f"{name}, 1 thread", "fast / " + name, f"{name}, 2 threads", "fast / " + name]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        cells = [w] + [_ms(median(k, w)) for k in ("fast-1", "fast-2", "reference-1")]
        cells.append(_x(ratio("reference-1", "fast-1", w)))
        for name in names:
            for t in (1, 2):
                cells += [_ms(median(f"{name}-{t}", w)), _x(ratio(f"fast-{t}", f"{name}-{t}", w))]
        lines.append("| " + " | ".join(cells) + " |")
    pairs = [("reference / fast, 1 thread", "reference-1", "fast-1")]
    pairs += [(f"fast / {name}, {t} thread{'s' * (t > 1)}", f"fast-{t}", f"{name}-{t}") for name in names for t in (1, 2)]
    lines += ["", "Per-round ratios, round by round:", ""]
    for w in workloads:
        lines.append(f"- {w}: " + "; ".join(f"{label} " + " ".join(f"{x:.2f}" for x in ratios(a, b, w))
                                            for label, a, b in pairs if ratios(a, b, w)))
    return lines


def _ms(value) -> str:
    return "" if value is None else (f"{value:.0f}" if value >= 1000 else f"{value:.1f}")


def _x(value) -> str:
    return "" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", help="bench.py workloads (default: all but 'save')")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per step workload and setting")
    parser.add_argument("--run-repeats", type=int, default=1, help="timed whole runs per -epochs workload and setting")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=COMMAND",
                        help="an outside command printing {workload: ms}, {threads} replaced by 1 or 2 (repeatable)")
    parser.add_argument("--out", default=os.path.join(HERE, "performance.md"))
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from bench import WORKLOADS
    workloads = args.workloads or [w for w in WORKLOADS if w != "save"]
    comparisons = dict(c.split("=", 1) for c in args.compare if "=" in c)
    if len(comparisons) != len(args.compare):
        parser.error("--compare: expected NAME=COMMAND, e.g. --compare 'PyTorch=python twin.py {threads}'")
    rounds = []
    for k in range(args.rounds):
        result = {f"{b}-{t}": bench(b, t, workloads, args.repeats, args.run_repeats) for b, t in SETTINGS}
        for name, command in comparisons.items():
            result.update({f"{name}-{t}": compare(command, t) for t in (1, 2)})
        rounds.append(result)
        print(f"round {k + 1} of {args.rounds} done", file=sys.stderr)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    names = list(comparisons)
    page = ["# Performance", "",
            f"Milliseconds per step (the `-epochs` workloads: per whole run of its epochs), the median over "
            f"{args.rounds} rounds of each round's median of {args.repeats} steps ({args.run_repeats} whole runs); "
            f"made by `python scripts/performance.py " + shlex.join(sys.argv[1:]) + f"` on commit {commit()}, "
            f"{datetime.date.today()}, on {machine()}; load average at the end {load}. The workloads are defined in "
            "`scripts/bench.py`; the threads setting is `bench.py --threads N` (nets/threads.py's policy)."
            + "".join(f" The {name} columns time the same workloads with an outside command (`--compare`)."
                      for name in names), ""] + table(rounds, workloads, names)
    with open(args.out, "w") as f:
        f.write("\n".join(page) + "\n")
    print("\n".join(page))


if __name__ == "__main__":
    main()
