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
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds every NumPy generator (and the env); >= 0")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<model>-<time>)")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run saved in DIR/checkpoint.npz (writes into DIR)")
    if mnist:
        parser.add_argument("--data-dir", default=None,
                            help="folder with the standard MNIST files (IDX or mnist.npz); "
                                 "default: the 5,000 digits embedded in the package")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


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


def generator(seed: int, *position: int) -> np.random.Generator:
    """A generator for one purpose at one place in training, e.g. generator(seed, NOISE, epoch, batch).
    Derived from its position alone, so a resumed run draws exactly the numbers it would have drawn,
    with no generator state to save."""
    return np.random.default_rng([seed, *position])


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
    """A tqdm progress bar on stderr; set the environment variable NO_PROGRESS=1 to silence it."""
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


def tile(images: np.ndarray, rows: int, cols: int, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """(rows*cols, H, W) or (rows*cols, C, H, W) in [0, 1], row by row -> ONE picture
    (rows*(H+gap)-gap, cols*(W+gap)-gap[, C]) with `fill`-coloured gaps between the cells."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0, 1)
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)                   # (N, H, W, C) for drawing
        if images.shape[-1] == 1:
            images = images[..., 0]
    h, w = images.shape[1:3]
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + images.shape[3:], fill, np.float32)
    for k in range(min(len(images), rows * cols)):
        r, c = divmod(k, cols)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = images[k]
    return canvas


def save_image_grid(path: str, images: np.ndarray, rows: int, cols: int, title: str | None = None,
                    row_labels=None, col_labels=None, gap: int = 1, cell: float | None = None) -> None:
    """Images (rows*cols, [C,] H, W) in [0, 1], laid out row by row, saved as one PNG. Drawn with a
    single imshow of the tiled picture (one matplotlib axes per image is far slower). Mid-grey gaps
    separate the cells on dark (digits) and light (rendered frames) backgrounds alike."""
    plt = _pyplot()
    canvas = tile(images, rows, cols, gap, fill=0.5)
    h, w = np.asarray(images).shape[-2:]
    cell = cell or (0.6 if h <= 32 else 1.1)
    fig, ax = plt.subplots(figsize=(cols * cell + (0.9 if row_labels is not None else 0.2),
                                    rows * cell + (0.5 if title else 0.2) + (0.3 if col_labels is not None else 0)))
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([c * (w + gap) + w / 2 - 0.5 for c in range(cols)] if col_labels is not None else [])
    ax.set_yticks([r * (h + gap) + h / 2 - 0.5 for r in range(rows)] if row_labels is not None else [])
    if col_labels is not None:
        ax.set_xticklabels([str(label) for label in col_labels], fontsize=8)
        ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticklabels([str(label) for label in row_labels], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
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
