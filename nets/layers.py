"""Layers with PyTorch's weight layouts and default initialisation.

Shapes: N batch, C channels, H x W image, F features. Every layer takes `dtype` (float32 by default)
and an optional `rng` for its initial weights (default: the generator seeded by nets.manual_seed).
"""
from __future__ import annotations

import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from . import init
from .module import Module, Parameter, Sequential


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


class Linear(Module):
    """y = x W^T + b.  weight: (out_features, in_features), bias: (out_features,).
    Init: U(-1/sqrt(in_features), 1/sqrt(in_features)) for both (PyTorch's default)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.pytorch_default((out_features, in_features), in_features, dtype, rng))
        self.bias = Parameter(init.pytorch_default((out_features,), in_features, dtype, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features} -> {self.out_features}): expected input with last "
                             f"dimension {self.in_features}, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in PyTorch); groups splits the channels into independent
    convolutions (groups = in_channels = out_channels: depthwise).
    weight: (C_out, C_in / groups, KH, KW), bias: (C_out,). Init: U(+-1/sqrt(C_in / groups * KH * KW))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, _groups(
            type(self).__name__, in_channels, out_channels, groups)
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(init.pytorch_default((out_channels, in_channels // groups, kh, kw), fan_in, dtype, rng))
        self.bias = Parameter(init.pytorch_default((out_channels,), fan_in, dtype, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + (f", groups={self.groups}" if self.groups > 1 else ""))


class Conv1d(Conv2d):
    """1-D convolution on (N, C, L): weight (C_out, C_in / groups, K), bias (C_out,); Conv2d's init."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, (1, kernel_size), stride, padding, dilation, groups, bias, dtype,
                         rng)
        self.kernel_size = kernel_size
        self.weight.data = np.ascontiguousarray(self.weight.data[:, :, 0])         # (C_out, C_in / groups, K)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(Module):
    """Transposed convolution (the adjoint of Conv2d).
    weight: (C_in, C_out / groups, KH, KW) (PyTorch's layout), bias: (C_out,). Init: U(+-1/sqrt(C_out / groups
    * KH * KW)), PyTorch's default (its fan_in is computed from weight.shape[1])."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, dtype=np.float32, rng=None):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.groups = stride, padding, _groups(type(self).__name__, in_channels,
                                                                          out_channels, groups)
        self.output_padding, self.dilation = output_padding, dilation
        fan_in = out_channels // groups * kh * kw
        self.weight = Parameter(init.pytorch_default((in_channels, out_channels // groups, kh, kw), fan_in, dtype, rng))
        self.bias = Parameter(init.pytorch_default((out_channels,), fan_in, dtype, rng)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.dilation, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}"
                + (f", groups={self.groups}" if self.groups > 1 else ""))


def _groups(layer: str, in_channels: int, out_channels: int, groups: int) -> int:
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: in_channels {in_channels} and out_channels {out_channels} must be divisible "
                         f"by groups={groups}")
    return groups


class MaxPool2d(Module):
    """Max over each window (F.max_pool2d); return_indices: also each maximum's flat position, for F.max_unpool2d."""
    pool = staticmethod(F.max_pool2d)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.options = dict(dilation=dilation, ceil_mode=ceil_mode, return_indices=return_indices)

    def forward(self, x):
        return self.pool(x, self.kernel_size, self.stride, self.padding, **self.options)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class AvgPool2d(MaxPool2d):
    """Mean over each window (F.avg_pool2d): count_include_pad as PyTorch."""
    pool = staticmethod(F.avg_pool2d)

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.options = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad)


class MaxPool1d(MaxPool2d):
    """Max over each window of (N, C, L) (F.max_pool1d)."""
    pool = staticmethod(F.max_pool1d)


class AvgPool1d(AvgPool2d):
    """Mean over each window of (N, C, L) (F.avg_pool1d)."""
    pool = staticmethod(F.avg_pool1d)


class _BatchNorm(Module):
    """Batch normalisation over the channel axis (axis 1).
    train: y = gamma (x - mean_B) / sqrt(var_B + eps) + beta with the batch's statistics;
           running_mean <- (1 - momentum) running_mean + momentum mean_B,
           running_var  <- (1 - momentum) running_var  + momentum var_B * n / (n - 1)   (unbiased).
    eval:  y = gamma (x - running_mean) / sqrt(running_var + eps) + beta.
    weight (gamma): (C,) init 1; bias (beta): (C,) init 0; buffers running_mean (C,) = 0, running_var (C,) = 1."""
    expected_ndim = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, dtype) if track_running_stats else None)
        self.register_buffer("running_var", np.ones(num_features, dtype) if track_running_stats else None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.expected_ndim or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of "
                             f"{' or '.join(f'{n}' for n in self.expected_ndim)} dimensions with "
                             f"{self.num_features} channels on axis 1, got shape {x.shape}")
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            use_batch_stats, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) inputs."""
    expected_ndim = (2,)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) inputs: statistics per channel over N, H and W."""
    expected_ndim = (4,)


class Dropout(Module):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p); identity in eval."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, init.get_rng(self.rng))


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...) for start_dim=1."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return x.reshape(*x.shape[:self.start_dim], -1)


class Unflatten(Module):
    """Unflatten(1, (C, H, W)): (N, C*H*W) -> (N, C, H, W)."""

    def __init__(self, dim: int, shape: tuple):
        super().__init__()
        self.dim, self.unflattened = dim, tuple(shape)

    def forward(self, x):
        dim = self.dim % x.ndim
        if x.shape[dim] != int(np.prod(self.unflattened)):
            raise ValueError(f"Unflatten: axis {dim} of shape {x.shape} has {x.shape[dim]} elements, "
                             f"cannot become {self.unflattened}")
        return x.reshape(*x.shape[:dim], *self.unflattened, *x.shape[dim + 1:])


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softplus(Module):
    def forward(self, x):
        return F.softplus(x)


class Identity(Module):
    def forward(self, x):
        return x


def mlp(sizes, dtype=np.float32, rng=None) -> Sequential:
    """sizes = (in, h_1, ..., h_k, out): Linear(in, h_1) - ReLU - ... - Linear(h_k, out), weights from rng."""
    layers = []
    for i, (width, next_width) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [Linear(width, next_width, dtype=dtype, rng=rng)] + ([ReLU()] if i < len(sizes) - 2 else [])
    return Sequential(*layers)
