"""`train.py revnet`: a reversible residual network on MNIST, and what reversibility buys.

    python scripts/train.py revnet                       # backward by reconstruction (about a minute)
    python scripts/train.py revnet --store-activations   # the same network, the ordinary backward

After training (models/revnet.py), the run measures on the trained weights:
    max_grad_difference   max |reversible - stored| over every parameter gradient, same weights and batch;
    peak_memory_bytes     {"reversible": {depth: bytes}, "stored": {depth: bytes}}: tracemalloc's peak during
                          one forward and backward pass of a fresh RevNet of each --memory-depths depth;
    bytes_per_block       the slope of each against depth (least squares), and slope_ratio = reversible / stored.
Outputs in --out DIR: metrics.json, checkpoint.npz, loss.png, memory.png.
"""
from __future__ import annotations


import numpy as np

from models import revnet
from models.revnet import RevNetConfig
from nets.data import flatten, load_mnist
from nets.harness import Run, UsageError
from cli.common import add_command, print_summary, save_curves

SUMMARY_METRICS = {"test_accuracy": "higher", "max_grad_difference": "lower", "slope_ratio": "lower"}


def register(subparsers) -> None:
    add_command(subparsers, "revnet", "reversible residual network on MNIST; memory vs depth", __doc__,
                RevNetConfig, run)


def run(args) -> None:
    run = Run("revnet", args, RevNetConfig, may_change=("epochs",))
    cfg = run.config
    if len(set(cfg.memory_depths)) < 3:
        raise UsageError(f"--memory-depths: expected at least 3 different depths, got {cfg.memory_depths}")
    if cfg.width % 2:
        raise UsageError(f"--width: expected an even number (two halves of width/2), got {cfg.width}")
    try:
        (x_train, y_train), (x_test, y_test) = (load_mnist(split, args.data_dir) for split in ("train", "test"))
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--data-dir {args.data_dir}: {error}") from None
    x_train, x_test = flatten(x_train), flatten(x_test)                # (N, 784) grey levels in [0, 1]

    model = revnet.build(cfg)
    optimizer = revnet.build_optimizer(model, cfg)
    state = run.state or {"epoch": 0, "history": []}
    save = run.restore(state, model=model, optimizer=optimizer)

    for epoch in run.loop(state["epoch"], cfg.epochs, save, unit="epoch"):
        stats = revnet.train_epoch(model, optimizer, (x_train, y_train), run.stream("train", epoch), cfg)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        state["epoch"] = epoch + 1
        state["history"].append(stats)
        run.show(loss=stats["loss"], acc=stats["train_accuracy"])

    # the measurements: both backward passes on the trained weights and one batch of training digits
    picks = run.stream("gradient_batch").choice(len(x_train), cfg.batch_size, replace=False)
    difference = revnet.max_grad_difference(model, x_train[picks], y_train[picks])
    memory = revnet.memory_vs_depth(cfg, run.stream("memory_batch"))
    metrics = run.write_metrics({
        "test_accuracy": revnet.evaluate(model, (x_test, y_test), None, cfg)["accuracy"],
        "n_test": len(y_test), "epochs_completed": state["epoch"],
        "backward": "stored activations" if cfg.store_activations else "reconstruction (reversible)",
        "max_grad_difference": difference, **memory,
        "memory_protocol": f"tracemalloc peak above the start, one forward+backward pass, batch "
                           f"{cfg.memory_batch}, float32, fresh model per depth, after one warm-up pass",
        "history": state["history"],
    })
    _figures(run, state["history"], memory, cfg)
    print_summary(run.dir, {k: metrics[k] for k in ("test_accuracy", "max_grad_difference", "bytes_per_block",
                                                    "slope_ratio")})


def _figures(run: Run, history: list, memory: dict, cfg: RevNetConfig) -> None:
    if history:
        save_curves(run.path("loss.png"), {"train cross-entropy": [h["loss"] for h in history]},
                    xlabel="epoch", ylabel="nats per digit", title="RevNet on MNIST")
    depths = np.array(cfg.memory_depths)
    save_curves(run.path("memory.png"),
                {f"{kind} ({memory['bytes_per_block'][kind] / 2 ** 20:.2f} MiB per block)":
                 (depths, [memory["peak_memory_bytes"][kind][str(d)] / 2 ** 20 for d in depths])
                 for kind in ("stored", "reversible")},
                xlabel="reversible blocks (depth)", ylabel="peak MiB of one training step",
                title=f"peak memory vs depth (batch {cfg.memory_batch})")
