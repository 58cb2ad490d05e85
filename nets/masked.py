r"""Masked layers for autoregressive models: a fixed 0/1 mask multiplies the weight before it is used.

    MaskedLinear   y = x (M * W)^T + b          M: (out_features, in_features), W's layout
    MaskedConv2d   y = conv2d(x, M * W) + b     M: (C_out, C_in, KH, KW), W's layout

The mask is a buffer (saved in state_dict, never trained). Because the forward uses M * W, the chain
rule gives dL/dW = M * (dL/d(M * W)): a masked weight gets a zero gradient, so it stays out of use
whatever the optimizer does. A zero in M cuts one connection; an autoregressive model chooses the zeros
so that output i never sees input i or anything after it.

Convolution masks (van den Oord et al., 2016), for a KH x KW kernel centred at (KH // 2, KW // 2),
pixels in raster order (row by row, left to right):
    type A   the rows above the centre, and the centre row LEFT of the centre:   x_ij not seen
    type B   the same, plus the centre itself:                                   x_ij's own features seen
The first layer uses A (a pixel must not see itself); later layers use B (their input at (i, j) already
summarises only pixels before (i, j)). For a 3 x 3 kernel:
    A = [[1 1 1], [1 0 0], [0 0 0]]        B = [[1 1 1], [1 1 0], [0 0 0]].
With one image channel (binary MNIST) there are no colour groups to mask, so every channel pair gets the
same spatial mask.
"""
from __future__ import annotations

import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from .layers import Linear, Conv2d

MASK_TYPES = ("A", "B")


def _checked_mask(name: str, mask, shape: tuple, dtype) -> np.ndarray:
    """A 0/1 mask of exactly the weight's shape, in the weight's dtype."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name}: the mask must have the weight's shape {tuple(shape)}, got {mask.shape}")
    if mask.size and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{name}: the mask must hold only 0s and 1s, found values {np.unique(mask)[:5]}")
    return mask.astype(dtype)


class MaskedLinear(Linear):
    """y = x (mask * W)^T + b.  weight: (out_features, in_features), bias: (out_features,),
    buffer mask: (out_features, in_features) of 0/1 (mask[o, i] = 0 cuts input i from output o).
    Init as Linear (PyTorch's default). `set_mask` swaps the mask in place (MADE's mask resampling)."""

    def __init__(self, in_features: int, out_features: int, mask=None, bias: bool = True,
                 dtype=np.float32, rng=None):
        super().__init__(in_features, out_features, bias=bias, dtype=dtype, rng=rng)
        self.register_buffer("mask", np.ones((out_features, in_features), dtype))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask) -> None:
        self.mask = _checked_mask(type(self).__name__, mask, self.weight.shape, self.weight.dtype)

    def masked_weight(self) -> Tensor:
        """mask * W: the gradient reaching W is mask * (gradient of the product)."""
        return self.weight * Tensor(self.mask.astype(self.weight.dtype, copy=False))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MaskedLinear({self.in_features} -> {self.out_features}): expected input "
                             f"with last dimension {self.in_features}, got shape {x.shape}")
        y = x @ self.masked_weight().T
        return y + self.bias if self.bias is not None else y


def causal_mask(kernel_size: tuple, mask_type: str) -> np.ndarray:
    """(KH, KW) 0/1 spatial mask of type A (centre excluded) or B (centre included); see the module doc."""
    kh, kw = kernel_size
    mask = np.zeros((kh, kw))
    ### BEGIN SOLUTION pixelcnn_masks
    ### task: PixelCNN's causal mask: the rows above, the pixels left of the centre, the centre for B
    ### hint: the module docstring of nets/masked.py (type A excludes the centre, type B includes it)
    mask[:kh // 2, :] = 1                       # every row above the centre
    mask[kh // 2, :kw // 2] = 1                 # the centre row, left of the centre
    if mask_type == "B":
        mask[kh // 2, kw // 2] = 1              # type B also sees the centre
    ### END SOLUTION
    return mask


class MaskedConv2d(Conv2d):
    """conv2d(x, mask * W) + b with a causal mask of type "A" or "B" (see the module docstring).
    weight: (C_out, C_in, KH, KW), bias: (C_out,), buffer mask: (C_out, C_in, KH, KW) of 0/1.
    KH and KW must be odd (the mask is centred); padding defaults to (KH // 2, KW // 2), so the output
    keeps the input's size and output (i, j) depends only on inputs before (i, j) (A) or up to it (B)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, mask_type: str,
                 stride=1, padding=None, bias: bool = True, dtype=np.float32, rng=None):
        if mask_type not in MASK_TYPES:
            raise ValueError(f"MaskedConv2d: mask_type must be 'A' or 'B', got {mask_type!r}")
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"MaskedConv2d: the kernel must have odd height and width (a centre pixel), "
                             f"got {(kh, kw)}")
        padding = (kh // 2, kw // 2) if padding is None else padding
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride, padding=padding, bias=bias,
                         dtype=dtype, rng=rng)
        self.mask_type = mask_type
        spatial = causal_mask((kh, kw), mask_type)
        self.register_buffer("mask", np.broadcast_to(spatial, self.weight.shape).astype(dtype))

    def set_mask(self, mask) -> None:
        self.mask = _checked_mask(type(self).__name__, mask, self.weight.shape, self.weight.dtype)

    def masked_weight(self) -> Tensor:
        """mask * W: the gradient reaching W is mask * (gradient of the product)."""
        return self.weight * Tensor(self.mask.astype(self.weight.dtype, copy=False))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"{super().extra_repr()}, mask_type={self.mask_type!r}"
