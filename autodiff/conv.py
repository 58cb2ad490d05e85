r"""Convolution and pooling on NCHW tensors: conv2d, conv_transpose2d, max_pool2d, avg_pool2d.

Notation (used in every name below)
    N         batch size
    C_in      input channels of conv2d          (= output channels of its adjoint, conv_transpose2d)
    C_out     output channels of conv2d         (= input channels of conv_transpose2d)
    H, W      height and width of conv2d's input image (= conv_transpose2d's output image)
    KH, KW    kernel height and width
    stride    step between neighbouring windows, (sh, sw)
    padding   zeros added on each side of the image, (ph, pw)
    dilation  step between kernel taps inside one window, (dh, dw)
    OH, OW    number of window positions = conv2d's output size (= conv_transpose2d's input size)
              OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1
    K         = C_in*KH*KW, the length of one unrolled window;  M = N*OH*OW, the number of windows

How conv2d runs: im2col, then one matmul.
    im2col copies every window of the padded image into a column of `cols`, shape (K, M), with one
    copy from a strided (sliding-window) view. The convolution is then a single BLAS matmul
        out[C_out, M] = w[C_out, K] @ cols[K, M].
    Its gradients are two more matmuls with the same operands:
        dL/dw    = g[C_out, M] @ cols^T                           (conv2d weight gradient)
        dL/dcols = w^T @ g,  then dL/dx = col2im(dL/dcols)         (conv2d input gradient)

Adjoint pairs.
    col2im is the adjoint of im2col: im2col copies each pixel into every window that contains it,
    so col2im *adds* every window's value back onto its pixel (overlapping windows sum).
    conv_transpose2d IS conv2d's input gradient (`_conv2d_input_grad`, read "w^T then col2im"), and
    its backward IS conv2d: input gradient = conv2d's forward on the output gradient, weight
    gradient = conv2d's weight gradient with the roles of image and output swapped.

Internal layout. Inside this module the images are kept channel-first, (C, N, H, W) or (C, H, W, N)
("N last"); both make cols (K, M) with M ordered (N, OH, OW) or (OH, OW, N), so the three matmuls
run on contiguous arrays and only the (smaller) NCHW images are transposed, on the way in and out.
N last is chosen for small images, where the (N, H, W) layout would make im2col and col2im step
through rows only OW numbers long (NumPy's per-row overhead then dominates).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .tensor import Tensor

# Images whose window rows are shorter than this use the (C, H, W, N) layout (see module docstring).
_N_LAST_BELOW_OW = 12


# ==================================================================== scratch memory
class _Scratch:
    """Reused arrays for the big temporaries that never leave this module (the w^T @ g product,
    col2im's padded image, ...). Allocating them afresh can cost more than the arithmetic: the C
    allocator hands big freed blocks back to the OS, and the next allocation then pays a page fault
    per page it touches (measured: a 26 MB matmul output took 30 ms instead of 7). Keyed by
    (tag, shape, dtype); least recently used arrays are dropped beyond `max_bytes`.
    Not thread-safe (neither is the autodiff graph)."""

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


_scratch = _Scratch()


# ==================================================================== argument checking
def _pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int or an (h, w) pair of ints, each >= minimum."""
    try:
        pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_4d(op: str, x: Tensor, layout: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input {layout}, got shape {tuple(x.shape)}")


def _check_weight_and_bias(op: str, x: Tensor, w: Tensor, b, w_layout: str, in_axis: int,
                           out_axis: int) -> None:
    if w.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight {w_layout}, got shape {tuple(w.shape)}")
    if x.shape[1] != w.shape[in_axis]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels (shape {tuple(x.shape)}) but the weight "
                         f"{w_layout} = {tuple(w.shape)} expects {w.shape[in_axis]}")
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and weight dtype {w.dtype} differ; cast one "
                        f"(no silent upcasting)")
    if b is not None and tuple(b.shape) != (w.shape[out_axis],):
        raise ValueError(f"{op}: bias must have shape ({w.shape[out_axis]},) (one per output channel), "
                         f"got {tuple(b.shape)}")


# ==================================================================== geometry
class _Geometry(NamedTuple):
    """Where the windows of a conv2d sit on its (input) image. Shared by conv2d and its adjoint."""
    N: int
    C_in: int
    H: int
    W: int
    KH: int
    KW: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    OH: int
    OW: int

    @property
    def n_last(self) -> bool:
        return self.OW < _N_LAST_BELOW_OW

    @property
    def buffer_hw(self) -> tuple:
        """Padded image big enough for the image (at offset ph, pw) and for every window tap."""
        span_h = (self.OH - 1) * self.sh + self.dh * (self.KH - 1) + 1
        span_w = (self.OW - 1) * self.sw + self.dw * (self.KW - 1) + 1
        return max(span_h, self.ph + self.H), max(span_w, self.pw + self.W)


def _conv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ==================================================================== layout changes (NCHW <-> internal)
def _internal(phys: np.ndarray, n_last: bool) -> np.ndarray:
    """A (C, N, H, W) view of an internal array stored as (C, N, H, W) or (C, H, W, N)."""
    return phys.transpose(0, 3, 1, 2) if n_last else phys


def _internal_shape(C: int, N: int, H: int, W: int, geometry: _Geometry) -> tuple:
    """Shape of an internal array in the geometry's layout."""
    return (C, H, W, N) if geometry.n_last else (C, N, H, W)


def _nchw_to_internal(a: np.ndarray, n_last: bool, top: int = 0, left: int = 0,
                      Hb: int = None, Wb: int = None, scratch: str = None) -> np.ndarray:
    """Copy a (N, C, H, W) array into an internal (C, ...) array of height Hb and width Wb, zero
    padded, the image at offset (top, left). With a `scratch` tag the result is a reused array."""
    N, C, H, W = a.shape
    Hb, Wb = Hb or H, Wb or W
    shape = (C, Hb, Wb, N) if n_last else (C, N, Hb, Wb)
    padded = (Hb, Wb) != (H, W)
    if scratch:
        phys = _scratch.get(scratch, shape, a.dtype, zero=padded)
    else:
        phys = np.zeros(shape, a.dtype) if padded else np.empty(shape, a.dtype)
    view = _internal(phys, n_last)[:, :, top:top + H, left:left + W]
    if n_last:      # a full transpose: 16 images at a time (a 64-byte line of N), 2-4x faster than whole
        for n in range(0, N, 16):
            view[:, n:n + 16] = a[n:n + 16].transpose(1, 0, 2, 3)
    else:
        view[...] = a.transpose(1, 0, 2, 3)
    return phys


def _internal_to_nchw(phys: np.ndarray, n_last: bool, top: int = 0, left: int = 0,
                      H: int = None, W: int = None) -> np.ndarray:
    """The (N, C, H, W) image at offset (top, left) of an internal array, as a contiguous copy."""
    view = _internal(phys, n_last)
    H, W = H or view.shape[2], W or view.shape[3]
    view = view[:, :, top:top + H, left:left + W]
    C, N = view.shape[:2]
    out = np.empty((N, C, H, W), phys.dtype)
    for c in range(C):  # one channel at a time: with N last a full transpose, in cache-sized pieces
        out[:, c] = view[c]
    return out


# ==================================================================== im2col and col2im (adjoints)
def _windows(image: np.ndarray, g: _Geometry) -> np.ndarray:
    """Strided (no copy) view of every window of an internal padded image: (C, KH, KW, N, OH, OW)."""
    span = (g.dh * (g.KH - 1) + 1, g.dw * (g.KW - 1) + 1)
    view = sliding_window_view(image, span, axis=(2, 3))          # (C, N, Hb', Wb', span_h, span_w)
    view = view[:, :, :(g.OH - 1) * g.sh + 1:g.sh, :(g.OW - 1) * g.sw + 1:g.sw, ::g.dh, ::g.dw]
    return view.transpose(0, 4, 5, 1, 2, 3)


def _im2col(x: np.ndarray, g: _Geometry, scratch: str = None) -> np.ndarray:
    """im2col: (N, C_in, H, W) -> cols (K, M), M ordered as the internal layout: one copy of a
    strided view of the padded image. With a `scratch` tag cols is a reused array (a temporary)."""
    Hb, Wb = g.buffer_hw
    image = _nchw_to_internal(x, g.n_last, g.ph, g.pw, Hb, Wb, scratch="im2col image")
    windows = _windows(_internal(image, g.n_last), g)               # (C, KH, KW, N, OH, OW)
    if g.n_last:
        windows = windows.transpose(0, 1, 2, 4, 5, 3)               # (C, KH, KW, OH, OW, N)
    # Always a copy (never np.ascontiguousarray: when the view happens to be contiguous it would
    # return the scratch image itself, which the next im2col overwrites).
    cols = np.empty(windows.shape, x.dtype) if scratch is None else _scratch.get(scratch, windows.shape, x.dtype)
    np.copyto(cols, windows)
    return cols.reshape(g.C_in * g.KH * g.KW, -1)


def _col2im(cols: np.ndarray, g: _Geometry) -> np.ndarray:
    """col2im, the adjoint of im2col: cols (K, M) -> (N, C_in, H, W).

    Each column is added back onto the pixels of its window. A pixel that sits in several windows
    was copied into several columns, i.e. it contributed to several outputs, so its gradient is the
    SUM over those windows: hence `+=`, never `=`. One vectorised add per kernel offset (KH*KW of
    them), each into a strided slice of the padded image (np.add.at would be far slower)."""
    Hb, Wb = g.buffer_hw
    shape = (g.C_in, Hb, Wb, g.N) if g.n_last else (g.C_in, g.N, Hb, Wb)
    phys = _scratch.get("col2im image", shape, cols.dtype, zero=True)
    image = _internal(phys, g.n_last)                               # (C, N, Hb, Wb) view
    if g.n_last:
        cols6 = cols.reshape(g.C_in, g.KH, g.KW, g.OH, g.OW, g.N).transpose(0, 1, 2, 5, 3, 4)
    else:
        cols6 = cols.reshape(g.C_in, g.KH, g.KW, g.N, g.OH, g.OW)  # both (C, KH, KW, N, OH, OW)
    for kh in range(g.KH):
        for kw in range(g.KW):
            top, left = kh * g.dh, kw * g.dw
            target = image[:, :, top:top + (g.OH - 1) * g.sh + 1:g.sh,
                           left:left + (g.OW - 1) * g.sw + 1:g.sw]
            np.add(target, cols6[:, kh, kw], out=target)
    return _internal_to_nchw(phys, g.n_last, g.ph, g.pw, g.H, g.W)


# ==================================================================== conv2d's three products
def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in, KH, KW) -> (C_out, K)."""
    return np.ascontiguousarray(w).reshape(w.shape[0], -1)


def _conv2d_forward(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """out (C_out, M) = w (C_out, K) @ cols (K, M): the one BLAS matmul of conv2d (a scratch array)."""
    out = _scratch.get("conv2d out", (w.shape[0], cols.shape[1]), cols.dtype)
    return np.matmul(_weight_matrix(w), cols, out=out)


def _conv2d_weight_grad(g_cols: np.ndarray, cols: np.ndarray, w_shape: tuple) -> np.ndarray:
    """dL/dw (C_out, K) = g (C_out, M) @ cols^T (M, K) (cols.T is a free F-ordered view for BLAS)."""
    return (g_cols @ cols.T).reshape(w_shape)


def _conv2d_input_grad(g_cols: np.ndarray, w: np.ndarray, geometry: _Geometry) -> np.ndarray:
    """dL/dx = col2im(w^T @ g): g (C_out, M) -> (N, C_in, H, W). This is conv_transpose2d's forward."""
    w_matrix = _weight_matrix(w)
    cols = _scratch.get("input grad cols", (w_matrix.shape[1], g_cols.shape[1]), g_cols.dtype)
    return _col2im(np.matmul(w_matrix.T, g_cols, out=cols), geometry)


# ==================================================================== conv2d
def conv2d(x: Tensor, w: Tensor, b: Tensor = None, stride=1, padding=0, dilation=1) -> Tensor:
    r"""2-D cross-correlation (PyTorch's conv2d), NCHW.

    x: (N, C_in, H, W);  w: (C_out, C_in, KH, KW);  b: (C_out,) or None  ->  (N, C_out, OH, OW) with
        out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x_pad[n, c, i*sh + kh*dh, j*sw + kw*dw]
        OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1   (likewise OW)
    stride, padding, dilation: int or (h, w) pair.
    Backward: dL/dw = g @ cols^T, dL/dx = col2im(w^T @ g) (= conv_transpose2d of g), dL/db = sum of g.
    """
    op = "conv2d"
    _check_4d(op, x, "(N, C_in, H, W)")
    _check_weight_and_bias(op, x, w, b, "(C_out, C_in, KH, KW)", in_axis=1, out_axis=0)
    (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride", op, 1), _pair(padding, "padding", op, 0),
                                    _pair(dilation, "dilation", op, 1))
    N, C_in, H, W = x.shape
    C_out, _, KH, KW = w.shape
    OH, OW = _conv_out_size(H, KH, sh, ph, dh), _conv_out_size(W, KW, sw, pw, dw)
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: kernel (KH, KW) = ({KH}, {KW}) with dilation ({dh}, {dw}) spans "
                         f"({dh * (KH - 1) + 1}, {dw * (KW - 1) + 1}) but the padded input is "
                         f"({H + 2 * ph}, {W + 2 * pw}) (input shape {tuple(x.shape)}, padding "
                         f"({ph}, {pw})); the output (OH, OW) would be ({OH}, {OW})")
    geometry = _Geometry(N, C_in, H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW)

    cols = _im2col(x.data, geometry)                                 # (K, M)
    out_cols = _conv2d_forward(cols, w.data)                         # (C_out, M)
    saved_cols = cols if w.requires_grad else None                  # only dL/dw needs them
    if b is not None:
        out_cols += b.data[:, None]
    parents = (x, w) if b is None else (x, w, b)
    out = Tensor._make(_internal_to_nchw(out_cols.reshape(_internal_shape(C_out, N, OH, OW, geometry)),
                                         geometry.n_last), parents, op)
    if not out.requires_grad:
        return out

    def _backward():
        g_cols = _nchw_to_internal(out.grad, geometry.n_last, scratch="g").reshape(C_out, -1)  # (C_out, M)
        if w.requires_grad:
            w._accumulate(_conv2d_weight_grad(g_cols, saved_cols, w.shape))
        if b is not None and b.requires_grad:
            b._accumulate(g_cols.sum(axis=1))
        if x.requires_grad:
            x._accumulate(_conv2d_input_grad(g_cols, w.data, geometry))
    out._backward = _backward
    return out


# ==================================================================== conv_transpose2d
def conv_transpose2d(x: Tensor, w: Tensor, b: Tensor = None, stride=1, padding=0, output_padding=0,
                     dilation=1) -> Tensor:
    r"""2-D transposed convolution (PyTorch's conv_transpose2d), NCHW: the adjoint of conv2d.

    x: (N, C_in, H, W);  w: (C_in, C_out, KH, KW);  b: (C_out,) or None  ->  (N, C_out, OH, OW) with
        OH = (H-1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1   (likewise OW).
    Every input pixel scatters x[n, c, i, j] * w[c, :, kh, kw] onto output pixel
    (i*sh - ph + kh*dh, j*sw - pw + kw*dw). output_padding (< max(stride, dilation), as in PyTorch)
    only lengthens the bottom/right edge, to pick among the input sizes a conv2d maps to H.

    As the adjoint of conv2d with the same w (read as conv2d's (C_out, C_in, KH, KW) = this C_in,
    this C_out), on the image of conv_transpose2d's output:
        forward        = conv2d's input gradient, col2im(w^T @ x)
        dL/dx          = conv2d(g, w)                 (conv2d's forward: w @ im2col(g))
        dL/dw          = conv2d's weight gradient with the roles swapped: x @ im2col(g)^T
    """
    op = "conv_transpose2d"
    _check_4d(op, x, "(N, C_in, H, W)")
    _check_weight_and_bias(op, x, w, b, "(C_in, C_out, KH, KW)", in_axis=0, out_axis=1)
    (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride", op, 1), _pair(padding, "padding", op, 0),
                                    _pair(dilation, "dilation", op, 1))
    oph, opw = _pair(output_padding, "output_padding", op, 0)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(f"{op}: output_padding ({oph}, {opw}) must be smaller than max(stride, "
                         f"dilation) = ({max(sh, dh)}, {max(sw, dw)})")
    N, C_in, H, W = x.shape
    _, C_out, KH, KW = w.shape
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: output (OH, OW) would be ({OH}, {OW}) for input shape {tuple(x.shape)}, "
                         f"kernel ({KH}, {KW}), stride ({sh}, {sw}), padding ({ph}, {pw}), "
                         f"dilation ({dh}, {dw}); padding is too large")
    # conv2d's geometry on conv_transpose2d's output image: that conv2d has H x W window positions.
    geometry = _Geometry(N, C_out, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, H, W)

    x_cols = _nchw_to_internal(x.data, geometry.n_last).reshape(C_in, -1)     # (C_in, M)
    data = _conv2d_input_grad(x_cols, w.data, geometry)                       # col2im(w^T @ x)
    if b is not None:
        data += b.data[:, None, None]
    parents = (x, w) if b is None else (x, w, b)
    out = Tensor._make(data, parents, op)
    if not out.requires_grad:
        return out

    def _backward():
        if b is not None and b.requires_grad:
            b._accumulate(out.grad.reshape(N, C_out, -1).sum(axis=2).sum(axis=0))
        if not (x.requires_grad or w.requires_grad):
            return
        g_cols = _im2col(out.grad, geometry, scratch="cols")                  # (C_out*KH*KW, M)
        if x.requires_grad:                                                   # = conv2d(g, w)
            dx = _conv2d_forward(g_cols, w.data)                              # (C_in, M)
            x._accumulate(_internal_to_nchw(dx.reshape(_internal_shape(C_in, N, H, W, geometry)),
                                            geometry.n_last))
        if w.requires_grad:                                                   # roles swapped
            w._accumulate(_conv2d_weight_grad(x_cols, g_cols, w.shape))
    out._backward = _backward
    return out


# ==================================================================== pooling
def _pool_geometry(op: str, x: Tensor, kernel_size, stride, padding) -> tuple:
    _check_4d(op, x, "(N, C, H, W)")
    KH, KW = _pair(kernel_size, "kernel_size", op, 1)
    sh, sw = _pair(kernel_size if stride is None else stride, "stride", op, 1)
    ph, pw = _pair(padding, "padding", op, 0)
    if 2 * ph > KH or 2 * pw > KW:
        raise ValueError(f"{op}: padding ({ph}, {pw}) must be at most half the kernel ({KH}, {KW})")
    N, C, H, W = x.shape
    OH, OW = _conv_out_size(H, KH, sh, ph, 1), _conv_out_size(W, KW, sw, pw, 1)
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: kernel ({KH}, {KW}) is larger than the padded input "
                         f"({H + 2 * ph}, {W + 2 * pw}) (input shape {tuple(x.shape)}); "
                         f"the output (OH, OW) would be ({OH}, {OW})")
    return KH, KW, sh, sw, ph, pw, OH, OW


def _pool_offsets(image: np.ndarray, KH, KW, sh, sw, OH, OW):
    """(kh, kw, strided view (N, C, OH, OW)) for each of the KH*KW kernel offsets."""
    for kh in range(KH):
        for kw in range(KW):
            yield kh, kw, image[:, :, kh:kh + (OH - 1) * sh + 1:sh, kw:kw + (OW - 1) * sw + 1:sw]


def _padded(a: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    r"""Max over each KH x KW window (padding with -inf; stride defaults to kernel_size).

    x: (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2*ph - KH) // sh + 1.
    Backward: each window's gradient goes to its argmax, the first one (row-major) among ties, as
    PyTorch; a pixel that is the argmax of several overlapping windows receives the sum. The argmax
    is not stored: backward finds it again by comparing each kernel offset with the output.
    (A window whose maximum is NaN passes no gradient.)
    """
    op = "max_pool2d"
    KH, KW, sh, sw, ph, pw, OH, OW = _pool_geometry(op, x, kernel_size, stride, padding)
    image = _padded(x.data, ph, pw, -np.inf)
    offsets = [view for _, _, view in _pool_offsets(image, KH, KW, sh, sw, OH, OW)]
    best = offsets[0].copy()
    for view in offsets[1:]:
        np.maximum(best, view, out=best)                       # one pass per kernel offset
    out = Tensor._make(best, (x,), op)

    def _backward():
        grad = np.zeros(image.shape, out.grad.dtype)
        overlapping = sh < KH or sw < KW
        taken = np.zeros(best.shape, bool)                     # window already routed its gradient
        for view, (_, _, target) in zip(offsets, _pool_offsets(grad, KH, KW, sh, sw, OH, OW)):
            is_argmax = view == best
            np.greater(is_argmax, taken, out=is_argmax)        # is_argmax and not taken: first tie
            taken |= is_argmax
            if overlapping:                                    # += : overlapping windows add
                np.add(target, out.grad * is_argmax, out=target)
            else:                                              # each pixel in one window at most
                np.multiply(out.grad, is_argmax, out=target)
        x._accumulate(grad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]])
    out._backward = _backward
    return out


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    r"""Mean over each KH x KW window (zero padding counted, count_include_pad=True as PyTorch).

    x: (N, C, H, W) -> (N, C, OH, OW): out = sum of the window / (KH*KW).
    Backward: every pixel of a window gets g / (KH*KW); overlapping windows add.
    """
    op = "avg_pool2d"
    KH, KW, sh, sw, ph, pw, OH, OW = _pool_geometry(op, x, kernel_size, stride, padding)
    image = _padded(x.data, ph, pw, 0)
    total = np.zeros((x.shape[0], x.shape[1], OH, OW), x.dtype)
    for _, _, view in _pool_offsets(image, KH, KW, sh, sw, OH, OW):
        total += view
    out = Tensor._make(total / np.asarray(KH * KW, x.dtype), (x,), op)

    def _backward():
        share = out.grad / np.asarray(KH * KW, out.grad.dtype)
        grad = np.zeros(image.shape, out.grad.dtype)
        overlapping = sh < KH or sw < KW
        for _, _, target in _pool_offsets(grad, KH, KW, sh, sw, OH, OW):
            if overlapping:
                target += share                                # overlapping windows add
            else:
                target[...] = share
        x._accumulate(grad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]])
    out._backward = _backward
    return out
