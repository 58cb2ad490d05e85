"""`train.py flow`: flags and figures for the NICE (additive) / RealNVP (affine) coupling flow of
models/flow.py (which holds the model and its maximum-likelihood training); `evaluate.py DIR` reports
its test bits/dim.

    python scripts/train.py flow                      # affine, 6 layers, hidden 512, 20 epochs
    python scripts/train.py flow --coupling additive --prior logistic --mask half

Writes into --out: metrics.json (per-epoch train/validation bits/dim), checkpoint.npz, samples.npz
(`images`: 1,000 samples at temperature 1.0; `images_t07`: 1,000 at 0.7), samples_t1.0.png,
samples_t0.7.png and bits_per_dim.png. Bits/dim is reported on the dequantised [0, 256) pixel scale
(see models/flow.py).
"""
from __future__ import annotations


import numpy as np

from models.flow import FlowConfig, build, build_optimizer, evaluate as flow_evaluate, train_epoch
from nets.data import to_pixels
from nets.harness import Run, config_from, read_checkpoint
from cli.common import (add_command, load_mnist_splits, load_split, print_summary, save_curves, save_image_grid,
                        write_samples)

NUM_SAMPLES = 1000          # samples saved per temperature
SUMMARY_METRICS = {"final_val_bits_per_dim": "lower"}
HISTORY = ("train_bits_per_dim", "val_bits_per_dim", "mean_grad_norm", "fraction_clipped")


def register(subparsers) -> None:
    add_command(subparsers, "flow", "NICE / RealNVP coupling flow on MNIST", __doc__, FlowConfig, run)


def run(args) -> None:
    run = Run("flow", args, FlowConfig, may_change=("epochs",))
    cfg = run.config
    x_train, _, x_val, _ = load_mnist_splits(args.data_dir)
    model = build(cfg)
    optimizer = build_optimizer(model, cfg)
    state = run.state or {"epoch": 0, **{key: [] for key in HISTORY}}
    save = run.restore(state, model=model, optimizer=optimizer)

    for epoch in run.loop(state["epoch"], cfg.epochs, save):
        stats = train_epoch(model, optimizer, x_train, run.stream("train", epoch), cfg)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        validation = flow_evaluate(model, x_val, run.stream("validation"), cfg)        # the same noise each epoch
        stats["val_bits_per_dim"] = validation["bits_per_dim"]
        for key in HISTORY:
            state[key].append(stats[key])
        state["epoch"] = epoch + 1
        run.show(train_bpd=stats["train_bits_per_dim"], val_bpd=stats["val_bits_per_dim"])

    sample_rng = run.stream("samples")
    samples_t1 = model.sample(NUM_SAMPLES, temperature=1.0, rng=sample_rng)
    samples_t07 = model.sample(NUM_SAMPLES, temperature=0.7, rng=sample_rng)
    write_samples(run.dir, to_pixels(samples_t1), images_t07=to_pixels(samples_t07))
    for name, images, temperature in (("samples_t1.0.png", samples_t1, "1.0"), ("samples_t0.7.png", samples_t07, "0.7")):
        save_image_grid(run.path(name), to_pixels(images[:100]), 10, 10,
                        title=f"{cfg.coupling} flow samples, temperature {temperature}")
    epochs = np.arange(1, state["epoch"] + 1)
    save_curves(run.path("bits_per_dim.png"), {"train": (epochs, state["train_bits_per_dim"]),
                                               "validation": (epochs, state["val_bits_per_dim"])},
                xlabel="epoch", ylabel="bits/dim (dequantised [0, 256) scale)", title="flow: bits/dim", logy=True)
    final = state["val_bits_per_dim"][-1] if state["val_bits_per_dim"] else None
    metrics = run.write_metrics({
        "epochs": state["epoch"], **{key: state[key] for key in HISTORY}, "final_val_bits_per_dim": final,
        "n_train": len(x_train), "n_val": len(x_val), "num_parameters": model.num_parameters(),
        "bits_per_dim_scale": "dequantised pixels v = pixel + u in [0, 256), u ~ U[0, 1)"})
    print_summary(run.dir, {"val_bits_per_dim": final, "wall_seconds": round(metrics["wall_seconds"], 1)})


def evaluate(run_dir: str, model_name: str, data_dir, seed: int) -> dict:
    """Test bits/dim of the trained flow on the test split of `data_dir` (default: the embedded 500
    validation digits), one dequantisation draw per image; test_nll_nats is the same number as -log p per
    image in nats on the [0, 256) scale (= bits/dim * 784 ln 2)."""
    checkpoint = read_checkpoint(run_dir)
    cfg = config_from(FlowConfig, checkpoint["meta"]["config"])
    model = build(cfg)
    model.load_state_dict(checkpoint["model"])
    x_test = load_split("test", data_dir)[0]
    result = flow_evaluate(model, x_test, np.random.default_rng(seed), cfg)
    return {"model": model_name, "test_bits_per_dim": result["bits_per_dim"], "test_nll_nats": result["nll_nats"],
            "n_test": int(len(x_test)), "data": data_dir or "embedded validation digits",
            "epochs": int(checkpoint["meta"]["state"]["epoch"])}
