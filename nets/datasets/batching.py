"""Mini-batches over aligned arrays (images, labels, ...), with seeded shuffling.

One call is one epoch: every sample appears exactly once (or, with ``drop_last``, all but the
``N % batch_size`` left over). The same permutation indexes every array, so row i of the images
still belongs to row i of the labels.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A ``Generator`` passes through (its state advances); an int seeds a new one; None is fresh."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def iterate_minibatches(*arrays: np.ndarray, batch_size: int, shuffle: bool = True,
                        rng: np.random.Generator | int | None = None,
                        drop_last: bool = False) -> Iterator:
    """Yield one epoch of mini-batches taken along the first axis of every array.

    Args:
        *arrays: one or more arrays with equal first dimension N.
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: visit samples in a random order (one permutation shared by all arrays).
        rng: seed or ``np.random.Generator`` for the permutation. The same seed gives the same
            batches; pass one Generator across epochs to get a new, reproducible order each epoch.
        drop_last: skip the final batch if it has fewer than ``batch_size`` samples.

    Yields:
        With one array, the batch itself; with several, a tuple of batches in argument order.
        Unshuffled batches are views of the inputs; shuffled ones are copies.

    Example:
        for images, labels in iterate_minibatches(x, y, batch_size=64, rng=0): ...
    """
    if not arrays:
        raise ValueError("iterate_minibatches needs at least one array")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    lengths = [len(array) for array in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"all arrays must have the same length (first dimension), got {lengths}")

    count = lengths[0]
    order = as_generator(rng).permutation(count) if shuffle else None
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        if order is None:
            batch = tuple(array[start:start + batch_size] for array in arrays)
        else:
            indices = order[start:start + batch_size]
            batch = tuple(array[indices] for array in arrays)
        yield batch[0] if len(batch) == 1 else batch
