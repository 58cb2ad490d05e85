"""What every training command shares: flags, seeding, the output folder, progress bars, metrics,
samples, checkpoints that survive Ctrl-C, and the pictures (matplotlib, imported only when drawing)."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import time

import numpy as np

import nets
from nets.checkpoint import save_checkpoint, load_checkpoint, save_json_atomic, save_npz_atomic


class UsageError(Exception):
    """A problem with the user's flags or files: printed as one line, exit code 2, no traceback."""


# ==================================================================== flags
def add_common_args(parser: argparse.ArgumentParser, mnist: bool = True) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seeds every NumPy generator (and the env)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<model>-<time>)")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run saved in DIR/checkpoint.npz (writes into DIR)")
    if mnist:
        parser.add_argument("--data-dir", default=None,
                            help="folder with the standard MNIST files (IDX or mnist.npz); "
                                 "default: the 5,000 digits embedded in the package")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


# ==================================================================== run folder, seeding
def seed_everything(seed: int) -> np.random.Generator:
    """One seed for the layers' initial weights (nets.manual_seed) and the returned data generator."""
    nets.manual_seed(seed)
    return np.random.default_rng(seed + 1)


def out_dir(args, model: str) -> str:
    if args.resume:
        if not os.path.exists(os.path.join(args.resume, "checkpoint.npz")):
            raise UsageError(f"--resume {args.resume}: no checkpoint.npz in that folder")
        return args.resume
    path = args.out or os.path.join("runs", f"{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    os.makedirs(path, exist_ok=True)
    return path


def load_mnist_splits(data_dir):
    """(train_images, train_labels, test_images, test_labels) with a clear message if files are missing."""
    from nets.data import load_mnist
    try:
        x_train, y_train = load_mnist("train", data_dir)
        x_test, y_test = load_mnist("test", data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    return x_train, y_train, x_test, y_test


# ==================================================================== progress
def progress(total: int, description: str):
    """A tqdm progress bar (to stderr); quiet when stderr is not a terminal and NO_PROGRESS is set."""
    from tqdm import tqdm
    return tqdm(total=total, desc=description, dynamic_ncols=True, leave=True,
                disable=bool(os.environ.get("NO_PROGRESS")), mininterval=0.5)


# ==================================================================== saving
def write_metrics(directory: str, metrics: dict) -> None:
    save_json_atomic(os.path.join(directory, "metrics.json"), metrics)


def write_samples(directory: str, images: np.ndarray, labels=None, **extra) -> None:
    arrays = {"images": np.asarray(images, dtype=np.float32)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    save_npz_atomic(os.path.join(directory, "samples.npz"), arrays, compressed=True)


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def save_run_checkpoint(directory: str, meta: dict, **sections) -> None:
    """Checkpoint with the global layer generator's state included, so a resumed run continues exactly."""
    meta = dict(meta, init_rng=rng_state(nets.get_rng()))
    save_checkpoint(os.path.join(directory, "checkpoint.npz"), meta=meta, **sections)


def load_run_checkpoint(directory: str) -> dict:
    checkpoint = load_checkpoint(os.path.join(directory, "checkpoint.npz"))
    if "init_rng" in checkpoint["meta"]:
        set_rng_state(nets.get_rng(), checkpoint["meta"]["init_rng"])
    return checkpoint


class _Interrupt:
    requested = False       # a Ctrl-C arrived during an update and waits for its end
    updating = 0            # nesting depth of update_step()


def _on_signal(signum, frame):
    if _Interrupt.updating:
        _Interrupt.requested = True          # finish the update first, then stop (see update_step)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def update_step():
    """Wrap one training update (backward, optimizer step, counters, history): a Ctrl-C that arrives
    inside it takes effect when it is complete, so the checkpoint saved then is consistent
    (never half the parameters stepped, or a step taken but not counted)."""
    _Interrupt.updating += 1
    try:
        yield
    finally:
        _Interrupt.updating -= 1
        if not _Interrupt.updating and _Interrupt.requested:
            _Interrupt.requested = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def save_on_interrupt(save_fn):
    """Run the training loop inside; on Ctrl-C (SIGINT) or SIGTERM call save_fn() and exit with 130.
    Wrap each update in update_step() so the interrupt never lands in the middle of one."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt:
        print("\ninterrupted: saving a checkpoint before exiting ...", file=sys.stderr)
        save_fn()
        print("checkpoint saved; continue with --resume", file=sys.stderr)
        raise SystemExit(130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _Interrupt.requested, _Interrupt.updating = False, 0


class Stopwatch:
    """Wall seconds that survive resuming: start from the seconds already spent."""

    def __init__(self, already: float = 0.0):
        self.already, self.start = already, time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.already + time.perf_counter() - self.start


# ==================================================================== pictures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_image_grid(path: str, images: np.ndarray, rows: int, cols: int, title: str | None = None,
                    row_labels=None, col_labels=None, cell: float = 0.9) -> None:
    """images: (rows*cols, H, W) or (rows*cols, C, H, W) in [0, 1], laid out row by row."""
    plt = _pyplot()
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell + 0.6, rows * cell + (0.5 if title else 0.1)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < len(images):
            ax.imshow(np.clip(images[k], 0, 1), cmap="gray" if images.ndim == 3 else None, vmin=0, vmax=1,
                      interpolation="nearest")
    if col_labels is not None:
        for ax, label in zip(axes[0], col_labels):
            ax.set_title(str(label), fontsize=8)
    if row_labels is not None:
        for ax, label in zip(axes[:, 0], row_labels):
            ax.set_ylabel(str(label), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_curves(path: str, curves: dict, xlabel: str, ylabel: str, title: str | None = None,
                logy: bool = False) -> None:
    """curves: {label: y values} or {label: (x values, y values)}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        if isinstance(values, tuple):
            ax.plot(values[0], values[1], label=label)
        else:
            ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_summary(directory: str, lines: dict) -> None:
    print(json.dumps({"out": directory, **lines}))
