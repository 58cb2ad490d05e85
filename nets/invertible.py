r"""Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018), for flows on flattened images.

What "1x1 convolution" means on a flat 784-vector. Glow mixes the C channels of every pixel with one
learned C x C matrix W: y[:, :, i, j] = W x[:, :, i, j]. A grey MNIST image has one channel, so it is
first squeezed (space to depth, as RealNVP and Glow do): each factor x factor block of pixels becomes the
factor^2 channels of one position of a (28 / factor) x (28 / factor) grid. With factor 2 each 2 x 2 block
of four pixels is mixed by the same 4 x 4 matrix, then unsqueezed back to the flat vector. Placed before
each coupling it is Glow's learned replacement for the fixed alternation of the masks: a 2 x 2 block
holds two pixels of each checkerboard colour, and W chooses which combinations of them the next
coupling keeps and which it changes.

Why not a full 784 x 784 linear map: its log-determinant and inverse cost O(D^3) ~ 5e8 operations per
step and it has 614k parameters per layer; the 4 x 4 matrix costs nothing, so the flow stays trainable
on a CPU.

Change of variables: the Jacobian is block diagonal, W repeated at the P = (28 / factor)^2 positions, so
    log|det dy/dx| = P log|det W|          (slogdet; its gradient is P W^-T, autodiff/ops/linalg.py).
Inverse: x = W^-1 y at every position. W starts as Glow's "random rotation": a uniformly distributed
orthogonal matrix (Q of a Gaussian matrix's QR, the signs of R's diagonal moved into Q), so the step
starts volume preserving, log|det W| = 0.
"""
from __future__ import annotations

import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from . import init
from .module import Module, Parameter


class Invertible1x1Conv(Module):
    """A flow step on (N, H W) flattened images: forward(x) -> (y, log_det (N,)), inverse(y) -> x.
    weight: (C, C), C = factor^2, initialised as a random orthogonal matrix."""

    def __init__(self, image_shape=(28, 28), factor: int = 2, dtype=np.float32, rng=None):
        super().__init__()
        H, W = image_shape
        if H % factor or W % factor:
            raise ValueError(f"Invertible1x1Conv: image {image_shape} does not split into {factor} x {factor} blocks")
        self.image_shape, self.factor = (H, W), factor
        C = factor * factor
        q, r = np.linalg.qr(init.get_rng(rng).standard_normal((C, C)))
        self.weight = Parameter((q * np.sign(np.diag(r))).astype(dtype))       # (C, C), random orthogonal

    def _mix(self, x: Tensor, matrix: Tensor) -> Tensor:
        """(N, H W) -> squeeze to (N, H/f, W/f, f f) -> every position times matrix -> back to (N, H W)."""
        (H, W), f, N = self.image_shape, self.factor, x.shape[0]
        blocks = x.reshape(N, H // f, f, W // f, f).transpose(0, 1, 3, 2, 4).reshape(N, H // f, W // f, f * f)
        mixed = blocks @ matrix.T                                               # y = W x at each position
        return mixed.reshape(N, H // f, W // f, f, f).transpose(0, 1, 3, 2, 4).reshape(N, H * W)

    def forward(self, x: Tensor):
        positions = (self.image_shape[0] // self.factor) * (self.image_shape[1] // self.factor)
        log_abs_det = F.slogdet(self.weight)[1] * positions
        return self._mix(x, self.weight), log_abs_det * Tensor(np.ones(x.shape[0], dtype=x.dtype))

    def inverse(self, y: Tensor) -> Tensor:
        return self._mix(y, F.inv(self.weight))

    def extra_repr(self):
        return f"image_shape={self.image_shape}, factor={self.factor}"
