r"""Reductions and scans beyond the core's sum/mean/var/max/min: prod, cumsum, std.

As in the core (autodiff/tensor_methods.py), a reduction's rule gives one gradient per output value in the
keepdims shape (`_kept`) and the engine broadcasts it back over the reduced axes.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_tensor, value
from ..tensor_methods import _0d_axis, _kept
from .. import functional as F
from .shape import flip, normalize_axes


def prod(x, axis=None, keepdims: bool = False) -> Tensor:
    r"""prod: P = prod_j x_j over each reduced slice; dP/dx_i = prod_{j != i} x_j, the product of the others.

    Derivation, and why zeros need care. P is linear in each x_i: P = x_i * prod_{j != i} x_j, so its
    derivative is the product of the others. Without a zero in the slice that is P / x_i (cheap). With
    one zero, at k: the product of the others is nonzero only for i = k (prod_{j != k} x_j), and P / x_i
    would be 0 / 0 at k. With two or more zeros, every product of the others contains a zero: all 0.
    So when x has a zero the rule multiplies out the leave-one-out products: per slice of n values an
    n x n table whose row i is the slice with x_i replaced by 1, reduced by prod (O(n^2), exact for any
    number of zeros, and twice differentiable: it is prod again)."""
    x = as_tensor(x)
    axis = _0d_axis(x, axis)
    out = Tensor._make(np.prod(x.data, axis=axis, keepdims=keepdims), (x,), "prod")
    kept = _kept(x.shape, axis)

    def rule(g, x, out):
        if not (value(x) == 0).any():
            return g.reshape(kept) * out.reshape(kept) / x
        return g.reshape(kept) * _product_of_the_others(x, axis)
    out._backward = rule
    return out


def _product_of_the_others(x, axis):
    """prod_{j != i} x_j over i's slice, for every element i of x (x's shape)."""
    reduced = normalize_axes(range(x.ndim) if axis is None else axis, x.ndim)
    others = [a for a in range(x.ndim) if a not in reduced]
    order = others + sorted(reduced)                            # the reduced axes last
    lead = tuple(x.shape[a] for a in others)
    n = int(np.prod([x.shape[a] for a in reduced], dtype=int))
    rows = x.transpose(order).reshape(*lead, 1, n)              # each slice as a row
    table = F.where(np.eye(n, dtype=bool), 1, rows)             # (..., n, n): row i has x_i -> 1
    leave_one_out = prod(table, axis=-1)                        # (..., n)
    return leave_one_out.reshape(*(x.shape[a] for a in order)).transpose(tuple(np.argsort(order)))


def cumsum(x, axis=None) -> Tensor:
    r"""cumsum: y_i = sum_{j <= i} x_j along `axis` (None: over the flattened x, as NumPy). Each x_j is in
    every y_i with i >= j, so dL/dx_j = sum_{i >= j} g_i: the cumulative sum of g taken from the end,
    flip(cumsum(flip(g)))."""
    x = as_tensor(x)
    if axis is None:
        return cumsum(x.reshape(-1), 0)
    if x.ndim == 0:                                             # PyTorch: a 0-d tensor is its own cumsum
        return x.reshape(())
    out = Tensor._make(np.cumsum(x.data, axis=axis), (x,), "cumsum")
    out._backward = lambda g, x, out: flip(cumsum(flip(g, axis), axis), axis)
    return out


def std(x, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    r"""std = sqrt(var), var = sum_i (x_i - mean)^2 / (n - ddof) (ddof = 0 as NumPy; PyTorch's default is 1):
    d std/dx_i = d var/dx_i / (2 std) = (x_i - mean) / ((n - ddof) std).
    At zero variance (a slice of equal values) that is 0 / 0; the gradient there is 0, as PyTorch."""
    x = as_tensor(x)
    axis = _0d_axis(x, axis)
    out = Tensor._make(np.std(x.data, axis=axis, keepdims=keepdims, ddof=ddof), (x,), "std")
    kept, count = _kept(x.shape, axis), x.data.size // max(out.data.size, 1)
    zero = (out.data == 0).reshape(kept)

    def rule(g, x, out):
        spread = F.where(zero, 1, out.reshape(kept))                # std, with 1 where it is 0
        return g.reshape(kept) * (x - x.mean(axis=axis, keepdims=True)) / ((count - ddof) * spread) * ~zero
    out._backward = rule
    return out
