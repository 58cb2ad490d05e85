"""What the command-line families share beyond the run harness (nets/harness.py): MNIST loading with
one-line errors, samples.npz, the closing JSON line, and the pictures (matplotlib imported only when drawing)."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from nets.checkpoint import save_npz_atomic
from nets.harness import UsageError, add_config_flags, add_run_flags


def load_split(split: str, data_dir):
    """(images, labels) of one MNIST split, with a one-line error if the files are missing or broken."""
    from nets.data import load_mnist
    try:
        return load_mnist(split, data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None


def load_mnist_splits(data_dir):
    """(train_images, train_labels, test_images, test_labels)."""
    return (*load_split("train", data_dir), *load_split("test", data_dir))


def write_samples(directory: str, images: np.ndarray, labels=None, **extra) -> None:
    """DIR/samples.npz: images float32 in [0, 1] (and labels int64, and any extra arrays)."""
    arrays = {"images": np.asarray(images, dtype=np.float32)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    save_npz_atomic(os.path.join(directory, "samples.npz"), arrays, compressed=True)


def print_summary(directory: str, lines: dict) -> None:
    """The closing line of a run: one JSON object on stdout."""
    print(json.dumps({"out": directory, **lines}))


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


def add_command(subparsers, name: str, help: str, description: str, config_cls, run_fn, mnist: bool = True):
    """A subcommand: the run flags (with --data-dir when `mnist`), one flag per field of the config, the run
    function; returns the parser, to add more."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(parser, mnist=mnist)
    add_config_flags(parser, config_cls)
    parser.set_defaults(run=run_fn)
    return parser
