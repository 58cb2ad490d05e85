r"""Batch normalisation and dropout: the two layers that behave differently in training and in eval.

Notation: N batch size, C channels, H, W image size; "per channel" statistics are taken over the
axes (N,) for (N, C) input and (N, H, W) for (N, C, H, W) input, n = the number of values per channel.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


# ==================================================================== batch norm
def sum_per_channel(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (C,): the sum over every axis but C (BatchNorm's statistics, a conv bias's
    gradient). Each (n, c) row of H*W numbers is summed by one BLAS product with a vector of ones,
    8x faster than a.sum(axis=(0, 2, 3)) or per-row sums, which step through short rows: 0.05 against
    0.4 ms on (128, 64, 14, 14)."""
    N, C = a.shape[:2]
    if a.ndim > 2:
        rows = a.reshape(N * C, int(np.prod(a.shape[2:])))
        a = (rows @ np.ones(rows.shape[1], a.dtype)).reshape(N, C)
    return a.sum(axis=0)


def batch_norm(x: Tensor, gamma, beta, running_mean, running_var, training: bool,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Batch normalisation (PyTorch's F.batch_norm) for (N, C) or (N, C, H, W) input.

    x:            (N, C) or (N, C, H, W) Tensor
    gamma, beta:  (C,) Tensors (scale, shift) or None (= 1 and 0, not learned)
    running_mean, running_var: (C,) NumPy arrays, updated IN PLACE when training, or None
    training:     True -> batch statistics; False -> running statistics
    momentum:     running = (1 - momentum) * running + momentum * batch_statistic
    eps:          added to the variance before the square root

    Equations [train], per channel, means over the n = N(*H*W) values of the channel:
        mu = mean(x),  var = mean((x - mu)^2)                    (biased: used to normalise)
        x_hat = (x - mu) / sqrt(var + eps),   y = gamma * x_hat + beta
        running_mean <- (1-momentum) running_mean + momentum mu
        running_var  <- (1-momentum) running_var  + momentum var * n/(n-1)   (UNBIASED, as PyTorch)
      backward (mu and var depend on x; g = dL/dy):
        dx     = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))
        dgamma = sum(g * x_hat),  dbeta = sum(g)
    Equations [eval] (running statistics are constants):
        x_hat = (x - running_mean) / sqrt(running_var + eps),  y = gamma * x_hat + beta
        dx = g * gamma / sqrt(running_var + eps),  dgamma = sum(g * x_hat),  dbeta = sum(g)
    """
    op = "batch_norm"
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: expected (N, C) or (N, C, H, W) input, got shape {tuple(x.shape)}")
    C = x.shape[1]
    for name, t in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for input of shape "
                             f"{tuple(x.shape)}, got {tuple(t.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    N = x.shape[0]
    n = x.data.size // C
    bshape = (1, C) if x.ndim == 2 else (1, C, 1, 1)           # broadcast a (C,) array over x
    dtype = x.dtype

    def channel_sum(a: np.ndarray) -> np.ndarray:          # -> (1, C[, 1, 1])
        return sum_per_channel(a).reshape(bshape)

    if training:
        if n <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got input "
                             f"shape {tuple(x.shape)}")
        mu = channel_sum(x.data) / dtype.type(n)
        x_hat = x.data - mu                                    # centred; becomes x_hat below
        var = channel_sum(np.square(x_hat)) / dtype.type(n)    # biased: used to normalise
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mu.reshape(C)
            running_var *= 1 - momentum
            running_var += momentum * var.reshape(C) * (n / (n - 1))      # unbiased, as PyTorch
    else:
        if running_mean is None:
            raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
        x_hat = x.data - np.asarray(running_mean, dtype).reshape(bshape)
        var = np.asarray(running_var, dtype).reshape(bshape)
    inv_std = 1 / np.sqrt(var + dtype.type(eps))
    x_hat *= inv_std
    scale = inv_std if gamma is None else inv_std * gamma.data.reshape(bshape)   # gamma / sqrt(var+eps)
    y = x_hat.copy() if gamma is None else x_hat * gamma.data.reshape(bshape)
    if beta is not None:
        y += beta.data.reshape(bshape)

    parents = tuple(t for t in (x, gamma, beta) if t is not None)
    out = Tensor._make(y, parents, op)
    if not out.requires_grad:
        return out

    def _backward(out):
        g = out.grad
        dx_needed = x.requires_grad
        dgamma_needed = gamma is not None and gamma.requires_grad
        dbeta_needed = beta is not None and beta.requires_grad
        sum_g_xhat = channel_sum(g * x_hat) if dgamma_needed or (training and dx_needed) else None
        sum_g = channel_sum(g) if dbeta_needed or (training and dx_needed) else None
        if dgamma_needed:
            gamma._accumulate(sum_g_xhat.reshape(C))
        if dbeta_needed:
            beta._accumulate(sum_g.reshape(C))
        if dx_needed and training:      # gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))
            dx = x_hat * (sum_g_xhat / dtype.type(n))
            np.subtract(g, dx, out=dx)
            dx -= sum_g / dtype.type(n)
            dx *= scale
            x._accumulate(dx)
        elif dx_needed:                 # g * gamma / sqrt(running_var + eps)
            x._accumulate(g * scale)
    out._backward = _backward
    return out


# ==================================================================== dropout
def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator) -> Tensor:
    r"""Inverted dropout: zero each element with probability p, scale the kept ones by 1/(1-p),
    so the expected value is unchanged and eval needs no rescaling.

    x: any shape;  p in [0, 1);  rng: np.random.Generator (the mask is drawn from it).
    y = x * mask / (1-p),  dy/dx = mask / (1-p)  (mask ~ Bernoulli(1-p)).
    Identity (returns x itself) when not training or p == 0.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = rng.random(x.shape) >= p
    scaled_mask = keep.astype(x.dtype) / np.asarray(1 - p, x.dtype)
    out = Tensor._make(x.data * scaled_mask, (x,), "dropout")
    out._backward = lambda out: x._accumulate(out.grad * scaled_mask)
    return out
