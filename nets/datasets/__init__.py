"""Data for the lab: MNIST loading and downloading, mini-batches, pixel and label conversions.

NumPy only, and nothing else from ``nets``, so this package also works on its own.

    from nets.datasets import load_mnist, iterate_minibatches, one_hot
    x_train, y_train = load_mnist("train")   # embedded 4,500 digits, float32 (N, 1, 28, 28) in [0, 1]
    x_val, y_val = load_mnist("test")        # embedded 500 held-out digits (a validation set)
    x_test, y_test = load_mnist("test", data_dir="data/mnist")   # the official 10,000, if present
"""

from .batching import iterate_minibatches
from .mnist import (
    DEFAULT_MIRRORS,
    EMBEDDED_SHA256,
    MNIST_MD5,
    VALID_SPLITS,
    MNISTDownloadError,
    MNISTFormatError,
    download_mnist,
    load_mnist,
)
from .transforms import (EVAL_BINARIZATION_SEED, binarize_dynamic, binarize_fixed, dequantize, fixed_binarization,
                         flatten, one_hot, to_pixels, to_signed, to_unit)

__all__ = [
    "DEFAULT_MIRRORS",
    "EVAL_BINARIZATION_SEED",
    "EMBEDDED_SHA256",
    "MNIST_MD5",
    "VALID_SPLITS",
    "MNISTDownloadError",
    "MNISTFormatError",
    "binarize_dynamic",
    "binarize_fixed",
    "dequantize",
    "download_mnist",
    "fixed_binarization",
    "flatten",
    "iterate_minibatches",
    "load_mnist",
    "one_hot",
    "to_pixels",
    "to_signed",
    "to_unit",
]
