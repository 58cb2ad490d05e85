r"""Fast matmul, linear, sigmoid, tanh and leaky_relu: replace the ops of the same names in
autodiff/tensor.py and autodiff/functional.py.

Why they compute the same thing.
- matmul: the same products, A @ B, G @ B^T and A^T @ G, cut into blocks of rows or columns on the
  engine's threads (autodiff/fast/parallel.py; each entry is still summed over the whole inner axis
  by one BLAS call). A gradient whose operand is stored column-major (the view W.T of a Linear
  layer's weight) is computed as (B^T A^T)^T, so that it comes out contiguous for the optimizer.
- sigmoid, tanh: the reference's derivative formulas, f (1 - f) and 1 - f^2, written into one
  preallocated array instead of a temporary per operator.
- leaky_relu: x if x > 0 else slope x, computed as max(x, slope x) (equal for 0 <= slope <= 1), and
  its derivative, in blocks of the flat array on the engine's threads.
"""
from __future__ import annotations

import numpy as np

from autodiff.functional import _stable_sigmoid
from autodiff.tensor import Tensor, as_tensor
from . import parallel


def matmul(a, b):
    """Replaces autodiff.tensor.matmul for operands with >= 2 dimensions that align."""
    a, b = as_tensor(a), as_tensor(b, a)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2] or (a.ndim > 2 or b.ndim > 2) and not _batch_ok(a, b):
        return NotImplemented                          # vectors and errors: the reference handles them
    out = Tensor._make(parallel.matmul(a.data, b.data), (a, b), "matmul")
    out._backward = (lambda g, a, b, out: _product(g, np.swapaxes(b, -1, -2), like=a),
                     lambda g, a, b, out: _product(np.swapaxes(a, -1, -2), g, like=b))
    return out


def linear(x, weight, bias=None):
    """Replaces autodiff.functional.linear for a 2-D input: one node instead of the reference's three
    (transpose, matmul, add), which is most of a small network's time when it acts on one observation.
    The same products as the reference's matmul above: x W^T; dL/dx = g W; dL/dW = g^T x, which is the
    (B^T A^T)^T of _product, row-major as W is stored; then + b, and dL/db = g summed over the batch."""
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    xs, ws = x.data, weight.data
    if (xs.ndim != 2 or ws.ndim != 2 or xs.shape[1] != ws.shape[1] or xs.dtype != ws.dtype
            or bias is not None and (bias.data.shape != ws.shape[:1] or bias.data.dtype != xs.dtype)):
        return NotImplemented                                  # other shapes, promotions and errors: the reference
    y = affine(xs, ws, None if bias is None else bias.data)
    out = Tensor._make(y, (x, weight) if bias is None else (x, weight, bias), "linear")
    out._backward = (lambda g, *inputs: parallel.matmul(g, inputs[1]),
                     lambda g, *inputs: parallel.matmul(g.T, inputs[0]),
                     lambda g, *inputs: g.sum(axis=0))
    return out


def affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x W^T (+ b) on arrays, computed as the fast matmul and the add compute it (bit for bit)."""
    y = parallel.matmul(x, weight.T)
    if bias is not None:
        y += bias                      # y is the product's own new array: adding in place saves a copy
    return y


def _batch_ok(a: Tensor, b: Tensor) -> bool:
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return True
    except ValueError:
        return False


def _product(a: np.ndarray, b: np.ndarray, like: np.ndarray) -> np.ndarray:
    """a @ b laid out in memory as `like` (the operand whose gradient it is)."""
    if a.ndim == b.ndim == like.ndim == 2 and like.flags.f_contiguous and not like.flags.c_contiguous:
        return parallel.matmul(b.T, a.T).T
    return parallel.matmul(a, b)


def sigmoid(x):
    """Replaces autodiff.functional.sigmoid (see the module docstring)."""
    x = as_tensor(x)
    out = Tensor._make(_stable_sigmoid(x.data), (x,), "sigmoid")

    def gradient(g, x, out):
        derivative = np.subtract(1, out, out=np.empty_like(out))     # 1 - f, then f (1 - f) g
        derivative *= out
        derivative *= g
        return derivative
    out._backward = gradient
    return out


def tanh(x):
    """Replaces autodiff.functional.tanh (see the module docstring)."""
    x = as_tensor(x)
    out = Tensor._make(np.tanh(x.data), (x,), "tanh")

    def gradient(g, x, out):
        derivative = np.square(out, out=np.empty_like(out))          # f^2, then (1 - f^2) g
        np.subtract(1, derivative, out=derivative)
        derivative *= g
        return derivative
    out._backward = gradient
    return out


def leaky_relu(x, slope: float = 0.01):
    """Replaces autodiff.functional.leaky_relu (see the module docstring)."""
    x = as_tensor(x)
    if not 0 <= slope <= 1 or not np.issubdtype(x.dtype, np.floating):
        return NotImplemented                                  # the reference raises or promotes
    data = parallel.c_contiguous(x.data)
    result = np.empty(data.shape, data.dtype)

    def forward(lo, hi):                                       # max(x, slope x)
        piece, result_piece = data.reshape(-1)[lo:hi], result.reshape(-1)[lo:hi]
        np.maximum(piece, np.multiply(piece, slope, out=result_piece), out=result_piece)
    parallel.for_blocks(forward, data.size)
    out = Tensor._make(result, (x,), "leaky_relu")

    def gradient(g, *inputs):
        grad, derivative = parallel.c_contiguous(g), np.empty_like(result)

        def backward(lo, hi):                                  # g where x > 0, else slope g
            d = derivative.reshape(-1)[lo:hi]
            np.greater(data.reshape(-1)[lo:hi], 0, out=d)      # 1 where x > 0, else 0 ...
            d *= 1 - slope
            d += slope                                         # ... -> 1 where x > 0, else slope
            d *= grad.reshape(-1)[lo:hi]
        parallel.for_blocks(backward, data.size)
        return derivative
    out._backward = gradient
    return out
