"""`train.py made` and `train.py pixelcnn`: flags, outputs and figures; the models, their losses and
training steps are models/made.py and models/pixelcnn.py. `evaluate(...)` serves evaluate.py.

    python scripts/train.py made                               # MADE, 8 masks, ensembled at test time
    python scripts/train.py pixelcnn --data-dir /path/to/mnist # test NLL on the official 10,000 digits
    python scripts/evaluate.py runs/made-... --data-dir /path/to/mnist     # one JSON line: test_nll_nats

Data. Training always uses the 4,500 embedded digits, binarised dynamically (a fresh x ~ Bernoulli(grey)
draw every epoch); --data-dir only chooses the TEST images (default: the 500 embedded validation digits).
The validation curve and test_nll_nats score ONE fixed Bernoulli draw of the images
(nets.data.fixed_binarization, the draw behind the VAE's *_binarized numbers), so MADE, PixelCNN and
the VAE's IWAE bound sit in one column. Both models give exact -log p(x) in nats per image (lower is
better); published full-MNIST references: MADE 86.64 (32 masks), PixelCNN 81.30.

Outputs in --out DIR: metrics.json, samples.npz (images (N, 28, 28) binary samples), checkpoint.npz,
loss.png, samples.png. `--resume DIR --epochs MORE` extends a run.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import models.made as made
import models.pixelcnn as pixelcnn
from nets.data import EVAL_BINARIZATION_SEED, load_mnist
from nets.harness import Run, UsageError, add_config_flags, add_run_flags, config_from, read_checkpoint
from cli.common import print_summary, save_curves, save_image_grid, write_samples

FAMILY = {"made": (made, made.MADEConfig, "MADE: masked autoencoder density estimator (exact NLL)"),
          "pixelcnn": (pixelcnn, pixelcnn.PixelCNNConfig, "PixelCNN: masked convolutions (exact NLL)")}
SUMMARY_METRICS = {"test_nll_nats": "lower"}


def register(subparsers) -> None:
    for name, (_, config_cls, what) in FAMILY.items():
        parser = subparsers.add_parser(name, help=f"binarised MNIST {what}",
                                       description=f"Train {what} on binarised MNIST.\n\n" + __doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_flags(parser, mnist=True)
        add_config_flags(parser, config_cls)
        parser.set_defaults(run=run)


def build_model(name: str, cfg, mask_rng: np.random.Generator):
    """The model of a run; MADE's masks come from `mask_rng` (a checkpoint's buffers overwrite them)."""
    return made.build(cfg, mask_rng=mask_rng) if name == "made" else pixelcnn.build(cfg)


def _images(name: str, x: np.ndarray) -> np.ndarray:
    """Grey levels (N, 1, 28, 28) in the model's input layout: (N, 784) for MADE, unchanged for PixelCNN."""
    return x.reshape(len(x), -1) if name == "made" else x


def _test_images(data_dir) -> np.ndarray:
    try:
        return load_mnist("test", data_dir)[0]
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None


def run(args) -> None:
    name = args.command
    family, config_cls, _ = FAMILY[name]
    run = Run(name, args, config_cls, may_change=("epochs",))
    cfg = run.config
    x_train = _images(name, load_mnist("train")[0][:cfg.limit])             # always the embedded digits
    x_val = load_mnist("test")[0]                                           # embedded validation digits
    data_dir = getattr(args, "data_dir", None)
    x_test = _test_images(data_dir) if data_dir else x_val

    model = build_model(name, cfg, run.stream("masks"))                     # weights: the "init" stream
    optimizer = family.build_optimizer(model, cfg)
    state = run.state or {"epoch": 0, "train_seconds": 0.0, "history": {"train_nll": [], "val_nll": []}}
    save = run.restore(state, model=model, optimizer=optimizer)
    history = state["history"]

    for epoch in run.loop(state["epoch"], cfg.epochs, save):
        start = time.perf_counter()
        stats = family.train_epoch(model, optimizer, x_train, run.stream("train", epoch), cfg)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        state["train_seconds"] += time.perf_counter() - start
        history["train_nll"].append(stats["loss"])
        history["val_nll"].append(family.evaluate(model, x_val, None, cfg)["nll_nats"])   # one fixed binarisation
        state["epoch"] = epoch + 1
        run.show(train=stats["loss"], val=history["val_nll"][-1])

    # ---------------------------------------------------------------- outputs
    start = time.perf_counter()
    test_nll = history["val_nll"][-1] if x_test is x_val else family.evaluate(model, x_test, None, cfg)["nll_nats"]
    test_seconds = time.perf_counter() - start
    start = time.perf_counter()
    images = model.sample(cfg.num_samples, run.stream("samples")).reshape(cfg.num_samples, 28, 28)
    sample_seconds = time.perf_counter() - start
    write_samples(run.dir, images)
    _figures(run.dir, name, history, images)
    metrics = run.write_metrics({
        "epochs_completed": state["epoch"], "num_train": len(x_train), "num_test": len(x_test),
        "num_parameters": model.num_parameters(),
        "test_nll_nats": test_nll,
        "test_data": data_dir or "embedded validation split (500 digits)",
        "units": "-log p(x) in nats per image, exact (lower is better)",
        "binarization": "train: dynamic (a fresh Bernoulli draw every epoch); validation and test: one fixed "
                        f"draw (nets.data.fixed_binarization, seed {EVAL_BINARIZATION_SEED})",
        **history,
        "train_seconds": state["train_seconds"], "test_seconds": test_seconds,
        "samples": cfg.num_samples, "sample_seconds": sample_seconds,
        "sample_seconds_per_100": sample_seconds * 100 / cfg.num_samples})
    print_summary(run.dir, {"model": name, "epochs": state["epoch"], "test_nll_nats": round(test_nll, 2),
                            "sample_seconds": round(sample_seconds, 1),
                            "wall_seconds": round(metrics["wall_seconds"], 1)})


# ==================================================================== figures
def _figures(directory: str, name: str, history: dict, samples: np.ndarray) -> None:
    title = {"made": "MADE", "pixelcnn": "PixelCNN"}[name]
    save_curves(os.path.join(directory, "loss.png"),
                {"train (dynamic binarisation)": history["train_nll"],
                 "validation (fixed binarisation)": history["val_nll"]},
                xlabel="epoch", ylabel="-log p(x) (nats per image)", title=f"{title} on binarised MNIST")
    rows = max(1, min(10, len(samples) // 10))
    save_image_grid(os.path.join(directory, "samples.png"), samples[:rows * 10], rows, 10,
                    title=f"{title}: samples, drawn pixel by pixel")


# ==================================================================== evaluation (scripts/evaluate.py)
def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """test_nll_nats: the exact -log p(x), nats per image, on the fixed binarisation of the test split of
    data_dir (default: the 500 embedded validation digits). Deterministic: `seed` is not used."""
    checkpoint = read_checkpoint(run_dir)
    cfg = config_from(FAMILY[model_name][1], checkpoint["meta"]["config"])
    model = build_model(model_name, cfg, np.random.default_rng(0))
    model.load_state_dict(checkpoint["model"])
    images = _test_images(data_dir)
    return {"model": model_name,
            "test_nll_nats": FAMILY[model_name][0].evaluate(model, images, None, cfg)["nll_nats"],
            "n_test": len(images), "epochs": checkpoint["meta"]["state"]["epoch"],
            "data": data_dir or "embedded validation split",
            "protocol": f"exact -log p(x) on one fixed Bernoulli draw of the test images "
                        f"(nets.data.fixed_binarization, seed {EVAL_BINARIZATION_SEED})"}
