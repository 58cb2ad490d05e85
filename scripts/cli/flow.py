"""`train.py flow`: a NICE (additive) or RealNVP (affine) coupling flow on MNIST, trained by exact
maximum likelihood; `evaluate.py DIR` reports its test bits/dim.

    python scripts/train.py flow                      # affine, 6 layers, hidden 512, 20 epochs
    python scripts/train.py flow --coupling additive --prior logistic --mask half

Writes into --out: metrics.json (per-epoch train/validation bits/dim), checkpoint.npz, samples.npz
(`images`: 1,000 samples at temperature 1.0; `images_t07`: 1,000 at 0.7), samples_t1.0.png,
samples_t0.7.png and bits_per_dim.png.

Randomness: the initial weights come from --seed; every other draw comes from a generator made
from (seed, what, epoch, batch), so a resumed run, even from the middle of an epoch, shuffles and
dequantises exactly as the uninterrupted run would have. With --resume every flag except --epochs
is read from the saved run.

Bits/dim here is always measured on the dequantised [0, 256) pixel scale (see models/flow.py). The
training loss is the mean negative log-likelihood in nats per image; its gradient norm is clipped at
--clip-grad before each Adam step.
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

import nets
from autodiff import no_grad
from models.flow import COUPLINGS, MASKS, PRIORS, Flow, dequantize, to_pixels
from cli.common import (generator, UsageError, Stopwatch, add_common_args, load_mnist_splits, load_run_checkpoint,
                        out_dir, positive_float, positive_int, print_summary, progress, save_curves,
                        save_image_grid, save_on_interrupt, save_run_checkpoint, seed_everything, update_step,
                        write_metrics, write_samples)

NUM_SAMPLES = 1000          # samples saved per temperature
EVAL_BATCH = 500            # images per forward pass when measuring bits/dim
SHUFFLE, NOISE, VALIDATION, SAMPLES = 1, 2, 3, 4     # the "what" in a generator's seed


# ==================================================================== flags
def register(subparsers) -> None:
    parser = subparsers.add_parser("flow", help="NICE / RealNVP coupling flow on MNIST",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=positive_int, default=20, help="passes over the training digits")
    parser.add_argument("--coupling", choices=COUPLINGS, default="affine",
                        help="affine (RealNVP, with log-scale = scale * tanh(s)) or additive (NICE, "
                             "plus its diagonal scaling layer)")
    parser.add_argument("--layers", type=positive_int, default=6, help="number of coupling layers")
    parser.add_argument("--hidden", type=positive_int, default=512, help="hidden units of each coupling MLP")
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--prior", choices=PRIORS, default="gaussian", help="distribution of the code z")
    parser.add_argument("--mask", choices=MASKS, default="checkerboard",
                        help="checkerboard on the 28 x 28 image, or the two halves of the flattened "
                             "vector; flipped on every layer")
    parser.add_argument("--clip-grad", type=positive_float, default=100.0,
                        help="clip the gradient's global L2 norm to this before each step")
    add_common_args(parser)
    parser.set_defaults(run=run)


def build_model(config: dict) -> Flow:
    return Flow(coupling=config["coupling"], num_layers=config["layers"], hidden=config["hidden"],
                mask=config["mask"], prior=config["prior"])


def mean_bits_per_dim(model: Flow, images: np.ndarray, rng: np.random.Generator) -> float:
    """Average bits/dim over `images`, one dequantisation draw per image from `rng`."""
    total = 0.0
    with no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            x = dequantize(images[start:start + EVAL_BATCH], rng)
            total += float(model.bits_per_dim(x).data.astype(np.float64).sum())
    return total / len(images)


# ==================================================================== training
def run(args) -> None:
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (it seeds NumPy generators), got {args.seed}")
    directory = out_dir(args, "flow")
    seed_everything(args.seed)                                # the initial weights
    config = {k: v for k, v in vars(args).items() if k not in ("run", "model")}

    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint_or_fail(directory)
        saved = checkpoint["meta"]["config"]
        config = dict(saved, epochs=args.epochs, resume=args.resume)   # architecture etc. from the run
    x_train, _, x_val, _ = load_mnist_splits(config["data_dir"])
    seed = config["seed"]

    model = build_model(config)
    optimizer = nets.Adam(model.parameters(), lr=config["lr"])
    batch_size, dim = config["batch_size"], model.dim
    batches_per_epoch = math.ceil(len(x_train) / batch_size)

    # progress counters: all of them go into the checkpoint, so --resume continues exactly
    state = {"epoch": 0, "batch": 0, "epoch_nats": 0.0, "epoch_count": 0, "epoch_norm": 0.0,
             "epoch_clipped": 0, "seconds": 0.0, "train_bits_per_dim": [], "val_bits_per_dim": [],
             "mean_grad_norm": [], "fraction_clipped": []}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state.update(checkpoint["meta"]["state"])
    clock = Stopwatch(state["seconds"])

    def save() -> None:
        state["seconds"] = clock.seconds
        save_run_checkpoint(directory, meta={"config": config, "state": state},
                            model=model.state_dict(), optimizer=optimizer.state_dict())
        write_metrics(directory, metrics(config, state, len(x_train), len(x_val), model))

    bar = progress(total=config["epochs"] * batches_per_epoch, description="flow")
    bar.update(min(state["epoch"] * batches_per_epoch + state["batch"], bar.total))
    with save_on_interrupt(save):
        while state["epoch"] < config["epochs"]:
            order = generator(seed, SHUFFLE, state["epoch"]).permutation(len(x_train))
            while state["batch"] < batches_per_epoch:
                with update_step():
                    index = order[state["batch"] * batch_size:(state["batch"] + 1) * batch_size]
                    x = dequantize(x_train[index], generator(seed, NOISE, state["epoch"], state["batch"]))
                    # maximum likelihood: minimise the mean of -log p(x) (nats per image)
                    loss = -model.log_prob(x).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    norm = nets.clip_grad_norm_(model.parameters(), config["clip_grad"])
                    optimizer.step()
                    state["batch"] += 1
                    state["epoch_nats"] += float(loss) * len(index)
                    state["epoch_count"] += len(index)
                    state["epoch_norm"] += norm
                    state["epoch_clipped"] += int(norm > config["clip_grad"])
                    train_bpd = nats_to_bits_per_dim(state["epoch_nats"] / state["epoch_count"], dim)
                    bar.update(1)
                    bar.set_postfix(epoch=state["epoch"] + 1, bpd=f"{train_bpd:.3f}")

            with update_step():
                train_bpd = nats_to_bits_per_dim(state["epoch_nats"] / state["epoch_count"], dim)
                val_bpd = mean_bits_per_dim(model, x_val, generator(seed, VALIDATION))  # same noise each epoch
                state["train_bits_per_dim"].append(train_bpd)
                state["val_bits_per_dim"].append(val_bpd)
                state["mean_grad_norm"].append(state["epoch_norm"] / batches_per_epoch)
                state["fraction_clipped"].append(state["epoch_clipped"] / batches_per_epoch)
                bar.write(f"epoch {state['epoch'] + 1}: train {train_bpd:.4f} bits/dim, "
                          f"validation {val_bpd:.4f} bits/dim")
                state.update(epoch=state["epoch"] + 1, batch=0, epoch_nats=0.0, epoch_count=0,
                             epoch_norm=0.0, epoch_clipped=0)
                save()
    bar.close()

    sample_rng = generator(seed, SAMPLES)
    samples_t1 = model.sample(NUM_SAMPLES, temperature=1.0, rng=sample_rng)
    samples_t07 = model.sample(NUM_SAMPLES, temperature=0.7, rng=sample_rng)
    write_samples(directory, to_pixels(samples_t1), images_t07=to_pixels(samples_t07))
    for name, images, temperature in (("samples_t1.0.png", samples_t1, "1.0"),
                                      ("samples_t0.7.png", samples_t07, "0.7")):
        save_image_grid(os.path.join(directory, name), to_pixels(images[:100]), 10, 10,
                        title=f"{config['coupling']} flow samples, temperature {temperature}")
    epochs = np.arange(1, len(state["val_bits_per_dim"]) + 1)
    save_curves(os.path.join(directory, "bits_per_dim.png"),
                {"train": (epochs, state["train_bits_per_dim"]),
                 "validation": (epochs, state["val_bits_per_dim"])},
                xlabel="epoch", ylabel="bits/dim (dequantised [0, 256) scale)", title="flow: bits/dim",
                logy=True)
    print_summary(directory, {"val_bits_per_dim": state["val_bits_per_dim"][-1] if epochs.size else None,
                              "wall_seconds": round(clock.seconds, 1)})


def load_checkpoint_or_fail(directory: str) -> dict:
    checkpoint = load_run_checkpoint(directory)
    meta = checkpoint["meta"]
    if meta.get("config", {}).get("coupling") is None or "state" not in meta:
        raise UsageError(f"{directory}/checkpoint.npz was not written by `train.py flow`")
    return checkpoint


def nats_to_bits_per_dim(nats_per_image: float, dim: int) -> float:
    """-log p(x) on [0, 1)^D in nats -> bits/dim on the [0, 256) scale: (nats + D log 256) / (D ln 2)."""
    return (nats_per_image + dim * math.log(256)) / (dim * math.log(2))


def metrics(config: dict, state: dict, n_train: int, n_val: int, model: Flow) -> dict:
    epochs_done = len(state["val_bits_per_dim"])
    return {"model": "flow", "config": config,
            "epochs": epochs_done,
            "train_bits_per_dim": state["train_bits_per_dim"],
            "val_bits_per_dim": state["val_bits_per_dim"],
            "mean_grad_norm": state["mean_grad_norm"], "fraction_clipped": state["fraction_clipped"],
            "wall_seconds": state["seconds"],
            "epochs_per_second": epochs_done / state["seconds"] if state["seconds"] > 0 else None,
            "n_train": n_train, "n_val": n_val, "num_parameters": model.num_parameters(),
            "bits_per_dim_scale": "dequantised pixels v = pixel + u in [0, 256), u ~ U[0, 1)"}


# ==================================================================== evaluation
def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """Test bits/dim of the trained flow on the test split of `data_dir` (default: the embedded 500
    validation digits). One dequantisation draw per test image from np.random.default_rng(seed),
    averaged over the whole split; test_nll_nats is the same number as -log p per image in nats on the
    [0, 256) scale (= bits/dim * 784 ln 2)."""
    checkpoint = load_checkpoint_or_fail(run_dir)
    config = checkpoint["meta"]["config"]
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    from nets.data import load_mnist
    try:
        x_test, _ = load_mnist("test", data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    bpd = mean_bits_per_dim(model, x_test, np.random.default_rng(seed))
    return {"test_bits_per_dim": bpd, "test_nll_nats": bpd * model.dim * math.log(2),
            "n_test": int(len(x_test)), "data": data_dir or "embedded validation digits",
            "epochs": int(checkpoint["meta"]["state"]["epoch"])}
