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
from .tensor_methods import _0d_axis, _kept


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
    x, slope = as_tensor(x), float(slope)                           # a Python number: x's dtype is kept
    out = Tensor._make(np.where(x.data > 0, x.data, slope * x.data), (x,), "leaky_relu")
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
    ### BEGIN SOLUTION sigmoid_backward
    ### task: sigmoid's rule from its output
    ### hint: sigmoid's docstring: f'(x) = f(x) (1 - f(x))
    out._backward = lambda g, x, out: g * out * (1 - out)
    ### END SOLUTION
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
    ### BEGIN SOLUTION tanh_backward
    ### task: tanh's rule from its output
    ### hint: tanh's docstring: f'(x) = 1 - f(x)^2
    out._backward = lambda g, x, out: g * (1 - out * out)
    ### END SOLUTION
    return out


@replaceable("linear")
def linear(x: Tensor, weight: Tensor, bias: Tensor = None) -> Tensor:
    """linear (nets.Linear): y = x W^T + b, weight (out, in), bias (out,) or None. The matmul's and the add's
    rules give dL/dx = g W, dL/dW = g^T x, dL/db = g summed over every axis but the last."""
    y = as_tensor(x) @ as_tensor(weight).T
    return y if bias is None else y + bias


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
    axis = _0d_axis(x, axis)
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
    ### BEGIN SOLUTION log_softmax_stable
    ### task: log_softmax's forward without overflow: shift by the max first
    ### hint: log_softmax's docstring: x_i - logsumexp(x), and logsumexp's (m = max x)
    shifted = x.data - np.max(x.data, axis=axis, keepdims=True)
    out = Tensor._make(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)), (x,), "log_softmax")
    ### END SOLUTION
    ### BEGIN SOLUTION log_softmax_backward
    ### task: log_softmax's backward applied to g
    ### hint: log_softmax's docstring: g - softmax(x) * sum(g)
    out._backward = lambda g, x, out: g - exp(out) * g.sum(axis=axis, keepdims=True)
    ### END SOLUTION
    return out


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax: s_i = e^x_i / sum_j e^x_j, its backward applied to g: s * (g - sum(g * s))."""
    x = as_tensor(x)
    e = np.exp(x.data - np.max(x.data, axis=axis, keepdims=True))
    out = Tensor._make(e / e.sum(axis=axis, keepdims=True), (x,), "softmax")
    ### BEGIN SOLUTION softmax_backward
    ### task: softmax's backward applied to g
    ### hint: softmax's docstring: s * (g - sum(g * s))
    out._backward = lambda g, x, out: out * (g - (g * out).sum(axis=axis, keepdims=True))
    ### END SOLUTION
    return out


# ==================================================================== choosing between tensors
def operands(a, b) -> tuple:
    """a and b as Tensors; a Python or NumPy scalar takes the other's dtype (weak, as in a + b)."""
    a = as_tensor(a, b if hasattr(b, "dtype") else None)
    return a, as_tensor(b, a)


def maximum(a, b) -> Tensor:
    """maximum: f(a, b) = max(a, b), df/da = [a > b] + [a = b]/2, df/db = [a < b] + [a = b]/2 (ties split
    the gradient evenly, as PyTorch)."""
    return _choose("maximum", np.maximum, np.greater, a, b)


def minimum(a, b) -> Tensor:
    """minimum: f(a, b) = min(a, b), df/da = [a < b] + [a = b]/2, df/db = [a > b] + [a = b]/2 (ties split
    the gradient evenly, as PyTorch)."""
    return _choose("minimum", np.minimum, np.less, a, b)


def _choose(name: str, pick, a_wins, a, b) -> Tensor:
    a, b = operands(a, b)
    broadcast_shape(name, a.shape, b.shape)
    out = Tensor._make(pick(a.data, b.data), (a, b), name)
    share = (a_wins(a.data, b.data) + 0.5 * (a.data == b.data)).astype(out.dtype)     # a's share of g
    out._backward = (lambda g, a, b, out: g * share,
                     lambda g, a, b, out: g * (1 - share))
    return out


def where(condition, a, b) -> Tensor:
    """where: f = a where condition else b, df/da = [condition], df/db = [not condition]."""
    condition = np.asarray(value(condition), dtype=bool)
    a, b = operands(a, b)
    out = Tensor._make(np.where(condition, a.data, b.data), (a, b), "where")
    out._backward = (lambda g, a, b, out: g * condition,
                     lambda g, a, b, out: g * ~condition)
    return out


# ==================================================================== joining and cutting
def _weak(tensors) -> list:
    """Tensors; Python numbers among them take the first Tensor's dtype."""
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    return [as_tensor(t, like) for t in tensors]


def concatenate(tensors, axis: int = 0) -> Tensor:
    """concatenate: each input's gradient is its own slice of the output's gradient."""
    tensors = _weak(tensors)
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
    tensors = _weak(tensors)
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


def pad(x: Tensor, pad_width, value: float = 0.0, mode: str = "constant") -> Tensor:
    """pad (np.pad's pad_width: a (before, after) pair per axis, or one pair for every axis).
    constant (`value`): the gradient is the centre, the padding gets none. reflect (mirror, the edge not
    repeated) and replicate (repeat the edge): each output element is a copy of one input element, at
    np.pad(arange(n)) along each axis: indexing, so the gradient adds back into what was copied."""
    x = as_tensor(x)
    if x.ndim == 0:                                                 # no axes to pad (as np.pad)
        return x.reshape(())
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int).reshape(-1, 2) if np.ndim(pad_width) else
                             np.asarray(pad_width, dtype=int), (x.ndim, 2))
    if mode in ("reflect", "replicate"):
        return x[np.ix_(*(np.pad(np.arange(n), w, "reflect" if mode == "reflect" else "edge")
                          for n, w in zip(x.shape, widths)))]
    if mode != "constant":
        raise ValueError(f"pad: mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
    out = Tensor._make(np.pad(x.data, widths, constant_values=value), (x,), "pad")
    centre = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
    out._backward = lambda g, x, out: g[centre]
    return out


# re-exported: layers (conv.py, norm.py) and the op families of autodiff/ops (its __init__ lists them)
from .conv import conv2d, conv_transpose2d  # noqa: E402
from .norm import batch_norm, dropout  # noqa: E402
from .ops.elementwise import (sin, cos, tan, sinh, cosh, arcsin, arccos, arctan, arctan2, sign, floor,  # noqa: E402
                              ceil, round, mod, logaddexp, hypot)
from .ops.reductions import prod, cumsum, std  # noqa: E402
from .ops.shape import (squeeze, unsqueeze, flatten, flip, roll, repeat, repeat_interleave, tile, tril,  # noqa: E402
                        triu, diag, diagonal, trace, sort, argsort, chunk)
from .ops.contractions import einsum, tensordot  # noqa: E402
from .ops.linalg import inv, det, slogdet, solve, cholesky  # noqa: E402
from .ops.pooling import max_pool2d, avg_pool2d, max_unpool2d  # noqa: E402
from .ops.conv1d import conv1d, conv_transpose1d, max_pool1d, avg_pool1d  # noqa: E402
