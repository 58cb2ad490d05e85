r"""Convolution and pooling on NCHW tensors: conv2d, conv_transpose2d, max_pool2d, avg_pool2d.

Notation (used in every name below)
    N         batch size
    C_in      input channels,  C_out  output channels (of the op at hand)
    H, W      the op's input height and width;  OH, OW  its output height and width
    KH, KW    kernel height and width
    stride    step between neighbouring windows, (sh, sw)
    padding   zeros added on each side of the image, (ph, pw)
    dilation  step between kernel taps inside one window, (dh, dw)
    conv2d:            OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1                (likewise OW)
    conv_transpose2d:  OH = (H - 1) sh - 2 ph + dh (KH - 1) + output_padding + 1

The file reads in three parts.
1. The reference: each op as the plain loops of its definition (`*_reference`, NumPy arrays, forward
   only). They are the explanation and the tests' oracle; every fast op below must equal its reference.
2. conv2d and conv_transpose2d on Tensors, through im2col and one matrix product (autodiff/im2col.py
   holds im2col, col2im, the three products, the memory layouts and scratch buffers):
       conv2d:   out = w @ im2col(x);   dL/dw = g @ im2col(x)^T;   dL/dx = col2im(w^T @ g)
   Adjoint pairs: col2im is im2col's adjoint (overlapping windows ADD); conv_transpose2d IS conv2d's
   input gradient, and its backward IS conv2d (dL/dx = conv2d(g, w)) plus conv2d's weight gradient
   with the roles of image and output swapped.
   Layers with >= 16 channels each way and a grid of at least 4 x 4 outputs take Winograd's minimal
   filtering instead when it applies (autodiff/winograd.py): conv2d with stride 1 and a 3x3 to 5x5
   kernel, conv_transpose2d with kernel 4 and stride 2. Same values up to float32 rounding, 2.5-6x
   fewer multiplications.
3. Pooling: a loop over the KH x KW kernel offsets, each a strided view of the whole batch.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import im2col as fast
from . import parallel, winograd
from .norm import sum_per_channel
from .tensor import Tensor


# ==================================================================== 1. the reference: plain loops
def conv2d_reference(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] x_pad[n, c, i sh + kh dh, j sw + kw dw]."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C_in, H, W = x.shape
    C_out, _, KH, KW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH, OW = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1, (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, C_out, OH, OW), np.result_type(x, w))
    for n, o, i, j, c, kh, kw in itertools.product(range(N), range(C_out), range(OH), range(OW),
                                                   range(C_in), range(KH), range(KW)):
        out[n, o, i, j] += w[o, c, kh, kw] * x_pad[n, c, i * sh + kh * dh, j * sw + kw * dw]
    return out if b is None else out + b[None, :, None, None]


def conv_transpose2d_reference(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                               dilation=(1, 1)) -> np.ndarray:
    """Each input pixel scatters x[n, c, i, j] w[c, :, kh, kw] onto output pixel (i sh - ph + kh dh,
    j sw - pw + kw dw) (the pixels that land in the padding are dropped)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    N, C_in, H, W = x.shape
    _, C_out, KH, KW = w.shape
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    out = np.zeros((N, C_out, OH, OW), np.result_type(x, w))
    for n, c, i, j, kh, kw in itertools.product(range(N), range(C_in), range(H), range(W),
                                                range(KH), range(KW)):
        oi, oj = i * sh - ph + kh * dh, j * sw - pw + kw * dw
        if 0 <= oi < OH and 0 <= oj < OW:
            out[n, :, oi, oj] += x[n, c, i, j] * w[c, :, kh, kw]
    return out if b is None else out + b[None, :, None, None]


def pool2d_reference(x, kernel_size: int, stride: int, padding: int, reduce=np.max) -> np.ndarray:
    """out[n, c, i, j] = reduce of the KH x KW window at (i s, j s) of x padded with -inf (max) or 0
    (mean, counting the padding as PyTorch's count_include_pad=True)."""
    N, C, H, W = x.shape
    k, s, p = kernel_size, stride, padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf if reduce is np.max else 0)
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.zeros((N, C, OH, OW), x.dtype)
    for i, j in itertools.product(range(OH), range(OW)):
        out[:, :, i, j] = reduce(x_pad[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return out


# ==================================================================== 2. conv2d and conv_transpose2d: argument checking
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


def _conv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ==================================================================== conv2d
def conv2d(x: Tensor, w: Tensor, b: Tensor = None, stride=1, padding=0, dilation=1) -> Tensor:
    r"""2-D cross-correlation (PyTorch's conv2d), NCHW.

    x: (N, C_in, H, W);  w: (C_out, C_in, KH, KW);  b: (C_out,) or None  ->  (N, C_out, OH, OW) with
        out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x_pad[n, c, i*sh + kh*dh, j*sw + kw*dw]
        OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1   (likewise OW)
    stride, padding, dilation: int or (h, w) pair.
    Backward: dL/dw = g @ cols^T, dL/dx = col2im(w^T @ g) (= conv_transpose2d of g), dL/db = sum of g.
    Must equal conv2d_reference.
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
    if winograd.applies(w.shape, (sh, sw), (dh, dw), transposed=False, grid=(N, OH, OW), dtype=x.dtype):
        return _winograd(op, x, w, b, winograd.Plan(1, KH, N, C_in, C_out, H, W, ph, pw, OH, OW))
    # the windows slide over the input image (H, W); their positions are the output grid (OH, OW)
    windows = fast.Windows(N=N, C=C_in, IH=H, IW=W, KH=KH, KW=KW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                           GH=OH, GW=OW)
    cols = fast.im2col(x.data, windows)                              # (K, M), K = C_in KH KW, M = N OH OW
    out_matrix = fast.conv2d_forward(cols, w.data)                   # (C_out, M)
    saved_cols = cols if w.requires_grad else None                  # only dL/dw needs them
    if b is not None:
        out_matrix += b.data[:, None]
    parents = (x, w) if b is None else (x, w, b)
    out = Tensor._make(fast.grid_image(out_matrix, windows), parents, op)     # (N, C_out, OH, OW)
    if not out.requires_grad:
        return out

    def _backward(out):
        g_matrix = fast.grid_matrix(out.grad, windows, tag="g")                 # (C_out, M)
        if w.requires_grad:
            w._accumulate(fast.conv2d_weight_grad(g_matrix, saved_cols, w.shape))
        if b is not None and b.requires_grad:
            b._accumulate(g_matrix.sum(axis=1))
        if x.requires_grad:
            x._accumulate(fast.conv2d_input_grad(g_matrix, w.data, windows))
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
    Must equal conv_transpose2d_reference.
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
    if winograd.applies(w.shape, (sh, sw), (dh, dw), transposed=True, grid=(N, H + 1, W + 1),
                        dtype=x.dtype):
        return _winograd(op, x, w, b, winograd.Plan(2, 2, N, C_in, C_out, H, W, ph, pw, OH, OW))
    # The adjoint conv2d's windows slide over this op's OUTPUT image (OH, OW), and their positions
    # are this op's input grid (H, W).
    windows = fast.Windows(N=N, C=C_out, IH=OH, IW=OW, KH=KH, KW=KW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh,
                           dw=dw, GH=H, GW=W)
    x_matrix = fast.grid_matrix(x.data, windows)                              # (C_in, M), M = N H W
    data = fast.conv2d_input_grad(x_matrix, w.data, windows)                  # col2im(w^T @ x)
    if b is not None:
        data += b.data[:, None, None]
    parents = (x, w) if b is None else (x, w, b)
    out = Tensor._make(data, parents, op)
    if not out.requires_grad:
        return out

    def _backward(out):
        if b is not None and b.requires_grad:
            b._accumulate(sum_per_channel(out.grad))
        if not (x.requires_grad or w.requires_grad):
            return
        g_cols = fast.im2col(out.grad, windows, tag="cols")                   # (C_out KH KW, M)
        if x.requires_grad:                                                   # = conv2d(g, w)
            x._accumulate(fast.grid_image(fast.conv2d_forward(g_cols, w.data), windows))
        if w.requires_grad:                                                   # roles swapped
            w._accumulate(fast.conv2d_weight_grad(x_matrix, g_cols, w.shape))
    out._backward = _backward
    return out


def _winograd(op: str, x: Tensor, w: Tensor, b, plan) -> Tensor:
    """conv2d (stride 1, kernel 3x3 to 5x5) or conv_transpose2d (kernel 4, stride 2) by Winograd's minimal
    filtering (autodiff/winograd.py): the same values as im2col's path, 2.5-6x fewer multiplications."""
    U = winograd.kernel_transform(w.data, plan)                     # (a^2, C_in, K)
    data, V = winograd.forward(x.data, U, plan)
    if b is not None:
        data += b.data[:, None, None]
    saved_V = V if w.requires_grad else None                        # only dL/dw needs it
    out = Tensor._make(data, (x, w) if b is None else (x, w, b), op)
    if not out.requires_grad:
        return out

    def _backward(out):
        if b is not None and b.requires_grad:
            b._accumulate(sum_per_channel(out.grad))
        if not (x.requires_grad or w.requires_grad):
            return
        dx, dU = winograd.backward(out.grad, saved_V, U, plan, x.requires_grad, w.requires_grad)
        if x.requires_grad:
            x._accumulate(dx)
        if w.requires_grad:
            w._accumulate(winograd.kernel_transform_adjoint(dU, plan, w.shape))
    out._backward = _backward
    return out


# ==================================================================== 3. pooling
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
    (A window whose maximum is NaN passes no gradient.) Must equal pool2d_reference(..., np.max).
    """
    op = "max_pool2d"
    KH, KW, sh, sw, ph, pw, OH, OW = _pool_geometry(op, x, kernel_size, stride, padding)
    image = _padded(x.data, ph, pw, -np.inf)
    best = np.empty((x.shape[0], x.shape[1], OH, OW), x.dtype)

    def forward(lo, hi):                                       # images lo..hi (the engine's threads)
        offsets = [view[lo:hi] for _, _, view in _pool_offsets(image, KH, KW, sh, sw, OH, OW)]
        np.copyto(best[lo:hi], offsets[0])
        for view in offsets[1:]:
            np.maximum(best[lo:hi], view, out=best[lo:hi])     # one pass per kernel offset
    parallel.for_blocks(forward, x.shape[0], work=image.size)
    out = Tensor._make(best, (x,), op)

    def _backward(out):
        grad = np.empty(image.shape, out.grad.dtype)
        overlapping = sh < KH or sw < KW
        tiled = (sh, sw) == (KH, KW) and (OH * KH, OW * KW) == image.shape[2:]   # every pixel in one window

        def backward(lo, hi):
            g, taken = out.grad[lo:hi], None                   # taken: windows already routed
            if not tiled:
                grad[lo:hi] = 0
            offsets = zip(_pool_offsets(image[lo:hi], KH, KW, sh, sw, OH, OW),
                          _pool_offsets(grad[lo:hi], KH, KW, sh, sw, OH, OW))
            for k, ((_, _, view), (_, _, target)) in enumerate(offsets):
                is_argmax = view == best[lo:hi]
                if taken is not None:
                    np.greater(is_argmax, taken, out=is_argmax)    # is_argmax and not taken: first tie
                if k == 0:
                    taken = is_argmax.copy()
                elif k < KH * KW - 1:
                    taken |= is_argmax
                if overlapping:                                # += : overlapping windows add
                    np.add(target, g * is_argmax, out=target)
                else:                                          # each pixel in one window at most
                    np.multiply(g, is_argmax, out=target)
        parallel.for_blocks(backward, x.shape[0], work=image.size)
        x._accumulate(grad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]])
    out._backward = _backward
    return out


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    r"""Mean over each KH x KW window (zero padding counted, count_include_pad=True as PyTorch).

    x: (N, C, H, W) -> (N, C, OH, OW): out = sum of the window / (KH*KW).
    Backward: every pixel of a window gets g / (KH*KW); overlapping windows add.
    Must equal pool2d_reference(..., np.mean).
    """
    op = "avg_pool2d"
    KH, KW, sh, sw, ph, pw, OH, OW = _pool_geometry(op, x, kernel_size, stride, padding)
    image = _padded(x.data, ph, pw, 0)
    total = np.zeros((x.shape[0], x.shape[1], OH, OW), x.dtype)
    for _, _, view in _pool_offsets(image, KH, KW, sh, sw, OH, OW):
        total += view
    out = Tensor._make(total / np.asarray(KH * KW, x.dtype), (x,), op)

    def _backward(out):
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
