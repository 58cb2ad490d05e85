r"""Pooling on NCHW tensors: max_pool2d (dilation, ceil_mode, return_indices), its partial inverse
max_unpool2d, and avg_pool2d (ceil_mode, count_include_pad), PyTorch's semantics. Names as in
autodiff/conv.py: N, C, H, W, KH, KW, OH, OW, stride (sh, sw), padding (ph, pw), dilation (dh, dw).

Output size (PyTorch's): OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1, or with ceil_mode the
ceiling, less one if that last window would start beyond the input and its left padding. The extra
windows of ceil_mode read past the padded image: those taps are filled like the padding (-inf for the
max) and never counted in a mean.

Both pools are composed from ops: pad (with -inf or 0), im2col of each channel (a column per window),
then a max (gathered at each window's first maximum, so the gradient goes there) or a sum divided by
each window's count.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..backend import replaceable
from ..conv import im2col, pair
from ..tensor import Tensor, as_tensor, value
from .. import functional as F


def pool2d_loops(x, kernel_size: int, stride: int = None, padding: int = 0, reduce=np.max, dilation: int = 1,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """The definition, as loops (square kernels): out[n, c, i, j] = the max, or the sum / count, of the
    taps x[n, c, i s - p + a d, j s - p + b d] (a, b < k) inside x. count: every tap inside the padded
    image (count_include_pad, PyTorch's default) or only those inside x."""
    (N, C, H, W), k, s, p, d = x.shape, kernel_size, stride or kernel_size, padding, dilation
    OH, OW = (_size(n, k, s, p, d, ceil_mode) for n in (H, W))
    out = np.zeros((N, C, OH, OW), x.dtype)
    for i, j in itertools.product(range(OH), range(OW)):
        rows, cols = (range(o * s - p, o * s - p + k * d, d) for o in (i, j))
        taps = [x[:, :, r, c] for r, c in itertools.product(rows, cols) if 0 <= r < H and 0 <= c < W]
        if reduce is np.max:
            out[:, :, i, j] = np.max(taps, axis=0)
        else:
            padded = (min(rows.stop, H + p) - rows.start) * (min(cols.stop, W + p) - cols.start)
            out[:, :, i, j] = np.sum(taps, axis=0) / (padded if count_include_pad else len(taps))
    return out


# ==================================================================== geometry
def _size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """OH for one axis (module docstring)."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    return out - 1 if ceil_mode and (out - 1) * s >= n + p else out


def pool_geometry(op: str, x: Tensor, kernel_size, stride, padding, dilation=1, ceil_mode=False) -> tuple:
    """-> (kernel, stride, padding, (OH, OW)), checked; stride defaults to the kernel size."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    kernel = pair(kernel_size, "kernel_size", op, 1)
    stride = pair(kernel_size if stride is None else stride, "stride", op, 1)
    padding, dilation = pair(padding, "padding", op, 0), pair(dilation, "dilation", op, 1)
    if 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
    size = tuple(_size(*a, ceil_mode) for a in zip(x.shape[2:], kernel, stride, padding, dilation))
    if min(size) < 1:
        raise ValueError(f"{op}: kernel {kernel} with dilation {dilation} is larger than the padded input "
                         f"{tuple(n + 2 * p for n, p in zip(x.shape[2:], padding))} (input shape "
                         f"{tuple(x.shape)}); the output (OH, OW) would be {size}")
    return kernel, stride, padding, size


def _window_columns(x: Tensor, kernel, stride, padding, dilation, size, fill: float) -> Tensor:
    """Each channel's windows as columns: (N C, KH KW, OH OW), the padding (and ceil_mode's overhang)
    filled with `fill`."""
    N, C, H, W = x.shape
    ends = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(size, stride, dilation, kernel)]
    widths = [(p, p + max(end - n - 2 * p, 0)) for p, end, n in zip(padding, ends, (H, W))]
    if any(sum(w) for w in widths):
        x = F.pad(x, ((0, 0), (0, 0), *widths), value=fill)
    return im2col(x.reshape(N * C, 1, *x.shape[2:]), kernel, stride, (0, 0), dilation, size)


# ==================================================================== max pooling and its inverse
@replaceable("max_pool2d")
def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each KH x KW window (taps dilation apart; padding with -inf; stride defaults to
    kernel_size): (N, C, H, W) -> (N, C, OH, OW). The gradient goes to each window's first maximum
    (row-major), as PyTorch; a pixel that is the maximum of several windows receives the sum.
    return_indices: also the flat position (row W + column) in x of each maximum, for max_unpool2d."""
    x = as_tensor(x)
    kernel, stride, padding, (OH, OW) = pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation,
                                                      ceil_mode)
    dilation = pair(dilation, "dilation", "max_pool2d", 1)
    cols = _window_columns(x, kernel, stride, padding, dilation, (OH, OW), -np.inf)
    ### BEGIN SOLUTION max_pool
    ### task: pick each window's first maximum from the columns (the gradient then follows by itself)
    ### hint: max_pool2d's docstring: the gradient goes to each window's first maximum
    best = cols.data.argmax(axis=1)                                     # (N C, OH OW): the first maximum
    rows, positions = np.ogrid[:best.shape[0], :best.shape[1]]
    out = cols[rows, best, positions].reshape(*x.shape[:2], OH, OW)
    ### END SOLUTION
    if not return_indices:
        return out
    (kh, kw), (i, j) = np.divmod(best, kernel[1]), np.divmod(positions, OW)
    row, col = (o * s - p + k * d for o, s, p, k, d in zip((i, j), stride, padding, (kh, kw), dilation))
    return out, Tensor((row * x.shape[3] + col).reshape(out.shape))


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Undo max_pool2d(..., return_indices=True) as far as it can be: zeros of shape (N, C, H, W) with each
    x[n, c, i, j] written at the flat position indices[n, c, i, j] (H, W: output_size's last two, default
    ((OH - 1) sh - 2 ph + KH, ...), as PyTorch). A pixel that was the maximum of several overlapping
    windows appears once (its copies in x are equal), as in PyTorch. Gradient: dL/dx = g read at the
    indices (a gather; the indices get none)."""
    x, indices = as_tensor(x), value(indices)
    kernel = pair(kernel_size, "kernel_size", "max_unpool2d", 1)
    stride = pair(kernel_size if stride is None else stride, "stride", "max_unpool2d", 1)
    padding = pair(padding, "padding", "max_unpool2d", 0)
    H, W = tuple(output_size)[-2:] if output_size is not None else (
        (n - 1) * s - 2 * p + k for n, s, p, k in zip(x.shape[2:], stride, padding, kernel))
    if x.ndim != 4 or indices.shape != x.shape or indices.size and not 0 <= indices.min() <= indices.max() < H * W:
        raise ValueError(f"max_unpool2d: expected x (N, C, OH, OW) and integer indices of the same shape in "
                         f"[0, {H * W}), got shapes {x.shape}, {indices.shape}")
    N, C = x.shape[:2]
    where = (np.arange(N)[:, None, None, None], np.arange(C)[None, :, None, None], indices.astype(np.intp))
    data = np.zeros((N, C, H * W), x.dtype)
    data[where] = x.data
    out = Tensor._make(data.reshape(N, C, H, W), (x,), "max_unpool2d")
    out._backward = lambda g, x, out: g.reshape(N, C, H * W)[where]
    return out


# ==================================================================== average pooling
@replaceable("avg_pool2d")
def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True) -> Tensor:
    """Mean over each KH x KW window: (N, C, H, W) -> (N, C, OH, OW), the sum divided by the window's count:
    its taps inside the zero-padded image (count_include_pad=True, PyTorch's default; ceil_mode's
    overhang is never counted) or inside x only. Every tap of a window gets g / count; overlapping
    windows add."""
    x = as_tensor(x)
    kernel, stride, padding, (OH, OW) = pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    sums = _window_columns(x, kernel, stride, padding, (1, 1), (OH, OW), 0.0).sum(axis=1)     # (N C, OH OW)
    counts = [_counts(*a, count_include_pad) for a in zip(x.shape[2:], kernel, stride, padding, (OH, OW))]
    return (sums / np.outer(*counts).reshape(-1).astype(x.dtype)).reshape(*x.shape[:2], OH, OW)


def _counts(n: int, k: int, s: int, p: int, size: int, include_pad: bool) -> np.ndarray:
    """Per output position along one axis: how many of the window's taps are counted."""
    start = np.arange(size) * s - p
    if include_pad:
        return np.minimum(start + k, n + p) - start
    return np.minimum(start + k, n) - np.maximum(start, 0)
