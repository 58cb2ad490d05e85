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

import sys

import numpy as np

from nets.data import to_signed
from nets.harness import Run, UsageError
from models.dcgan import (DCGANConfig, build, build_optimizer, check_d_wins, generate, sample_noise,
                          train_iteration)
from cli.common import add_command, load_mnist_splits, print_summary, save_curves, save_image_grid, tile, write_samples

GRID_ITERATIONS = (0, 250, 500, 1000, 2000, 3000)   # snapshots of the fixed noise batch
NUM_SAMPLES = 2000              # images in samples.npz
SUMMARY_METRICS = {"d_loss_last100": "lower", "seconds_per_iteration": "lower"}


def register(subparsers) -> None:
    add_command(subparsers, "dcgan", "DCGAN on MNIST", __doc__, DCGANConfig, run)


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
    model, optimizer, players, fixed_noise, grids = setup(run, build, build_optimizer)
    D, G = model.D, model.G
    state = run.state or {"iteration": 0, "d_loss": [], "g_loss": [], "warnings": [], "d_wins_warned": False}
    milestones = grid_iterations(cfg.iterations)

    if state["iteration"] == 0 and 0 not in grids:
        draw_grid(run, grids, 0, G, fixed_noise)
    model.train()
    for it in run.loop(state["iteration"], cfg.iterations, lambda: save(run, state, players, grids), unit="iteration"):
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
            draw_grid(run, grids, state["iteration"], G, fixed_noise)
    if cfg.iterations not in grids:                           # resumed at the end: redraw the last grid
        draw_grid(run, grids, cfg.iterations, G, fixed_noise)

    save_progress(run, grids, [i for i in milestones if i in grids], "DCGAN samples from one fixed noise batch")
    steps = np.arange(1, len(state["d_loss"]) + 1)
    save_curves(run.path("losses.png"), {"D: -log D(x) - log(1 - D(G(z)))": (steps, state["d_loss"]),
                                         "G: -log D(G(z))": (steps, state["g_loss"])},
                xlabel="iteration", ylabel="loss", title="DCGAN losses")
    write_samples(run.dir, to_unit(generate(G, sample_noise(NUM_SAMPLES, model.noise_dim, run.stream("samples")))))
    save(run, state, players, grids)
    metrics = run.write_metrics(_metrics(cfg, state, D, G, len(x_train), grids, run.wall_seconds))
    print_summary(run.dir, {key: metrics[key] for key in ("iterations", "seconds_per_iteration", "d_loss_last100",
                                                          "g_loss_last100", "wall_seconds")})


# ---------------------------------------------------------------- shared with scripts/cli/wgan_gp.py
def setup(run, build, build_optimizer) -> tuple:
    """(model, optimizer, players: the checkpoint's sections {D, G, opt_D, opt_G}, the grids' fixed noise,
    the grids {iteration: (16, 28, 28) in [0, 1]} so far) of a new or resumed run."""
    try:
        model = build(run.config)                             # model.D and model.G
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = build_optimizer(model, run.config)            # optimizer.D and optimizer.G
    players = {"D": model.D, "G": model.G, "opt_D": optimizer.D, "opt_G": optimizer.G}
    fixed_noise = sample_noise(16, model.noise_dim, run.stream("fixed-noise"))
    return model, optimizer, players, fixed_noise, restore(run, players)


def restore(run, players: dict) -> dict:
    """A resumed run's D, G and their optimizers (players: {section: module}) loaded; its grids returned."""
    if not run.resumed:
        return {}
    for key, module in players.items():
        module.load_state_dict(run.sections[key])
    return {int(k): v for k, v in run.sections.get("grids", {}).items()}


def save(run, state: dict, players: dict, grids: dict) -> None:
    run.save(state, **{key: module.state_dict() for key, module in players.items()},
             grids={str(k): v for k, v in grids.items()})


def draw_grid(run, grids: dict, iteration: int, G, fixed_noise) -> None:
    """grids[iteration] = G's 16 images of the fixed noise, drawn to samples_iter_XXXX.png."""
    grids[iteration] = to_unit(generate(G, fixed_noise))
    save_image_grid(run.path(f"samples_iter_{iteration:04d}.png"), grids[iteration], 4, 4,
                    title=f"iteration {iteration}")


def save_progress(run, grids: dict, shown: list, title: str) -> None:
    save_image_grid(run.path("progress.png"), np.stack([tile(grids[i], 4, 4) for i in shown]), 1, len(shown),
                    title=title, col_labels=[f"iteration {i}" for i in shown], cell=2.2, gap=8)


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
