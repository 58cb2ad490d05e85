"""`train.py conv-vae`: a convolutional VAE (or autoencoder) on frames rendered from a gymnasium env.

    python scripts/train.py conv-vae                                  # CartPole-v1, VAE, a few minutes
    python scripts/train.py conv-vae --variant ae                     # the autoencoder of activity 1
    python scripts/train.py conv-vae --env Pendulum-v1                # activity 5
    python scripts/train.py conv-vae --size 64 --hidden-dims 32,64,128,256,512   # the homework's size

The frames (rl/frames.py): a seeded random policy, the env reset every --reset-every frames, only
frames with |angle| <= --angle-range kept ('auto': 0.3 rad for CartPole, no filter for other envs),
cropped around the action and area-averaged to --size px, gray unless --rgb; cached as .npz under
--cache-dir. Whole episodes are held out (--heldout-fraction of them), because neighbouring frames of
one episode are nearly identical.

After the model of --variant, a second model of the other variant is trained for --compare-epochs
(0: skip), only to draw ae_vs_vae.png: decoded prior samples z ~ N(0, I) look like frames for the VAE
and not for the AE, whose codes were never pulled towards N(0, I).

Writes into --out: metrics.json (`heldout_mse`: per-pixel MSE of deterministic reconstructions, z = mu,
of the held-out frames in [0, 1]; `mean_frame_mse`: the same error for predicting every held-out frame
by the mean training frame; `prior_nearest_frame_mse`: per-pixel MSE from a prior sample to its nearest
training frame, for both variants, next to `heldout_nearest_frame_mse`, the same for real held-out
frames), samples.npz (`images`: 1,000 frames decoded from the prior; for gray
frames (N, H, W), for RGB (N, 3, H, W)), checkpoint.npz, reconstructions.png (held-out originals over
their reconstructions), samples.png, traversal.png, ae_vs_vae.png, loss_curves.png, heldout_mse.png.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import nets
from models.conv_vae import RECON_LOSSES, VARIANTS, ConvVAE
from cli.common import (UsageError, Stopwatch, add_common_args, load_run_checkpoint, out_dir,
                        positive_float, positive_int, print_summary, progress, rng_state, save_curves,
                        save_image_grid, save_on_interrupt, save_run_checkpoint, seed_everything, update_step,
                        set_rng_state, write_metrics, write_samples)

NUM_SAMPLES = 1000              # prior samples saved in samples.npz
NEAREST_SAMPLES = 200           # samples compared with every training frame for prior_nearest_frame_mse
OTHER = {"vae": "ae", "ae": "vae"}


# ==================================================================== flags
def _hidden_dims(text: str) -> tuple:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel counts like 32,64,128, got {text!r}")
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive channel counts, got {text!r}")
    return dims


def _reset_every(text: str):
    if text.lower() in ("none", "never", "0"):
        return None
    return positive_int(text)


def _angle_range(text: str):
    if text.lower() in ("auto", "none"):
        return text.lower()
    return positive_float(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser("conv-vae", help="conv VAE / autoencoder on rendered gymnasium frames",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    frames = parser.add_argument_group("frames")
    frames.add_argument("--env", default="CartPole-v1", help="gymnasium env with render_mode='rgb_array'")
    frames.add_argument("--num-frames", type=positive_int, default=3000,
                        help="frames kept (after the angle filter), training + held out")
    frames.add_argument("--size", type=int, choices=(32, 64), default=32, help="frame size in pixels")
    frames.add_argument("--rgb", action="store_true", help="3 colour channels instead of gray")
    frames.add_argument("--reset-every", type=_reset_every, default=20,
                        help="reset the env after this many frames ('none': only at its time limit)")
    frames.add_argument("--angle-range", type=_angle_range, default="auto",
                        help="keep frames with |angle| <= this (rad); 'none': keep all; 'auto': 0.3 for "
                             "CartPole-v1, none for other envs")
    frames.add_argument("--crop", choices=("auto", "full"), default="auto",
                        help="auto: the env's window around the action (rl/frames.py CROP_OF); full: the "
                             "whole screen")
    frames.add_argument("--cache-dir", default=None, help="frame cache (default ~/.cache/numpy-dl-lab/frames)")
    frames.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="fraction of episodes held out for heldout_mse and the figures")
    model = parser.add_argument_group("model")
    model.add_argument("--variant", choices=VARIANTS, default="vae",
                       help="vae (mu/logvar heads, KL) or ae (z_simple, reconstruction only)")
    model.add_argument("--hidden-dims", type=_hidden_dims, default=(16, 32, 64, 128, 256),
                       help="channels of the encoder blocks, each halving the image (the homework's: "
                            "32,64,128,256,512; the default is half as wide, 4x faster)")
    model.add_argument("--latent-dim", type=positive_int, default=8)
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=10, help="passes over the training frames")
    training.add_argument("--batch-size", type=positive_int, default=64)
    training.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate")
    training.add_argument("--beta", type=float, default=0.05,
                          help="weight of the KL term against the per-image summed reconstruction error")
    training.add_argument("--recon", choices=RECON_LOSSES, default="mse",
                          help="reconstruction term: summed squared error or summed binary cross-entropy")
    training.add_argument("--compare-epochs", type=int, default=4,
                          help="epochs for the other variant drawn in ae_vs_vae.png (0: skip it)")
    add_common_args(parser, mnist=False)
    parser.set_defaults(run=run)


def check_config(config: dict) -> None:
    if not 0 < config["heldout_fraction"] < 1:
        raise UsageError(f"--heldout-fraction must be between 0 and 1, got {config['heldout_fraction']}")
    if config["beta"] < 0:
        raise UsageError(f"--beta must be >= 0, got {config['beta']}")
    if config["compare_epochs"] < 0:
        raise UsageError(f"--compare-epochs must be >= 0, got {config['compare_epochs']}")
    if config["size"] % 2 ** len(config["hidden_dims"]):
        raise UsageError(f"--size {config['size']} must be a multiple of 2^{len(config['hidden_dims'])} "
                         f"(one halving per --hidden-dims entry)")


# ==================================================================== data
def resolved_angle_range(config: dict):
    if config["angle_range"] == "auto":
        return 0.3 if config["env"] == "CartPole-v1" else None
    return None if config["angle_range"] == "none" else float(config["angle_range"])


def load_frames(config: dict) -> dict:
    """The frames of this config (rendered once, then read from the cache)."""
    from rl.frames import collect_frames
    try:
        return collect_frames(config["env"], num_frames=config["num_frames"], size=config["size"],
                              gray=not config["rgb"], reset_every=config["reset_every"],
                              angle_range=resolved_angle_range(config), seed=config["seed"],
                              crop="auto" if config["crop"] == "auto" else None, cache_dir=config["cache_dir"])
    except (ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from None


def split_by_episode(episodes: np.ndarray, fraction: float, seed: int):
    """(train index, held-out index): whole episodes, chosen by their own generator (seed-determined)."""
    unique = np.unique(episodes)
    held = np.random.default_rng(seed + 5).permutation(unique)[:max(1, math.ceil(fraction * len(unique)))]
    is_held = np.isin(episodes, held)
    if is_held.all():
        raise UsageError("every frame is in the held-out episodes: use more --num-frames or --reset-every")
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def build_model(config: dict, variant: str) -> ConvVAE:
    return ConvVAE(in_channels=3 if config["rgb"] else 1, image_size=config["size"],
                   hidden_dims=config["hidden_dims"], latent_dim=config["latent_dim"], variant=variant)


def heldout_mse(model: ConvVAE, frames: np.ndarray) -> float:
    """Per-pixel MSE of deterministic reconstructions (z = mu, BatchNorm's running statistics)."""
    return float(np.mean((model.reconstruct(frames).astype(np.float64) - frames) ** 2))


def mean_frame_mse(train: np.ndarray, heldout: np.ndarray) -> float:
    """Per-pixel MSE of predicting every held-out frame by the mean training frame (the baseline)."""
    return float(np.mean((heldout.astype(np.float64) - train.mean(axis=0, dtype=np.float64)) ** 2))


# ==================================================================== training
def _new_phase() -> dict:
    return {"epoch": 0, "batch": 0, "sum_loss": 0.0, "sum_recon": 0.0, "sum_kl": 0.0, "count": 0,
            "train_loss": [], "train_recon": [], "train_kl": [], "heldout_mse": []}


def run(args) -> None:
    directory = out_dir(args, "conv-vae")
    config = {k: v for k, v in vars(args).items() if k not in ("run", "model")}
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint_or_fail(directory)
        saved = checkpoint["meta"]["config"]
        config = dict(saved, epochs=args.epochs, compare_epochs=args.compare_epochs, resume=args.resume)
    config["hidden_dims"] = list(config["hidden_dims"])
    check_config(config)
    seed = config["seed"]
    # seeded AFTER reading the checkpoint: both models get the initial weights of an uninterrupted run
    # (loaded weights then replace them; a "compare" model not trained yet keeps them)
    data_rng = seed_everything(seed)                 # shuffling and the reparameterisation noise

    started = time.perf_counter()
    data = load_frames(config)
    frame_seconds = time.perf_counter() - started   # rendering, or reading the cache
    frames = data["frames"]                          # (N, C, S, S) float32 in [0, 1]
    train_index, held_index = split_by_episode(data["episodes"], config["heldout_fraction"], seed)
    x_train, x_held = frames[train_index], frames[held_index]
    baseline = mean_frame_mse(x_train, x_held)

    # the model of --variant ("main") and, for ae_vs_vae.png, one of the other variant ("compare")
    phases = [("main", config["variant"], "epochs")]
    if config["compare_epochs"] > 0:
        phases.append(("compare", OTHER[config["variant"]], "compare_epochs"))
    models = {name: build_model(config, variant) for name, variant, _ in phases}
    optimizers = {name: nets.Adam(m.parameters(), lr=config["lr"]) for name, m in models.items()}
    state = {"phases": {name: _new_phase() for name, _, _ in phases}, "seconds": 0.0}
    orders = {}                                      # each phase's permutation of the current epoch
    if checkpoint is not None:
        for name in models:
            if f"model_{name}" in checkpoint:
                models[name].load_state_dict(checkpoint[f"model_{name}"])
                optimizers[name].load_state_dict(checkpoint[f"optimizer_{name}"])
            if name in checkpoint["meta"]["state"]["phases"]:
                state["phases"][name] = checkpoint["meta"]["state"]["phases"][name]
            if f"order_{name}" in checkpoint.get("progress", {}):
                orders[name] = checkpoint["progress"][f"order_{name}"]
        state["seconds"] = checkpoint["meta"]["state"]["seconds"]
        set_rng_state(data_rng, checkpoint["meta"]["data_rng"])
    clock = Stopwatch(state["seconds"])

    def save() -> None:
        state["seconds"] = clock.seconds
        sections = {}
        for name in models:
            sections[f"model_{name}"] = models[name].state_dict()
            sections[f"optimizer_{name}"] = optimizers[name].state_dict()
        if orders:
            sections["progress"] = {f"order_{name}": order for name, order in orders.items()}
        save_run_checkpoint(directory, meta={"config": config, "state": state,
                                             "data_rng": rng_state(data_rng)}, **sections)
        write_metrics(directory, metrics(config, state, models, baseline, len(x_train), len(x_held),
                                         resolved_angle_range(config)))

    batch_size = config["batch_size"]
    batches_per_epoch = math.ceil(len(x_train) / batch_size)
    total = sum(config[budget] for _, _, budget in phases) * batches_per_epoch
    bar = progress(total=total, description="conv-vae")
    bar.update(min(total, sum(state["phases"][n]["epoch"] * batches_per_epoch + state["phases"][n]["batch"]
                              for n, _, _ in phases)))
    with save_on_interrupt(save):
        for name, variant, budget in phases:
            model, optimizer, st = models[name], optimizers[name], state["phases"][name]
            model.train()
            while st["epoch"] < config[budget]:
                with update_step():
                    if name not in orders:
                        orders[name] = data_rng.permutation(len(x_train))
                while st["batch"] < batches_per_epoch:
                    with update_step():
                        index = orders[name][st["batch"] * batch_size:(st["batch"] + 1) * batch_size]
                        # negative ELBO (vae) or reconstruction error (ae), per image: see ConvVAE.loss
                        loss, parts = model.loss(x_train[index], rng=data_rng, beta=config["beta"],
                                                 recon=config["recon"])
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()

                        st["batch"] += 1
                        st["sum_loss"] += float(loss) * len(index)
                        st["sum_recon"] += parts["recon"] * len(index)
                        st["sum_kl"] += parts["kl"] * len(index)
                        st["count"] += len(index)
                        bar.update(1)
                        bar.set_postfix(model=variant, epoch=st["epoch"] + 1,
                                        loss=f"{st['sum_loss'] / st['count']:.2f}")

                with update_step():
                    st["train_loss"].append(st["sum_loss"] / st["count"])
                    st["train_recon"].append(st["sum_recon"] / st["count"])
                    st["train_kl"].append(st["sum_kl"] / st["count"])
                    st["heldout_mse"].append(heldout_mse(model, x_held))       # eval mode, then back to train
                    bar.write(f"{variant} epoch {st['epoch'] + 1}: loss {st['train_loss'][-1]:.3f} (recon "
                              f"{st['train_recon'][-1]:.3f}, KL {st['train_kl'][-1]:.3f}), held-out MSE "
                              f"{st['heldout_mse'][-1]:.5f} (mean frame {baseline:.5f})")
                    st.update(epoch=st["epoch"] + 1, batch=0, sum_loss=0.0, sum_recon=0.0, sum_kl=0.0, count=0)
                    orders.pop(name)
                    save()
    bar.close()

    # figures and samples: their own generator, so they do not depend on how training was split into runs
    figure_rng = np.random.default_rng(seed + 3)
    main = models["main"]
    samples = main.sample(NUM_SAMPLES, figure_rng)
    write_samples(directory, squeeze_gray(samples))
    draw_figures(directory, config, models, state, x_held, samples, baseline, figure_rng)
    # how frame-like are prior samples? distance to the nearest training frame, next to the same for real
    # held-out frames (the AE-vs-VAE question, in numbers)
    final = metrics(config, state, models, baseline, len(x_train), len(x_held), resolved_angle_range(config))
    final["heldout_nearest_frame_mse"] = nearest_frame_mse(x_held, x_train)
    final["prior_nearest_frame_mse"] = nearest_frame_mse(samples, x_train)
    if "compare" in models:
        final["compare"]["prior_nearest_frame_mse"] = nearest_frame_mse(
            models["compare"].sample(NEAREST_SAMPLES, np.random.default_rng(seed + 4)), x_train)
    final.update(wall_seconds=clock.seconds, frame_collection_seconds=frame_seconds)
    write_metrics(directory, final)
    print_summary(directory, {"heldout_mse": final["heldout_mse"], "mean_frame_mse": baseline,
                              "ratio": final["heldout_to_mean_frame"], "wall_seconds": round(clock.seconds, 1)})


def nearest_frame_mse(images: np.ndarray, frames: np.ndarray) -> float:
    """Mean over the first NEAREST_SAMPLES images of the per-pixel MSE to the nearest of `frames`:
    ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2 for all pairs at once (one matrix product)."""
    a = images[:NEAREST_SAMPLES].reshape(min(len(images), NEAREST_SAMPLES), -1).astype(np.float64)
    b = frames.reshape(len(frames), -1).astype(np.float64)
    squared = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return float(np.maximum(squared.min(axis=1), 0).mean() / a.shape[1])


def squeeze_gray(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) -> (N, H, W); RGB (N, 3, H, W) stays."""
    return images[:, 0] if images.shape[1] == 1 else images


def load_checkpoint_or_fail(directory: str) -> dict:
    checkpoint = load_run_checkpoint(directory)
    meta = checkpoint["meta"]
    if "hidden_dims" not in meta.get("config", {}) or "phases" not in meta.get("state", {}):
        raise UsageError(f"{directory}/checkpoint.npz was not written by `train.py conv-vae`")
    return checkpoint


def metrics(config: dict, state: dict, models: dict, baseline: float, n_train: int, n_held: int,
            angle_range) -> dict:
    main = state["phases"]["main"]
    mse = main["heldout_mse"][-1] if main["heldout_mse"] else None
    out = {"model": "conv-vae", "config": config, "variant": config["variant"],
           "heldout_mse": mse, "mean_frame_mse": baseline,
           "heldout_to_mean_frame": mse / baseline if mse is not None and baseline > 0 else None,
           "epochs": main["epoch"], "train_loss": main["train_loss"], "train_recon": main["train_recon"],
           "train_kl": main["train_kl"], "heldout_mse_per_epoch": main["heldout_mse"],
           "loss": "per image: summed "
                   + ("squared error" if config["recon"] == "mse" else "binary cross-entropy")
                   + (f" + {config['beta']} * KL" if config["variant"] == "vae" else ""),
           "wall_seconds": state["seconds"], "n_train": n_train, "n_heldout": n_held,
           "num_parameters": models["main"].num_parameters(), "angle_range": angle_range}
    if "compare" in models:
        other = state["phases"]["compare"]
        out["compare"] = {"variant": models["compare"].variant, "epochs": other["epoch"],
                          "train_loss": other["train_loss"], "heldout_mse_per_epoch": other["heldout_mse"],
                          "heldout_mse": other["heldout_mse"][-1] if other["heldout_mse"] else None}
    return out


# ==================================================================== figures
def draw_figures(directory, config, models, state, x_held, samples, baseline, rng) -> None:
    main = models["main"]
    label = {"vae": "VAE", "ae": "AE"}
    cols = 10
    # (1) held-out originals over their reconstructions (two pairs of rows, evenly spread over the set)
    pick = np.linspace(0, len(x_held) - 1, 2 * cols).astype(int)
    originals = x_held[pick]
    recon = main.reconstruct(originals)
    rows = np.concatenate([originals[:cols], recon[:cols], originals[cols:], recon[cols:]])
    save_image_grid(os.path.join(directory, "reconstructions.png"), rows, 4, cols,
                title=f"{config['env']}: held-out frames over their {label[main.variant]} reconstructions "
                      f"(z = mu)", row_labels=["original", "reconstruction", "original", "reconstruction"])
    # (2) prior samples: only the decoder runs
    save_image_grid(os.path.join(directory, "samples.png"), samples[:64], 8, 8,
                title=f"{label[main.variant]}: decoder(z), z ~ N(0, I)")
    # (3) latent traversal around a held-out frame's code
    save_traversal(os.path.join(directory, "traversal.png"), main, x_held)
    # (4) AE vs VAE: real frames, then each model's decoded prior samples
    real = x_held[rng.choice(len(x_held), cols, replace=len(x_held) < cols)]
    grid, row_labels = [real], ["real frames"]
    for name in ("main", "compare"):
        if name in models:
            grid.append(samples[:cols] if name == "main" else models[name].sample(cols, rng))
            row_labels.append(f"{label[models[name].variant]}: decoder(z)")
    save_image_grid(os.path.join(directory, "ae_vs_vae.png"), np.concatenate(grid), len(grid), cols,
                title="decoder(z), z ~ N(0, I): the KL term pulled the VAE's codes to N(0, I); "
                      "nothing pulled the AE's",
                row_labels=row_labels)
    # (5) curves
    curves, held = {}, {}
    for name, model in models.items():
        st = state["phases"][name]
        if st["train_loss"]:
            curves[f"{label[model.variant]} training loss"] = st["train_loss"]
            held[f"{label[model.variant]} reconstruction"] = st["heldout_mse"]
    if curves:
        save_curves(os.path.join(directory, "loss_curves.png"), curves, xlabel="epoch",
                    ylabel="loss per image (recon + beta KL)", title="conv-vae: training loss", logy=True)
        longest = max(len(v) for v in held.values())
        held["mean training frame"] = [baseline] * longest
        save_curves(os.path.join(directory, "heldout_mse.png"), held, xlabel="epoch",
                    ylabel="per-pixel MSE, held-out frames", title="conv-vae: held-out reconstruction error",
                    logy=True)


def save_traversal(path: str, model: ConvVAE, x_held: np.ndarray, rows: int = 6, cols: int = 9) -> None:
    """Decode the code of one held-out frame with one coordinate z_j swept across [-3, 3] standard deviations
    (of the prior for the VAE; of the codes themselves for the AE): one row per coordinate, the
    coordinates that carry the most information first (VAE: largest mean KL; AE: largest variance)."""
    mu, logvar = model.encode_mean(x_held)
    if logvar is not None:
        score = np.mean(0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar), axis=0)       # mean KL per coordinate
        centre, scale = np.zeros(model.latent_dim), np.ones(model.latent_dim)
        what = "KL"
    else:
        score = mu.var(axis=0)
        centre, scale = mu.mean(axis=0), mu.std(axis=0) + 1e-8
        what = "var"
    dims = np.argsort(-score)[:min(rows, model.latent_dim)]
    steps = np.linspace(-3, 3, cols)
    base = mu[len(mu) // 2]
    codes = np.repeat(base[None], len(dims) * cols, axis=0)
    for r, j in enumerate(dims):
        codes[r * cols:(r + 1) * cols, j] = centre[j] + steps * scale[j]
    save_image_grid(path, model.decode_numpy(codes), len(dims), cols,
                title="latent traversal: one coordinate swept (in prior std), the others at a held-out "
                      "frame's code",
                row_labels=[f"z[{j}] ({what} {score[j]:.2f})" for j in dims],
                col_labels=[f"{s:+.1f}" for s in steps])


# ==================================================================== evaluation
def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """heldout_mse and mean_frame_mse of the trained model on its own held-out episodes (the frames are
    re-read from the cache, or re-rendered with the run's options). data_dir and seed are not used: the
    held-out split is fixed by the run's --seed."""
    checkpoint = load_checkpoint_or_fail(run_dir)
    config = checkpoint["meta"]["config"]
    model = build_model(config, config["variant"])
    model.load_state_dict(checkpoint["model_main"])
    data = load_frames(config)
    train_index, held_index = split_by_episode(data["episodes"], config["heldout_fraction"], config["seed"])
    x_train, x_held = data["frames"][train_index], data["frames"][held_index]
    mse, baseline = heldout_mse(model, x_held), mean_frame_mse(x_train, x_held)
    return {"heldout_mse": mse, "mean_frame_mse": baseline, "heldout_to_mean_frame": mse / baseline,
            "n_heldout": int(len(x_held)), "env": config["env"], "variant": config["variant"],
            "epochs": int(checkpoint["meta"]["state"]["phases"]["main"]["epoch"])}
