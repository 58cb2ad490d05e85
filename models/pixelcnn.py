r"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016) for binary 28 x 28 images.

The model: pixels in raster order (row by row, left to right), each a Bernoulli given all earlier ones,
    p(x) = prod_{i,j} p(x_ij | x_<ij),      p(x_ij = 1 | x_<ij) = sigmoid(l_ij),   l = PixelCNN(x) (N, 1, H, W).
All H*W conditionals come out of ONE convolutional pass, because every convolution is masked
(nets.MaskedConv2d): output (i, j) of a type-A conv sees only pixels before (i, j); a type-B conv also
sees position (i, j) of its input, which (after a type-A layer) already depends only on pixels before
(i, j). Stacking keeps the property, and 1 x 1 convs mix channels at one position only.

    x (N, 1, 28, 28) in {0, 1}
    -> MaskedConv2d A, 7 x 7, 1 -> 2h                              (N, 2h, 28, 28)
    -> `blocks` residual blocks, each   x + [ReLU, 1x1 2h -> h, ReLU, MaskedConv2d B 3x3 h -> h,
                                               ReLU, 1x1 h -> 2h]                (N, 2h, 28, 28)
    -> ReLU, 1x1 2h -> head, ReLU, 1x1 head -> 1                  logits (N, 1, 28, 28)
(the paper's block; defaults 2h = `channels` = 32, h = `inner` = 16, 4 blocks, head 32.)
Receptive field: the 7 x 7 A conv reaches 3 rows up, each 3 x 3 B conv one more row up (and one more
column each side). Like every masked stack it has a blind spot (pixels up and to the right that no path
reaches; the gated PixelCNN fixes that with two stacks; not done here).

Loss: -log p(x) = sum_ij BCE(l_ij, x_ij), exact, in nats per image (same units as MADE and the VAE's
bounds). The contract (models/__init__.py) at the end: `data` is grey-level digits (N, 1, 28, 28), binarised
dynamically for training; `evaluate` reports `nll_nats` on one fixed binarisation of them.

Sampling (784 sequential steps) computes only what each step needs. Causality means that the activations
of every layer at rows < r never change once row r - 1 is drawn. So the sampler keeps, for each layer
whose kernel spans rows (the 7 x 7 and the 3 x 3 convs), its input for the whole image in a zero-padded
cache, and for pixel (r, c) computes every layer on ROW r only: the row of the input it needs is
r - 3 .. r + 3 (7 x 7) or r - 1 .. r + 1 (3 x 3) of the cache, with the rows below r masked out anyway.
A step then costs 1/28 of a full forward pass (100 samples: the work of 28 full passes instead of 784).
`row_logits` is that fast path; `forward` on the full image is its reference (tests/test_pixelcnn.py
checks that they agree).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import binarize_dynamic, fixed_binarization, iterate_minibatches
from nets.harness import hp
from nets.losses import binary_cross_entropy_with_logits

SIDE = 28                                      # MNIST images are SIDE x SIDE


@dataclass
class PixelCNNConfig:
    epochs: int = hp(10, "passes over the 4,500 training digits (fresh binarisation each)", check="positive")
    batch_size: int = hp(16, "images per Adam step", check="positive")
    lr: float = hp(2e-3, "Adam learning rate", check="positive")
    channels: int = hp(32, "2h: channels of the residual stream", check="positive")
    inner: int = hp(16, "h: channels inside each residual block (its 3x3 masked conv)", check="positive")
    blocks: int = hp(4, "residual blocks with a 3x3 type-B masked conv", check="non_negative")
    head: int = hp(32, "channels of the 1x1 output layers", check="positive")
    num_samples: int = hp(100, "images drawn into samples.npz", check="positive")
    limit: int | None = hp(None, "train on the first N digits only (class-balanced; for quick tests)",
                           check="positive")


# ==================================================================== the model
def _conv_row(layer: nets.MaskedConv2d, padded: np.ndarray, r: int) -> Tensor:
    """Output row r of a 'same'-padded masked conv, from its input zero-padded by KH // 2 rows on top:
    rows r .. r + KH - 1 of `padded` are input rows r - KH//2 .. r + KH//2. Returns (N, C_out, 1, W)."""
    kh, _ = layer.kernel_size
    window = Tensor(padded[:, :, r:r + kh, :])
    return F.conv2d(window, layer.masked_weight(), layer.bias, padding=(0, layer.padding[1]))


class ResidualBlock(nets.Module):
    """x + expand(ReLU(masked(ReLU(reduce(ReLU(x)))))): 2h -> h (1x1), h -> h (3x3 type B), h -> 2h (1x1)."""

    def __init__(self, channels: int, inner: int, dtype=np.float32, rng=None):
        super().__init__()
        self.reduce = nets.Conv2d(channels, inner, 1, dtype=dtype, rng=rng)                  # (N, h, H, W)
        self.masked = nets.MaskedConv2d(inner, inner, 3, "B", dtype=dtype, rng=rng)           # (N, h, H, W)
        self.expand = nets.Conv2d(inner, channels, 1, dtype=dtype, rng=rng)                   # (N, 2h, H, W)

    def forward(self, h: Tensor) -> Tensor:
        a = F.relu(self.reduce(F.relu(h)))
        return h + self.expand(F.relu(self.masked(a)))

    def forward_row(self, h_row: Tensor, cache: np.ndarray, r: int) -> Tensor:
        """The same block on row r only: h_row (N, 2h, 1, W); `cache` holds the 3x3 conv's input of the
        earlier rows (padded by one row on top) and receives row r."""
        cache[:, :, r + 1:r + 2, :] = F.relu(self.reduce(F.relu(h_row))).data
        return h_row + self.expand(F.relu(_conv_row(self.masked, cache, r)))


class PixelCNN(nets.Module):
    """PixelCNN(channels=32, inner=16, blocks=4, head=32): binary images (N, 1, H, W) -> logits (N, 1, H, W)."""

    def __init__(self, channels: int = 32, inner: int = 16, blocks: int = 4, head: int = 32, dtype=np.float32,
                 rng=None):
        super().__init__()
        if min(channels, inner, head) < 1 or blocks < 0:
            raise ValueError(f"PixelCNN: expected channels, inner, head >= 1 and blocks >= 0, got channels={channels}, "
                             f"inner={inner}, blocks={blocks}, head={head}")
        self.channels, self.inner = channels, inner
        self.input_conv = nets.MaskedConv2d(1, channels, 7, "A", dtype=dtype, rng=rng)        # (N, 2h, H, W)
        self.blocks = nets.ModuleList([ResidualBlock(channels, inner, dtype, rng) for _ in range(blocks)])
        self.head_hidden = nets.Conv2d(channels, head, 1, dtype=dtype, rng=rng)             # (N, head, H, W)
        self.head_logits = nets.Conv2d(head, 1, 1, dtype=dtype, rng=rng)                    # (N, 1, H, W)

    @property
    def dtype(self):
        return self.head_logits.weight.dtype

    def _head(self, h: Tensor) -> Tensor:
        return self.head_logits(F.relu(self.head_hidden(F.relu(h))))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of p(x_ij = 1 | x_<ij) for every pixel at once: (N, 1, H, W)."""
        h = self.input_conv(x)
        for block in self.blocks:
            h = block(h)
        return self._head(h)

    # ---------------------------------------------------------------- likelihood
    def nll(self, x) -> Tensor:
        """-log p(x) = sum_ij BCE(l_ij, x_ij) per image: Tensor (N,), nats."""
        x = self._binary(x)
        return binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(axis=(1, 2, 3))

    def log_prob(self, x, batch_size: int = 250) -> np.ndarray:
        """log p(x) per image, float64 (N,), nats (no graph)."""
        x = self._binary(x).data
        with no_grad():
            return np.concatenate([-self.nll(x[s:s + batch_size]).data for s in range(0, len(x), batch_size)]
                                  ).astype(np.float64)

    # ---------------------------------------------------------------- sampling, one row at a time
    def new_cache(self, n: int, height: int = SIDE, width: int = SIDE) -> dict:
        """Zero-padded inputs of the row-spanning convs: "x" the image (3 rows of padding on top and
        bottom, the 7 x 7 conv's), "blocks" each 3 x 3 conv's input (1 row on top and bottom)."""
        return {"x": np.zeros((n, 1, height + 6, width), self.dtype),
                "blocks": [np.zeros((n, self.inner, height + 2, width), self.dtype) for _ in self.blocks]}

    def row_logits(self, cache: dict, r: int) -> np.ndarray:
        """Logits of row r (N, W), given the image's rows <= r in cache["x"] (rows 3 .. H + 2) and the
        block caches of rows < r (this call fills row r of them). Equal to forward(x)[:, 0, r, :]."""
        with no_grad():
            h = _conv_row(self.input_conv, cache["x"], r)
            for block, block_cache in zip(self.blocks, cache["blocks"]):
                h = block.forward_row(h, block_cache, r)
            return self._head(h).data[:, 0, 0, :]

    def sample(self, n: int, rng: np.random.Generator, height: int = SIDE, width: int = SIDE) -> np.ndarray:
        """n binary images (n, 1, H, W) float32, pixel by pixel; each step computes row r only."""
        cache = self.new_cache(n, height, width)
        for r in range(height):
            for c in range(width):
                p = F.sigmoid(Tensor(self.row_logits(cache, r)[:, c])).data      # p(x_rc = 1 | x_<rc)
                cache["x"][:, 0, r + 3, c] = rng.random(n) < p
        return cache["x"][:, :, 3:height + 3, :].copy()

    def _binary(self, x) -> Tensor:
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        if x.ndim == 2 and x.shape[1] == SIDE * SIDE:
            x = x.reshape(len(x), 1, SIDE, SIDE)
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"PixelCNN: expected images of shape (N, 1, H, W) or (N, {SIDE * SIDE}), "
                             f"got {x.shape}")
        if x.size and not np.all((x == 0) | (x == 1)):
            raise ValueError("PixelCNN: pixels must be binary (0 or 1); binarise grey levels first "
                             "(nets.data.binarize_dynamic)")
        return Tensor(x.astype(self.dtype, copy=False))


# ==================================================================== the contract (models/__init__.py)
Config = PixelCNNConfig


def build(cfg: PixelCNNConfig) -> PixelCNN:
    return PixelCNN(cfg.channels, cfg.inner, cfg.blocks, cfg.head)


def build_optimizer(model: PixelCNN, cfg: PixelCNNConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: PixelCNN, optimizer, batch: np.ndarray, rng, cfg: PixelCNNConfig) -> dict:
    """One Adam step on a batch of binary images (N, 1, H, W): minimise the mean -log p(x) (rng: unused)."""
    loss = model.nll(batch).mean()               # nats per image
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss)}


def train_epoch(model: PixelCNN, optimizer, data: np.ndarray, rng: np.random.Generator, cfg: PixelCNNConfig) -> dict:
    """One pass over fresh binary draws of the grey-level images `data` (N, 1, H, W) in [0, 1]; mean training NLL."""
    model.train()
    binary = binarize_dynamic(data, rng=rng)                 # dynamic binarisation: a new draw each epoch
    total = 0.0
    for batch in iterate_minibatches(binary, batch_size=cfg.batch_size, rng=rng):
        total += train_step(model, optimizer, batch, rng, cfg)["loss"] * len(batch)
    return {"loss": total / len(binary)}


def evaluate(model: PixelCNN, data: np.ndarray, rng, cfg: PixelCNNConfig) -> dict:
    """Headline `nll_nats`: exact -log p(x), nats per image, averaged over ONE fixed binarisation of the grey-level
    images `data` (nets.data.fixed_binarization; binary images stay as they are; rng unused)."""
    model.eval()
    return {"nll_nats": float(-model.log_prob(fixed_binarization(data)).mean())}
