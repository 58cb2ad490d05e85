"""`train.py conv-vae`: flags and figures for the convolutional VAE / autoencoder of models/conv_vae.py
(which holds the model, its loss and training epoch) on frames rendered from a gymnasium env.

    python scripts/train.py conv-vae                                  # CartPole-v1, VAE, a few minutes
    python scripts/train.py conv-vae --variant ae                     # the autoencoder
    python scripts/train.py conv-vae --env Pendulum-v1
    python scripts/train.py conv-vae --size 64 --hidden-dims 32 64 128 256 512   # twice as wide, 64 px

Frames (models/conv_vae.py load_frames, rl/frames.py): a seeded random policy, cropped and area-averaged
to --size px, cached under --cache-dir; whole episodes are held out. A second model of the other variant
(--compare-epochs) is trained only to draw ae_vs_vae.png: prior samples decode to frames for the VAE only.

Writes into --out: metrics.json (`heldout_mse`: per-pixel MSE of reconstructions at z = mu of the held-out
frames; `mean_frame_mse`: the same for predicting the mean training frame; `prior_nearest_frame_mse` /
`heldout_nearest_frame_mse`: per-pixel MSE from a prior sample / a real held-out frame to its nearest
training frame), samples.npz (`images`: 1,000 prior samples, (N, H, W) gray or (N, 3, H, W) RGB),
checkpoint.npz, reconstructions.png, samples.png, traversal.png, ae_vs_vae.png, loss_curves.png,
heldout_mse.png.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from models.conv_vae import (NEAREST_SAMPLES, ConvVAE, ConvVAEConfig, build, build_optimizer, check_config,
                             evaluate as conv_vae_evaluate, load_data, mean_frame_mse, nearest_frame_mse,
                             resolved_angle_range, squeeze_gray, train_epoch)
from nets.harness import Run, UsageError, config_from, read_checkpoint
from cli.common import add_command, print_summary, save_curves, save_image_grid, write_samples

NUM_SAMPLES = 1000              # prior samples saved in samples.npz
OTHER = {"vae": "ae", "ae": "vae"}
SUMMARY_METRICS = {"heldout_mse": "lower", "heldout_to_mean_frame": "lower"}
HISTORY = ("train_loss", "train_recon", "train_kl", "heldout_mse")


def register(subparsers) -> None:
    add_command(subparsers, "conv-vae", "conv VAE / autoencoder on rendered gymnasium frames", __doc__,
                ConvVAEConfig, run, mnist=False)


def frames_or_usage_error(cfg: ConvVAEConfig, seed: int) -> tuple:
    """(training frames, held-out frames): models/conv_vae.py's load_data, with one-line errors."""
    try:
        return load_data(cfg, seed)
    except (ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from None


def run(args) -> None:
    run = Run("conv-vae", args, ConvVAEConfig, may_change=("epochs", "compare_epochs"))
    cfg = run.config
    try:
        check_config(cfg)
    except ValueError as error:
        raise UsageError(str(error)) from None
    started = time.perf_counter()
    x_train, x_held = frames_or_usage_error(cfg, run.seed)  # (N, C, S, S) float32 in [0, 1], whole episodes held out
    frame_seconds = time.perf_counter() - started            # rendering, or reading the cache
    if len(x_train) == 0:
        raise UsageError("every frame is in the held-out episodes: use more --num-frames or --reset-every")
    baseline = mean_frame_mse(x_train, x_held)

    # the model of --variant ("main"), then for ae_vs_vae.png one of the other variant ("compare")
    models = {"main": build(cfg), "compare": build(dataclasses.replace(cfg, variant=OTHER[cfg.variant]))}
    optimizers = {name: build_optimizer(m, cfg) for name, m in models.items()}
    state = run.state or {"epoch": 0, "phases": {name: {key: [] for key in HISTORY} for name in models}}
    save = run.restore(state, **{f"model_{name}": m for name, m in models.items()},
                       **{f"optimizer_{name}": o for name, o in optimizers.items()})

    for epoch in run.loop(state["epoch"], cfg.epochs + cfg.compare_epochs, save):
        name = "main" if epoch < cfg.epochs else "compare"
        stats = train_epoch(models[name], optimizers[name], x_train, run.stream("train", epoch), cfg)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        phase = state["phases"][name]
        for key in ("loss", "recon", "kl"):
            phase[f"train_{key}"].append(stats[key])
        phase["heldout_mse"].append(conv_vae_evaluate(models[name], x_held, None, cfg)["mse"])
        state["epoch"] = epoch + 1
        run.show(model=models[name].variant, loss=stats["loss"], heldout_mse=phase["heldout_mse"][-1])
    if cfg.compare_epochs == 0:
        del models["compare"]

    # figures and samples: their own streams, independent of how training was split into sessions
    figure_rng = run.stream("figures")
    samples = models["main"].sample(NUM_SAMPLES, figure_rng)
    write_samples(run.dir, squeeze_gray(samples))
    draw_figures(run.dir, cfg, models, state, x_held, samples, baseline, figure_rng)
    main = state["phases"]["main"]
    mse = main["heldout_mse"][-1] if main["heldout_mse"] else None
    metrics = {"variant": cfg.variant, "heldout_mse": mse, "mean_frame_mse": baseline,
               "heldout_to_mean_frame": mse / baseline if mse is not None and baseline > 0 else None,
               "epochs": len(main["train_loss"]), **{key: main[key] for key in HISTORY[:3]},
               "heldout_mse_per_epoch": main["heldout_mse"],
               "loss": "per image: summed " + ("squared error" if cfg.recon == "mse" else "binary cross-entropy")
                       + (f" + {cfg.beta} * KL" if cfg.variant == "vae" else ""),
               "n_train": len(x_train), "n_heldout": len(x_held), "angle_range": resolved_angle_range(cfg),
               "num_parameters": models["main"].num_parameters(), "frame_collection_seconds": frame_seconds,
               # how frame-like are prior samples? distance to the nearest training frame, beside real frames'
               "heldout_nearest_frame_mse": nearest_frame_mse(x_held, x_train),
               "prior_nearest_frame_mse": nearest_frame_mse(samples, x_train)}
    if "compare" in models:
        other = state["phases"]["compare"]
        metrics["compare"] = {
            "variant": models["compare"].variant, "epochs": len(other["train_loss"]),
            "train_loss": other["train_loss"], "heldout_mse_per_epoch": other["heldout_mse"],
            "heldout_mse": other["heldout_mse"][-1] if other["heldout_mse"] else None,
            "prior_nearest_frame_mse": nearest_frame_mse(
                models["compare"].sample(NEAREST_SAMPLES, run.stream("compare-samples")), x_train)}
    metrics = run.write_metrics(metrics)
    print_summary(run.dir, {"heldout_mse": mse, "mean_frame_mse": baseline, "ratio": metrics["heldout_to_mean_frame"],
                            "wall_seconds": round(metrics["wall_seconds"], 1)})


# ==================================================================== figures
def draw_figures(directory, cfg, models, state, x_held, samples, baseline, rng) -> None:
    main = models["main"]
    label = {"vae": "VAE", "ae": "AE"}
    cols = 10
    # (1) held-out originals over their reconstructions (two pairs of rows, evenly spread over the set)
    pick = np.linspace(0, len(x_held) - 1, 2 * cols).astype(int)
    originals = x_held[pick]
    recon = main.reconstruct(originals)
    rows = np.concatenate([originals[:cols], recon[:cols], originals[cols:], recon[cols:]])
    save_image_grid(os.path.join(directory, "reconstructions.png"), rows, 4, cols,
                title=f"{cfg.env}: held-out frames over their {label[main.variant]} reconstructions "
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
    checkpoint = read_checkpoint(run_dir)
    cfg, run_seed = config_from(ConvVAEConfig, checkpoint["meta"]["config"]), checkpoint["meta"]["seed"]
    model = build(cfg)
    model.load_state_dict(checkpoint["model_main"])
    x_train, x_held = frames_or_usage_error(cfg, run_seed)
    mse, baseline = conv_vae_evaluate(model, x_held, None, cfg)["mse"], mean_frame_mse(x_train, x_held)
    return {"model": model_name, "heldout_mse": mse, "mean_frame_mse": baseline, "heldout_to_mean_frame": mse / baseline,
            "n_heldout": int(len(x_held)), "env": cfg.env, "variant": cfg.variant,
            "epochs": min(int(checkpoint["meta"]["state"]["epoch"]), cfg.epochs)}
