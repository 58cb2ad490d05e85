"""`train.py dcgan`: the homework's DCGAN on MNIST (models/dcgan.py), trained for --iterations steps.

    python scripts/train.py dcgan                         # 3,000 iterations, batch 128
    python scripts/train.py dcgan --iterations 1000 --seed 0 --out runs/dcgan

One iteration = (1) one Adam step of D on a batch of real digits and a batch of G's (detached) fakes,
then (2) one Adam step of G through the updated D. Epochs run over the training digits reshuffled
each epoch; the last incomplete batch of an epoch is dropped.

Writes into --out:
  samples_iter_XXXX.png  4 x 4 samples from one FIXED noise batch at iterations 0 (untrained), 250,
                         500, 1000, 2000, 3000 (those <= --iterations) and the last iteration
  progress.png           all of those grids side by side
  losses.png             D's and G's loss per iteration
  samples.npz            `images`: 2,000 samples (N, 28, 28) float32 in [0, 1], G in eval mode
  metrics.json           losses per iteration, seconds per iteration, warnings
  checkpoint.npz         D, G (with BatchNorm's running statistics), both Adam states, the grids and
                         the loss history; --resume DIR continues exactly

Randomness: the initial weights come from --seed; every other draw comes from a generator made from
(seed, what, epoch or iteration), so a resumed run shuffles and draws noise exactly as the
uninterrupted run would have.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from nets.data import to_signed
from models.dcgan import (NOISE_DIM, build_discriminator, build_generator, generate, get_optimizer,
                          sample_noise, train_step)
from cli.common import (generator, UsageError, Stopwatch, add_common_args, load_mnist_splits, load_run_checkpoint,
                        out_dir, positive_int, print_summary, progress, save_curves, save_image_grid, tile,
                        save_on_interrupt, save_run_checkpoint, seed_everything, update_step, write_metrics,
                        write_samples)

GRID_ITERATIONS = (0, 250, 500, 1000, 2000, 3000)   # the homework's six snapshots
NUM_SAMPLES = 2000              # images in samples.npz
CHECKPOINT_EVERY = 250          # iterations between checkpoints (also saved at the end and on Ctrl-C)
D_WINS_WINDOW, D_WINS_LOSS = 100, 0.05   # warn when D's loss averages below this over the window
SHUFFLE, NOISE, FIXED, SAMPLES = 1, 2, 3, 4          # the "what" in a generator's seed


# ==================================================================== flags
def register(subparsers) -> None:
    parser = subparsers.add_parser("dcgan", help="DCGAN on MNIST (the homework's GAN problem)",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=positive_int, default=3000,
                        help="training iterations (one D step + one G step each)")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="real images per D step (and fakes per step)")
    add_common_args(parser)
    parser.set_defaults(run=run)


def build_models(config: dict) -> tuple:
    """(D, G) with the homework's architecture and PyTorch's default initialisation."""
    return build_discriminator(), build_generator(NOISE_DIM)


def to_unit(images: np.ndarray) -> np.ndarray:
    """G's [-1, 1] images (N, 1, 28, 28) -> (N, 28, 28) in [0, 1]."""
    return np.clip((images[:, 0] + 1) / 2, 0, 1).astype(np.float32)


def grid_iterations(iterations: int) -> list:
    return sorted({i for i in GRID_ITERATIONS if i <= iterations} | {iterations})


# ==================================================================== training
def run(args) -> None:
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (it seeds NumPy generators), got {args.seed}")
    directory = out_dir(args, "dcgan")
    config = {k: v for k, v in vars(args).items() if k not in ("run", "model")}
    checkpoint = None
    if args.resume:
        checkpoint = load_run_checkpoint(directory)
        if checkpoint["meta"].get("model") != "dcgan":
            raise UsageError(f"{directory}/checkpoint.npz was not written by `train.py dcgan`")
        saved = checkpoint["meta"]["config"]
        if args.batch_size != saved["batch_size"]:
            print(f"note: --resume keeps the run's batch size {saved['batch_size']} "
                  f"(ignoring --batch-size {args.batch_size})", file=sys.stderr)
        config = dict(saved, iterations=args.iterations, resume=args.resume)
        done = checkpoint["meta"]["state"]["iteration"]
        if args.iterations < done:
            raise UsageError(f"--iterations {args.iterations} is less than the {done} iterations "
                             f"already in {directory}; ask for at least {done}")
    seed, batch_size, total = config["seed"], config["batch_size"], config["iterations"]

    seed_everything(seed)                                     # the initial weights
    x_train, _, _, _ = load_mnist_splits(config["data_dir"])
    if batch_size > len(x_train):
        raise UsageError(f"--batch-size {batch_size} is larger than the {len(x_train)} training images")
    x_train = to_signed(x_train)                              # [0, 1] -> [-1, 1], tanh's range
    batches_per_epoch = len(x_train) // batch_size            # the last incomplete batch is dropped

    D, G = build_models(config)
    opt_D, opt_G = get_optimizer(D), get_optimizer(G)
    fixed_noise = sample_noise(16, NOISE_DIM, generator(seed, FIXED))
    state = {"iteration": 0, "d_loss": [], "g_loss": [], "train_seconds": 0.0, "seconds": 0.0,
             "warnings": [], "d_wins_warned": False}
    grids = {}                                                # iteration -> (16, 28, 28) in [0, 1]
    if checkpoint is not None:
        D.load_state_dict(checkpoint["D"])
        G.load_state_dict(checkpoint["G"])
        opt_D.load_state_dict(checkpoint["opt_D"])
        opt_G.load_state_dict(checkpoint["opt_G"])
        state.update(checkpoint["meta"]["state"])
        grids = {int(k): v for k, v in checkpoint.get("grids", {}).items()}
    clock = Stopwatch(state["seconds"])
    milestones = grid_iterations(total)

    def snapshot(iteration: int) -> None:
        grids[iteration] = to_unit(generate(G, fixed_noise))
        save_image_grid(os.path.join(directory, f"samples_iter_{iteration:04d}.png"), grids[iteration],
                        4, 4, title=f"iteration {iteration}")

    def save() -> None:
        state["seconds"] = clock.seconds
        save_run_checkpoint(directory, meta={"model": "dcgan", "config": config, "state": state},
                            D=D.state_dict(), G=G.state_dict(), opt_D=opt_D.state_dict(),
                            opt_G=opt_G.state_dict(), grids={str(k): v for k, v in grids.items()})
        write_metrics(directory, metrics(config, state, D, G, len(x_train), grids))

    if state["iteration"] == 0 and 0 not in grids:
        snapshot(0)
    bar = progress(total=total, description="dcgan")
    bar.update(state["iteration"])
    order, order_epoch = None, -1
    D.train()
    G.train()
    with save_on_interrupt(save):
        while state["iteration"] < total:
            with update_step():
                it = state["iteration"]
                epoch, batch = divmod(it, batches_per_epoch)
                if epoch != order_epoch:                          # a fresh shuffle every epoch
                    order, order_epoch = generator(seed, SHUFFLE, epoch).permutation(len(x_train)), epoch
                start = time.perf_counter()
                real = x_train[order[batch * batch_size:(batch + 1) * batch_size]]
                noise = sample_noise(batch_size, NOISE_DIM, generator(seed, NOISE, it))
                d_loss, g_loss = train_step(D, G, opt_D, opt_G, real, noise)
                state["train_seconds"] += time.perf_counter() - start
                state["d_loss"].append(d_loss)
                state["g_loss"].append(g_loss)
                state["iteration"] = it + 1
                check_d_wins(state, bar)

                bar.update(1)
                if state["iteration"] % 10 == 0:
                    bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}")
                if state["iteration"] in milestones:
                    snapshot(state["iteration"])
                if state["iteration"] % CHECKPOINT_EVERY == 0:
                    save()
    bar.close()
    if total not in grids:                                    # resumed at the end: redraw the last grid
        snapshot(total)

    # pictures and samples
    shown = [i for i in milestones if i in grids]
    save_image_grid(os.path.join(directory, "progress.png"), np.stack([tile(grids[i], 4, 4) for i in shown]),
                    1, len(shown), title="DCGAN samples from one fixed noise batch",
                    col_labels=[f"iteration {i}" for i in shown], cell=2.2, gap=8)
    steps = np.arange(1, len(state["d_loss"]) + 1)
    save_curves(os.path.join(directory, "losses.png"),
                {"D: -log D(x) - log(1 - D(G(z)))": (steps, state["d_loss"]),
                 "G: -log D(G(z))": (steps, state["g_loss"])},
                xlabel="iteration", ylabel="loss", title="DCGAN losses")
    samples = to_unit(generate(G, sample_noise(NUM_SAMPLES, NOISE_DIM, generator(seed, SAMPLES))))
    write_samples(directory, samples)
    save()
    for warning in state["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    summary = metrics(config, state, D, G, len(x_train), grids)
    print_summary(directory, {"iterations": state["iteration"],
                              "seconds_per_iteration": summary["seconds_per_iteration"],
                              "d_loss_last100": summary["d_loss_last100"],
                              "g_loss_last100": summary["g_loss_last100"],
                              "wall_seconds": round(clock.seconds, 1), "warnings": len(state["warnings"])})


def check_d_wins(state: dict, bar) -> None:
    """Warn (once) when D's loss has stayed near 0 over the last D_WINS_WINDOW iterations."""
    if state["d_wins_warned"] or len(state["d_loss"]) < D_WINS_WINDOW:
        return
    mean = float(np.mean(state["d_loss"][-D_WINS_WINDOW:]))
    if mean >= D_WINS_LOSS:
        return
    it = state["iteration"]
    message = (f"iterations {it - D_WINS_WINDOW + 1}-{it}: D's loss averaged {mean:.4f} (near 0). "
               f"D is winning: it tells real from fake almost perfectly (D(G(z)) ~ 0). G still gets a "
               f"gradient from -log D(G(z)), but only towards whatever D's overconfident decision "
               f"surface currently rejects least, not towards the data: the samples usually stop "
               f"improving or collapse onto a few outputs. Look at the latest samples_iter_*.png. "
               f"Remedies: another --seed, a smaller learning rate or capacity for D, one-sided "
               f"label smoothing (real target 0.9), or noise added to D's inputs.")
    state["warnings"].append(message)
    state["d_wins_warned"] = True
    bar.write(f"warning: {message}", file=sys.stderr)


def metrics(config: dict, state: dict, D, G, n_train: int, grids: dict) -> dict:
    done = state["iteration"]
    last = slice(-min(done, 100), None) if done else slice(0, 0)
    return {"model": "dcgan", "config": config,
            "iterations": done,
            "d_loss": state["d_loss"], "g_loss": state["g_loss"],
            "d_loss_last100": float(np.mean(state["d_loss"][last])) if done else None,
            "g_loss_last100": float(np.mean(state["g_loss"][last])) if done else None,
            "seconds_per_iteration": state["train_seconds"] / done if done else None,
            "wall_seconds": state["seconds"],
            "warnings": state["warnings"],
            "grids": {str(i): f"samples_iter_{i:04d}.png" for i in sorted(grids)},
            "num_samples": NUM_SAMPLES, "n_train": n_train,
            "batches_per_epoch": n_train // config["batch_size"],
            "num_parameters": {"D": D.num_parameters(), "G": G.num_parameters()},
            "loss_definitions": {"d_loss": "-log D(x) - log(1 - D(G(z))), batch means",
                                 "g_loss": "-log D(G(z)) (non-saturating)"}}
