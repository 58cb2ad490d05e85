"""Pixel and label conversions for image models.

Conventions: "unit" pixels lie in [0, 1] (what ``load_mnist`` returns, what a sigmoid / Bernoulli
decoder models); "signed" pixels lie in [-1, 1] (what a tanh generator outputs, as in DCGAN).
Every function returns a new float32 array and leaves its input alone.
"""

from __future__ import annotations

import numpy as np

from .batching import as_generator


def _check_unit_range(x: np.ndarray, name: str) -> None:
    if x.size and (np.nanmin(x) < 0.0 or np.nanmax(x) > 1.0 or np.isnan(x).any()):
        raise ValueError(f"{name} expects pixels in [0, 1], got values in "
                         f"[{np.nanmin(x)}, {np.nanmax(x)}]{' and NaN' if np.isnan(x).any() else ''}")


def to_unit(x) -> np.ndarray:
    """Pixels to float32 in [0, 1]: integers 0..255 are divided by 255, floats in [0, 1] pass through.

    Floats outside [0, 1] raise ``ValueError`` (e.g. signed [-1, 1] data: use ``(x + 1) / 2``).
    """
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"to_unit expects integer pixels 0..255, got {x.min()}..{x.max()}")
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)  # always a copy
    _check_unit_range(x, "to_unit")
    return x


def to_signed(x) -> np.ndarray:
    """[0, 1] -> [-1, 1]:  s = 2 x - 1  (the range of a tanh output)."""
    return np.float32(2.0) * to_unit(x) - np.float32(1.0)


def binarize_fixed(x, threshold: float = 0.5) -> np.ndarray:
    """Deterministic binarisation: 1.0 where the [0, 1] pixel is strictly above ``threshold``, else 0.0."""
    return (to_unit(x) > threshold).astype(np.float32)


def binarize_dynamic(x, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Stochastic binarisation: each pixel ~ Bernoulli(p = its [0, 1] value), drawn anew per call.

    Resampling every epoch (Salakhutdinov & Murray, 2008) is the usual "dynamically binarised
    MNIST" for Bernoulli VAEs; it regularises better than one fixed binarisation.
    """
    probabilities = to_unit(x)
    return (as_generator(rng).random(probabilities.shape) < probabilities).astype(np.float32)


EVAL_BINARIZATION_SEED = 0     # the one fixed Bernoulli draw of the test images, independent of any run's seed


def fixed_binarization(images) -> np.ndarray:
    """Test images as ONE seeded Bernoulli draw of their grey levels, the same in every evaluation
    (VAE, CVAE, MADE, PixelCNN: their likelihoods on binary images sit in one column): (N, D) float32 0/1."""
    return binarize_dynamic(flatten(images), rng=EVAL_BINARIZATION_SEED)


def flatten(x) -> np.ndarray:
    """(N, ...) -> (N, prod(...)); e.g. (N, 1, 28, 28) -> (N, 784) for a fully connected layer."""
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError("flatten needs an array with a leading batch dimension")
    return x.reshape(len(x), -1)


def one_hot(labels, num_classes: int = 10) -> np.ndarray:
    """Integer labels (N,) -> float32 (N, num_classes), row i has a single 1.0 at column labels[i]."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"one_hot expects labels of shape (N,), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind != "f" or not np.all(labels == np.round(labels)):
            raise ValueError(f"one_hot expects integer labels, got dtype {labels.dtype}")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        bad = np.unique(labels[outside])
        raise ValueError(f"one_hot: labels must lie in 0..{num_classes - 1}, found {bad.tolist()}")
    encoded = np.zeros((len(labels), num_classes), dtype=np.float32)
    encoded[np.arange(len(labels)), labels.astype(np.int64)] = 1.0
    return encoded


def dequantize(images, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """images in [0, 1] (pixel / 255)  ->  x = (pixel + u) / 256 in [0, 1), u ~ U[0, 1) per pixel.

    Adding uniform noise inside each pixel's bin turns the 256 discrete levels into a continuous
    variable, so a density model cannot cheat by putting infinite density on the 256 values."""
    images = np.asarray(images)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"dequantize: expected images in [0, 1] (pixel / 255), found values in "
                         f"[{images.min():.4g}, {images.max():.4g}]")
    pixels = np.rint(images.astype(np.float64) * 255)
    return ((pixels + rng.random(images.shape)) / 256).astype(dtype)


def to_pixels(x: np.ndarray) -> np.ndarray:
    """Dequantised data x in [0, 1] -> the image it came from, pixel / 255 with pixel = floor(256 x)."""
    return (np.clip(np.floor(np.asarray(x) * 256), 0, 255) / 255).astype(np.float32)
