r"""The Tensor's named methods: elementwise functions (exp, log, sqrt, abs, clip), reductions (sum,
mean, var, max, min), reshaping (reshape, transpose) and indexing (x[index]). Each is called through
its method (`x.sum(axis=1)`, defined in the Tensor class); its forward line, derivative and math line
are here. The operators (+, -, *, /, **, @) are in tensor.py.

The adjoint of a reduction broadcasts the output's gradient back over the reduced axes (`_expand`);
the adjoint of indexing scatters it back into the input's shape (`Tensor._accumulate_at`).
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, _data


# ==================================================================== elementwise functions
def exp(x: Tensor) -> Tensor:
    """exp: f(x) = e^x, f'(x) = e^x (reuse the output)."""
    out = Tensor._make(np.exp(x.data), (x,), "exp")
    out._backward = lambda out: x._accumulate(out.grad * out.data)
    return out


def log(x: Tensor) -> Tensor:
    """log: f(x) = ln x, f'(x) = 1/x."""
    out = Tensor._make(np.log(x.data), (x,), "log")
    out._backward = lambda out: x._accumulate(out.grad / x.data)
    return out


def sqrt(x: Tensor) -> Tensor:
    """sqrt: f(x) = x^(1/2), f'(x) = 1 / (2 sqrt(x)) (reuse the output)."""
    out = Tensor._make(np.sqrt(x.data), (x,), "sqrt")
    out._backward = lambda out: x._accumulate(out.grad / (2 * out.data))
    return out


def abs(x: Tensor) -> Tensor:                                           # noqa: A001  (Tensor.abs)
    """abs: f(x) = |x|, f'(x) = sign(x) (0 at the kink x = 0)."""
    out = Tensor._make(np.abs(x.data), (x,), "abs")
    out._backward = lambda out: x._accumulate(out.grad * np.sign(x.data))
    return out


def clip(x: Tensor, lo, hi) -> Tensor:
    """clip: f(x) = min(max(x, lo), hi), f'(x) = 1 inside [lo, hi], 0 outside."""
    out = Tensor._make(np.clip(x.data, lo, hi), (x,), "clip")
    def _backward(out):
        inside = np.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x.data >= lo
        if hi is not None:
            inside &= x.data <= hi
        x._accumulate(out.grad * inside)
    out._backward = _backward
    return out


# ==================================================================== reductions
def sum(x: Tensor, axis, keepdims: bool) -> Tensor:                    # noqa: A001  (Tensor.sum)
    """sum: every input element gets the output's gradient (broadcast back)."""
    out = Tensor._make(x.data.sum(axis=axis, keepdims=keepdims), (x,), "sum")
    out._backward = lambda out: x._accumulate(_expand(out.grad, x.shape, axis, keepdims))
    return out


def mean(x: Tensor, axis, keepdims: bool) -> Tensor:
    """mean = sum / n: every input element gets the output's gradient divided by n."""
    data = x.data.mean(axis=axis, keepdims=keepdims)
    count = x.data.size // max(np.size(data), 1)
    out = Tensor._make(data, (x,), "mean")
    out._backward = lambda out: x._accumulate(_expand(out.grad / count, x.shape, axis, keepdims))
    return out


def var(x: Tensor, axis, keepdims: bool, ddof: int) -> Tensor:
    """var = sum((x - mean)^2) / (n - ddof): d/dx_i = 2 (x_i - mean) / (n - ddof)."""
    mu = x.data.mean(axis=axis, keepdims=True)
    count = x.data.size // mu.size
    out = Tensor._make(x.data.var(axis=axis, keepdims=keepdims, ddof=ddof), (x,), "var")
    def _backward(out):
        g = _expand(out.grad, x.shape, axis, keepdims)
        x._accumulate(g * 2 * (x.data - mu) / (count - ddof))
    out._backward = _backward
    return out


def extremum(x: Tensor, reduce, name: str, axis, keepdims: bool) -> Tensor:
    """max or min: the gradient goes to the extremal element, split evenly between ties."""
    out = Tensor._make(reduce(x.data, axis=axis, keepdims=keepdims), (x,), name)
    def _backward(out):
        picked = x.data == _expand(out.data, x.shape, axis, keepdims)
        ties = picked.sum(axis=axis, keepdims=True)
        x._accumulate(_expand(out.grad, x.shape, axis, keepdims) * picked / ties)
    out._backward = _backward
    return out


# ==================================================================== shape operations
def reshape(x: Tensor, shape: tuple) -> Tensor:
    """reshape: the gradient is reshaped back."""
    try:
        data = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                         f"({x.data.size} elements) into shape {tuple(shape)}") from None
    out = Tensor._make(data, (x,), "reshape")
    out._backward = lambda out: x._accumulate(out.grad.reshape(x.shape))
    return out


def transpose(x: Tensor, axes: tuple) -> Tensor:
    """transpose: the gradient is transposed by the inverse permutation."""
    out = Tensor._make(x.data.transpose(axes), (x,), "transpose")
    out._backward = lambda out: x._accumulate(out.grad.transpose(np.argsort(axes)))
    return out


def getitem(x: Tensor, index) -> Tensor:
    """x[index] (slices, or integer arrays as in q[np.arange(N), actions]): the gradient is added
    into x's gradient at `index` (repeated integer indices add up: np.add.at)."""
    index = _data(index) if isinstance(index, Tensor) else index
    if isinstance(index, tuple):
        index = tuple(_data(i) if isinstance(i, Tensor) else i for i in index)
    out = Tensor._make(x.data[index], (x,), "getitem")
    out._backward = lambda out: x._accumulate_at(index, out.grad, unique=_is_basic_index(index))
    return out


# ==================================================================== helpers
def _is_basic_index(index) -> bool:
    """Slices and ints never select an element twice (integer arrays can)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def _expand(grad: np.ndarray, shape: tuple, axis, keepdims: bool) -> np.ndarray:
    """Broadcast the gradient of a reduction over `axis` back to the input's `shape`."""
    if axis is not None and not keepdims:
        axes = (axis,) if np.isscalar(axis) else axis
        grad = np.expand_dims(grad, tuple(a % len(shape) for a in axes))
    return np.broadcast_to(grad, shape)
