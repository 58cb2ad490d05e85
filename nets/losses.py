r"""Loss functions, numerically stable. `reduction` is 'mean' (default), 'sum' or 'none'.

The stable forms:
    BCE from logits x, target t:  l = max(x, 0) - x t + log(1 + e^-|x|),  dl/dx = sigmoid(x) - t
    cross entropy from logits:    l = logsumexp(x) - x_target              (never exp of a large number)
    KL(N(mu, sigma^2) || N(0, 1)) = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2)   (closed form)
"""
from __future__ import annotations

import math

import numpy as np

import autodiff.functional as F
from autodiff import Tensor


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name: str, a, b) -> None:
    if tuple(np.shape(a.data if isinstance(a, Tensor) else a)) != tuple(np.shape(b.data if isinstance(b, Tensor) else b)):
        raise ValueError(f"{name}: input and target must have the same shape, got "
                         f"{np.shape(a.data if isinstance(a, Tensor) else a)} and "
                         f"{np.shape(b.data if isinstance(b, Tensor) else b)}")


def binary_cross_entropy_with_logits(logits: Tensor, targets, reduction: str = "mean") -> Tensor:
    r"""-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] = max(x, 0) - x t + log(1 + e^-|x|).
    dl/dx = sigmoid(x) - t, dl/dt = -x. Finite value and gradient at x = +-1000."""
    _same_shape("binary_cross_entropy_with_logits", logits, targets)
    t = targets if isinstance(targets, Tensor) else Tensor(np.asarray(targets, dtype=logits.dtype))
    x = logits.data
    ### BEGIN SOLUTION bce_with_logits
    ### task: the stable loss max(x, 0) - x t + log(1 + e^-|x|) and its two rules (logits, targets)
    ### hint: the function's docstring: dl/dx = sigmoid(x) - t, dl/dt = -x
    out = Tensor._make(np.maximum(x, 0) - x * t.data + np.log1p(np.exp(-np.abs(x))), (logits, t), "bce_with_logits")
    out._backward = (lambda g, x, t, out: g * (F.sigmoid(x) - t),
                     lambda g, x, t, out: -g * x)
    ### END SOLUTION
    return _reduce(out, reduction)


def binary_cross_entropy(probs: Tensor, targets, reduction: str = "mean") -> Tensor:
    r"""-[t log p + (1 - t) log(1 - p)] on probabilities, each log clamped at -100 as PyTorch does
    (so p = 0 or 1 gives a large finite loss, not inf). dl/dp = -t/p + (1 - t)/(1 - p) where unclamped."""
    _same_shape("binary_cross_entropy", probs, targets)
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets, dtype=probs.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p, log_q = np.log(probs.data), np.log1p(-probs.data)
    unclamped_p, unclamped_q = log_p > -100, log_q > -100          # where each log is not clamped
    out = Tensor._make(-(t * np.maximum(log_p, -100) + (1 - t) * np.maximum(log_q, -100)), (probs,), "bce")
    out._backward = lambda g, p, out: g * (F.where(unclamped_p, -t / F.where(unclamped_p, p, 1), 0)
                                           + F.where(unclamped_q, (1 - t) / F.where(unclamped_q, 1 - p, 1), 0))
    return _reduce(out, reduction)


def cross_entropy(logits: Tensor, targets, reduction: str = "mean") -> Tensor:
    r"""-log softmax(x)[target] = logsumexp(x) - x[target] for logits (N, K) and int targets (N,);
    or -sum(t * log_softmax(x)) for probability targets of shape (N, K)."""
    log_probs = F.log_softmax(logits, axis=-1)
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if targets.shape == logits.shape and np.issubdtype(targets.dtype, np.floating):
        return _reduce(-(log_probs * Tensor(targets.astype(logits.dtype))).sum(axis=-1), reduction)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"cross_entropy: expected logits (N, K) and integer targets (N,), got "
                         f"{logits.shape} and {targets.shape} {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: targets must be in [0, {logits.shape[1]}), "
                         f"got values in [{targets.min()}, {targets.max()}]")
    ### BEGIN SOLUTION cross_entropy_picked
    ### task: pick each row's -log_softmax at its target class and reduce
    ### hint: the function's docstring: -log softmax(x)[target]
    return _reduce(-log_probs[np.arange(len(targets)), targets], reduction)
    ### END SOLUTION


def mse_loss(pred: Tensor, target, reduction: str = "mean") -> Tensor:
    """(pred - target)^2."""
    _same_shape("mse_loss", pred, target)
    diff = pred - target
    return _reduce(diff * diff, reduction)


def huber_loss(pred: Tensor, target, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Huber: 1/2 d^2 if |d| <= delta else delta (|d| - delta/2), with d = pred - target;
    dl/dd = d clipped to [-delta, delta] (quadratic near 0, linear tails: robust TD errors)."""
    _same_shape("huber_loss", pred, target)
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=pred.dtype))
    d = pred.data - t.data
    out = Tensor._make(np.where(np.abs(d) <= delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)), (pred, t), "huber")
    out._backward = (lambda g, pred, t, out: g * (pred - t).clip(-delta, delta),
                     lambda g, pred, t, out: -g * (pred - t).clip(-delta, delta))
    return _reduce(out, reduction)


def smooth_l1_loss(pred: Tensor, target, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    """smooth L1 = huber(delta=beta) / beta (PyTorch's definition)."""
    return huber_loss(pred, target, delta=beta, reduction=reduction) / beta


def gaussian_kl(mu: Tensor, logvar: Tensor, axis: int = -1) -> Tensor:
    r"""KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), summed over
    `axis` (the latent dimensions): one value per example."""
    ### BEGIN SOLUTION gaussian_kl
    ### task: the closed-form KL to N(0, I), summed over axis
    ### hint: the function's docstring: -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    return -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(axis=axis)
    ### END SOLUTION


def gaussian_log_likelihood(x, mean: Tensor, logvar) -> Tensor:
    r"""Elementwise log N(x; mean, sigma^2) = -1/2 (log 2 pi + log sigma^2 + (x - mean)^2 / sigma^2).
    Sum over the data dimensions yourself to get log p(x) per example."""
    logvar = logvar if isinstance(logvar, Tensor) else Tensor(np.asarray(logvar, dtype=mean.dtype))
    diff = mean - x if isinstance(x, Tensor) else mean - Tensor(np.asarray(x, dtype=mean.dtype))
    return -0.5 * (math.log(2 * math.pi) + logvar + diff * diff / logvar.exp())
