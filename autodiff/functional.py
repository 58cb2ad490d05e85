r"""Functions on Tensors that layers are built from: activations, stable log-probabilities, and
ops that combine or cut tensors. Each one: forward line, then its rules, with the math in one line.

Convolution, pooling, batch norm and dropout live in `autodiff/conv.py` and `autodiff/norm.py` and
are re-exported at the bottom of this file, so `autodiff.functional` is the one place to import from.
Every function here also takes plain arrays (as constants), so backward rules can call them.
"""
from __future__ import annotations

import numpy as np

from .backend import replaceable
from .tensor import Tensor, as_tensor, broadcast_shape, value
from .tensor_methods import _kept


# ==================================================================== elementwise activations
def relu(x: Tensor) -> Tensor:
    """relu: f(x) = max(x, 0), f'(x) = 1 if x > 0 else 0."""
    x = as_tensor(x)
    out = Tensor._make(np.maximum(x.data, 0), (x,), "relu")
    out._backward = lambda g, x, out: g * (value(x) > 0)
    return out


@replaceable("leaky_relu")
def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """leaky_relu: f(x) = x if x > 0 else slope * x, f'(x) = 1 if x > 0 else slope."""
    if not 0 <= slope <= 1:
        raise ValueError(f"leaky_relu: slope must be in [0, 1], got {slope}")
    x = as_tensor(x)
    data = x.data if np.issubdtype(x.dtype, np.floating) else x.data.astype(np.result_type(x.data, slope))
    out = Tensor._make(np.where(data > 0, data, slope * data), (x,), "leaky_relu")
    out._backward = lambda g, x, out: g * np.where(value(x) > 0, 1, slope).astype(out.dtype)
    return out


def _stable_sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-a) without overflow: e^-|a| is always <= 1."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


@replaceable("sigmoid")
def sigmoid(x: Tensor) -> Tensor:
    """sigmoid: f(x) = 1 / (1 + e^-x), f'(x) = f(x) (1 - f(x)). Finite for |x| = 1000."""
    x = as_tensor(x)
    out = Tensor._make(_stable_sigmoid(x.data), (x,), "sigmoid")
    out._backward = lambda g, x, out: g * out * (1 - out)
    return out


def softplus(x: Tensor) -> Tensor:
    """softplus: f(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), f'(x) = sigmoid(x)."""
    x = as_tensor(x)
    out = Tensor._make(np.maximum(x.data, 0) + np.log1p(np.exp(-np.abs(x.data))), (x,), "softplus")
    out._backward = lambda g, x, out: g * sigmoid(x)
    return out


@replaceable("tanh")
def tanh(x: Tensor) -> Tensor:
    """tanh: f(x) = tanh(x), f'(x) = 1 - f(x)^2 (reuse the output)."""
    x = as_tensor(x)
    out = Tensor._make(np.tanh(x.data), (x,), "tanh")
    out._backward = lambda g, x, out: g * (1 - out * out)
    return out


def exp(x: Tensor) -> Tensor:
    """exp: f(x) = e^x, f'(x) = e^x."""
    return as_tensor(x).exp()


def log(x: Tensor) -> Tensor:
    """log: f(x) = ln x, f'(x) = 1/x."""
    return as_tensor(x).log()


# ==================================================================== log-probabilities
def logsumexp(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """logsumexp: f(x) = m + log sum_i e^(x_i - m) with m = max x (no overflow), df/dx_i = softmax(x)_i
    = e^(x_i - m) / sum_j e^(x_j - m) (the same shift: exact in float32 too)."""
    x = as_tensor(x)
    m = np.max(x.data, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)                      # a constant: it cancels in the derivative
    total = np.log(np.exp(x.data - m).sum(axis=axis, keepdims=True)) + m
    out = Tensor._make(total if keepdims else total.reshape(np.sum(x.data, axis=axis).shape), (x,), "logsumexp")
    kept = _kept(x.shape, axis)

    def rule(g, x, out):
        e = exp(x - m)
        return g.reshape(kept) * e / e.sum(axis=axis, keepdims=True)
    out._backward = rule
    return out


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log_softmax: f(x)_i = x_i - logsumexp(x), its backward applied to g: g - softmax(x) * sum(g)."""
    x = as_tensor(x)
    shifted = x.data - np.max(x.data, axis=axis, keepdims=True)
    out = Tensor._make(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)), (x,), "log_softmax")
    out._backward = lambda g, x, out: g - exp(out) * g.sum(axis=axis, keepdims=True)
    return out


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax: s_i = e^x_i / sum_j e^x_j, its backward applied to g: s * (g - sum(g * s))."""
    x = as_tensor(x)
    e = np.exp(x.data - np.max(x.data, axis=axis, keepdims=True))
    out = Tensor._make(e / e.sum(axis=axis, keepdims=True), (x,), "softmax")
    out._backward = lambda g, x, out: out * (g - (g * out).sum(axis=axis, keepdims=True))
    return out


# ==================================================================== choosing between tensors
def maximum(a, b) -> Tensor:
    """maximum: f(a, b) = max(a, b), df/da = [a >= b], df/db = [a < b] (ties go to a)."""
    a, b = as_tensor(a), as_tensor(b)
    broadcast_shape("maximum", a.shape, b.shape)
    a_wins = a.data >= b.data
    out = Tensor._make(np.where(a_wins, a.data, b.data), (a, b), "maximum")
    out._backward = (lambda g, a, b, out: g * a_wins,
                     lambda g, a, b, out: g * ~a_wins)
    return out


def minimum(a, b) -> Tensor:
    """minimum: f(a, b) = min(a, b), df/da = [a <= b], df/db = [a > b] (ties go to a)."""
    a, b = as_tensor(a), as_tensor(b)
    broadcast_shape("minimum", a.shape, b.shape)
    a_wins = a.data <= b.data
    out = Tensor._make(np.where(a_wins, a.data, b.data), (a, b), "minimum")
    out._backward = (lambda g, a, b, out: g * a_wins,
                     lambda g, a, b, out: g * ~a_wins)
    return out


def where(condition, a, b) -> Tensor:
    """where: f = a where condition else b, df/da = [condition], df/db = [not condition]."""
    condition = np.asarray(value(condition), dtype=bool)
    a, b = as_tensor(a), as_tensor(b)
    out = Tensor._make(np.where(condition, a.data, b.data), (a, b), "where")
    out._backward = (lambda g, a, b, out: g * condition,
                     lambda g, a, b, out: g * ~condition)
    return out


# ==================================================================== joining and cutting
def concatenate(tensors, axis: int = 0) -> Tensor:
    """concatenate: each input's gradient is its own slice of the output's gradient."""
    tensors = [as_tensor(t) for t in tensors]
    try:
        data = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(f"concatenate(axis={axis}): shapes {[t.shape for t in tensors]} must match "
                         f"on every other axis") from None
    out = Tensor._make(data, tuple(tensors), "concatenate")
    ends = np.cumsum([0] + [t.shape[axis] for t in tensors])
    before = (slice(None),) * (axis % data.ndim)
    out._backward = tuple(lambda g, *inputs, lo=lo, hi=hi: g[before + (slice(lo, hi),)]
                          for lo, hi in zip(ends[:-1], ends[1:]))
    return out


def stack(tensors, axis: int = 0) -> Tensor:
    """stack: each input's gradient is its own index of the output's gradient along `axis`."""
    tensors = [as_tensor(t) for t in tensors]
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {[t.shape for t in tensors]}")
    out = Tensor._make(np.stack([t.data for t in tensors], axis=axis), tuple(tensors), "stack")
    before = (slice(None),) * (axis % out.ndim)
    out._backward = tuple(lambda g, *inputs, i=i: g[before + (i,)] for i in range(len(tensors)))
    return out


def split(x: Tensor, sections, axis: int = 0) -> list:
    """split (as np.split: a number of equal parts or a list of cut indices): each part is a slice,
    so its gradient flows back through slicing."""
    n = x.shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {sections} equal parts")
        cuts = list(range(0, n, n // sections)) + [n]
    else:
        cuts = [0] + list(sections) + [n]
    before = (slice(None),) * (axis % x.ndim)
    return [x[before + (slice(lo, hi),)] for lo, hi in zip(cuts[:-1], cuts[1:])]


def pad(x: Tensor, pad_width, value: float = 0.0) -> Tensor:
    """pad with a constant (np.pad's pad_width): the gradient is the centre, the padding gets none."""
    x = as_tensor(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int).reshape(-1, 2) if np.ndim(pad_width) else
                             np.asarray(pad_width, dtype=int), (x.ndim, 2))
    out = Tensor._make(np.pad(x.data, widths, constant_values=value), (x,), "pad")
    centre = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
    out._backward = lambda g, x, out: g[centre]
    return out


from .conv import conv2d, conv_transpose2d, max_pool2d, avg_pool2d  # noqa: E402  (re-exported)
from .norm import batch_norm, dropout  # noqa: E402  (re-exported)
