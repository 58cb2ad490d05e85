r"""Multi-seed runs: one process per seed, then a summary that reports rates over seeds, never a best run.

    python scripts/train.py dqn --seeds 0-9 --workers 2 --out DIR

runs `train.py dqn --seed S --out DIR/seed-S` for every S (at most `workers` at once, each with one BLAS
thread), then writes DIR/summary.json (per-seed table, fractions meeting each bar, median, interquartile
mean and a bootstrap 95% interval of the headline score) and DIR/summary.png. DIR/sweep.json records the
command, the seeds and the flags: `--resume DIR` resumes the unfinished seeds and starts the ones never
started, all with those flags (a flag given again must have the recorded value).

Stopping. Ctrl-C, SIGTERM or SIGHUP (a closed terminal) is passed on to every worker once: each finishes
its unit, saves its checkpoint and stops. Workers never outlive the sweep: each asks Linux for SIGTERM when
its parent dies (prctl PR_SET_PDEATHSIG) or, where that is not available, checks os.getppid() every second,
so a parent killed with SIGKILL still leaves every worker saved and stopped.

Statistics (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"):
    IQM        the mean of the middle 50% of the scores (drop the lowest and highest quarter): robust
               to a single outlier seed, less noisy than the median;
    bootstrap  resample the seeds with replacement B times, take the IQM of each resample; the 2.5% and
               97.5% quantiles of those B values are the 95% interval.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from .harness import METRICS, CHECKPOINT, STOP_SIGNALS, UsageError, stream, strict_json
from .checkpoint import save_json_atomic

RL_BARS = (300, 475)
RECORD = "sweep.json"
PARENT_VARIABLE = "NUMPY_DL_LAB_SWEEP_PARENT"     # set for a worker: its parent's pid
STATUS_VARIABLE = "NUMPY_DL_LAB_STATUS"           # set for a worker: the file its progress goes to
SWEEP_FLAGS = {"--seeds", "--workers", "--out", "--resume", "--seed"}


# ==================================================================== statistics
def interquartile_mean(values) -> float:
    """Mean of the middle half of the sorted values (25% trimmed from each end, fractional weights at the
    cut so every sample size is handled the same way)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return float("nan")
    # weight of sorted element i = length of [i, i+1] inside [n/4, 3n/4], then normalised by n/2
    lo, hi = n / 4, 3 * n / 4
    edges = np.arange(n + 1)
    weights = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    return float(weights @ x / (n / 2))


def bootstrap_interval(values, statistic=interquartile_mean, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the seeds."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = stream(seed, "bootstrap")
    stats = [statistic(x[rng.integers(0, x.size, x.size)]) for _ in range(resamples)]
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def describe(values) -> dict:
    """median, IQM, mean, min, max and the bootstrap 95% interval of the IQM."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return {"n": 0}
    low, high = bootstrap_interval(x)
    return {"n": int(x.size), "median": float(np.median(x)), "iqm": interquartile_mean(x),
            "iqm_95ci": [low, high], "mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}


# ==================================================================== summaries
def seed_dirs(out: str, seeds) -> dict:
    return {s: os.path.join(out, f"seed-{s}") for s in seeds}


def read_metrics(directory: str) -> dict | None:
    path = os.path.join(directory, METRICS)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rl_row(m: dict) -> dict:
    final = m.get("final_greedy_eval_returns") or m.get("greedy_eval_returns")
    return {"first_episode_avg300": m.get("first_episode_avg300"),
            "first_episode_avg475": m.get("first_episode_avg475"),
            "first_step_avg475": m.get("first_step_avg475"),
            "delivered": m.get("delivered", "final"),
            "delivered_greedy_mean": m.get("greedy_eval_mean"),
            "final_greedy_mean": float(np.mean(final)) if final else None,
            "wall_seconds": m.get("wall_seconds"), "env_steps_per_second": m.get("env_steps_per_second")}


def summarize(model: str, metrics_by_seed: dict, headline: dict | None) -> dict:
    """The summary of finished seeds. RL agents (headline None): bars, greedy scores and timings; other
    models: their headline metrics ({key: "lower" | "higher"})."""
    seeds = sorted(metrics_by_seed)
    if headline is None:
        rows = {str(s): rl_row(metrics_by_seed[s]) for s in seeds}
        column = lambda key: [rows[str(s)][key] for s in seeds]          # noqa: E731
        fractions = {f"avg{bar}_reached": _fraction([v is not None for v in column(f"first_episode_avg{bar}")])
                     for bar in RL_BARS}
        fractions["delivered_greedy_ge475"] = _fraction([v is not None and v >= 475
                                                        for v in column("delivered_greedy_mean")])
        fractions["final_greedy_ge475"] = _fraction([v is not None and v >= 475
                                                    for v in column("final_greedy_mean")])
        fractions["avg300_and_delivered_ge475"] = _fraction([
            a is not None and g is not None and g >= 475
            for a, g in zip(column("first_episode_avg300"), column("delivered_greedy_mean"))])
        stats = {key: describe(column(key)) for key in ("delivered_greedy_mean", "final_greedy_mean",
                                                         "first_episode_avg475", "first_step_avg475",
                                                         "wall_seconds", "env_steps_per_second")}
    else:
        rows = {str(s): {key: metrics_by_seed[s].get(key) for key in (*headline, "wall_seconds")} for s in seeds}
        fractions = {}
        stats = {key: describe([rows[str(s)][key] for s in seeds]) for key in (*headline, "wall_seconds")}
    return {"model": model, "seeds": seeds, "per_seed": rows, "fractions": fractions, "statistics": stats,
            "headline": headline or {"delivered_greedy_mean": "higher"}}


def _fraction(flags) -> dict:
    flags = list(flags)
    return {"count": int(sum(flags)), "of": len(flags), "fraction": sum(flags) / len(flags) if flags else None}


# ==================================================================== the sweep's record
def without_sweep_flags(argv: list[str]) -> list[str]:
    """argv without the sweep's own flags (and their values): the flags every seed runs with."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in SWEEP_FLAGS:
            skip = "=" not in word
            continue
        kept.append(word)
    return kept


def record(out: str, seeds: list[int], flags: list[str]) -> None:
    save_json_atomic(os.path.join(out, RECORD), {"command": flags[0], "seeds": seeds, "flags": flags[1:]})


def unrecorded(out: str) -> bool:
    """True for a multi-seed folder written before sweeps recorded their flags (seed-S folders, no sweep.json)."""
    return (os.path.isdir(out) and not os.path.exists(os.path.join(out, RECORD))
            and any(name.startswith("seed-") for name in os.listdir(out)))


def recorded(out: str) -> dict:
    """DIR/sweep.json of a multi-seed run: {"command", "seeds", "flags"}; one line if missing or broken."""
    path = os.path.join(out, RECORD)
    if not os.path.isdir(out):
        raise UsageError(f"--resume {out}: does not exist")
    try:
        with open(path) as f:
            saved = json.load(f)
        return {"command": str(saved["command"]), "seeds": list(saved["seeds"]), "flags": list(saved["flags"])}
    except FileNotFoundError:
        raise UsageError(f"--resume {out}: no {RECORD} there (not a multi-seed run folder)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--resume {out}: {RECORD} is broken ({error})") from None


# ==================================================================== running the seeds
def seed_command(argv: list[str], seed: int, directory: str) -> list[str]:
    """The single-run command line for one seed: argv without the sweep's own flags, plus --seed/--out
    (or --resume when the seed has a checkpoint but no metrics yet)."""
    kept = without_sweep_flags(argv)
    if os.path.exists(os.path.join(directory, CHECKPOINT)):
        return kept + ["--resume", directory]
    return kept + ["--seed", str(seed), "--out", directory]


def watch_parent() -> None:
    """In a worker (PARENT_VARIABLE set): SIGTERM to ourselves when the sweep that started us is gone, so
    that we save and stop (the harness's SIGTERM handler) instead of training on with no parent."""
    parent = os.environ.pop(PARENT_VARIABLE, None)
    if not parent:
        return
    parent, asked = int(parent), False
    if sys.platform.startswith("linux"):
        try:                                                  # PR_SET_PDEATHSIG = 1
            asked = ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:                                # it died before we could ask
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if asked:                     # one SIGTERM only: a second one would abort the worker before it saves
        return

    def watchdog():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def run_seeds(script: str, argv: list[str], seeds, out: str, workers: int, rl: bool) -> dict:
    """Run every unfinished seed (at most `workers` processes at once) and return {seed: exit code}.
    Workers run in their own session, so a terminal's Ctrl-C or hang-up reaches them once, through us;
    they stop when we do (watch_parent)."""
    from tqdm import tqdm
    dirs = seed_dirs(out, seeds)
    todo = [s for s in seeds if read_metrics(dirs[s]) is None]
    env = dict(os.environ)
    if rl or workers > 1:                       # one BLAS thread per worker: no oversubscription
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMPY_DL_LAB_THREADS"):
            env[variable] = "1"
    env["NO_PROGRESS"], env[PARENT_VARIABLE] = "1", str(os.getpid())
    running, codes, stopping, shown = {}, {}, {"flag": False}, 0.0
    bar = tqdm(total=len(seeds), initial=len(seeds) - len(todo), desc="seeds finished", dynamic_ncols=True,
               disable=bool(os.environ.get("NO_PROGRESS")), mininterval=1.0)

    def on_signal(signum, frame):
        first = not stopping["flag"]
        if first:
            _say(bar, f"\nstopping {len(running)} worker(s): each saves its checkpoint; continue with --resume {out}")
        stopping["flag"] = True
        if first or signum == signal.SIGINT:      # a second Ctrl-C aborts the workers; SIGTERM/SIGHUP again do not
            for process in running.values():
                process.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        while todo or running:
            while todo and len(running) < workers and not stopping["flag"]:
                seed = todo.pop(0)
                os.makedirs(dirs[seed], exist_ok=True)
                with open(os.path.join(dirs[seed], "log.txt"), "a") as log:
                    running[seed] = subprocess.Popen(
                        [sys.executable, script, *seed_command(argv, seed, dirs[seed])], stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True,
                        env={**env, STATUS_VARIABLE: os.path.join(dirs[seed], "progress.txt")})
                _say(bar, f"seed {seed}: started (pid {running[seed].pid})")
            if stopping["flag"]:
                todo = []
            for seed, process in list(running.items()):
                if process.poll() is not None:
                    codes[seed] = process.returncode
                    del running[seed]
                    bar.update(process.returncode == 0)
                    _say(bar, f"seed {seed}: exit {process.returncode}")
            if time.perf_counter() - shown > 1.0:         # each running worker's progress, once a second
                bar.set_postfix_str(", ".join(f"seed {s}: {_status(dirs[s])}" for s in running))
                shown = time.perf_counter()
            time.sleep(0.2)
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return codes


def _status(directory: str) -> str:
    """A worker's progress line ("120/1000 episodes"), written by the harness's loop."""
    try:
        with open(os.path.join(directory, "progress.txt")) as f:
            return f.read().strip() or "starting"
    except OSError:
        return "starting"


def _say(bar, line: str) -> None:
    try:
        if bar.disable:
            print(line, file=sys.stderr)
        else:
            bar.write(line, file=sys.stderr)
    except OSError:                              # the terminal is gone (SIGHUP): keep stopping the workers
        pass


def write_summary(out: str, model: str, seeds, headline: dict | None) -> dict:
    metrics = {s: m for s, m in ((s, read_metrics(d)) for s, d in seed_dirs(out, seeds).items()) if m is not None}
    summary = summarize(model, metrics, headline)
    summary["unfinished_seeds"] = [s for s in seeds if s not in metrics]
    configs = {json.dumps(m.get("config"), sort_keys=True) for m in metrics.values()}
    if len(configs) > 1:                         # e.g. a sweep from before sweep.json, resumed with other flags
        keys = sorted({k for m in metrics.values() for k, v in (m.get("config") or {}).items()
                       if any((n.get("config") or {}).get(k) != v for n in metrics.values())})
        summary["mixed_config"] = keys
        print(f"warning: the seeds of {out} ran with different settings of {', '.join(keys)}", file=sys.stderr)
    save_json_atomic(os.path.join(out, "summary.json"), strict_json(summary))
    return summary


def save_summary_figure(path: str, out: str, summary: dict) -> None:
    """summary.png of a multi-seed run. RL: the median 100-episode running average over seeds with the
    25-75% band and every seed faint; other models: the headline metric of every seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = {s: read_metrics(d) for s, d in seed_dirs(out, summary["seeds"]).items()}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if "delivered_greedy_mean" in summary["headline"]:
        from rl.common import running_average
        curves = [running_average(m["episode_returns"]) for m in runs.values() if m.get("episode_returns")]
        length = min((len(c) for c in curves), default=0)
        for c in curves:
            ax.plot(np.arange(1, len(c) + 1), c, color="tab:blue", alpha=0.15, linewidth=0.8)
        if length:
            stack = np.stack([c[:length] for c in curves])
            x = np.arange(1, length + 1)
            ax.fill_between(x, *np.percentile(stack, [25, 75], axis=0), color="tab:blue", alpha=0.3,
                            label="25-75% of seeds")
            ax.plot(x, np.median(stack, axis=0), color="tab:blue", label="median over seeds")
        for bar in (300, 475):
            ax.axhline(bar, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("episode")
        ax.set_ylabel("100-episode average return")
    else:
        for i, key in enumerate(summary["headline"]):
            values = [m.get(key) for m in runs.values() if m and m.get(key) is not None]
            ax.scatter(np.full(len(values), i) + np.linspace(-0.1, 0.1, len(values)), values, alpha=0.7)
        ax.set_xticks(range(len(summary["headline"])))
        ax.set_xticklabels(list(summary["headline"]), fontsize=8)
        ax.set_ylabel("value per seed")
    ax.set_title(f"{summary['model']}: {len(summary['seeds'])} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
