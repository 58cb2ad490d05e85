r"""Fast max and average pooling: replace autodiff/ops/pooling.py's `max_pool2d` and `avg_pool2d` (their
default options; dilation, ceil_mode, return_indices and count_include_pad=False return NotImplemented,
so the reference runs).

Why they compute the same thing. The reference copies every window into a column (im2col) and takes its
max or mean. Here the same windows are visited as KH*KW strided views of the whole batch, one per kernel
offset (no copy), and the max is a running np.maximum over them, in blocks of images on the engine's
threads. Backward routes each window's gradient to its FIRST maximum in row-major order, as the
reference's argmax does (a pixel that is the maximum of several windows gets the sum).
"""
from __future__ import annotations

import numpy as np

from autodiff.ops.pooling import pool_geometry
from autodiff.tensor import Tensor, as_tensor
from . import parallel
from .taken import note


def _offsets(image: np.ndarray, kernel, stride, size):
    """A strided view (N, C, OH, OW) for each of the KH*KW kernel offsets."""
    (KH, KW), (sh, sw), (OH, OW) = kernel, stride, size
    for kh in range(KH):
        for kw in range(KW):
            yield image[:, :, kh:kh + (OH - 1) * sh + 1:sh, kw:kw + (OW - 1) * sw + 1:sw]


def _padded(a: np.ndarray, padding, value: float) -> np.ndarray:
    ph, pw = padding
    return a if ph == pw == 0 else np.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Replaces autodiff.ops.pooling.max_pool2d (see the module docstring)."""
    if dilation not in (1, (1, 1)) or ceil_mode or return_indices:
        return NotImplemented
    x = as_tensor(x)
    kernel, stride, padding, size = pool_geometry("max_pool2d", x, kernel_size, stride, padding)
    note("max_pool2d")
    image = _padded(x.data, padding, -np.inf)
    best = np.empty(x.shape[:2] + size, x.dtype)

    def forward(lo, hi):                                       # images lo..hi
        views = [view[lo:hi] for view in _offsets(image, kernel, stride, size)]
        np.copyto(best[lo:hi], views[0])
        for view in views[1:]:
            np.maximum(best[lo:hi], view, out=best[lo:hi])     # one pass per kernel offset
    parallel.for_blocks(forward, x.shape[0], work=image.size)
    out = Tensor._make(best, (x,), "max_pool2d")

    def gradient(g, *inputs):
        overlapping = stride[0] < kernel[0] or stride[1] < kernel[1]
        tiled = stride == kernel and (size[0] * kernel[0], size[1] * kernel[1]) == image.shape[2:]
        grad = (np.empty if tiled else np.zeros)(image.shape, g.dtype)   # tiled: every pixel written below
        last = kernel[0] * kernel[1] - 1

        def backward(lo, hi):
            taken = None                                       # windows already routed to a maximum
            for k, (view, target) in enumerate(zip(_offsets(image[lo:hi], kernel, stride, size),
                                                   _offsets(grad[lo:hi], kernel, stride, size))):
                is_first_max = np.equal(view, best[lo:hi])
                if taken is None:
                    taken = is_first_max.copy()
                else:                                          # a maximum and not taken: True > False
                    np.greater(is_first_max, taken, out=is_first_max)
                    if k < last:
                        taken |= is_first_max
                if overlapping:                                # += : overlapping windows add
                    np.add(target, g[lo:hi] * is_first_max, out=target)
                else:                                          # each pixel in one window at most
                    np.multiply(g[lo:hi], is_first_max, out=target)
        parallel.for_blocks(backward, x.shape[0], work=image.size)
        return grad[:, :, padding[0]:padding[0] + x.shape[2], padding[1]:padding[1] + x.shape[3]]
    out._backward = gradient
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Replaces autodiff.ops.pooling.avg_pool2d (see the module docstring)."""
    if ceil_mode or not count_include_pad:
        return NotImplemented
    x = as_tensor(x)
    kernel, stride, padding, size = pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
    note("avg_pool2d")
    image = _padded(x.data, padding, 0)
    total = np.zeros(x.shape[:2] + size, x.dtype)
    for view in _offsets(image, kernel, stride, size):
        total += view
    count = kernel[0] * kernel[1]
    out = Tensor._make(total / np.asarray(count, x.dtype), (x,), "avg_pool2d")

    def gradient(g, *inputs):
        share, grad = g / np.asarray(count, g.dtype), np.zeros(image.shape, g.dtype)
        for target in _offsets(grad, kernel, stride, size):
            target += share                                    # overlapping windows add
        return grad[:, :, padding[0]:padding[0] + x.shape[2], padding[1]:padding[1] + x.shape[3]]
    out._backward = gradient
    return out
