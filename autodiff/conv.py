r"""Convolution on NCHW tensors: conv2d, conv_transpose2d (pooling: autodiff/ops/pooling.py).

Notation (used in every name below)
    N         batch size
    C_in      input channels,  C_out  output channels (of the op at hand)
    H, W      the op's input height and width;  OH, OW  its output height and width
    KH, KW    kernel height and width
    stride    step between neighbouring windows, (sh, sw)
    padding   zeros added on each side of the image, (ph, pw)
    dilation  step between kernel taps inside one window, (dh, dw)
    groups    G: channels split into G independent convolutions (w: (C_out, C_in / G, KH, KW));
              G = C_in = C_out is a depthwise convolution
    conv2d:            OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1                (likewise OW)
    conv_transpose2d:  OH = (H - 1) sh - 2 ph + dh (KH - 1) + output_padding + 1

The file reads in three parts.
1. The definitions as plain loops (`*_loops`, arrays, forward only): the explanation and the tests' oracle.
2. im2col and col2im, an adjoint pair: im2col copies every KH x KW window of the padded image into a
   column (N, C KH KW, OH OW); col2im adds each column back onto its window's pixels (a pixel in several
   windows gets the SUM: overlapping windows add).
3. Three ops that are each other's derivatives, so their backward rules are calls to one another:
       conv2d(x, w)               = w @ im2col(x)                   dL/dx = conv_transpose2d(g, w)
                                                                    dL/dw = conv2d_weight_grad(x, g)
       conv_transpose2d(x, w)     = col2im(w^T @ x)                 dL/dx = conv2d(g, w)
                                                                    dL/dw = conv2d_weight_grad(g, x)
       conv2d_weight_grad(x, g)   = g @ im2col(x)^T  (summed over N)  dL/dx = conv_transpose2d(g, H)
                                                                    dL/dg = conv2d(x, H)
   (H: the gradient arriving at the weight gradient, in a second derivative.) With groups, each product
   is taken group by group: channels [g C/G, (g+1) C/G) of the input meet only weights of group g.
"""
from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .backend import replaceable
from .tensor import Tensor, as_tensor


# ==================================================================== 1. the definitions, as loops
def conv2d_loops(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] x_pad[n, c, i sh + kh dh, j sw + kw dw]."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    (N, C_in, H, W), (C_out, _, KH, KW) = x.shape, w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH, OW = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1, (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, C_out, OH, OW), np.result_type(x, w))
    for n, o, i, j, c, kh, kw in itertools.product(range(N), range(C_out), range(OH), range(OW),
                                                   range(C_in), range(KH), range(KW)):
        out[n, o, i, j] += w[o, c, kh, kw] * x_pad[n, c, i * sh + kh * dh, j * sw + kw * dw]
    return out if b is None else out + b[None, :, None, None]


def conv_transpose2d_loops(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                           dilation=(1, 1)) -> np.ndarray:
    """Each input pixel scatters x[n, c, i, j] w[c, :, kh, kw] onto output pixel (i sh - ph + kh dh,
    j sw - pw + kw dw) (the pixels that land in the padding are dropped)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    (N, C_in, H, W), (_, C_out, KH, KW) = x.shape, w.shape
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    out = np.zeros((N, C_out, OH, OW), np.result_type(x, w))
    for n, c, i, j, kh, kw in itertools.product(range(N), range(C_in), range(H), range(W), range(KH), range(KW)):
        oi, oj = i * sh - ph + kh * dh, j * sw - pw + kw * dw
        if 0 <= oi < OH and 0 <= oj < OW:
            out[n, :, oi, oj] += x[n, c, i, j] * w[c, :, kh, kw]
    return out if b is None else out + b[None, :, None, None]


# ==================================================================== 2. im2col and col2im (adjoints)
def _windows(image: np.ndarray, KH, KW, stride, dilation, OH, OW) -> np.ndarray:
    """A strided view (no copy) of every window of a padded image: (N, C, KH, KW, OH, OW)."""
    (sh, sw), (dh, dw) = stride, dilation
    view = sliding_window_view(image, (dh * (KH - 1) + 1, dw * (KW - 1) + 1), axis=(2, 3), writeable=True)
    view = view[:, :, :(OH - 1) * sh + 1:sh, :(OW - 1) * sw + 1:sw, ::dh, ::dw]    # (N, C, OH, OW, KH, KW)
    return view.transpose(0, 1, 4, 5, 2, 3)


def im2col(x: Tensor, kernel, stride, padding, dilation, grid=None) -> Tensor:
    """(N, C, H, W) -> cols (N, C KH KW, OH OW): column l holds the window at output position l.
    `grid` (OH, OW) defaults to the conv2d output size (a transposed conv may use fewer rows)."""
    x, (KH, KW), (ph, pw) = as_tensor(x), kernel, padding
    N, C, H, W = x.shape
    OH, OW = grid or _conv_size((H, W), (KH, KW), stride, padding, dilation)
    ### BEGIN SOLUTION im2col
    ### task: pad the image, take every window (_windows) and lay them out as columns (N, C KH KW, OH OW)
    ### hint: im2col's docstring and part 2 of the module docstring
    image = np.pad(x.data, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _windows(image, KH, KW, stride, dilation, OH, OW).reshape(N, C * KH * KW, OH * OW)
    ### END SOLUTION
    out = Tensor._make(cols, (x,), "im2col")
    out._backward = lambda g, x, out: col2im(g, x.shape, (OH, OW), kernel, stride, padding, dilation)
    return out


def col2im(cols: Tensor, image_shape: tuple, grid, kernel, stride, padding, dilation) -> Tensor:
    """cols (N, C KH KW, OH OW) -> the image (N, C, H, W): each column ADDED back onto its window."""
    cols, (KH, KW), (ph, pw), (OH, OW) = as_tensor(cols), kernel, padding, grid
    N, C, H, W = image_shape
    image = np.zeros((N, C, H + 2 * ph, W + 2 * pw), cols.dtype)
    windows = _windows(image, KH, KW, stride, dilation, OH, OW)        # a view: writes reach `image`
    by_tap = cols.data.reshape(N, C, KH, KW, OH, OW)
    for kh, kw in itertools.product(range(KH), range(KW)):          # windows of one tap never overlap
        ### BEGIN SOLUTION col2im_add
        ### task: add this tap's values back onto the image through the window view
        ### hint: module docstring, part 2: col2im ADDS each column back (overlapping windows add)
        windows[:, :, kh, kw] += by_tap[:, :, kh, kw]
        ### END SOLUTION
    out = Tensor._make(image[:, :, ph:ph + H, pw:pw + W].copy(), (cols,), "col2im")
    out._backward = lambda g, cols, out: im2col(g, kernel, stride, padding, dilation, (OH, OW))
    return out


# ==================================================================== 3. conv2d, its transpose, its weight gradient
@replaceable("conv2d")
def conv2d(x: Tensor, w: Tensor, b: Tensor = None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    r"""2-D cross-correlation (PyTorch's conv2d), NCHW: x (N, C_in, H, W), w (C_out, C_in / G, KH, KW),
    b (C_out,) or None -> (N, C_out, OH, OW); stride, padding, dilation: an int or an (h, w) pair;
    groups G divides C_in and C_out. For each group g (its C_in / G input and C_out / G output channels):
        out[n, g] = w[g] (C_out/G, C_in/G KH KW) @ im2col(x)[n, g] + b
    dL/dx = conv_transpose2d(g, w) (conv2d's adjoint), dL/dw = conv2d_weight_grad(x, g), dL/db = sum of g."""
    x, w, stride, padding, dilation = _checked("conv2d", x, w, b, stride, padding, dilation, False, groups=groups)
    (N, _, H, W), (C_out, _, KH, KW) = x.shape, w.shape
    OH, OW = _conv_size((H, W), (KH, KW), stride, padding, dilation)
    cols = im2col(x.data, (KH, KW), stride, padding, dilation).data.reshape(N, groups, -1, OH * OW)
    ### BEGIN SOLUTION conv2d_forward
    ### task: the product w[g] @ im2col(x)[n, g] for every group, reshaped to (N, C_out, OH, OW)
    ### hint: conv2d's docstring: out[n, g] = w[g] (C_out/G, C_in/G KH KW) @ im2col(x)[n, g] + b
    data = (w.data.reshape(groups, C_out // groups, -1) @ cols).reshape(N, C_out, OH, OW)
    ### END SOLUTION
    out = _with_bias("conv2d", data, x, w, b)
    extra = tuple(n - _transposed_size(o, k, s, p, d, 0)                # output_padding that gives back H, W
                  for n, o, k, s, p, d in zip((H, W), (OH, OW), (KH, KW), stride, padding, dilation))
    ### BEGIN SOLUTION conv2d_backward
    ### task: conv2d's three rules (x, w, b), each a call to another op
    ### hint: conv2d's docstring, last line: dL/dx = conv_transpose2d(g, w), dL/dw = conv2d_weight_grad(x, g)
    out._backward = (lambda g, x, w, *b: conv_transpose2d(g, w, None, stride, padding, extra, dilation, groups),
                     lambda g, x, w, *b: conv2d_weight_grad(x, g, (KH, KW), stride, padding, dilation, groups),
                     lambda g, *inputs: g.sum(axis=(0, 2, 3)))
    ### END SOLUTION
    return out


@replaceable("conv_transpose2d")
def conv_transpose2d(x: Tensor, w: Tensor, b: Tensor = None, stride=1, padding=0, output_padding=0,
                     dilation=1, groups=1) -> Tensor:
    r"""2-D transposed convolution (PyTorch's conv_transpose2d; pass groups by name: PyTorch's positional
    order puts it before dilation), NCHW: x (N, C_in, H, W), w (C_in, C_out / G, KH, KW), b (C_out,) or
    None -> (N, C_out, OH, OW). Every input pixel scatters x[n, c, i, j] w[c, :, kh, kw] onto output pixel
    (i sh - ph + kh dh, j sw - pw + kw dw) of its group's channels; output_padding (< max(stride, dilation),
    as PyTorch) lengthens the bottom/right edge, to pick among the sizes that a conv2d maps to H.
    It is conv2d's input gradient: for each group g,
        out[n, g] = col2im(w[g]^T (C_out/G KH KW, C_in/G) @ x[n, g] (C_in/G, H W))
    dL/dx = conv2d(g, w), dL/dw = conv2d_weight_grad(g, x) (image and grid swap roles), dL/db = sum of g."""
    x, w, stride, padding, dilation, output_padding = _checked(
        "conv_transpose2d", x, w, b, stride, padding, dilation, True, output_padding, groups)
    (N, C_in, H, W), (_, C_group, KH, KW) = x.shape, w.shape                      # C_group = C_out / G
    OH, OW = (_transposed_size(n, k, s, p, d, e) for n, k, s, p, d, e
              in zip((H, W), (KH, KW), stride, padding, dilation, output_padding))
    w_t = w.data.reshape(groups, C_in // groups, -1).swapaxes(1, 2)             # (G, C_out/G KH KW, C_in/G)
    cols = (w_t @ x.data.reshape(N, groups, C_in // groups, H * W)).reshape(N, -1, H * W)
    data = col2im(cols, (N, C_group * groups, OH, OW), (H, W), (KH, KW), stride, padding, dilation).data
    out = _with_bias("conv_transpose2d", data, x, w, b)
    ### BEGIN SOLUTION conv_transpose2d_backward
    ### task: the input and weight rules of the transposed convolution
    ### hint: conv_transpose2d's docstring, last line: dL/dx = conv2d(g, w), dL/dw = conv2d_weight_grad(g, x)
    out._backward = (lambda g, x, w, *b: conv2d(g, w, None, stride, padding, dilation, groups)[:, :, :H, :W],
                     lambda g, x, w, *b: conv2d_weight_grad(g, x, (KH, KW), stride, padding, dilation, groups),
                     lambda g, *inputs: g.sum(axis=(0, 2, 3)))
    ### END SOLUTION
    return out


def conv2d_weight_grad(x: Tensor, g: Tensor, kernel, stride, padding, dilation, groups=1) -> Tensor:
    """conv2d's weight gradient as an op: for each group, the sum over n of g[n, group] (C_out/G, OH OW)
    @ im2col(x)[n, group]^T -> (C_out, C_in / G, KH, KW). Bilinear in (x, g): dL/dx = conv_transpose2d(g, H),
    dL/dg = conv2d(x, H)."""
    x, g = as_tensor(x), as_tensor(g)
    (N, C_in, H, W), C_out = x.shape, g.shape[1]
    grid = g.shape[2] * g.shape[3]
    cols = im2col(x.data, kernel, stride, padding, dilation, g.shape[2:]).data.reshape(N, groups, -1, grid)
    g_groups = g.data.reshape(N, groups, C_out // groups, grid)           # cols: (N, G, C_in/G KH KW, OH OW)
    ### BEGIN SOLUTION conv2d_weight_grad
    ### task: for each group, sum over n of g[n, group] @ im2col(x)[n, group]^T
    ### hint: conv2d_weight_grad's docstring, and the module docstring's table (part 3)
    data = np.stack([np.tensordot(g_groups[:, i], cols[:, i], axes=([0, 2], [0, 2])) for i in range(groups)])
    ### END SOLUTION
    out = Tensor._make(data.reshape(C_out, C_in // groups, *kernel), (x, g), "conv2d_weight_grad")
    extra = tuple(n - _transposed_size(o, k, s, p, d, 0)
                  for n, o, k, s, p, d in zip((H, W), g.shape[2:], kernel, stride, padding, dilation))
    out._backward = (lambda h, x, g, out: conv_transpose2d(g, h, None, stride, padding, extra, dilation, groups),
                     lambda h, x, g, out: conv2d(x, h, None, stride, padding, dilation, groups))
    return out


# ---------------------------------------------------------------- sizes and argument checks
def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_size(hw, kernel, stride, padding, dilation) -> tuple:
    return tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation))


def _transposed_size(size: int, k: int, s: int, p: int, d: int, extra: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + extra + 1


def _with_bias(op: str, data: np.ndarray, x: Tensor, w: Tensor, b) -> Tensor:
    if b is None:
        return Tensor._make(data, (x, w), op)
    return Tensor._make(data + b.data[:, None, None], (x, w, b), op)


def pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int or an (h, w) pair of ints, each >= minimum."""
    try:
        pair_ = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    except TypeError:
        pair_ = ()
    if len(pair_) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair_):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(pair_) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair_[0]), int(pair_[1])


def _checked(op, x, w, b, stride, padding, dilation, transposed: bool, output_padding=0, groups=1) -> tuple:
    """Shapes, dtypes and geometry checked once, for both convolutions and their fast versions."""
    x, w = as_tensor(x), as_tensor(w)
    w_layout = "(C_in, C_out / groups, KH, KW)" if transposed else "(C_out, C_in / groups, KH, KW)"
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C_in, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight {w_layout}, got shape {tuple(w.shape)}")
    if not isinstance(groups, (int, np.integer)) or groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"{op}: groups must be a positive int dividing C_in = {x.shape[1]} and "
                         f"{'C_in' if transposed else 'C_out'} = {w.shape[0]}, got {groups!r}")
    expected = w.shape[0] if transposed else w.shape[1] * groups
    if x.shape[1] != expected:
        raise ValueError(f"{op}: input has {x.shape[1]} channels (shape {tuple(x.shape)}) but the weight "
                         f"{w_layout} = {tuple(w.shape)} expects {expected} (groups={groups})")
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and weight dtype {w.dtype} differ; cast one (no silent upcasting)")
    C_out = w.shape[1] * groups if transposed else w.shape[0]
    if b is not None and tuple(b.shape) != (C_out,):
        raise ValueError(f"{op}: bias must have shape ({C_out},) (one per output channel), got {tuple(b.shape)}")
    stride, padding = pair(stride, "stride", op, 1), pair(padding, "padding", op, 0)
    dilation = pair(dilation, "dilation", op, 1)
    if not transposed:
        OH, OW = _conv_size(x.shape[2:], w.shape[2:], stride, padding, dilation)
        if OH < 1 or OW < 1:
            span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:]))
            raise ValueError(f"{op}: kernel (KH, KW) = {tuple(w.shape[2:])} with dilation {dilation} spans {span} "
                             f"but the padded input is {tuple(n + 2 * p for n, p in zip(x.shape[2:], padding))} "
                             f"(input shape {tuple(x.shape)}, padding {padding}); the output (OH, OW) would be "
                             f"({OH}, {OW})")
        return x, w, stride, padding, dilation
    output_padding = pair(output_padding, "output_padding", op, 0)
    if any(e >= max(s, d) for e, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{op}: output_padding {output_padding} must be smaller than max(stride, dilation) "
                         f"= {tuple(max(s, d) for s, d in zip(stride, dilation))}")
    size = [_transposed_size(*a) for a in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, output_padding)]
    if min(size) < 1:
        raise ValueError(f"{op}: output (OH, OW) would be {tuple(size)} for input shape {tuple(x.shape)}, kernel "
                         f"{w.shape[2:]}, stride {stride}, padding {padding}, dilation {dilation}; padding is too large")
    return x, w, stride, padding, dilation, output_padding
