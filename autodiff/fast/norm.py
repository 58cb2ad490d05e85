r"""Fast batch norm: replaces autodiff/norm.py's `batch_norm`.

Why it computes the same thing. The equations are the reference's (its docstring); two things differ:
the per-channel sums (the statistics, and sum(g), sum(g x_hat) in backward) are BLAS products with a
vector of ones (`sum_per_channel`: NumPy's axis sums step through short H*W rows one at a time), and
x_hat is computed once in forward and kept for backward instead of being recomputed from x.
"""
from __future__ import annotations

import numpy as np

from autodiff.backend import run_reference
from autodiff.norm import _check, update_running_stats
from autodiff.tensor import Tensor, as_tensor
from .taken import note


def sum_per_channel(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (C,): the sum over every axis but C. Each (n, c) row of H*W numbers is summed by
    one BLAS product with a vector of ones."""
    N, C = a.shape[:2]
    if a.ndim > 2:
        rows = a.reshape(N * C, int(np.prod(a.shape[2:])))
        a = (rows @ np.ones(rows.shape[1], a.dtype)).reshape(N, C)
    return a.sum(axis=0)


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.1,
               eps: float = 1e-5):
    """Replaces autodiff.norm.batch_norm (see the module docstring)."""
    x = as_tensor(x)
    C, n, shape, _ = _check(x, gamma, beta, running_mean, running_var, training)
    note("batch_norm")
    dtype = x.dtype

    def channel_sum(a: np.ndarray) -> np.ndarray:          # -> (1, C[, 1, 1])
        return sum_per_channel(a).reshape(shape)

    if training:
        mu = channel_sum(x.data) / dtype.type(n)
        x_hat = x.data - mu                                    # centred; becomes x_hat below
        var = channel_sum(np.square(x_hat)) / dtype.type(n)    # biased: used to normalise
        if running_mean is not None:
            update_running_stats(running_mean, running_var, mu.reshape(C), var.reshape(C), n, momentum)
        statistics = (None, None)                              # a rebuilt node uses the batch's again
    else:
        statistics = (np.array(running_mean, dtype), np.array(running_var, dtype))
        x_hat = x.data - statistics[0].reshape(shape)
        var = statistics[1].reshape(shape)
    inv_std = 1 / np.sqrt(var + dtype.type(eps))
    x_hat *= inv_std
    scale = inv_std if gamma is None else inv_std * gamma.data.reshape(shape)   # gamma / sqrt(var + eps)
    y = x_hat.copy() if gamma is None else x_hat * gamma.data.reshape(shape)
    if beta is not None:
        y += beta.data.reshape(shape)
    out = Tensor._make(y, tuple(t for t in (x, gamma, beta) if t is not None), "batch_norm")
    out._recompute = lambda: run_reference("batch_norm", x, gamma, beta, *statistics, training, momentum, eps)

    def gradients(g, *inputs):
        dgamma_needed = gamma is not None and gamma.requires_grad
        sum_g_xhat = channel_sum(g * x_hat) if dgamma_needed or (training and x.requires_grad) else None
        sum_g = channel_sum(g) if beta is not None or (training and x.requires_grad) else None
        dx = None
        if x.requires_grad and training:    # gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))
            dx = x_hat * (sum_g_xhat / dtype.type(n))
            np.subtract(g, dx, out=dx)
            dx -= sum_g / dtype.type(n)
            dx *= scale
        elif x.requires_grad:               # g * gamma / sqrt(running_var + eps)
            dx = g * scale
        grads = [dx]
        if gamma is not None:
            grads.append(sum_g_xhat.reshape(C) if dgamma_needed else None)
        if beta is not None:
            grads.append(sum_g.reshape(C))
        return tuple(grads)
    out._backward = gradients
    return out
