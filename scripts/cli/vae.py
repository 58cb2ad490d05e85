"""`train.py vae` and `train.py cvae`: train the MNIST VAE / conditional VAE; `evaluate(...)` for evaluate.py.

    python scripts/train.py cvae                       # the main job: writes the 3 x 10 grid (cvae_grid.png)
    python scripts/train.py vae --epochs 100 --hidden 400 --latent 20 --batch-size 128 --lr 1e-3
    python scripts/evaluate.py runs/cvae-... --data-dir /path/to/mnist   # one JSON line

Pixels, binarisation and what the numbers mean. MNIST pixels are grey levels t_d in [0, 1]; the decoder
is Bernoulli. Read t_d as the probability that pixel d is on: the reconstruction term is linear in the
target, BCE(l, t) = softplus(l) - l t, so the cross-entropy against the grey levels equals the expected
-log p(x | z) of binary images x drawn pixel by pixel as x_d ~ Bernoulli(t_d).
    training    dynamic binarisation: each epoch every training image is replaced by a fresh binary draw
                x ~ Bernoulli(t) (the usual "dynamically binarised MNIST"; it also acts as data
                augmentation on our 4,500 digits).
    validation  (val_loss, per epoch) and the headline test numbers of evaluate.py: the grey-level images
                themselves, -ELBO = E_q[BCE(logits, t)] + KL. This is what PyTorch's classic VAE example
                prints as its test loss, and the protocol of the reference numbers (~111 nats VAE, ~106
                CVAE on the MNIST test set).
    strict      evaluate.py also reports test_neg_elbo_nats_binarized / test_iwae_nats_binarized: the
                same bounds on ONE fixed Bernoulli draw of the test images (seed EVAL_BINARIZATION_SEED,
                independent of --seed), true bounds on the log-likelihood of binary images. They come out
                about 4 nats lower: the encoder sees the draw and explains part of its pixel noise.
                (Thresholding at 0.5 gives far easier images: another ~12 nats lower; not comparable.)
All losses are negative ELBOs in nats per image (lower is better).

Outputs in --out DIR: metrics.json, samples.npz, checkpoint.npz, loss.png, reconstructions.png,
samples.png, interpolation.png and, for cvae, cvae_grid.png. Ctrl-C saves the state of the last
finished epoch; `--resume DIR` continues exactly (and `--resume DIR --epochs MORE` extends a finished run).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import nets
from autodiff import no_grad
from nets.data import binarize_dynamic, flatten, iterate_minibatches, load_mnist
from models.vae import VAE
from models.cvae import CVAE
from cli.common import (UsageError, add_common_args, positive_int, positive_float, seed_everything, out_dir,
                        load_mnist_splits, progress, write_metrics, write_samples, rng_state, set_rng_state,
                        save_run_checkpoint, load_run_checkpoint, save_on_interrupt, Stopwatch,
                        save_curves, save_image_grid, print_summary)

# Defaults per model. vae: the classic 784-400-20 network. cvae: tuned so that `train.py cvae` takes about
# a minute of one core and its conditional samples are clearly the requested digits. The latent size is
# the lever: with latent 20 the encoder can pass the digit's identity through z and, after tens of
# epochs, the decoder still half-ignores the label (measured: 34% of samples classified as the requested
# digit at 30 epochs, 65% at 150); with latent 2, z has room for style only and the label must carry
# the class (98% at 80 epochs). The price is blurrier samples and a worse ELBO.
DEFAULTS = {
    "vae": dict(epochs=50, batch_size=128, lr=1e-3, hidden=400, latent=20),
    "cvae": dict(epochs=80, batch_size=100, lr=1e-3, hidden=500, latent=2),
}
NUM_SAMPLES = 1000              # images in samples.npz (drawn from the prior; balanced labels for cvae)
EVAL_K = 200                    # importance samples per test image in evaluate.py (ELBO and IWAE bound)
VAL_K = 10                      # samples per validation image for the per-epoch validation ELBO
EVAL_BINARIZATION_SEED = 0      # the one fixed Bernoulli draw of the test images for the strict numbers
SAVE_EVERY_SECONDS = 30.0       # write checkpoint.npz at most this often during training (and at the end)


# ==================================================================== flags
def register(subparsers) -> None:
    for name, what in (("vae", "variational autoencoder"), ("cvae", "conditional VAE (label-conditioned)")):
        d = DEFAULTS[name]
        parser = subparsers.add_parser(
            name, help=f"MNIST {what}", description=f"Train the MNIST {what}.\n\n" + __doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_args(parser, mnist=True)
        parser.add_argument("--epochs", type=positive_int, default=None,
                            help=f"passes over the training digits (default {d['epochs']}); with --resume, "
                                 f"the total to reach")
        parser.add_argument("--batch-size", type=positive_int, default=None,
                            help=f"images per Adam step (default {d['batch_size']})")
        parser.add_argument("--lr", type=positive_float, default=None,
                            help=f"Adam learning rate (default {d['lr']:g})")
        parser.add_argument("--hidden", type=positive_int, default=None,
                            help=f"units in the encoder's and the decoder's hidden layer "
                                 f"(default {d['hidden']})")
        parser.add_argument("--latent", type=positive_int, default=None,
                            help=f"dimension of z (default {d['latent']})")
        parser.add_argument("--num-samples", type=positive_int, default=None,
                            help=f"prior samples written to samples.npz (default {NUM_SAMPLES})")
        parser.add_argument("--iwae-k", type=positive_int, default=100,
                            help="importance samples for the final validation IWAE bound in metrics.json "
                                 "(default 100)")
        parser.add_argument("--limit", type=positive_int, default=None,
                            help="train on the first N training digits only (class-balanced; for quick tests)")
        parser.set_defaults(run=run)


def _resolve_config(args, name: str, checkpoint) -> dict:
    """Every setting of the run. A resumed run keeps its saved settings; only --epochs may grow."""
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "hidden": args.hidden,
             "latent": args.latent, "num_samples": args.num_samples, "limit": args.limit}
    if checkpoint is None:
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        config = dict(DEFAULTS[name], num_samples=NUM_SAMPLES, limit=None)
        config.update({k: v for k, v in given.items() if v is not None})
        config.update(seed=args.seed, data_dir=args.data_dir, iwae_k=args.iwae_k)
        return config
    config = dict(checkpoint["meta"]["config"])
    if checkpoint["meta"].get("model") != name:
        raise UsageError(f"--resume {args.resume} holds a {checkpoint['meta'].get('model')!r} run, "
                         f"not {name!r}")
    for key, value in given.items():
        if key != "epochs" and value is not None and value != config.get(key):
            raise UsageError(f"--{key.replace('_', '-')} {value} differs from the resumed run's "
                             f"{config.get(key)}; only --epochs can change when resuming")
    if args.epochs is not None:
        done = checkpoint["meta"]["epoch"]
        if args.epochs < done:
            raise UsageError(f"--epochs {args.epochs}: the run in {args.resume} already has {done} epochs")
        config["epochs"] = args.epochs
    if args.data_dir is not None:
        config["data_dir"] = args.data_dir
    return config


# ==================================================================== data and model
def fixed_binarization(images: np.ndarray) -> np.ndarray:
    """Test images as ONE seeded Bernoulli draw of their grey levels, the same in every evaluation:
    (N, 784) float32 of 0s and 1s."""
    return binarize_dynamic(flatten(images), rng=EVAL_BINARIZATION_SEED)


def build_model(name: str, config: dict) -> VAE:
    if name == "cvae":
        return CVAE(784, 10, hidden=config["hidden"], latent=config["latent"])
    return VAE(784, hidden=config["hidden"], latent=config["latent"])


def _labels(name: str, y):
    """The condition passed to the model: the labels for the CVAE, nothing for the VAE."""
    return y if name == "cvae" else None


def _validation_loss(model: VAE, name: str, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> float:
    """Mean -ELBO on the grey-level validation images, with the same noise every epoch (a smooth curve)."""
    model.eval()
    bounds = model.bounds(x_val, _labels(name, y_val), k=VAL_K, rng=np.random.default_rng([seed, 1]))
    return float(-bounds.elbo.mean())


# ==================================================================== training
def run(args) -> None:
    name = args.model
    session_start = time.perf_counter()
    directory = out_dir(args, name)
    checkpoint = load_run_checkpoint(directory) if args.resume else None
    config = _resolve_config(args, name, checkpoint)
    config["out"] = directory

    data_rng = seed_everything(config["seed"])     # one generator for batches, binarisation and eps
    x_train, y_train, x_val, y_val = load_mnist_splits(config["data_dir"])
    if config["limit"]:
        x_train, y_train = x_train[:config["limit"]], y_train[:config["limit"]]
    x_train = flatten(x_train)                     # (N, 784) grey levels in [0, 1]
    x_val = flatten(x_val)                         # (N_val, 784) grey levels: scored as they are

    model = build_model(name, config)              # initial weights from the seeded layer generator
    optimizer = nets.Adam(model.parameters(), lr=config["lr"])
    history = {"train_loss": [], "train_recon": [], "train_kl": [], "val_loss": []}
    epoch, seconds = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        meta = checkpoint["meta"]
        set_rng_state(data_rng, meta["data_rng"])
        set_rng_state(nets.get_rng(), meta["init_rng"])
        history, epoch, seconds = meta["history"], meta["epoch"], meta["train_seconds"]
    clock = Stopwatch(seconds)                     # training seconds, summed over resumed sessions

    def snapshot() -> dict:
        """Everything needed to continue exactly after the epoch just finished (copies)."""
        meta = {"model": name, "config": config, "epoch": epoch,
                "history": {key: list(values) for key, values in history.items()},
                "data_rng": rng_state(data_rng), "train_seconds": clock.seconds}
        return {"meta": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict()}

    def save(state: dict, interrupted: bool = False) -> None:
        save_run_checkpoint(directory, state["meta"], model=state["model"], optimizer=state["optimizer"])
        if interrupted:                            # evaluate.py can still read what there is
            write_metrics(directory, dict(_metrics(state["meta"], len(x_train), len(x_val), model),
                                          interrupted=True))

    latest, last_save = snapshot(), time.perf_counter()
    batches = -(-len(x_train) // config["batch_size"])
    bar = progress((config["epochs"] - epoch) * batches, f"{name} epoch {epoch + 1}/{config['epochs']}")
    with save_on_interrupt(lambda: save(latest, interrupted=True)):
        while epoch < config["epochs"]:
            model.train()
            # dynamic binarisation: a fresh Bernoulli sample of every training image, each epoch
            x_binary = binarize_dynamic(x_train, rng=data_rng)
            totals = np.zeros(3)                   # sums of -ELBO, recon, KL over the epoch
            for xb, yb in iterate_minibatches(x_binary, y_train, batch_size=config["batch_size"],
                                              rng=data_rng):
                terms = model.loss(xb, _labels(name, yb), rng=data_rng)
                loss = terms.neg_elbo.mean()       # mean over the batch of -ELBO (nats per image)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                totals += [float(terms.neg_elbo.data.sum()), float(terms.recon.data.sum()),
                           float(terms.kl.data.sum())]
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.2f}")
            epoch += 1
            for key, total in zip(("train_loss", "train_recon", "train_kl"), totals):
                history[key].append(float(total / len(x_train)))
            history["val_loss"].append(_validation_loss(model, name, x_val, y_val, config["seed"]))
            bar.set_description(f"{name} epoch {min(epoch + 1, config['epochs'])}/{config['epochs']} "
                                f"val {history['val_loss'][-1]:.2f}")
            latest = snapshot()
            if epoch == config["epochs"] or time.perf_counter() - last_save > SAVE_EVERY_SECONDS:
                save(latest)
                last_save = time.perf_counter()
    bar.close()

    # ---------------------------------------------------------------- outputs
    model.eval()
    output_rng = np.random.default_rng([config["seed"], 2])    # samples and figures: apart from training
    final = model.bounds(x_val, _labels(name, y_val), k=config["iwae_k"],
                         rng=np.random.default_rng([config["seed"], 3]))
    n = config["num_samples"]
    labels = np.arange(n) % 10 if name == "cvae" else None    # balanced classes 0..9, 0..9, ...
    images = model.sample(n, labels, rng=output_rng).reshape(n, 28, 28)
    write_samples(directory, images, labels)
    _figures(directory, name, model, history, images, x_val, y_val, output_rng)

    metrics = _metrics(latest["meta"], len(x_train), len(x_val), model)
    metrics.update({
        "final_val_neg_elbo_nats": float(-final.elbo.mean()),
        "final_val_iwae_nats": float(-final.iwae.mean()), "iwae_k": config["iwae_k"],
        # this session from start to finish, plus the training time of earlier (resumed) sessions
        "wall_seconds": seconds + time.perf_counter() - session_start,
        "samples": n,
    })
    write_metrics(directory, metrics)
    print_summary(directory, {"model": name, "epochs": epoch,
                              "val_neg_elbo_nats": round(metrics["final_val_neg_elbo_nats"], 2),
                              "val_iwae_nats": round(metrics["final_val_iwae_nats"], 2),
                              "wall_seconds": round(metrics["wall_seconds"], 1)})


def _metrics(meta: dict, num_train: int, num_val: int, model: VAE) -> dict:
    """metrics.json: the model name (evaluate.py dispatches on it), every setting, the curves, timing."""
    epochs, seconds = meta["epoch"], meta["train_seconds"]
    return {
        "model": meta["model"], "config": meta["config"],
        "epochs_completed": epochs, "num_train": num_train, "num_val": num_val,
        "num_parameters": model.num_parameters(),
        "units": "negative ELBO in nats per image (lower is better)",
        "binarization": "train: dynamic (a fresh Bernoulli draw of every image, every epoch); "
                        "validation: the grey-level images (cross-entropy against the grey levels)",
        **meta["history"],
        "train_seconds": seconds,                  # in the epochs (with validation), over resumed sessions
        "wall_seconds": seconds,
        "epochs_per_second": epochs / seconds if seconds > 0 else None,
    }


# ==================================================================== figures
def _figures(directory: str, name: str, model: VAE, history: dict, samples: np.ndarray,
             x_val: np.ndarray, y_val: np.ndarray, rng: np.random.Generator) -> None:
    conditional = name == "cvae"
    title = "CVAE" if conditional else "VAE"
    save_curves(os.path.join(directory, "loss.png"),
                {"train (binary draws, one z per image)": history["train_loss"],
                 "validation (grey levels)": history["val_loss"]},
                xlabel="epoch", ylabel="negative ELBO (nats per image)", title=f"{title} on MNIST")

    # reconstructions: two validation digits of every class, data above its reconstruction
    picks = np.concatenate([np.flatnonzero(y_val == c)[:2] for c in range(10)]).reshape(10, 2).T.ravel()
    recon = model.reconstruct(x_val[picks], _labels(name, y_val[picks]))
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
    path = os.path.join(run_dir, "checkpoint.npz")
    if not os.path.exists(path):
        raise UsageError(f"{path} not found: the run has no checkpoint to evaluate")
    try:
        checkpoint = nets.load_checkpoint(path)
    except ValueError as error:
        raise UsageError(str(error)) from None
    model = build_model(model_name, checkpoint["meta"]["config"])
    model.load_state_dict(checkpoint["model"])
    model.eval()
    try:
        images, labels = load_mnist("test", data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    rng = np.random.default_rng(seed)
    grey = model.bounds(flatten(images), _labels(model_name, labels), k=EVAL_K, rng=rng)
    binary = model.bounds(fixed_binarization(images), _labels(model_name, labels), k=EVAL_K, rng=rng)
    return {"model": model_name,
            "test_neg_elbo_nats": float(-grey.elbo.mean()), "test_iwae_nats": float(-grey.iwae.mean()),
            "test_neg_elbo_nats_binarized": float(-binary.elbo.mean()),
            "test_iwae_nats_binarized": float(-binary.iwae.mean()),
            "k": EVAL_K, "n_test": len(images), "epochs": checkpoint["meta"]["epoch"],
            "data": data_dir or "embedded validation split",
            "protocol": "test_*: grey-level images (BCE against the grey levels, as PyTorch's VAE example); "
                        f"*_binarized: one fixed Bernoulli draw of the images (seed {EVAL_BINARIZATION_SEED})"}
