r"""The fast path behind autodiff/conv.py: im2col, col2im, the three matrix products of conv2d, and
the memory layouts and scratch buffers that keep them fast. Notation as in conv.py; here the
windows slide over an "image" and their positions form a "grid":

    Windows(N, C, IH, IW, KH, KW, sh, sw, ph, pw, dh, dw, GH, GW)
        image (N, C, IH, IW), zero padded by (ph, pw), windows KH x KW with dilation (dh, dw) at
        stride (sh, sw): GH x GW window positions,  GH = (IH + 2 ph - dh (KH - 1) - 1) // sh + 1.
        conv2d:            image = its input  (IH, IW = H, W),   grid = its output (GH, GW = OH, OW)
        conv_transpose2d:  image = its output (IH, IW = OH, OW), grid = its input  (GH, GW = H, W)
    K = C KH KW, the length of one unrolled window;  M = N GH GW, the number of windows.

im2col copies every window of the padded image into a column of `cols` (K, M), from one strided
(sliding-window) view. Then conv2d is one BLAS product and its gradients two more:
    conv2d_forward:      out (C_out, M)  = w (C_out, K) @ cols (K, M)
    conv2d_weight_grad:  dL/dw (C_out, K) = g (C_out, M) @ cols^T
    conv2d_input_grad:   dL/dx = col2im(w^T @ g)          (this is also conv_transpose2d's forward)
col2im is im2col's adjoint: a pixel copied into several windows gets the SUM of their values back.

Layout. Channel-major arrays (C, N, H, W) or, for small grids, (C, H, W, N) ("N last") make the
(C, M) matrices above contiguous, so only the (smaller) NCHW images are transposed, on the way in and
out. N last is chosen when a window row is short (GW < N_LAST_BELOW_GW): with (N, H, W) order
im2col and col2im would step through rows only GW numbers long, and NumPy's per-row overhead would
dominate. The choice changes speed only, never results (the tests run both).

Threads. The copies, col2im's adds and the three products run in blocks (of channels, images, or
rows/columns of the product) on the engine's threads when it has them (autodiff/parallel.py).

Scratch. Big temporaries that never leave this module (the w^T @ g product, the padded images) are
reused between calls instead of freshly allocated (`scratch`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import parallel

N_LAST_BELOW_GW = 12      # grids narrower than this use the (C, H, W, N) layout


# ==================================================================== scratch memory
class Scratch:
    """Reused arrays for temporaries. Allocating a big array afresh can cost more than the arithmetic
    on it: the C allocator returns big freed blocks to the OS, and the next allocation pays a page
    fault for every page it touches. Keyed by (tag, shape, dtype); the least recently used arrays are
    dropped beyond `max_bytes`. Not thread-safe (neither is the autodiff graph)."""

    def __init__(self, max_bytes: int = 256 * 2 ** 20):
        self.max_bytes, self.arrays = max_bytes, OrderedDict()

    def get(self, tag: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
        key = (tag, tuple(shape), np.dtype(dtype))
        array = self.arrays.pop(key, None)
        if array is None:
            array = np.empty(shape, dtype)
        self.arrays[key] = array
        while len(self.arrays) > 1 and sum(a.nbytes for a in self.arrays.values()) > self.max_bytes:
            self.arrays.popitem(last=False)
        if zero:
            array.fill(0)
        return array


scratch = Scratch()


# ==================================================================== geometry
class Windows(NamedTuple):
    """Where the windows of a conv2d sit on the image they slide over (see the module docstring)."""
    N: int
    C: int
    IH: int
    IW: int
    KH: int
    KW: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    GH: int
    GW: int

    @property
    def n_last(self) -> bool:
        return self.GW < N_LAST_BELOW_GW

    @property
    def padded_hw(self) -> tuple:
        """A padded image big enough for the image (at offset ph, pw) and for every window tap."""
        span_h = (self.GH - 1) * self.sh + self.dh * (self.KH - 1) + 1
        span_w = (self.GW - 1) * self.sw + self.dw * (self.KW - 1) + 1
        return max(span_h, self.ph + self.IH), max(span_w, self.pw + self.IW)


# ==================================================================== layouts: NCHW <-> channel-major
def _nchw_view(phys: np.ndarray, n_last: bool) -> np.ndarray:
    """A (C, N, H, W) view of a channel-major array stored as (C, N, H, W) or (C, H, W, N)."""
    return phys.transpose(0, 3, 1, 2) if n_last else phys


def to_channel_major(a: np.ndarray, n_last: bool, top: int = 0, left: int = 0, height: int = None,
                     width: int = None, tag: str = None) -> np.ndarray:
    """Copy an (N, C, H, W) array into a channel-major array of the given height and width, zero
    padded, the image at offset (top, left). With a scratch `tag` the result is a reused array."""
    N, C, H, W = a.shape
    height, width = height or H, width or W
    shape = (C, height, width, N) if n_last else (C, N, height, width)
    padded = (height, width) != (H, W)
    if tag:
        phys = scratch.get(tag, shape, a.dtype, zero=padded)
    else:
        phys = np.zeros(shape, a.dtype) if padded else np.empty(shape, a.dtype)
    view = _nchw_view(phys, n_last)[:, :, top:top + H, left:left + W]
    if n_last:      # a full transpose, 16 images at a time (a 64-byte line of N): stays in cache
        def copy(lo, hi):
            for n in range(lo * 16, min(hi * 16, N), 16):
                view[:, n:n + 16] = a[n:n + 16].transpose(1, 0, 2, 3)
        parallel.for_blocks(copy, -(-N // 16), work=a.size)
    else:
        parallel.copyto(view, a.transpose(1, 0, 2, 3))
    return phys


def to_nchw(phys: np.ndarray, n_last: bool, top: int = 0, left: int = 0, height: int = None,
            width: int = None) -> np.ndarray:
    """The (N, C, H, W) image at offset (top, left) of a channel-major array, as a contiguous copy."""
    view = _nchw_view(phys, n_last)
    height, width = height or view.shape[2], width or view.shape[3]
    view = view[:, :, top:top + height, left:left + width]
    C, N = view.shape[:2]
    out = np.empty((N, C, height, width), phys.dtype)

    def copy(lo, hi):   # one channel at a time: with N last a full transpose, in cache-sized pieces
        for c in range(lo, hi):
            out[:, c] = view[c]
    parallel.for_blocks(copy, C, work=out.size)
    return out


def grid_matrix(a: np.ndarray, g: Windows, tag: str = None) -> np.ndarray:
    """An (N, C, GH, GW) array on the window grid -> the (C, M) matrix, M in the layout's order."""
    return to_channel_major(a, g.n_last, tag=tag).reshape(a.shape[1], -1)


def grid_image(matrix: np.ndarray, g: Windows) -> np.ndarray:
    """The inverse of grid_matrix: a (C, M) matrix -> (N, C, GH, GW)."""
    C = matrix.shape[0]
    shape = (C, g.GH, g.GW, g.N) if g.n_last else (C, g.N, g.GH, g.GW)
    return to_nchw(matrix.reshape(shape), g.n_last)


# ==================================================================== im2col and col2im (adjoints)
def _windows_view(image: np.ndarray, g: Windows) -> np.ndarray:
    """Strided (no copy) view of every window of a (C, N, H, W) padded image: (C, KH, KW, N, GH, GW)."""
    span = (g.dh * (g.KH - 1) + 1, g.dw * (g.KW - 1) + 1)
    view = sliding_window_view(image, span, axis=(2, 3))          # (C, N, H', W', span_h, span_w)
    view = view[:, :, :(g.GH - 1) * g.sh + 1:g.sh, :(g.GW - 1) * g.sw + 1:g.sw, ::g.dh, ::g.dw]
    return view.transpose(0, 4, 5, 1, 2, 3)


def im2col(x: np.ndarray, g: Windows, tag: str = None) -> np.ndarray:
    """im2col: image (N, C, IH, IW) -> cols (K, M): one copy of a strided view of the padded image.
    With a scratch `tag` cols is a reused array (for a temporary that is not saved for backward)."""
    height, width = g.padded_hw
    image = to_channel_major(x, g.n_last, g.ph, g.pw, height, width, tag="im2col image")
    windows = _windows_view(_nchw_view(image, g.n_last), g)         # (C, KH, KW, N, GH, GW)
    if g.n_last:
        windows = windows.transpose(0, 1, 2, 4, 5, 3)               # (C, KH, KW, GH, GW, N)
    # Always a copy (never np.ascontiguousarray: when the view happens to be contiguous it would
    # return the scratch image itself, which the next im2col overwrites).
    cols = np.empty(windows.shape, x.dtype) if tag is None else scratch.get(tag, windows.shape, x.dtype)
    parallel.copyto(cols, windows)
    return cols.reshape(g.C * g.KH * g.KW, -1)


def col2im(cols: np.ndarray, g: Windows) -> np.ndarray:
    """col2im, the adjoint of im2col: cols (K, M) -> image (N, C, IH, IW).

    Each column is added back onto the pixels of its window. A pixel that sits in several windows
    was copied into several columns, i.e. it contributed to several outputs, so its gradient is the
    SUM over those windows: hence `+=`, never `=`. One vectorised add per kernel offset (KH*KW of
    them), each into a strided slice of the padded image (np.add.at would be far slower)."""
    height, width = g.padded_hw
    shape = (g.C, height, width, g.N) if g.n_last else (g.C, g.N, height, width)
    phys = scratch.get("col2im image", shape, cols.dtype, zero=True)
    image = _nchw_view(phys, g.n_last)                              # (C, N, H', W') view
    if g.n_last:
        cols6 = cols.reshape(g.C, g.KH, g.KW, g.GH, g.GW, g.N).transpose(0, 1, 2, 5, 3, 4)
    else:
        cols6 = cols.reshape(g.C, g.KH, g.KW, g.N, g.GH, g.GW)    # both (C, KH, KW, N, GH, GW)
    by_channel = g.C >= 4           # blocks of channels, or of images: never two blocks on one pixel

    def add_windows(lo, hi):
        block = (slice(lo, hi),) if by_channel else (slice(None), slice(lo, hi))
        for kh in range(g.KH):
            for kw in range(g.KW):
                top, left = kh * g.dh, kw * g.dw
                target = image[block][:, :, top:top + (g.GH - 1) * g.sh + 1:g.sh,
                                      left:left + (g.GW - 1) * g.sw + 1:g.sw]
                np.add(target, cols6[:, kh, kw][block], out=target)
    parallel.for_blocks(add_windows, g.C if by_channel else g.N, work=cols.size)
    return to_nchw(phys, g.n_last, g.ph, g.pw, g.IH, g.IW)


# ==================================================================== conv2d's three products
def weight_matrix(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in, KH, KW) -> (C_out, K)."""
    return np.ascontiguousarray(w).reshape(w.shape[0], -1)


def conv2d_forward(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """out (C_out, M) = w (C_out, K) @ cols (K, M): the one BLAS product of conv2d (a scratch array)."""
    out = scratch.get("conv2d out", (w.shape[0], cols.shape[1]), cols.dtype)
    return parallel.matmul(weight_matrix(w), cols, out=out)


def conv2d_weight_grad(g_matrix: np.ndarray, cols: np.ndarray, w_shape: tuple) -> np.ndarray:
    """dL/dw (C_out, K) = g (C_out, M) @ cols^T (M, K) (cols.T is a free F-ordered view for BLAS).
    For K >= 64 it is computed as (cols @ g^T)^T, the orientation OpenBLAS runs faster for long columns."""
    if cols.shape[0] >= 64:
        return np.ascontiguousarray(parallel.matmul(cols, g_matrix.T).T).reshape(w_shape)
    return parallel.matmul(g_matrix, cols.T).reshape(w_shape)


def conv2d_input_grad(g_matrix: np.ndarray, w: np.ndarray, g: Windows) -> np.ndarray:
    """dL/dx = col2im(w^T @ g): g (C_out, M) -> (N, C_in, H, W). This is conv_transpose2d's forward."""
    w_matrix = weight_matrix(w)
    cols = scratch.get("input grad cols", (w_matrix.shape[1], g_matrix.shape[1]), g_matrix.dtype)
    return col2im(parallel.matmul(w_matrix.T, g_matrix, out=cols), g)
