"""Rows: the op families of autodiff/ops (elementwise, reductions, shape, contractions, linear algebra),
convolution and pooling (autodiff/conv.py, autodiff/ops/pooling.py, conv1d.py), batch norm and dropout."""
import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from autodiff.conv import conv2d, conv_transpose2d
from autodiff.norm import batch_norm, dropout
from autodiff.ops.pooling import avg_pool2d, max_pool2d
from . import away_from_zero, distinct, positive, real, simple


def well_conditioned(rng, *shape):
    return Tensor(rng.uniform(-1, 1, size=shape) + 3 * np.eye(shape[-1]), requires_grad=True)


def symmetric_pd(a):
    """(a + a^T) / 2 + 4 n I: cholesky's input, symmetric (its gradient is symmetric) and positive definite."""
    return (a + a.swapaxes(-1, -2)) * 0.5 + Tensor(4 * a.shape[-1] * np.eye(a.shape[-1]))


EW = "elementwise"
for name, fn, lo, hi in (("sin", F.sin, -2, 2), ("cos", F.cos, -2, 2), ("tan", F.tan, -1.2, 1.2),
                         ("sinh", F.sinh, -2, 2), ("cosh", F.cosh, -2, 2), ("arcsin", F.arcsin, -0.9, 0.9),
                         ("arccos", F.arccos, -0.9, 0.9), ("arctan", F.arctan, -2, 2)):
    simple(EW, name, f"(3,4) in ({lo}, {hi})", fn, lambda r, lo=lo, hi=hi: real(r, 3, 4, lo=lo, hi=hi))
for name, fn in (("sign", F.sign), ("floor", F.floor), ("ceil", F.ceil), ("round", F.round)):
    simple(EW, name, "zero gradient, away from the jumps", fn,
           lambda r: Tensor(np.array([[-1.7, -0.3, 0.2], [0.7, 1.2, 2.6]]), requires_grad=True))
simple(EW, "arctan2", "(3,1) y vs (4,) x", F.arctan2, lambda r: away_from_zero(r, 3, 1), lambda r: real(r, 4))
simple(EW, "mod", "(2,3) % (3,), divisor away from 0", F.mod, lambda r: real(r, 2, 3), lambda r: away_from_zero(r, 3))
simple(EW, "logaddexp", "(2,3) vs scalar", F.logaddexp, lambda r: real(r, 2, 3), lambda r: real(r))
simple(EW, "hypot", "(2,3) vs (2,1)", F.hypot, lambda r: away_from_zero(r, 2, 3), lambda r: away_from_zero(r, 2, 1))
RD = "reductions"
simple(RD, "prod", "axis=(0,2), no zeros", lambda a: a.prod(axis=(0, 2)), lambda r: away_from_zero(r, 2, 3, 2))
simple(RD, "prod", "axis=1, one and two zeros", lambda a: a.prod(axis=1),
       lambda r: Tensor(np.array([[1.5, 0.0, -2.0], [0.0, 0.0, 1.2], [0.5, 1.1, -0.7]]), requires_grad=True))
simple(RD, "cumsum", "axis=-1", lambda a: a.cumsum(-1), lambda r: real(r, 3, 4))
simple(RD, "std", "axis=0, ddof=1", lambda a: a.std(axis=0, ddof=1), lambda r: real(r, 4, 3))
SH = "shape"
simple(SH, "squeeze/unsqueeze", "(2,1,3) -> (2,3) -> (2,3,1)", lambda a: a.squeeze(1).unsqueeze(-1),
       lambda r: real(r, 2, 1, 3))
simple(SH, "flatten", "(2,3,2) from 1", lambda a: a.flatten(1), lambda r: real(r, 2, 3, 2))
simple(SH, "flip", "axes (0,-1)", lambda a: a.flip((0, -1)), lambda r: real(r, 2, 3))
simple(SH, "roll", "shifts (1,-2)", lambda a: a.roll((1, -2), (0, 1)), lambda r: real(r, 3, 4))
simple(SH, "repeat", "(2,3).repeat(2,1,2)", lambda a: a.repeat(2, 1, 2), lambda r: real(r, 2, 3))
simple(SH, "tile", "(2,3) reps 2", lambda a: a.tile(2), lambda r: real(r, 2, 3))
simple(SH, "repeat_interleave", "[1,0,2] along axis 1", lambda a: F.repeat_interleave(a, [1, 0, 2], 1),
       lambda r: real(r, 2, 3))
simple(SH, "tril/triu", "k=-1 and k=1", lambda a: a.tril(-1) + a.triu(1) * 2, lambda r: real(r, 3, 4))
simple(SH, "diag", "vector k=1, matrix k=-1", lambda v, m: (v.diag(1), m.diag(-1)),
       lambda r: real(r, 3), lambda r: real(r, 3, 4))
simple(SH, "diagonal/trace", "axes (-1, 0), offset 1", lambda a: (a.diagonal(1, -1, 0), a[0].trace()),
       lambda r: real(r, 3, 2, 3))
simple(SH, "sort", "descending, no ties", lambda a: a.sort(1, descending=True)[0], lambda r: distinct(r, 3, 4))
simple(SH, "chunk", "3 pieces of axis 1", lambda a: a.chunk(3, 1), lambda r: real(r, 2, 7))
simple(SH, "pad", "reflect and replicate", lambda a: (F.pad(a, ((0, 0), (2, 1)), mode="reflect"),
                                                      F.pad(a, ((1, 2), (0, 3)), mode="replicate")),
       lambda r: real(r, 2, 4))
CT = "contractions"
simple(CT, "einsum", "bij,bjk->bik", lambda a, b: F.einsum("bij,bjk->bik", a, b),
       lambda r: real(r, 2, 2, 3), lambda r: real(r, 2, 3, 2))
simple(CT, "einsum", "...ii->...i (diagonal)", lambda a: F.einsum("...ii->...i", a), lambda r: real(r, 2, 3, 3))
simple(CT, "einsum", "ij,jk,k (three operands)", lambda a, b, c: F.einsum("ij,jk,k", a, b, c),
       lambda r: real(r, 2, 3), lambda r: real(r, 3, 4), lambda r: real(r, 4))
simple(CT, "tensordot", "axes ([0,2],[1,0])", lambda a, b: F.tensordot(a, b, ([0, 2], [1, 0])),
       lambda r: real(r, 2, 3, 4), lambda r: real(r, 4, 2))
LA = "linalg"
simple(LA, "inv", "(2,3,3)", F.inv, lambda r: well_conditioned(r, 2, 3, 3))
simple(LA, "det", "(3,3)", F.det, lambda r: well_conditioned(r, 3, 3))
simple(LA, "slogdet", "log|det|, (2,3,3)", lambda a: F.slogdet(a)[1], lambda r: well_conditioned(r, 2, 3, 3))
simple(LA, "solve", "A (3,3), B (2,3,2)", F.solve, lambda r: well_conditioned(r, 3, 3), lambda r: real(r, 2, 3, 2))
simple(LA, "cholesky", "of (X + X^T)/2 + 12 I", lambda a: F.cholesky(symmetric_pd(a)), lambda r: real(r, 3, 3))

# ---------------------------------------------------------------- convolution, pooling, batch norm, dropout
C = "conv"
simple(C, "conv2d", "N2 C2->3 k3, bias", lambda x, w, b: conv2d(x, w, b),
       lambda r: real(r, 2, 2, 5, 5), lambda r: real(r, 3, 2, 3, 3), lambda r: real(r, 3))
simple(C, "conv2d", "k3 stride 2 padding 1", lambda x, w: conv2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 2, 5, 5), lambda r: real(r, 2, 2, 3, 3))
simple(C, "conv2d", "k2x3 stride (1,2) dilation 2", lambda x, w: conv2d(x, w, stride=(1, 2), dilation=2),
       lambda r: real(r, 1, 1, 5, 6), lambda r: real(r, 2, 1, 2, 3))
simple(C, "conv_transpose2d", "C3->2 k3, bias", lambda x, w, b: conv_transpose2d(x, w, b),
       lambda r: real(r, 2, 3, 3, 3), lambda r: real(r, 3, 2, 3, 3), lambda r: real(r, 2))
simple(C, "conv_transpose2d", "k4 stride 2 padding 1", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 2, 3, 3), lambda r: real(r, 2, 1, 4, 4))
simple(C, "conv_transpose2d", "k3 s2 p1 output_padding 1", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1,
                                                                                         output_padding=1),
       lambda r: real(r, 1, 2, 3, 3), lambda r: real(r, 2, 2, 3, 3))
simple(C, "conv2d", "C16->16 k3 padding 1 (Winograd F(4,3))", lambda x, w: conv2d(x, w, padding=1),
       lambda r: real(r, 1, 16, 6, 6), lambda r: real(r, 16, 16, 3, 3))
simple(C, "conv_transpose2d", "C16->16 k4 s2 p1 (Winograd F(4,2))", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 16, 3, 3), lambda r: real(r, 16, 16, 4, 4))
simple(C, "max_pool2d", "k2, no ties", lambda x: max_pool2d(x, 2), lambda r: distinct(r, 2, 2, 4, 4))
simple(C, "max_pool2d", "k3 stride 2 padding 1", lambda x: max_pool2d(x, 3, stride=2, padding=1),
       lambda r: distinct(r, 1, 2, 5, 5))
simple(C, "conv2d", "groups 2, C4->6 k3 padding 1", lambda x, w: conv2d(x, w, padding=1, groups=2),
       lambda r: real(r, 1, 4, 4, 4), lambda r: real(r, 6, 2, 3, 3))
simple(C, "conv2d", "depthwise C3 k3", lambda x, w: conv2d(x, w, groups=3),
       lambda r: real(r, 1, 3, 4, 4), lambda r: real(r, 3, 1, 3, 3))
simple(C, "conv_transpose2d", "groups 2, C4->6 k3 s2", lambda x, w: conv_transpose2d(x, w, stride=2, groups=2),
       lambda r: real(r, 1, 4, 2, 3), lambda r: real(r, 4, 3, 3, 3))
simple(C, "conv1d", "C2->3 k3 s2 p1 d2", lambda x, w: F.conv1d(x, w, stride=2, padding=1, dilation=2),
       lambda r: real(r, 2, 2, 9), lambda r: real(r, 3, 2, 3))
simple(C, "conv_transpose1d", "C3->2 k3 s2", lambda x, w: F.conv_transpose1d(x, w, stride=2),
       lambda r: real(r, 1, 3, 4), lambda r: real(r, 3, 2, 3))
simple(C, "max_pool2d", "k3 s2 p1 dilation 2 ceil_mode", lambda x: max_pool2d(x, 3, 2, 1, dilation=2, ceil_mode=True),
       lambda r: distinct(r, 1, 2, 6, 7))
simple(C, "max_unpool2d", "of max_pool2d k2", lambda x: F.max_unpool2d(x, np.arange(8).reshape(1, 2, 2, 2) * 2, 2),
       lambda r: real(r, 1, 2, 2, 2))
simple(C, "max_pool1d", "k2", lambda x: F.max_pool1d(x, 2), lambda r: distinct(r, 2, 2, 6))
simple(C, "avg_pool2d", "k3 s2 p1 ceil_mode, count_include_pad=False",
       lambda x: avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), lambda r: real(r, 1, 2, 6, 7))
simple(C, "avg_pool1d", "k3 s2 p1", lambda x: F.avg_pool1d(x, 3, 2, 1), lambda r: real(r, 2, 2, 7))
simple(C, "avg_pool2d", "k2", lambda x: avg_pool2d(x, 2), lambda r: real(r, 2, 2, 4, 4))
simple(C, "avg_pool2d", "k3 stride 2 padding 1", lambda x: avg_pool2d(x, 3, stride=2, padding=1),
       lambda r: real(r, 1, 2, 5, 5))

BN = "norm"
simple(BN, "batch_norm", "train (N,C) = (5,3)",
       lambda x, g, b: batch_norm(x, g, b, np.zeros(3), np.ones(3), True),
       lambda r: real(r, 5, 3), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "batch_norm", "train (N,C,H,W) = (2,3,2,2)",
       lambda x, g, b: batch_norm(x, g, b, np.zeros(3), np.ones(3), True),
       lambda r: real(r, 2, 3, 2, 2), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "batch_norm", "train, no gamma/beta", lambda x: batch_norm(x, None, None, None, None, True),
       lambda r: real(r, 4, 2, 2, 2))
simple(BN, "batch_norm", "eval (running stats)",
       lambda x, g, b: batch_norm(x, g, b, np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0]), False),
       lambda r: real(r, 2, 3, 2, 2), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "dropout", "p=0.5, fixed mask", lambda x: dropout(x, 0.5, True, np.random.default_rng(7)),
       lambda r: real(r, 3, 4))
