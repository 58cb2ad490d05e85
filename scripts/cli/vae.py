"""`train.py vae` and `train.py cvae`: flags, outputs and figures; the models and their training steps are
models/vae.py and models/cvae.py. `evaluate(...)` serves evaluate.py.

    python scripts/train.py cvae                       # the main job: writes the 3 x 10 grid (cvae_grid.png)
    python scripts/train.py vae --epochs 100 --hidden 400 --latent 20 --batch-size 128 --lr 1e-3
    python scripts/evaluate.py runs/cvae-... --data-dir /path/to/mnist   # one JSON line

Numbers: negative ELBOs in nats per image. Validation and the headline test numbers score the grey levels
t with BCE(l, t) = softplus(l) - l t (PyTorch's VAE example's protocol); *_binarized scores ONE fixed
Bernoulli draw of the test images (nets.data.fixed_binarization): true bounds, about 4 nats lower.

Outputs in --out DIR: metrics.json, samples.npz, checkpoint.npz, loss.png, reconstructions.png,
samples.png, interpolation.png and, for cvae, cvae_grid.png. `--resume DIR --epochs MORE` extends a run.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import models.cvae as cvae
import models.vae as vae
from autodiff import no_grad
from nets.data import fixed_binarization, EVAL_BINARIZATION_SEED, flatten
from nets.harness import Run, add_config_flags, add_run_flags, config_from, read_checkpoint
from cli.common import load_mnist_splits, load_split, print_summary, save_curves, save_image_grid, write_samples

FAMILY = {"vae": (vae, vae.VAEConfig, "variational autoencoder"),
          "cvae": (cvae, cvae.CVAEConfig, "conditional VAE (label-conditioned)")}
SUMMARY_METRICS = {"final_val_neg_elbo_nats": "lower", "final_val_iwae_nats": "lower"}
EVAL_K = 200                    # importance samples per test image in evaluate.py (ELBO and IWAE bound)
VAL_K = 10                      # samples per validation image for the per-epoch validation ELBO


def register(subparsers) -> None:
    for name, (_, config_cls, what) in FAMILY.items():
        parser = subparsers.add_parser(name, help=f"MNIST {what}", description=f"Train the MNIST {what}.\n\n" + __doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_flags(parser, mnist=True)
        add_config_flags(parser, config_cls)
        parser.set_defaults(run=run)


def _data(name: str, images: np.ndarray, labels: np.ndarray):
    """The family's `data`: the images, or for the CVAE the pair (images, labels)."""
    return (images, labels) if name == "cvae" else images


def run(args) -> None:
    name = args.command
    family, config_cls, _ = FAMILY[name]
    run = Run(name, args, config_cls, may_change=("epochs",))
    cfg = run.config
    x_train, y_train, x_val, y_val = load_mnist_splits(getattr(args, "data_dir", None))
    if cfg.limit:
        x_train, y_train = x_train[:cfg.limit], y_train[:cfg.limit]
    x_train, x_val = flatten(x_train), flatten(x_val)          # (N, 784) grey levels in [0, 1]

    model = family.build(cfg)                                  # initial weights from the run's "init" stream
    optimizer = family.build_optimizer(model, cfg)
    state = run.state or {"epoch": 0, "history": {"train_loss": [], "train_recon": [], "train_kl": [],
                                                   "val_loss": []}}
    save = run.restore(state, model=model, optimizer=optimizer)
    history = state["history"]

    for epoch in run.loop(state["epoch"], cfg.epochs, save):
        stats = family.train_epoch(model, optimizer, _data(name, x_train, y_train), run.stream("train", epoch), cfg)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        # validation -ELBO on the grey levels, the same noise every epoch
        val = family.evaluate(model, _data(name, x_val, y_val), run.stream("validation"), cfg, k=VAL_K)["neg_elbo_nats"]
        for key in ("loss", "recon", "kl"):
            history[f"train_{key}"].append(stats[key])
        history["val_loss"].append(val)
        state["epoch"] = epoch + 1
        run.show(loss=stats["loss"], val=val)

    final = family.evaluate(model, _data(name, x_val, y_val), run.stream("final-bounds"), cfg)
    n = cfg.num_samples
    output_rng = run.stream("samples")
    labels = np.arange(n) % 10 if name == "cvae" else None    # balanced classes 0..9, 0..9, ...
    images = (model.sample(n, labels, rng=output_rng) if name == "cvae" else model.sample(n, rng=output_rng))
    images = images.reshape(n, 28, 28)
    write_samples(run.dir, images, labels)
    _figures(run.dir, name, model, history, images, x_val, y_val, output_rng)
    metrics = run.write_metrics({
        "epochs_completed": state["epoch"], "num_train": len(x_train), "num_val": len(x_val),
        "num_parameters": model.num_parameters(), **history,
        "units": "negative ELBO in nats per image (lower is better)",
        "binarization": "train: dynamic (a fresh Bernoulli draw of every image, every epoch); "
                        "validation: the grey-level images (cross-entropy against the grey levels)",
        "final_val_neg_elbo_nats": final["neg_elbo_nats"], "final_val_iwae_nats": final["neg_iwae_nats"],
        "iwae_k": cfg.iwae_k, "samples": n})
    print_summary(run.dir, {"model": name, "epochs": state["epoch"],
                            "val_neg_elbo_nats": metrics["final_val_neg_elbo_nats"],
                            "val_iwae_nats": metrics["final_val_iwae_nats"],
                            "wall_seconds": round(metrics["wall_seconds"], 1)})


# ==================================================================== figures
def _figures(directory: str, name: str, model, history: dict, samples: np.ndarray,
             x_val: np.ndarray, y_val: np.ndarray, rng: np.random.Generator) -> None:
    conditional = name == "cvae"
    title = "CVAE" if conditional else "VAE"
    save_curves(os.path.join(directory, "loss.png"),
                {"train (binary draws, one z per image)": history["train_loss"],
                 "validation (grey levels)": history["val_loss"]},
                xlabel="epoch", ylabel="negative ELBO (nats per image)", title=f"{title} on MNIST")

    # reconstructions: two validation digits of every class, data above its reconstruction
    picks = np.concatenate([np.flatnonzero(y_val == c)[:2] for c in range(10)]).reshape(10, 2).T.ravel()
    recon = model.reconstruct(x_val[picks], y_val[picks]) if conditional else model.reconstruct(x_val[picks])
    rows = np.concatenate([x_val[picks[:10]], recon[:10], x_val[picks[10:]], recon[10:]])
    save_image_grid(os.path.join(directory, "reconstructions.png"), rows.reshape(-1, 28, 28), 4, 10,
                    title=f"{title}: validation digits and their reconstructions (decoder mean at z = mu)",
                    row_labels=["data", "recon", "data", "recon"])

    save_image_grid(os.path.join(directory, "samples.png"), samples[:100], 10, 10,
                    title=f"{title}: samples from the prior" + (" (column = label)" if conditional else ""))

    steps = np.linspace(0, 1, 10)[:, None]
    if conditional:
        # the 3 x 10 grid: row r uses the noise z_r for every column, column c uses the label c
        z = rng.standard_normal((3, model.latent)).astype(model.dtype)
        grid = model.generate(np.repeat(z, 10, axis=0), np.tile(np.arange(10), 3))
        save_image_grid(os.path.join(directory, "cvae_grid.png"), grid.reshape(-1, 28, 28), 3, 10,
                        title="CVAE: each row shares z, each column shares the label y",
                        row_labels=["z1", "z2", "z3"], col_labels=list(range(10)))
        # interpolation: z walks from -1.5 u to +1.5 u (inside the prior's bulk) along u, the main axis
        # of the validation digits' posterior means (their main "style"), decoded with every label
        with no_grad():
            mu = model.encode(x_val, y_val)[0].data
        u = np.linalg.svd(mu - mu.mean(axis=0), full_matrices=False)[2][0]   # first principal direction
        line = 1.5 * (2 * steps - 1) * u                                     # (10, latent)
        images = model.generate(np.tile(line, (10, 1)).astype(model.dtype), np.repeat(np.arange(10), 10))
        row_labels = [f"y={c}" for c in range(10)]
        text = "CVAE: z moves along the main style axis (-1.5 to +1.5); the label is fixed per row"
    else:
        # interpolation: a straight line between the posterior means of two validation digits
        pairs = [(np.flatnonzero(y_val == a)[0], np.flatnonzero(y_val == b)[0])
                 for a, b in ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (1, 7), (3, 8), (4, 9))]
        with no_grad():
            mu = model.encode(x_val[np.ravel(pairs)])[0].data.reshape(len(pairs), 2, -1)
        line = (1 - steps[None]) * mu[:, :1] + steps[None] * mu[:, 1:]       # (pairs, 10, latent)
        images = model.generate(line.reshape(-1, model.latent).astype(model.dtype))
        row_labels = [f"{y_val[a]}->{y_val[b]}" for a, b in pairs]
        text = "VAE: decoding z on the line between the encodings of two digits"
    save_image_grid(os.path.join(directory, "interpolation.png"), images.reshape(-1, 28, 28),
                    len(row_labels), 10, title=text, row_labels=row_labels)


# ==================================================================== evaluation (scripts/evaluate.py)
def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """Negative ELBO and negative IWAE bound (k = EVAL_K samples each), nats per image, averaged over the
    test split of data_dir (default: the 500 embedded validation digits). Headline numbers on the
    grey-level images; the *_binarized ones on one fixed Bernoulli draw of them (see the module docstring)."""
    checkpoint = read_checkpoint(run_dir)
    family, config_cls, _ = FAMILY[model_name]
    cfg = config_from(config_cls, checkpoint["meta"]["config"])
    model = family.build(cfg)
    model.load_state_dict(checkpoint["model"])
    images, labels = load_split("test", data_dir)
    rng = np.random.default_rng(seed)
    grey = family.evaluate(model, _data(model_name, flatten(images), labels), rng, cfg, k=EVAL_K)
    binary = family.evaluate(model, _data(model_name, fixed_binarization(images), labels), rng, cfg, k=EVAL_K)
    return {"model": model_name,
            "test_neg_elbo_nats": grey["neg_elbo_nats"], "test_iwae_nats": grey["neg_iwae_nats"],
            "test_neg_elbo_nats_binarized": binary["neg_elbo_nats"],
            "test_iwae_nats_binarized": binary["neg_iwae_nats"],
            "k": EVAL_K, "n_test": len(images), "epochs": checkpoint["meta"]["state"]["epoch"],
            "data": data_dir or "embedded validation split",
            "protocol": "test_*: grey-level images (BCE against the grey levels, as PyTorch's VAE example); "
                        f"*_binarized: one fixed Bernoulli draw of the images (seed {EVAL_BINARIZATION_SEED})"}
