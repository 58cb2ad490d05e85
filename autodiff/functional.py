r"""Functions on Tensors that layers are built from: activations, stable log-probabilities, and
ops that combine or cut tensors. Each one: forward line, then its derivative, with the math in one line.

Convolution, pooling, batch norm and dropout live in `autodiff/conv.py` and `autodiff/norm.py` and
are re-exported at the bottom of this file, so `autodiff.functional` is the one place to import from.
"""
from __future__ import annotations

import numpy as np

from . import parallel
from .tensor import Tensor, _broadcast_shape


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


# ==================================================================== elementwise activations
def relu(x: Tensor) -> Tensor:
    """relu: f(x) = max(x, 0), f'(x) = 1 if x > 0 else 0."""
    out = Tensor._make(np.maximum(x.data, 0), (x,), "relu")
    out._backward = lambda out: x._accumulate(out.grad * (x.data > 0))
    return out


def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """leaky_relu: f(x) = x if x > 0 else slope * x, f'(x) = 1 if x > 0 else slope."""
    if not 0 <= slope <= 1:
        raise ValueError(f"leaky_relu: slope must be in [0, 1], got {slope}")
    data = parallel.c_contiguous(x.data)
    result = np.empty(data.shape, np.result_type(data, slope))      # float32 stays float32; ints -> float

    def forward(lo, hi):                                    # = x or slope x, 0 <= slope <= 1
        piece, result_piece = data.reshape(-1)[lo:hi], result.reshape(-1)[lo:hi]
        np.maximum(piece, np.multiply(piece, slope, out=result_piece), out=result_piece)
    parallel.for_blocks(forward, data.size)
    out = Tensor._make(result, (x,), "leaky_relu")

    def _backward(out):
        grad, derivative = parallel.c_contiguous(out.grad), np.empty_like(result)

        def backward(lo, hi):                               # g where x > 0, else slope g
            d = derivative.reshape(-1)[lo:hi]
            np.greater(data.reshape(-1)[lo:hi], 0, out=d)       # 1 where x > 0, else 0 ...
            d *= 1 - slope
            d += slope                                      # ... -> 1 where x > 0, else slope
            d *= grad.reshape(-1)[lo:hi]                    # (a masked copy would be ~10x slower)
        parallel.for_blocks(backward, data.size)
        x._accumulate(derivative)
    out._backward = _backward
    return out


def _stable_sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-a) without overflow: e^-|a| is always <= 1."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x: Tensor) -> Tensor:
    """sigmoid: f(x) = 1 / (1 + e^-x), f'(x) = f(x) (1 - f(x)). Finite for |x| = 1000."""
    out = Tensor._make(_stable_sigmoid(x.data), (x,), "sigmoid")
    def _backward(out):
        derivative = np.subtract(1, out.data, out=np.empty_like(out.data))   # 1 - f, then f (1 - f) g
        derivative *= out.data
        derivative *= out.grad
        x._accumulate(derivative)
    out._backward = _backward
    return out


def softplus(x: Tensor) -> Tensor:
    """softplus: f(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), f'(x) = sigmoid(x)."""
    out = Tensor._make(np.maximum(x.data, 0) + np.log1p(np.exp(-np.abs(x.data))), (x,), "softplus")
    out._backward = lambda out: x._accumulate(out.grad * _stable_sigmoid(x.data))
    return out


def tanh(x: Tensor) -> Tensor:
    """tanh: f(x) = tanh(x), f'(x) = 1 - f(x)^2 (reuse the output)."""
    out = Tensor._make(np.tanh(x.data), (x,), "tanh")
    def _backward(out):
        derivative = np.square(out.data, out=np.empty_like(out.data))      # f^2, then (1 - f^2) g
        np.subtract(1, derivative, out=derivative)
        derivative *= out.grad
        x._accumulate(derivative)
    out._backward = _backward
    return out


def exp(x: Tensor) -> Tensor:
    """exp: f(x) = e^x, f'(x) = e^x."""
    return x.exp()


def log(x: Tensor) -> Tensor:
    """log: f(x) = ln x, f'(x) = 1/x."""
    return x.log()


# ==================================================================== log-probabilities
def logsumexp(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """logsumexp: f(x) = m + log sum_i e^(x_i - m) with m = max x (no overflow), df/dx_i = softmax(x)_i."""
    m = np.max(x.data, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    shifted = np.exp(x.data - m)
    total = shifted.sum(axis=axis, keepdims=True)
    value = np.log(total) + m
    out = Tensor._make(value if keepdims else _squeeze(value, axis), (x,), "logsumexp")
    def _backward(out):
        g = out.grad if keepdims else _unsqueeze(out.grad, axis, x.ndim)
        x._accumulate(g * shifted / total)
    out._backward = _backward
    return out


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log_softmax: f(x)_i = x_i - logsumexp(x), df/dx applied to g = g - softmax(x) * sum(g)."""
    m = np.max(x.data, axis=axis, keepdims=True)
    shifted = x.data - m
    value = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    out = Tensor._make(value, (x,), "log_softmax")
    out._backward = lambda out: x._accumulate(out.grad - np.exp(out.data) * out.grad.sum(axis=axis, keepdims=True))
    return out


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax: s_i = e^x_i / sum_j e^x_j, ds/dx applied to g = s * (g - sum(g * s))."""
    e = np.exp(x.data - np.max(x.data, axis=axis, keepdims=True))
    out = Tensor._make(e / e.sum(axis=axis, keepdims=True), (x,), "softmax")
    out._backward = lambda out: x._accumulate(
        out.data * (out.grad - (out.grad * out.data).sum(axis=axis, keepdims=True)))
    return out


# ==================================================================== choosing between tensors
def maximum(a, b) -> Tensor:
    """maximum: f(a, b) = max(a, b), df/da = [a >= b], df/db = [a < b] (ties go to a)."""
    a, b = _tensor(a), _tensor(b)
    _broadcast_shape("maximum", a.shape, b.shape)
    a_wins = a.data >= b.data
    out = Tensor._make(np.where(a_wins, a.data, b.data), (a, b), "maximum")
    def _backward(out):
        a._accumulate(out.grad * a_wins)
        b._accumulate(out.grad * ~a_wins)
    out._backward = _backward
    return out


def minimum(a, b) -> Tensor:
    """minimum: f(a, b) = min(a, b), df/da = [a <= b], df/db = [a > b] (ties go to a)."""
    a, b = _tensor(a), _tensor(b)
    _broadcast_shape("minimum", a.shape, b.shape)
    a_wins = a.data <= b.data
    out = Tensor._make(np.where(a_wins, a.data, b.data), (a, b), "minimum")
    def _backward(out):
        a._accumulate(out.grad * a_wins)
        b._accumulate(out.grad * ~a_wins)
    out._backward = _backward
    return out


def where(condition, a, b) -> Tensor:
    """where: f = a where condition else b, df/da = [condition], df/db = [not condition]."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    a, b = _tensor(a), _tensor(b)
    out = Tensor._make(np.where(condition, a.data, b.data), (a, b), "where")
    def _backward(out):
        a._accumulate(out.grad * condition)
        b._accumulate(out.grad * ~condition)
    out._backward = _backward
    return out


# ==================================================================== joining and cutting
def concatenate(tensors, axis: int = 0) -> Tensor:
    """concatenate: each input's gradient is its own slice of the output's gradient."""
    tensors = [_tensor(t) for t in tensors]
    try:
        data = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(f"concatenate(axis={axis}): shapes {[t.shape for t in tensors]} must match "
                         f"on every other axis") from None
    out = Tensor._make(data, tuple(tensors), "concatenate")
    def _backward(out):
        ends = np.cumsum([t.shape[axis] for t in tensors])[:-1]
        for t, g in zip(tensors, np.split(out.grad, ends, axis=axis)):
            t._accumulate(g)
    out._backward = _backward
    return out


def stack(tensors, axis: int = 0) -> Tensor:
    """stack: each input's gradient is its own index of the output's gradient along `axis`."""
    tensors = [_tensor(t) for t in tensors]
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {[t.shape for t in tensors]}")
    out = Tensor._make(np.stack([t.data for t in tensors], axis=axis), tuple(tensors), "stack")
    def _backward(out):
        for i, t in enumerate(tensors):
            t._accumulate(np.take(out.grad, i, axis=axis))
    out._backward = _backward
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
    axis = axis % x.ndim
    return [x[(slice(None),) * axis + (slice(lo, hi),)] for lo, hi in zip(cuts[:-1], cuts[1:])]


def pad(x: Tensor, pad_width, value: float = 0.0) -> Tensor:
    """pad with a constant (np.pad's pad_width): the gradient is the centre, the padding gets none."""
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (x.ndim, 2)) if np.ndim(pad_width) < 2 \
        else np.asarray(pad_width, dtype=int)
    out = Tensor._make(np.pad(x.data, widths, constant_values=value), (x,), "pad")
    centre = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
    out._backward = lambda out: x._accumulate(out.grad[centre])
    return out


# ==================================================================== helpers for reductions
def _squeeze(a: np.ndarray, axis):
    return a.reshape(()) if axis is None else np.squeeze(a, axis=axis)


def _unsqueeze(g: np.ndarray, axis, ndim: int):
    if axis is None:
        return np.reshape(g, (1,) * ndim)
    axes = (axis,) if np.isscalar(axis) else axis
    return np.expand_dims(g, tuple(a % ndim for a in axes))
from .conv import conv2d, conv_transpose2d, max_pool2d, avg_pool2d  # noqa: E402  (re-exported)
from .norm import batch_norm, dropout  # noqa: E402  (re-exported)
