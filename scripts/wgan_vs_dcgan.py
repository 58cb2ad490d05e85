#!/usr/bin/env python
"""WGAN-GP against DCGAN at the same wall-clock budget, over seeds:

    python scripts/wgan_vs_dcgan.py --budget 500 --seeds 100-109 --out runs/wgan-vs-dcgan

1. Seconds per iteration of both (their default configurations, one thread), measured in this process in
   alternating rounds (so both see the same machine load); the iteration counts are budget / seconds per
   iteration.
2. For each seed, `train.py dcgan` and `train.py wgan-gp` run side by side, one thread each (two processes,
   same conditions: a 2-core machine runs one seed's pair at a time).
3. Every run's samples.npz is scored by scripts/compare_generative.py's classifier (Frechet distance, class
   entropy, classes covered by >= 2% of the samples); WGAN-GP's runs also report the Pearson correlation over
   their checkpoints of W_hat and the samples' Frechet distance.
Writes OUT/summary.json (strict JSON: the timing, every run's numbers, medians and ranges) and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))
from nets.harness import parse_seeds, strict_json  # noqa: E402


def seconds_per_iteration(rounds: int = 3) -> dict:
    """Median over `rounds` alternating rounds of one timed iteration block per model (after a warm-up)."""
    import nets
    from nets.threads import configure_threads
    from nets.data import load_mnist, to_signed
    configure_threads(1)
    from nets.harness import stream
    import models.dcgan as dcgan
    import models.wgan_gp as wgan
    images = to_signed(load_mnist("train")[0]).reshape(-1, 1, 28, 28)
    players = {}
    for name, family, per_round in (("dcgan", dcgan, 5), ("wgan-gp", wgan, 1)):
        nets.manual_seed(0)
        cfg = family.Config()
        model = family.build(cfg)
        players[name] = (family, model, family.build_optimizer(model, cfg), cfg, per_round)
    times = {name: [] for name in players}
    for r in range(rounds + 1):
        for name, (family, model, optimizer, cfg, per_round) in players.items():
            start = time.perf_counter()
            for i in range(per_round):
                family.train_iteration(model, optimizer, images, r * per_round + i, lambda *p: stream(0, *p), cfg)
            if r:                                                    # round 0 warms up
                times[name].append((time.perf_counter() - start) / per_round)
    return {name: float(np.median(t)) for name, t in times.items()}


def train_pair(seed: int, iterations: dict, out: str, quality_samples: int) -> dict:
    """train.py for both models on one seed, side by side; {model: run folder}."""
    folders, processes = {}, []
    for model, count in iterations.items():
        folders[model] = os.path.join(out, f"{model}-{seed}")
        command = [sys.executable, os.path.join(HERE, "train.py"), model, "--iterations", str(count),
                   "--seed", str(seed), "--threads", "1", "--out", folders[model]]
        if model == "wgan-gp":
            command += ["--quality-samples", str(quality_samples)]
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, "NO_PROGRESS": "1"}))
    if any(p.wait() for p in processes):
        raise RuntimeError(f"seed {seed}: a training run failed")
    return folders


def summary(values: list) -> dict:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=500.0,
                        help="training seconds per run at one thread (default 500: about DCGAN's 1,000 iterations)")
    parser.add_argument("--seeds", default="100-109", help="seeds, e.g. 100-109 or 1,2,3")
    parser.add_argument("--quality-samples", type=int, default=500, help="samples scored at WGAN-GP's checkpoints")
    parser.add_argument("--num-samples", type=int, default=1000, help="samples of each run scored at the end")
    parser.add_argument("--out", default="runs/wgan-vs-dcgan")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    timing = seconds_per_iteration()
    iterations = {model: max(1, round(args.budget / s)) for model, s in timing.items()}
    print(json.dumps({"seconds_per_iteration": timing, "iterations": iterations}), flush=True)
    runs = {model: [] for model in iterations}
    for seed in parse_seeds(args.seeds):
        for model, folder in train_pair(seed, iterations, args.out, args.quality_samples).items():
            runs[model].append(folder)
        print(f"seed {seed} done", flush=True)

    import compare_generative as cg
    from nets.data import load_mnist
    table = cg.compare(runs["dcgan"] + runs["wgan-gp"], load_mnist("test")[0].reshape(-1, 28, 28), cg.Classifier(),
                       num_samples=args.num_samples)
    result = {"budget_seconds": args.budget, "seconds_per_iteration": timing, "iterations": iterations,
              "num_samples": table["num_samples"], "runs": table["rows"], "models": {}}
    for model in iterations:
        rows = [row for row in table["rows"] if row["model"] == model]
        keys = ("frechet_distance", "class_entropy_bits", "classes_covered", "train_seconds")
        result["models"][model] = {key: summary([row[key] for row in rows]) for key in keys}
        result["models"][model]["runs_covering_8_or_more_classes"] = sum(row["classes_covered"] >= 8 for row in rows)
    pairs = [(d["frechet_distance"], w["frechet_distance"]) for d, w in      # the same seed's two runs
             zip([row for row in table["rows"] if row["model"] == "dcgan"],
                 [row for row in table["rows"] if row["model"] == "wgan-gp"])]
    result["paired"] = {"seeds": len(pairs), "wgan_gp_frechet_at_most_dcgans": sum(w <= d for d, w in pairs),
                        "frechet_ratio_wgan_gp_to_dcgan": summary([w / d for d, w in pairs])}
    correlations, points = [], []
    for folder in runs["wgan-gp"]:
        with open(os.path.join(folder, "metrics.json")) as f:
            metrics = json.load(f)
        correlations.append(metrics["wasserstein_vs_frechet_correlation"])
        points += [(c["wasserstein_estimate"], c["frechet_distance"]) for c in metrics["checkpoints"]
                   if "frechet_distance" in c and c["iteration"] > 0]       # a trained critic (cli/wgan_gp.py)
    from cli.wgan_gp import correlation
    result["models"]["wgan-gp"]["wasserstein_vs_frechet_correlation"] = {
        "per_run": correlations, **summary([c for c in correlations if c is not None]),
        "pooled": correlation(*zip(*points)) if points else None, "pooled_checkpoints": len(points)}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(strict_json(result), f, indent=1)
    print(json.dumps({"models": result["models"], "paired": result["paired"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
