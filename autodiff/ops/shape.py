r"""Shape operations: squeeze/unsqueeze/flatten (reshapes), flip and roll (their own kind of inverse),
repeat/tile/repeat_interleave (copies: the gradient adds the copies up), tril/triu (masks), diag/diagonal/
trace and sort (gathers: indexing, whose gradient adds back into the gathered positions), argsort (an
integer result, no gradient) and chunk (slices).

Axes follow NumPy and PyTorch: negative counts from the end, and a 0-d tensor accepts axis 0 or -1.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_tensor
from ..tensor_methods import index_add
from .. import functional as F


def normalize_axes(axis, ndim: int) -> tuple:
    """Axes as non-negative ints, each checked (a 0-d tensor takes 0 and -1, as PyTorch)."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    size = max(ndim, 1)
    for a in axes:
        if not -size <= a < size:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    result = tuple(int(a) % size for a in axes)
    if len(set(result)) != len(result):
        raise ValueError(f"axis {axis}: an axis is repeated")
    return result


# ==================================================================== reshapes
def squeeze(x, axis=None) -> Tensor:
    """Drop size-1 axes: all of them, or those in `axis` (an axis of another size is kept, as PyTorch)."""
    x = as_tensor(x)
    axes = range(x.ndim) if axis is None else normalize_axes(axis, x.ndim)
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1)))


def unsqueeze(x, axis: int) -> Tensor:
    """Insert a size-1 axis at position `axis` of the result (-1: last)."""
    x = as_tensor(x)
    axis = normalize_axes(axis, x.ndim + 1)[0]
    return x.reshape(x.shape[:axis] + (1,) + x.shape[axis:])


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge the axes start_dim..end_dim into one (PyTorch's flatten; a 0-d tensor becomes shape (1,))."""
    x = as_tensor(x)
    if x.ndim == 0:
        return x.reshape(1)
    start, end = (normalize_axes(a, x.ndim)[0] for a in (start_dim, end_dim))
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {x.shape})")
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


# ==================================================================== flip and roll
def flip(x, axis=None) -> Tensor:
    """Reverse the order along `axis` (None: every axis): its own inverse, so the gradient is flipped back."""
    x = as_tensor(x)
    if axis is not None:
        axis = normalize_axes(axis, x.ndim) if x.ndim else ()          # a 0-d tensor: nothing to flip
    out = Tensor._make(np.flip(x.data, axis), (x,), "flip")
    out._backward = lambda g, x, out: flip(g, axis)
    return out


def roll(x, shifts, axis=None) -> Tensor:
    """Shift cyclically by `shifts` along `axis` (None: the flattened x, as NumPy and PyTorch): the
    gradient is rolled back by -shifts."""
    x = as_tensor(x)
    out = Tensor._make(np.roll(x.data, shifts, axis), (x,), "roll")
    back = tuple(-s for s in shifts) if isinstance(shifts, (tuple, list)) else -shifts
    out._backward = lambda g, x, out: roll(g, back, axis)
    return out


# ==================================================================== copies
def tile(x, reps) -> Tensor:
    """np.tile / torch.tile: reps copies along each axis (reps shorter than x.ndim is padded with 1s in
    front, longer adds axes in front). Output axis k, of size r_k n_k, read as (r_k, n_k): the gradient
    sums over the r_k copies."""
    x = as_tensor(x)
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    d = max(len(reps), x.ndim)
    reps, base = (1,) * (d - len(reps)) + reps, (1,) * (d - x.ndim) + x.shape
    out = Tensor._make(np.tile(x.data.reshape(base), reps), (x,), "tile")
    pairs = [v for r, n in zip(reps, base) for v in (r, n)]
    out._backward = lambda g, x, out: g.reshape(pairs).sum(axis=tuple(range(0, 2 * d, 2))).reshape(x.shape)
    return out


def repeat(x, *sizes) -> Tensor:
    """PyTorch's x.repeat(*sizes): copies of the whole tensor, as tile, but `sizes` must cover every axis
    (NumPy's np.repeat, which repeats each element, is `repeat_interleave`)."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    x = as_tensor(x)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: give a count for each of the {x.ndim} axes (got {sizes}); tile pads with 1s")
    return tile(x, sizes)


def repeat_interleave(x, repeats, axis=None) -> Tensor:
    """np.repeat / torch.repeat_interleave: each element `repeats` times along `axis` (None: flattened).
    A gather at the indices np.repeat(arange(n), repeats): the gradient adds each element's copies."""
    x = as_tensor(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = normalize_axes(axis, x.ndim)[0]
    return x[(slice(None),) * axis + (np.repeat(np.arange(x.shape[axis]), repeats),)]


# ==================================================================== triangles and diagonals
def tril(x, k: int = 0) -> Tensor:
    """The lower triangle of the last two axes (on and below diagonal k), zeros above: the gradient is
    g's lower triangle."""
    return _triangle("tril", np.tril, x, k)


def triu(x, k: int = 0) -> Tensor:
    """The upper triangle of the last two axes (on and above diagonal k): the gradient is g's upper triangle."""
    return _triangle("triu", np.triu, x, k)


def _triangle(name: str, triangle, x, k: int) -> Tensor:
    x = as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"{name}: expected a matrix or a batch of matrices (..., n, m), got shape {x.shape}")
    return F.where(triangle(np.ones(x.shape[-2:], dtype=bool), k), x, 0)


def diagonal(x, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """np.diagonal / torch.diagonal: the elements (i, i + offset) of axes (axis1, axis2), as the LAST axis
    of the result. A gather: the gradient goes back onto that diagonal."""
    x = as_tensor(x)
    axis1, axis2 = normalize_axes((axis1, axis2), x.ndim)
    rest = [a for a in range(x.ndim) if a not in (axis1, axis2)]
    n1, n2 = x.shape[axis1], x.shape[axis2]
    length = max(min(n1 - max(-offset, 0), n2 - max(offset, 0)), 0)
    i = np.arange(length)
    return x.transpose(rest + [axis1, axis2])[..., i + max(-offset, 0), i + max(offset, 0)]


def diag(x, k: int = 0) -> Tensor:
    """torch.diag / np.diag: a vector -> the square matrix with it on diagonal k; a matrix -> its diagonal k."""
    x = as_tensor(x)
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise ValueError(f"diag: expected a vector or a matrix, got shape {x.shape}")
    n, i = x.shape[0] + abs(k), np.arange(x.shape[0])
    return index_add(Tensor(np.zeros((n, n), x.dtype)), (i + max(-k, 0), i + max(k, 0)), x)


def trace(x, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """The sum of diagonal `offset` (np.trace; PyTorch's takes a matrix): d/dx = 1 on that diagonal, else 0."""
    return diagonal(x, offset, axis1, axis2).sum(axis=-1)


# ==================================================================== sorting
def argsort(x, axis: int = -1, descending: bool = False) -> Tensor:
    """The permutation that sorts x along `axis`, ties in their original order (stable): an integer
    tensor, no gradient."""
    data = as_tensor(x).data
    if data.ndim == 0:
        return Tensor(np.zeros((), np.int64))
    if not descending:
        return Tensor(np.argsort(data, axis=axis, kind="stable"))
    n = data.shape[axis]                        # descending and stable: sort the reversed x, reverse back
    return Tensor(n - 1 - np.flip(np.argsort(np.flip(data, axis), axis=axis, kind="stable"), axis))


def sort(x, axis: int = -1, descending: bool = False) -> tuple:
    """(values, indices) as torch.sort: values = x gathered along `axis` at the sorting permutation, so the
    gradient of each x_i is the gradient of the place it was sorted to; indices as argsort (no gradient)."""
    x = as_tensor(x)
    order = argsort(x, axis, descending)
    if x.ndim == 0:
        return x[()], order
    index = list(np.indices(order.shape, sparse=True))
    index[axis] = order.data
    return x[tuple(index)], order


# ==================================================================== cutting
def chunk(x, chunks: int, axis: int = 0) -> list:
    """torch.chunk: pieces of ceil(n / chunks) along `axis` (the last may be smaller, and there may be
    fewer than `chunks`). Slices: each piece's gradient flows back into its place."""
    x = as_tensor(x)
    n = x.shape[axis]
    size = -(-n // chunks) if chunks > 0 else 0
    if size == 0:
        raise ValueError(f"chunk: need chunks >= 1 and a non-empty axis, got chunks={chunks}, size {n}")
    return F.split(x, list(range(size, n, size)), axis)
