r"""Winograd's minimal filtering: conv2d (stride 1, kernel 3x3 or 5x5) and conv_transpose2d (kernel 4x4,
stride 2) with 1.8-11x fewer multiplications than im2col's product, the same results up to rounding. Used
by autodiff/fast/conv.py (which replaces autodiff/conv.py's conv2d and conv_transpose2d) for layers with
>= MIN_CHANNELS channels each way.

1. F(m, r): m outputs of an r-tap correlation y_i = sum_a d[i + a] g[a] from a = m + r - 1 inputs
   with a multiplications instead of m r:  y = AT [(G g) * (BT d)]  (`toom_cook`).
   In 2-D (tiles of m x m outputs read a x a inputs; neighbouring tiles overlap by r - 1), over a
   batch of T tiles and the channels, each of the a^2 products is a matrix product over input channels:
       V = (BT (x) BT) tiles          (a^2, T, C_in)       (x): Kronecker product, applied as BT along
                                                                 each tile axis in turn (`_transform`)
       U = (G (x) G) taps             (a^2, C_in, K)        depends on the weight only
       M[p] = V[p] @ U[p]             (a^2, T, K)           for each of the a^2 points p
       Y = (AT (x) AT) M              (m^2, T, K)           the m x m outputs of each tile
   Backward is the same chain read backwards, each step its adjoint:
       dM = (AT (x) AT)^T dY,  dU[p] = V[p]^T @ dM[p],  dV[p] = dM[p] @ U[p]^T,
       dtiles = (BT (x) BT)^T dV  (overlapping tiles ADD back),  dtaps = (G (x) G)^T dU.
2. conv2d, stride 1, kernel r x r: out[i, j] = sum x_pad[i + a, j + b] w[:, :, a, b]: one correlation,
   K = C_out. Multiplications per output: a^2 / m^2 against r^2 (5x5: 4 against 25).
3. conv_transpose2d, kernel 4, stride 2: without padding, output row 2q + py (py = 0 or 1) gets input
   rows q and q - 1 through kernel rows py and py + 2 only. With x padded by one row on top, xp[i] = x[i-1]:
       out_full[2q + py] = xp[q] w[py + 2] + xp[q + 1] w[py]        q = 0 .. H
   so every phase (py, px) is a 2-tap correlation of the SAME tiles: r = 2, the 4 phases side by side
   in K = 4 C_out. padding and output_padding only crop: out[i, j] = out_full[i + ph, j + pw] (zero
   beyond out_full's 2H + 2 rows). Multiplications: 25 / 16 per output against 4.
Accuracy, and the tiles. The a^2 products sum over the input channels values that the transforms made
larger than the outputs, and the output transform cancels them again: the products' float32 rounding is
amplified (computing the transforms in float64 does not help; the products' rounding dominates), the
more the larger the tile. So the tile size m is chosen per r for float32 gradients within 2x of im2col's error (tests/test_winograd.py
measures it): r = 3 (3x3 conv2d): F(2, 3), points 0, +-1, inf (4 multiplications per output, not 9), with
the weight gradient's product (a sum over every tile of the batch) in float64; r = 2 (conv_transpose2d's
phases): F(3, 2), the same points (16 per 9 outputs of a phase, not 4 per output); r = 5 (5x5 conv2d):
every tile is too inaccurate in float32 (F(2, 5) to F(4, 5): 9-20x im2col's error), so float32 layers
compute in float64 (`WORK_IN_FLOAT64`), where rounding is 1e9 times smaller and a large tile costs no
float32 accuracy: F(8, 5), points 0, +-1, +-1/2, +-2, +-1/4, +-4, inf (144 float64 multiplications per 64
outputs against im2col's 25 float32 ones per output; errors under 0.3x im2col's: the final float32 rounding;
1.5-1.9x faster than F(4, 5) in float64 on DCGAN's 32 -> 64 layer). float64 layers keep F(4, 5): F(8, 5)'s
relative error, ~1e-10, would show in float64 gradient checks. Images are channel last (N, H, W, C) here.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import parallel
from .im2col import scratch

TILE = {2: 3, 3: 2, 5: 4}                  # r -> m, outputs per tile each way (see Accuracy)
WORK_IN_FLOAT64 = {5: 8}                   # r -> m for float32 layers run in float64 (transforms, products)
WEIGHT_GRADIENT_IN_FLOAT64 = {3}           # r whose weight gradient's product (a long sum) runs in float64
POINTS = (0, 1, -1, 0.5, -0.5, 2, -2, 0.25, -0.25, 4, -4)      # the first a - 1 of them, and infinity
MIN_CHANNELS = 16                          # fewer input or output channels: im2col is faster
CHUNK = 8192                               # a transform runs over this many columns at a time (cache)


def toom_cook(m: int, r: int, points) -> tuple:
    """AT (m, a), G (a, r), BT (a, a), a = m + r - 1, with y = AT [(G g) * (BT d)] the m-output r-tap
    correlation y_i = sum_j d[i + j] g[j]. The product of a degree r-1 and a degree m-1 polynomial is
    interpolated from its values at the points and its top coefficient ("infinity"): with V_k (a, k)
    the rows (1, t, .., t^(k-1)) at each point and (0, .., 0, 1) for infinity, a convolution is
    V_a^-1 [(V_r g) * (V_m h)], and the correlation is its transpose."""
    a = m + r - 1

    def vandermonde(k):
        return np.array([[float(t) ** i for i in range(k)] for t in points] + [[0.0] * (k - 1) + [1.0]])
    BT = np.linalg.inv(vandermonde(a)).T
    BT[np.abs(BT) < 1e-12] = 0.0            # exact zeros where the inverse has rounding residue
    return vandermonde(m).T, vandermonde(r), BT


class Algorithm(NamedTuple):
    r: int
    m: int                                 # outputs per tile, each way
    alpha: int                             # a = m + r - 1 inputs per tile, each way
    BT: np.ndarray                         # (a, a)
    AT: np.ndarray                         # (m, a)
    G: np.ndarray                          # (a, r)


def tile(r: int, dtype) -> int:
    """m, outputs per tile each way, for an r-tap layer of this dtype (see Accuracy)."""
    return WORK_IN_FLOAT64[r] if r in WORK_IN_FLOAT64 and np.dtype(dtype) == np.float32 else TILE[r]


@functools.lru_cache(maxsize=None)
def algorithm(r: int, m: int) -> Algorithm:
    AT, G, BT = toom_cook(m, r, POINTS[:m + r - 2])
    return Algorithm(r, m, m + r - 1, BT, AT, G)


class Plan(NamedTuple):
    """One layer: conv2d (phases 1, r = its kernel) or conv_transpose2d (phases 2, r = 2)."""
    phases: int
    r: int
    N: int
    C_in: int
    C_out: int
    H: int
    W: int
    ph: int
    pw: int
    OH: int
    OW: int
    m: int                                 # outputs per tile, each way: tile(r, dtype)

    @property
    def alg(self) -> Algorithm:            # the tile's matrices
        return algorithm(self.r, self.m)

    @property
    def tiles(self) -> tuple:              # (TH, TW): tiles of m rows cover the rows to compute
        rows, cols = (self.OH, self.OW) if self.phases == 1 else (self.H + 1, self.W + 1)
        return -(-rows // self.m), -(-cols // self.m)

    def image_shape(self, n: int) -> tuple:    # n images padded channel-last, the tiles cut from them
        TH, TW = self.tiles
        return n, self.m * TH + self.r - 1, self.m * TW + self.r - 1, self.C_in

    def full_shape(self, n: int) -> tuple:     # n whole channel-last outputs the tiles cover (phases interleaved)
        TH, TW = self.tiles
        return n, self.phases * self.m * TH, self.phases * self.m * TW, self.C_out

    @property
    def tiles_per_image(self) -> int:
        TH, TW = self.tiles
        return TH * TW

    @property
    def T(self) -> int:                    # tiles in the batch
        return self.N * self.tiles_per_image

    def input_region(self, image: np.ndarray) -> np.ndarray:
        """Where x sits in the padded channel-last image, as an (N, C_in, H, W) view."""
        top, left = (self.ph, self.pw) if self.phases == 1 else (1, 1)
        return image[:, top:top + self.H, left:left + self.W].transpose(0, 3, 1, 2)

    @property
    def computed(self) -> tuple:           # (rows, cols) of the output the tiles compute; the rest is 0
        if self.phases == 1:
            return self.OH, self.OW
        return min(self.OH, 2 * self.H + 2 - self.ph), min(self.OW, 2 * self.W + 2 - self.pw)

    def output_region(self, full: np.ndarray) -> np.ndarray:
        """The computed part of the output in the full channel-last one, an (n, C_out, rows, cols) view:
        conv2d's first OH x OW; conv_transpose2d's crop at (ph, pw), at most to out_full's 2H + 2 rows."""
        (rows, cols), (top, left) = self.computed, (0, 0) if self.phases == 1 else (self.ph, self.pw)
        return full[:, top:top + rows, left:left + cols].transpose(0, 3, 1, 2)


def applies(w_shape: tuple, stride: tuple, dilation: tuple, transposed: bool, grid: tuple, dtype) -> bool:
    """The fast path's cases, with enough channels to pay and outputs to compute, grid = (N, rows,
    cols) per phase (conv2d: (N, OH, OW), conv_transpose2d: (N, H + 1, W + 1)), of at least one image
    and one tile each way. Only float32 and float64: integers would truncate the transforms'
    fractions, and float16 loses too much to them."""
    C_in, C_out = (w_shape[0], w_shape[1]) if transposed else (w_shape[1], w_shape[0])
    KH, KW = w_shape[2:]
    if transposed:
        r = 2 if (KH, KW) == (4, 4) and tuple(stride) == (2, 2) else None
    else:
        r = KH if KH == KW and KH in (3, 5) and tuple(stride) == (1, 1) else None   # 2x2 gains too little
    return (r is not None and tuple(dilation) == (1, 1) and min(C_in, C_out) >= MIN_CHANNELS
            and grid[0] >= 1 and min(grid[1:]) >= tile(r, dtype) and np.dtype(dtype) in (np.float32, np.float64))


def work_dtype(plan: "Plan", dtype) -> np.dtype:
    """The dtype the layer's transforms and products run in (see Accuracy)."""
    return np.dtype(np.float64) if plan.r in WORK_IN_FLOAT64 else np.dtype(dtype)


def _cast(matrix: np.ndarray, like: np.ndarray) -> np.ndarray:
    return matrix.astype(like.dtype, copy=False)


# ==================================================================== the kernel transform
def _taps(w: np.ndarray, plan: Plan) -> np.ndarray:
    """The weight as r x r taps, (a, b, C_in, K) (a view where it can be).
    conv2d w (C_out, C_in, r, r): taps[a, b, c, o] = w[o, c, a, b].
    conv_transpose2d w (C_in, C_out, 4, 4): taps[a, b, c, (py, px, o)] = w[c, o, py + 2 (1-a), px + 2 (1-b)]."""
    if plan.phases == 1:
        return w.transpose(2, 3, 1, 0)
    by_phase = w.reshape(plan.C_in, plan.C_out, 2, 2, 2, 2)[:, :, ::-1, :, ::-1, :]   # (c, o, a, py, b, px)
    return by_phase.transpose(2, 4, 0, 3, 5, 1)


def kernel_transform(w: np.ndarray, plan: Plan) -> np.ndarray:
    """U = (G (x) G) taps: (a^2, C_in, K)."""
    alg = plan.alg
    taps = _taps(w, plan).reshape(plan.r ** 2, -1)
    return _transform_on_threads(alg.G, taps).reshape(alg.alpha ** 2, plan.C_in, -1)


def kernel_transform_adjoint(dU: np.ndarray, plan: Plan, w_shape: tuple) -> np.ndarray:
    """dL/dw from dL/dU: dtaps = (G (x) G)^T dU, put back where _taps took each tap from."""
    alg = plan.alg
    dtaps = _transform_on_threads(alg.G.T, dU.reshape(alg.alpha ** 2, -1))
    dw = np.empty(w_shape, dU.dtype)
    target = _taps(dw, plan)
    target[...] = dtaps.reshape(target.shape)
    return dw


# ==================================================================== tiles and transforms
def _tile_view(image: np.ndarray, plan: Plan) -> np.ndarray:
    """(n, Hp, Wp, C) images -> their (a, a, n, TH, TW, C) overlapping tiles, a view (writes to it reach
    the images; tiles overlap by r - 1 rows and columns)."""
    alpha, (TH, TW) = plan.alg.alpha, plan.tiles
    sn, sh, sw, sc = image.strides
    return as_strided(image, (alpha, alpha, image.shape[0], TH, TW, image.shape[3]),
                      (sh, sw, sn, plan.m * sh, plan.m * sw, sc))


def _output_view(full: np.ndarray, plan: Plan) -> np.ndarray:
    """n full outputs (n, P m TH, P m TW, C_out), P = phases -> (jy, jx, n, TH, TW, py, px, o), Y's
    axis order (a view): row P (m ty + jy) + py."""
    (TH, TW), P = plan.tiles, plan.phases
    return full.reshape(full.shape[0], TH, plan.m, P, TW, plan.m, P, plan.C_out).transpose(2, 5, 0, 1, 4, 3, 6, 7)


def _transform(matrix: np.ndarray, a: np.ndarray, out: np.ndarray) -> None:
    """out = (matrix (x) matrix) @ a for matrix (P, Q), a (Q^2, ...) and out (P^2, ...), the trailing axes
    read as one: out[i, j] = sum_kl matrix[i, k] matrix[j, l] a[k, l], as matrix along one tile axis
    and then the other (P Q (P + Q) multiply-adds per column against P^2 Q^2), CHUNK columns at a time."""
    matrix = _cast(matrix, a)
    (P, Q), X = matrix.shape, a.size // matrix.shape[1] ** 2
    by_axes, out_axes = a.reshape(Q, Q, X), out.reshape(P, P, X)
    assert np.may_share_memory(out_axes, out), "out must be reshaped as a view"
    half = np.empty((Q, P, min(CHUNK, X)), a.dtype)                   # half[k, j] = sum_l m[j, l] a[k, l]
    for start in range(0, X, CHUNK):
        cols = slice(start, min(start + CHUNK, X))
        step = half[:, :, :cols.stop - start]
        np.matmul(matrix, by_axes[:, :, cols], out=step)
        np.matmul(matrix, step.transpose(1, 0, 2), out=out_axes[:, :, cols].transpose(1, 0, 2))


def _transform_on_threads(matrix: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(matrix (x) matrix) @ a for a (Q^2, X), in blocks of CHUNK columns on the engine's threads."""
    P, X = matrix.shape[0], a.shape[1]
    out = np.empty((P * P, X), a.dtype)

    def chunks(lo, hi):
        cols = slice(lo * CHUNK, min(hi * CHUNK, X))
        _transform(matrix, a[:, cols], out[:, cols])
    parallel.for_blocks(chunks, -(-X // CHUNK), work=out.size + a.size)
    return out


def _by_images(step, plan: Plan, channels: int) -> None:
    """step(lo, hi) over blocks of images that cover the batch, on the engine's threads. A block has
    about CHUNK tile columns, so what one pass writes is still in cache when the next reads it."""
    per_step = max(1, CHUNK // (plan.tiles_per_image * channels))

    def steps(lo, hi):
        for start in range(lo, hi, per_step):
            step(start, min(start + per_step, hi))
    parallel.for_blocks(steps, plan.N, work=plan.T * channels * plan.alg.alpha ** 2)


# ==================================================================== forward and backward
def forward(x: np.ndarray, U: np.ndarray, plan: Plan) -> tuple:
    """The layer's output (N, C_out, OH, OW) from x (N, C_in, H, W) and U -> (out, V); V is kept for
    the weight gradient. The transforms run image block by image block (`_by_images`) around the
    a^2 products, which run on the whole batch."""
    alg, per_image = plan.alg, plan.tiles_per_image
    points, K = alg.alpha ** 2, U.shape[2]
    V = np.empty((points, plan.T, plan.C_in), x.dtype)

    def transform_inputs(lo, hi):           # x[lo:hi] -> their tiles -> V
        image = np.zeros(plan.image_shape(hi - lo), x.dtype)
        np.copyto(plan.input_region(image), x[lo:hi].copy())          # read in order, then transpose in cache
        tiles = np.ascontiguousarray(_tile_view(image, plan))
        _transform(alg.BT, tiles.reshape(points, -1), V[:, lo * per_image:hi * per_image])
    _by_images(transform_inputs, plan, plan.C_in)
    M = scratch.get("winograd M", (points, plan.T, K), x.dtype)
    parallel.batched_matmul(V, U, out=M)
    rows, cols = plan.computed
    out_shape = (plan.N, plan.C_out, plan.OH, plan.OW)
    out = np.empty(out_shape, x.dtype) if (rows, cols) == out_shape[2:] else np.zeros(out_shape, x.dtype)

    def transform_outputs(lo, hi):          # M -> Y -> the outputs of images lo:hi
        full = np.empty(plan.full_shape(hi - lo), x.dtype)
        by_tile = _output_view(full, plan)
        Y = np.empty(by_tile.shape, x.dtype)
        _transform(alg.AT, M[:, lo * per_image:hi * per_image], Y)
        np.copyto(by_tile, Y)
        np.copyto(out[lo:hi, :, :rows, :cols], plan.output_region(full))
    _by_images(transform_outputs, plan, K)
    return out, V


def backward(g: np.ndarray, V: np.ndarray, U: np.ndarray, plan: Plan, need_x: bool, need_U: bool) -> tuple:
    """dL/dx (N, C_in, H, W) and dL/dU (a^2, C_in, K) from g = dL/dout (N, C_out, OH, OW)."""
    alg, per_image, (TH, TW) = plan.alg, plan.tiles_per_image, plan.tiles
    points, K = alg.alpha ** 2, U.shape[2]
    dM = scratch.get("winograd M", (points, plan.T, K), g.dtype)
    rows, cols = plan.computed

    def transform_output_grads(lo, hi):     # g[lo:hi] -> dY -> dM
        full = np.zeros(plan.full_shape(hi - lo), g.dtype)
        computed = plan.output_region(full)
        np.copyto(computed, g[lo:hi, :, :rows, :cols].copy())                              # as in forward
        dY = np.ascontiguousarray(_output_view(full, plan))
        _transform(alg.AT.T, dY, dM[:, lo * per_image:hi * per_image])
    _by_images(transform_output_grads, plan, K)
    dU = None
    if need_U and plan.r in WEIGHT_GRADIENT_IN_FLOAT64:            # see Accuracy
        dU = parallel.batched_matmul(V.transpose(0, 2, 1).astype(np.float64), dM.astype(np.float64)).astype(V.dtype)
    elif need_U:
        dU = parallel.batched_matmul(V.transpose(0, 2, 1), dM)
    if not need_x:
        return None, dU
    dV = scratch.get("winograd V", (points, plan.T, plan.C_in), g.dtype)
    parallel.batched_matmul(dM, U.transpose(0, 2, 1), out=dV)
    dx = np.empty((plan.N, plan.C_in, plan.H, plan.W), g.dtype)
    core, edge = slice(0, alg.m), slice(alg.m, alg.alpha)

    def transform_input_grads(lo, hi):      # dV -> dtiles -> the tiles added up -> dx[lo:hi]
        image = np.empty(plan.image_shape(hi - lo), g.dtype)
        image[:, alg.m * TH:], image[:, :, alg.m * TW:] = 0, 0        # only tile edges reach these
        tiles = _tile_view(image, plan)
        dtiles = np.empty(tiles.shape, g.dtype)
        _transform(alg.BT.T, dV[:, lo * per_image:hi * per_image], dtiles)
        np.copyto(tiles[core, core], dtiles[core, core])  # tiles overlap by r - 1: copy the cores, add the edges
        for ys, xs in ((edge, core), (core, edge), (edge, edge)):
            np.add(tiles[ys, xs], dtiles[ys, xs], out=tiles[ys, xs])
        np.copyto(dx[lo:hi], plan.input_region(image))
    _by_images(transform_input_grads, plan, plan.C_in)
    return dx, dU
