r"""Batch normalisation and dropout: the two layers that behave differently in training and in eval.

Notation: N batch size, C channels, H, W image size; "per channel" statistics are taken over the
axes (N,) for (N, C) input and (N, H, W) for (N, C, H, W) input, n = the number of values per channel.
"""
from __future__ import annotations

import numpy as np

from .backend import replaceable
from .tensor import Tensor, as_tensor


@replaceable("batch_norm")
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
    x = as_tensor(x)
    C, n, shape, axes = _check(x, gamma, beta, running_mean, running_var, training)
    if training:
        mu, var = x.data.mean(axis=axes), x.data.var(axis=axes)
        if running_mean is not None:
            update_running_stats(running_mean, running_var, mu, var, n, momentum)
    else:                                                           # constants: copies, as they are now
        ### BEGIN SOLUTION batch_norm_eval
        ### task: in eval mode, normalise with copies of the running statistics
        ### hint: batch_norm's docstring, Equations [eval]
        mu, var = (np.array(a, x.dtype) for a in (running_mean, running_var))
        ### END SOLUTION

    def normalised(x):               # (x_hat, 1 / sqrt(var + eps)) on arrays or Tensors
        if not training:
            return (x - mu.reshape(shape)) * (var.reshape(shape) + eps) ** -0.5, (var.reshape(shape) + eps) ** -0.5
        centred = x - x.mean(axis=axes, keepdims=True)
        inv_std = ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5
        return centred * inv_std, inv_std

    def dx(g, x, *rest):                           # rest: gamma (if given), beta (if given), out
        x_hat, inv_std = normalised(x)
        scale = inv_std if gamma is None else rest[0].reshape(shape) * inv_std    # gamma / sqrt(var + eps)
        ### BEGIN SOLUTION batch_norm_backward
        ### task: dL/dx in eval mode (constants) and in train mode (mu and var depend on x)
        ### hint: batch_norm's docstring: dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))
        if not training:
            return g * scale
        return scale * (g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
        ### END SOLUTION

    y = (x.data - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + x.dtype.type(eps))
    rules = [dx]
    if gamma is not None:
        y = y * gamma.data.reshape(shape)
        rules.append(lambda g, x, *rest: (g * normalised(x)[0]).sum(axis=axes))
    if beta is not None:
        y = y + beta.data.reshape(shape)
        rules.append(lambda g, *inputs: g.sum(axis=axes))
    out = Tensor._make(y, tuple(t for t in (x, gamma, beta) if t is not None), "batch_norm")
    out._backward = tuple(rules)
    return out


def update_running_stats(running_mean, running_var, mu, var, n: int, momentum: float) -> None:
    """running <- (1 - momentum) running + momentum statistic, in place, for (C,) arrays; the variance
    unbiased (var * n / (n - 1), as PyTorch). Shared with the fast backend."""
    ### BEGIN SOLUTION batch_norm_running_stats
    ### task: update the running mean and variance in place
    ### hint: batch_norm's docstring, Equations [train]: running_var uses the UNBIASED var * n/(n-1)
    running_mean *= 1 - momentum
    running_mean += momentum * mu
    running_var *= 1 - momentum
    running_var += momentum * var * (n / (n - 1))
    ### END SOLUTION


def _check(x: Tensor, gamma, beta, running_mean, running_var, training: bool) -> tuple:
    """-> (C, n values per channel, the shape a (C,) array broadcasts as, the axes of the statistics)."""
    op = "batch_norm"
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: expected (N, C) or (N, C, H, W) input, got shape {tuple(x.shape)}")
    C = x.shape[1]
    for name, t in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for input of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    n = x.data.size // max(C, 1)
    if training and n <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input shape "
                         f"{tuple(x.shape)}")
    if not training and running_mean is None:
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    return C, n, (1, C) + (1,) * (x.ndim - 2), (0,) if x.ndim == 2 else (0, 2, 3)


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
    ### BEGIN SOLUTION dropout
    ### task: draw the kept mask (probability 1-p) scaled by 1/(1-p), apply it, and its rule
    ### hint: dropout's docstring: y = x * mask / (1-p), dy/dx = mask / (1-p)
    scaled_mask = (rng.random(x.shape) >= p).astype(x.dtype) / np.asarray(1 - p, x.dtype)
    out = Tensor._make(x.data * scaled_mask, (x,), "dropout")
    out._backward = lambda g, x, out: g * scaled_mask
    ### END SOLUTION
    return out
