r"""The Tensor's named methods: elementwise functions (exp, log, sqrt, abs, clip, astype), reductions
(sum, mean, var, max, min), shapes (reshape, transpose, swapaxes, broadcast_to) and indexing (x[index]).
Each is called through its method (`x.sum(axis=1)`, defined in the Tensor class); its forward line,
rules and math line are here. The operators (+, -, *, /, **, @) are in tensor.py.

A reduction's rule gives one gradient per output value; the engine broadcasts it back over the reduced
axes (tensor.py's `_fit`). The adjoint of indexing scatters the gradient back into the input's shape
(`IndexAdd`), and the adjoint of that is indexing again.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, as_tensor, value


# ==================================================================== elementwise functions
def exp(x: Tensor) -> Tensor:
    """exp: f(x) = e^x, f'(x) = e^x (reuse the output)."""
    out = Tensor._make(np.exp(x.data), (x,), "exp")
    ### BEGIN SOLUTION exp_backward
    ### task: exp's rule, reusing the output
    ### hint: exp's docstring: f'(x) = e^x
    out._backward = lambda g, x, out: g * out
    ### END SOLUTION
    return out


def log(x: Tensor) -> Tensor:
    """log: f(x) = ln x, f'(x) = 1/x."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    out = Tensor._make(np.log(x.data), (x,), "log")
    ### BEGIN SOLUTION log_backward
    ### task: log's rule
    ### hint: log's docstring: f'(x) = 1/x
    out._backward = lambda g, x, out: g / x
    ### END SOLUTION
    return out


def sqrt(x: Tensor) -> Tensor:
    """sqrt: f(x) = x^(1/2), f'(x) = 1 / (2 sqrt(x)) (reuse the output)."""
    out = Tensor._make(np.sqrt(x.data), (x,), "sqrt")
    out._backward = lambda g, x, out: g / (2 * out)
    return out


def abs(x: Tensor) -> Tensor:                                           # noqa: A001  (Tensor.abs)
    """abs: f(x) = |x|, f'(x) = sign(x) (0 at the kink x = 0)."""
    out = Tensor._make(np.abs(x.data), (x,), "abs")
    out._backward = lambda g, x, out: g * np.sign(value(x))
    return out


def clip(x: Tensor, lo, hi) -> Tensor:
    """clip: f(x) = min(max(x, lo), hi), f'(x) = 1 inside [lo, hi] (edges included, as PyTorch), 0 outside.
    lo, hi: numbers (weak: x's dtype is kept) or arrays; at least one of them (as PyTorch's clamp)."""
    if lo is None and hi is None:
        raise ValueError("clip: give lo or hi (or both); clip(None, None) would do nothing")
    lo, hi = (None if v is None else as_tensor(v, x).data for v in (lo, hi))
    out = Tensor._make(np.clip(x.data, lo, hi), (x,), "clip")
    inside = np.ones(x.shape, bool) & (True if lo is None else x.data >= lo) & (True if hi is None else x.data <= hi)
    out._backward = lambda g, x, out: g * inside
    return out


def astype(x: Tensor, dtype) -> Tensor:
    """Cast; the gradient is cast back. Casting to or from an integer type ends the graph (no gradient)."""
    if not np.issubdtype(np.dtype(dtype), np.floating) or not np.issubdtype(x.dtype, np.floating):
        return Tensor(x.data.astype(dtype))
    out = Tensor._make(x.data.astype(dtype), (x,), "astype")
    out._backward = lambda g, x, out: g.astype(x.dtype)
    return out


# ==================================================================== reductions
def _kept(shape: tuple, axis) -> tuple:
    """The shape of a reduction over `axis` with keepdims=True: its gradient broadcasts from it."""
    if axis is None:
        return (1,) * len(shape)
    axes = {a % max(len(shape), 1) for a in ((axis,) if np.isscalar(axis) else axis)}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _0d_axis(x: Tensor, axis):
    """A 0-d tensor reduced over axis 0, -1 or (0,) (as PyTorch; NumPy takes some of these): over its no axes."""
    if x.ndim == 0 and axis is not None and set(np.atleast_1d(axis).tolist()) <= {0, -1}:
        return None
    return axis


def sum(x: Tensor, axis, keepdims: bool) -> Tensor:                    # noqa: A001  (Tensor.sum)
    """sum: every input element gets the output's gradient (broadcast back)."""
    axis = _0d_axis(x, axis)
    out = Tensor._make(x.data.sum(axis=axis, keepdims=keepdims), (x,), "sum")
    kept = _kept(x.shape, axis)
    out._backward = lambda g, x, out: g.reshape(kept)
    return out


def mean(x: Tensor, axis, keepdims: bool) -> Tensor:
    """mean = sum / n: every input element gets the output's gradient divided by n."""
    axis = _0d_axis(x, axis)
    out = Tensor._make(x.data.mean(axis=axis, keepdims=keepdims), (x,), "mean")
    kept, count = _kept(x.shape, axis), x.data.size // max(out.data.size, 1)
    ### BEGIN SOLUTION mean_backward
    ### task: mean's rule: the output's gradient, shaped to broadcast back, shared by the n elements
    ### hint: mean's docstring, and the module docstring (a reduction's rule gives one gradient per output value)
    out._backward = lambda g, x, out: g.reshape(kept) / count
    ### END SOLUTION
    return out


def var(x: Tensor, axis, keepdims: bool, ddof: int) -> Tensor:
    """var = sum((x - mean)^2) / (n - ddof): d/dx_i = 2 (x_i - mean) / (n - ddof)."""
    axis = _0d_axis(x, axis)
    out = Tensor._make(x.data.var(axis=axis, keepdims=keepdims, ddof=ddof), (x,), "var")
    kept, count = _kept(x.shape, axis), x.data.size // max(out.data.size, 1)
    out._backward = lambda g, x, out: g.reshape(kept) * 2 * (x - x.mean(axis=axis, keepdims=True)) / (count - ddof)
    return out


def extremum(x: Tensor, reduce, name: str, axis, keepdims: bool) -> Tensor:
    """max or min: the gradient goes to the extremal element, split evenly between ties."""
    axis = _0d_axis(x, axis)
    out = Tensor._make(reduce(x.data, axis=axis, keepdims=keepdims), (x,), name)
    kept = _kept(x.shape, axis)
    ### BEGIN SOLUTION max_ties
    ### task: max/min's rule: the gradient to the extremal elements, split evenly between ties
    ### hint: extremum's docstring
    picked = x.data == out.data.reshape(kept)
    share = picked / picked.sum(axis=axis, keepdims=True)
    out._backward = lambda g, x, out: g.reshape(kept) * share
    ### END SOLUTION
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
    out._backward = lambda g, x, out: g.reshape(x.shape)
    return out


def transpose(x: Tensor, axes: tuple) -> Tensor:
    """transpose: the gradient is transposed by the inverse permutation."""
    out = Tensor._make(x.data.transpose(axes), (x,), "transpose")
    ### BEGIN SOLUTION transpose_backward
    ### task: transpose's rule: undo the permutation
    ### hint: transpose's docstring: the inverse permutation
    out._backward = lambda g, x, out: g.transpose(tuple(np.argsort([a % x.ndim for a in axes])))
    ### END SOLUTION
    return out


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    """swapaxes: its own inverse, so the gradient is swapped back."""
    out = Tensor._make(x.data.swapaxes(a, b), (x,), "swapaxes")
    out._backward = lambda g, x, out: g.swapaxes(a, b)
    return out


def broadcast_to(x: Tensor, shape: tuple) -> Tensor:
    """broadcast_to: the engine sums the gradient back to x's shape (its adjoint is summation)."""
    out = Tensor._make(np.broadcast_to(x.data, shape), (x,), "broadcast_to")
    out._backward = lambda g, x, out: g
    return out


# ==================================================================== indexing and its adjoint
def getitem(x: Tensor, index) -> Tensor:
    """x[index] (slices, or integer arrays as in q[np.arange(N), actions]): the gradient is added into
    x's gradient at `index` (repeated integer indices add up)."""
    index = _plain_index(index)
    out = Tensor._make(x.data[index], (x,), "getitem")
    out._backward = lambda g, x, out: IndexAdd(index, g)
    return out


class IndexAdd:
    """The gradient of x[index]: zeros of x's shape with g added at `index`. The engine adds it into the
    gradient it is accumulating, in place, so that cutting a sequence into T steps costs O(T) not O(T^2)."""

    def __init__(self, index, g):
        self.index, self.g = index, g

    def add_into(self, target: np.ndarray) -> None:
        ### BEGIN SOLUTION index_add
        ### task: add g into target at index; repeated integer indices must add up
        ### hint: getitem's docstring, and IndexAdd's
        if _is_basic_index(self.index):                # slices and ints never select an element twice
            target[self.index] += self.g
        else:
            np.add.at(target, self.index, self.g)      # repeated integer indices add up
        ### END SOLUTION

    def as_tensor(self, shape: tuple) -> Tensor:
        return index_add(Tensor(np.zeros(shape, self.g.dtype)), self.index, self.g)


def index_add(base: Tensor, index, source: Tensor) -> Tensor:
    """base with source added at index: d/dbase = g, d/dsource = g[index] (indexing: its adjoint)."""
    index = _plain_index(index)
    data = np.array(base.data, dtype=np.result_type(base.data, source.data))
    IndexAdd(index, source.data).add_into(data)
    out = Tensor._make(data, (base, source), "index_add")
    out._backward = (lambda g, base, source, out: g,
                     lambda g, base, source, out: g[index])
    return out


def _plain_index(index):
    """Tensors inside an index become their arrays (an index carries no gradient)."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)
