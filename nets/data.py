"""Short import path for the data helpers: ``from nets.data import load_mnist``.

Everything lives in :mod:`nets.datasets`; this module only re-exports its public names.
"""

from .datasets import (  # noqa: F401  (re-exports)
    DEFAULT_MIRRORS,
    EMBEDDED_SHA256,
    EVAL_BINARIZATION_SEED,
    MNIST_MD5,
    VALID_SPLITS,
    MNISTDownloadError,
    MNISTFormatError,
    binarize_dynamic,
    binarize_fixed,
    dequantize,
    download_mnist,
    fixed_binarization,
    flatten,
    iterate_minibatches,
    load_mnist,
    one_hot,
    to_pixels,
    to_signed,
    to_unit,
)
from .datasets import __all__  # noqa: F401
