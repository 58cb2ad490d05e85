"""`train.py dcgan`: flags and figures for the DCGAN of models/dcgan.py (which holds the training iteration).

    python scripts/train.py dcgan                         # 3,000 iterations, batch 128
    python scripts/train.py dcgan --iterations 1000 --seed 0 --out runs/dcgan

One iteration (models/dcgan.py): (1) an Adam step of D on real digits and G's detached fakes, (2) an
Adam step of G through the updated D.

Writes into --out:
  samples_iter_XXXX.png  4 x 4 samples from one FIXED noise batch at iterations 0 (untrained), 250,
                         500, 1000, 2000, 3000 (those <= --iterations) and the last iteration
  progress.png           all of those grids side by side
  losses.png             D's and G's loss per iteration
  samples.npz            `images`: 2,000 samples (N, 28, 28) float32 in [0, 1], G in eval mode
  metrics.json           losses per iteration, seconds per iteration, warnings
  checkpoint.npz         D, G (with BatchNorm's running statistics), both Adam states, the grids and
                         the loss history; --resume DIR continues exactly

Every draw comes from the run's named streams, so a resumed run continues exactly.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from nets.data import to_signed
from nets.harness import Run, UsageError, add_config_flags, add_run_flags
from models.dcgan import (DCGANConfig, build, build_optimizer, check_d_wins, generate, sample_noise,
                          train_iteration)
from cli.common import load_mnist_splits, print_summary, save_curves, save_image_grid, tile, write_samples

GRID_ITERATIONS = (0, 250, 500, 1000, 2000, 3000)   # snapshots of the fixed noise batch
NUM_SAMPLES = 2000              # images in samples.npz
SUMMARY_METRICS = {"d_loss_last100": "lower", "seconds_per_iteration": "lower"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("dcgan", help="DCGAN on MNIST", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(parser, mnist=True)
    add_config_flags(parser, DCGANConfig)
    parser.set_defaults(run=run)


def to_unit(images: np.ndarray) -> np.ndarray:
    """G's [-1, 1] images (N, 1, 28, 28) -> (N, 28, 28) in [0, 1]."""
    return np.clip((images[:, 0] + 1) / 2, 0, 1).astype(np.float32)


def grid_iterations(iterations: int) -> list:
    return sorted({i for i in GRID_ITERATIONS if i <= iterations} | {iterations})


def run(args) -> None:
    run = Run("dcgan", args, DCGANConfig, may_change=("iterations",))
    cfg = run.config
    x_train, _, _, _ = load_mnist_splits(args.data_dir)
    if cfg.batch_size > len(x_train):
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {len(x_train)} training images")
    x_train = to_signed(x_train)                              # [0, 1] -> [-1, 1], tanh's range
    try:
        model = build(cfg)                                    # model.D and model.G
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = build_optimizer(model, cfg)                   # optimizer.D and optimizer.G
    D, G, opt_D, opt_G = model.D, model.G, optimizer.D, optimizer.G
    fixed_noise = sample_noise(16, model.noise_dim, run.stream("fixed-noise"))
    state = run.state or {"iteration": 0, "d_loss": [], "g_loss": [], "warnings": [], "d_wins_warned": False}
    grids = {}                                                # iteration -> (16, 28, 28) in [0, 1]
    if run.resumed:
        for module, key in ((D, "D"), (G, "G"), (opt_D, "opt_D"), (opt_G, "opt_G")):
            module.load_state_dict(run.sections[key])
        grids = {int(k): v for k, v in run.sections.get("grids", {}).items()}
    milestones = grid_iterations(cfg.iterations)

    def snapshot(iteration: int) -> None:
        grids[iteration] = to_unit(generate(G, fixed_noise))
        save_image_grid(run.path(f"samples_iter_{iteration:04d}.png"), grids[iteration], 4, 4,
                        title=f"iteration {iteration}")

    def save() -> None:
        run.save(state, D=D.state_dict(), G=G.state_dict(), opt_D=opt_D.state_dict(), opt_G=opt_G.state_dict(),
                 grids={str(k): v for k, v in grids.items()})

    if state["iteration"] == 0 and 0 not in grids:
        snapshot(0)
    model.train()
    for it in run.loop(state["iteration"], cfg.iterations, save, unit="iteration"):
        losses = train_iteration(model, optimizer, x_train, it, run.stream, cfg)
        run.check_finite(losses["d_loss"] + losses["g_loss"], f"iteration {it + 1}", hint="learning rate")
        state["d_loss"].append(losses["d_loss"])
        state["g_loss"].append(losses["g_loss"])
        state["iteration"] = it + 1
        warning = check_d_wins(state)
        if warning:
            print(f"\nwarning: {warning}", file=sys.stderr)
        run.show(**losses)
        if state["iteration"] in milestones:
            snapshot(state["iteration"])
    if cfg.iterations not in grids:                           # resumed at the end: redraw the last grid
        snapshot(cfg.iterations)

    shown = [i for i in milestones if i in grids]
    save_image_grid(run.path("progress.png"), np.stack([tile(grids[i], 4, 4) for i in shown]),
                    1, len(shown), title="DCGAN samples from one fixed noise batch",
                    col_labels=[f"iteration {i}" for i in shown], cell=2.2, gap=8)
    steps = np.arange(1, len(state["d_loss"]) + 1)
    save_curves(run.path("losses.png"), {"D: -log D(x) - log(1 - D(G(z)))": (steps, state["d_loss"]),
                                         "G: -log D(G(z))": (steps, state["g_loss"])},
                xlabel="iteration", ylabel="loss", title="DCGAN losses")
    write_samples(run.dir, to_unit(generate(G, sample_noise(NUM_SAMPLES, model.noise_dim, run.stream("samples")))))
    save()
    metrics = run.write_metrics(_metrics(cfg, state, D, G, len(x_train), grids, run.wall_seconds))
    print_summary(run.dir, {key: metrics[key] for key in ("iterations", "seconds_per_iteration", "d_loss_last100",
                                                          "g_loss_last100", "wall_seconds")})


def _metrics(cfg, state: dict, D, G, n_train: int, grids: dict, seconds: float) -> dict:
    done = state["iteration"]
    last = slice(-min(done, 100), None) if done else slice(0, 0)
    return {"iterations": done,
            "d_loss": state["d_loss"], "g_loss": state["g_loss"],
            "d_loss_last100": float(np.mean(state["d_loss"][last])) if done else None,
            "g_loss_last100": float(np.mean(state["g_loss"][last])) if done else None,
            "seconds_per_iteration": seconds / done if done else None,
            "warnings": state["warnings"],
            "grids": {str(i): f"samples_iter_{i:04d}.png" for i in sorted(grids)},
            "num_samples": NUM_SAMPLES, "n_train": n_train,
            "batches_per_epoch": n_train // cfg.batch_size,
            "num_parameters": {"D": D.num_parameters(), "G": G.num_parameters()},
            "loss_definitions": {"d_loss": "-log D(x) - log(1 - D(G(z))), batch means",
                                 "g_loss": "-log D(G(z)) (non-saturating)"}}
