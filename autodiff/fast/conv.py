r"""Fast conv2d and conv_transpose2d: replace autodiff/conv.py's `conv2d` and `conv_transpose2d`.

Why they compute the same thing. The reference computes conv2d as w @ im2col(x) per image and its
gradients as conv_transpose2d(g, w) = col2im(w^T @ g) and g @ im2col(x)^T. These are the same three
products, taken over the whole batch at once in channel-major layouts (autodiff/fast/im2col.py: one big
BLAS product instead of N small ones, copies in blocks on the engine's threads, reused scratch
arrays), or, for layers with >= MIN_CHANNELS channels each way, stride 1 and 3x3-5x5 kernels (conv2d)
or kernel 4 and stride 2 (conv_transpose2d), by Winograd's minimal filtering (autodiff/fast/winograd.py),
which computes the same sums with fewer multiplications. Results equal the reference's to rounding
(tests/test_fast.py compares them, forward and backward, on shapes that take each path).
The bias gradient is the sum of g over (N, OH, OW), `sum_per_channel`, in every path.
"""
from __future__ import annotations

from autodiff.conv import _checked, _conv_size, _transposed_size
from autodiff.tensor import Tensor
from . import im2col as layout, winograd
from .norm import sum_per_channel
from .taken import note


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Replaces autodiff.conv.conv2d (see the module docstring); groups > 1: NotImplemented (the reference runs)."""
    if groups != 1:
        return NotImplemented
    x, w, stride, padding, dilation = _checked("conv2d", x, w, b, stride, padding, dilation, transposed=False)
    (N, C_in, H, W), (C_out, _, KH, KW) = x.shape, w.shape
    OH, OW = _conv_size((H, W), (KH, KW), stride, padding, dilation)
    if winograd.applies(w.shape, stride, dilation, transposed=False, grid=(N, OH, OW), dtype=x.dtype):
        return _winograd("conv2d", x, w, b, winograd.Plan(1, KH, N, C_in, C_out, H, W, *padding, OH, OW,
                                                                   winograd.tile(KH, x.dtype)))
    note("conv2d im2col")
    # the windows slide over the input image (H, W); their positions are the output grid (OH, OW)
    windows = layout.Windows(N, C_in, H, W, KH, KW, *stride, *padding, *dilation, OH, OW)
    cols = layout.im2col(x.data, windows)                              # (K, M), K = C_in KH KW, M = N OH OW
    out_matrix = layout.conv2d_forward(cols, w.data)                   # (C_out, M)
    if b is not None:
        out_matrix += b.data[:, None]
    out = _node("conv2d", layout.grid_image(out_matrix, windows), x, w, b)

    def gradients(g, *inputs):
        g_matrix = layout.grid_matrix(g, windows, tag="g")                       # (C_out, M)
        return (layout.conv2d_input_grad(g_matrix, w.data, windows) if x.requires_grad else None,
                layout.conv2d_weight_grad(g_matrix, cols, w.shape) if w.requires_grad else None,
                *_bias_gradient(g, b))
    out._backward = gradients
    return out


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Replaces autodiff.conv.conv_transpose2d (see the module docstring); groups > 1: NotImplemented."""
    if groups != 1:
        return NotImplemented
    x, w, stride, padding, dilation, output_padding = _checked(
        "conv_transpose2d", x, w, b, stride, padding, dilation, transposed=True, output_padding=output_padding)
    (N, C_in, H, W), (_, C_out, KH, KW) = x.shape, w.shape
    OH, OW = (_transposed_size(*a) for a in zip((H, W), (KH, KW), stride, padding, dilation, output_padding))
    if winograd.applies(w.shape, stride, dilation, transposed=True, grid=(N, H + 1, W + 1), dtype=x.dtype):
        return _winograd("conv_transpose2d", x, w, b, winograd.Plan(2, 2, N, C_in, C_out, H, W, *padding, OH, OW,
                                                                   winograd.tile(2, x.dtype)))
    note("conv_transpose2d im2col")
    # The adjoint conv2d's windows slide over this op's OUTPUT image (OH, OW); their positions are
    # this op's input grid (H, W).
    windows = layout.Windows(N, C_out, OH, OW, KH, KW, *stride, *padding, *dilation, H, W)
    x_matrix = layout.grid_matrix(x.data, windows)                             # (C_in, M), M = N H W
    data = layout.conv2d_input_grad(x_matrix, w.data, windows)                 # col2im(w^T @ x)
    if b is not None:
        data += b.data[:, None, None]
    out = _node("conv_transpose2d", data, x, w, b)

    def gradients(g, *inputs):
        g_cols = layout.im2col(g, windows, tag="cols") if x.requires_grad or w.requires_grad else None
        return (layout.grid_image(layout.conv2d_forward(g_cols, w.data), windows) if x.requires_grad else None,
                layout.conv2d_weight_grad(x_matrix, g_cols, w.shape) if w.requires_grad else None,
                *_bias_gradient(g, b))
    out._backward = gradients
    return out


def _winograd(op: str, x, w, b, plan) -> Tensor:
    note(f"{op} winograd")
    work = winograd.work_dtype(plan, x.dtype)                       # float64 for 5x5 (winograd.py: Accuracy)
    U = winograd.kernel_transform(w.data.astype(work, copy=False), plan)     # (a^2, C_in, K)
    data, V = winograd.forward(x.data.astype(work, copy=False), U, plan)
    if b is not None:
        data += b.data[:, None, None]
    out = _node(op, data.astype(x.dtype, copy=False), x, w, b)

    def gradients(g, *inputs):
        dx, dU = winograd.backward(g.astype(work, copy=False), V, U, plan, x.requires_grad, w.requires_grad)
        dw = None if dU is None else winograd.kernel_transform_adjoint(dU, plan, w.shape).astype(w.dtype, copy=False)
        return (None if dx is None else dx.astype(x.dtype, copy=False), dw, *_bias_gradient(g, b))
    out._backward = gradients
    return out


def _node(op: str, data, x, w, b) -> Tensor:
    return Tensor._make(data, (x, w) if b is None else (x, w, b), op)


def _bias_gradient(g, b) -> tuple:
    if b is None:
        return ()
    return (sum_per_channel(g) if b.requires_grad else None,)
