r"""1-D convolution and pooling on (N, C, L) tensors: thin wrappers over the 2-D ops on a height-1 image
(N, C, 1, L) with kernel (1, K), stride (1, s), padding (0, p), dilation (1, d). Their gradients are the
2-D ones; the reshapes around them only relabel axes. Weight layouts as PyTorch: conv1d (C_out, C_in / G, K),
conv_transpose1d (C_in, C_out / G, K)."""
from __future__ import annotations

from ..conv import conv2d, conv_transpose2d
from ..tensor import Tensor, as_tensor
from .pooling import avg_pool2d, max_pool2d


def _image(op: str, x, ndim: int = 3, what: str = "input (N, C, L)") -> Tensor:
    """(N, C, L) -> (N, C, 1, L); a weight (A, B, K) -> (A, B, 1, K)."""
    x = as_tensor(x)
    if x.ndim != ndim:
        raise ValueError(f"{op}: expected a 3-D {what}, got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])


def _line(out: Tensor) -> Tensor:
    """(N, C, 1, L) -> (N, C, L)."""
    return out.reshape(out.shape[0], out.shape[1], out.shape[3])


def _wide(op: str, value, height: int) -> tuple:
    """A 1-D size (an int or a 1-tuple) as the 2-D op's (height, width) pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: expected an int or a 1-tuple, got {value!r}")
        value = value[0]
    return height, value


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """conv1d: x (N, C_in, L), w (C_out, C_in / G, K) -> (N, C_out, OL), OL = (L + 2p - d (K - 1) - 1) // s + 1."""
    op = "conv1d"
    return _line(conv2d(_image(op, x), _image(op, w, what="weight (C_out, C_in / groups, K)"), b,
                        _wide(op, stride, 1), _wide(op, padding, 0), _wide(op, dilation, 1), groups))


def conv_transpose1d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> Tensor:
    """conv_transpose1d: x (N, C_in, L), w (C_in, C_out / G, K) -> (N, C_out, OL),
    OL = (L - 1) s - 2p + d (K - 1) + output_padding + 1: conv1d's input gradient."""
    op = "conv_transpose1d"
    return _line(conv_transpose2d(_image(op, x), _image(op, w, what="weight (C_in, C_out / groups, K)"), b,
                                  _wide(op, stride, 1), _wide(op, padding, 0), _wide(op, output_padding, 0),
                                  _wide(op, dilation, 1), groups))


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """max_pool1d: (N, C, L) -> (N, C, OL); with return_indices also each maximum's position along L."""
    op = "max_pool1d"
    out = max_pool2d(_image(op, x), _wide(op, kernel_size, 1), None if stride is None else _wide(op, stride, 1),
                     _wide(op, padding, 0), _wide(op, dilation, 1), ceil_mode, return_indices)
    return (_line(out[0]), _line(out[1])) if return_indices else _line(out)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True) -> Tensor:
    """avg_pool1d: (N, C, L) -> (N, C, OL), each window's mean (counted as avg_pool2d counts)."""
    op = "avg_pool1d"
    return _line(avg_pool2d(_image(op, x), _wide(op, kernel_size, 1), None if stride is None else _wide(op, stride, 1),
                            _wide(op, padding, 0), ceil_mode, count_include_pad))
