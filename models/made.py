r"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray & Larochelle, 2015).

An autoregressive model of binary images, x in {0, 1}^D (D = 784 pixels), in a given ordering o of them:
    p(x) = prod_{d=1..D} p(x_{o(d)} | x_{o(1)}, ..., x_{o(d-1)}),
    p(x_i = 1 | x_<i) = sigmoid(l_i(x)),       l = MADE(x): one logit per pixel, (N, D).
One pass of an ordinary autoencoder-shaped MLP computes all D conditionals at once; it is a valid
density only if logit l_i never depends on x_i or on a pixel after i in the ordering. MADE enforces this
by multiplying each weight matrix with a 0/1 mask (nets.MaskedLinear):

Degrees. Each unit gets an integer degree m:
    input and output unit of pixel i:  m(i) = its position in the ordering, 1..D (a permutation);
    hidden unit k of layer l:          m^l(k) ~ Uniform{min_k' m^{l-1}(k'), ..., D - 1}   (seeded);
    hidden unit k may see unit k' of the layer below iff  m^l(k) >= m^{l-1}(k')         (mask 1);
    output i may see hidden unit k iff  m(i) > m^L(k)                       (strictly: never itself);
    the direct input -> output connection (a masked logistic regression) iff  m(i) > m(j).
By induction a hidden unit of degree m depends only on inputs of degree <= m, so output i depends only on
inputs of degree < m(i): the autoregressive property (tests/test_made.py checks it on the gradients).

Order- and connectivity-agnostic training. The model keeps `num_masks` sets of degrees (orderings and
hidden degrees, drawn once from the seed and stored as buffers). Each training step picks one at random;
the shared weights learn all those factorisations at once, which also regularises. At test time the
ensemble averages the probabilities, not the logits:
    log p(x) = log (1/K) sum_k p_k(x)   (logsumexp over the K masks, minus log K).

Loss: the negative log-likelihood in nats per image, -log p(x) = sum_i BCE(l_i, x_i), exact (not a bound).
Data (the contract's `data`, models/__init__.py): MNIST grey levels (N, 784) or (N, 1, 28, 28), binarised
dynamically for training (a fresh x ~ Bernoulli(grey) every epoch); `evaluate` reports `nll_nats` on one
fixed binarisation of them (the VAE's *_binarized protocol, scripts/cli/vae.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import binarize_dynamic, fixed_binarization, flatten, iterate_minibatches
from nets.harness import hp
from nets.losses import binary_cross_entropy_with_logits


@dataclass
class MADEConfig:
    epochs: int = hp(100, "passes over the 4,500 training digits (fresh binarisation each)", check="positive")
    batch_size: int = hp(100, "images per Adam step", check="positive")
    lr: float = hp(1e-3, "Adam learning rate", check="positive")
    hidden: tuple = hp((500,), "widths of the masked hidden layers")
    num_masks: int = hp(8, "orderings/connectivities trained together and ensembled at test time",
                        check="positive")
    order_agnostic: bool = hp(True, "each mask has its own random pixel ordering (else raster order)")
    direct: bool = hp(True, "add the masked direct input -> output connection")
    num_samples: int = hp(100, "images drawn into samples.npz", check="positive")
    limit: int | None = hp(None, "train on the first N digits only (class-balanced; for quick tests)",
                           check="positive")


# ==================================================================== degrees and masks
def sample_degrees(input_dim: int, hidden: tuple, rng: np.random.Generator, order_agnostic: bool) -> list:
    """[m^0 (D,), m^1 (H_1,), ..., m^L (H_L,)]: input degrees 1..D (the ordering), then hidden degrees
    m^l(k) ~ Uniform{min m^{l-1}, ..., D - 1}."""
    degrees = [rng.permutation(input_dim) + 1 if order_agnostic else np.arange(1, input_dim + 1)]
    for width in hidden:
        low = min(int(degrees[-1].min()), input_dim - 1)
        degrees.append(rng.integers(low, input_dim, size=width))           # in [low, D - 1]
    return degrees


def masks_from_degrees(degrees: list) -> tuple:
    """(hidden masks, output mask, direct mask), each in the weight's (out, in) layout:
    hidden  m^l(k) >= m^{l-1}(k');   output  m^0(i) > m^L(k);   direct  m^0(i) > m^0(j)."""
    ### BEGIN SOLUTION made_masks
    ### task: the hidden, output and direct masks from the degrees, in the (out, in) layout
    ### hint: masks_from_degrees' docstring: hidden m^l(k) >= m^{l-1}(k'), output m^0(i) > m^L(k)
    hidden = [(upper[:, None] >= lower[None, :]) for lower, upper in zip(degrees[:-1], degrees[1:])]
    output = degrees[0][:, None] > degrees[-1][None, :]
    direct = degrees[0][:, None] > degrees[0][None, :]
    ### END SOLUTION
    return hidden, output, direct


# ==================================================================== the model
class MADE(nets.Module):
    """MADE(input_dim=784, hidden=(500,), num_masks=1): masked MLP x -> logits (N, input_dim).

    Layers: hidden.l MaskedLinear(H_{l-1}, H_l) + ReLU, output MaskedLinear(H_L, D), and (direct=True)
    direct MaskedLinear(D, D, bias=False) added to the output. Buffers degrees0 (K, D) = the K orderings,
    degrees{l} (K, H_l) = the hidden degrees of every mask; the layers' `mask` buffers hold the mask in use.
    Weights come from the layers' generator (nets.manual_seed), degrees from `mask_rng`."""

    def __init__(self, input_dim: int = 784, hidden: tuple = (500,), num_masks: int = 1,
                 order_agnostic: bool = True, direct: bool = True, *, dtype=np.float32, rng=None, mask_rng=None):
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or min(hidden) < 1 or input_dim < 2 or num_masks < 1:
            raise ValueError(f"MADE: expected input_dim >= 2, at least one hidden layer of positive width and "
                             f"num_masks >= 1, got input_dim={input_dim}, hidden={hidden}, num_masks={num_masks}")
        self.input_dim, self.hidden_sizes, self.num_masks = input_dim, hidden, num_masks
        widths = (input_dim,) + hidden
        self.hidden = nets.ModuleList([nets.MaskedLinear(a, b, dtype=dtype, rng=rng)        # (N, H_l)
                                       for a, b in zip(widths[:-1], widths[1:])])
        self.output = nets.MaskedLinear(hidden[-1], input_dim, dtype=dtype, rng=rng)         # (N, D)
        self.direct = nets.MaskedLinear(input_dim, input_dim, bias=False, dtype=dtype, rng=rng) if direct else None
        mask_rng = nets.get_rng(mask_rng)
        all_degrees = [sample_degrees(input_dim, hidden, mask_rng, order_agnostic) for _ in range(num_masks)]
        for l in range(len(widths)):
            self.register_buffer(f"degrees{l}", np.stack([d[l] for d in all_degrees]).astype(np.int64))
        self.use_mask(0)

    @property
    def dtype(self):
        return self.output.weight.dtype

    def degrees(self, k: int) -> list:
        """The degrees of mask k: [m^0 (D,), m^1 (H_1,), ...]."""
        return [getattr(self, f"degrees{l}")[k] for l in range(len(self.hidden_sizes) + 1)]

    def ordering(self, k: int) -> np.ndarray:
        """Pixel indices in the order mask k generates them."""
        return np.argsort(self.degrees(k)[0], kind="stable")

    def use_mask(self, k: int) -> None:
        """Install mask k (0 <= k < num_masks) in every layer."""
        if not 0 <= k < self.num_masks:
            raise ValueError(f"MADE: mask index must be in 0..{self.num_masks - 1}, got {k}")
        hidden, output, direct = masks_from_degrees(self.degrees(k))
        for layer, mask in zip(self.hidden, hidden):
            layer.set_mask(mask)
        self.output.set_mask(output)
        if self.direct is not None:
            self.direct.set_mask(direct)

    def forward(self, x: Tensor) -> Tensor:
        """Logits l (N, D) of p(x_i = 1 | x_<i) under the mask in use."""
        h = x
        for layer in self.hidden:
            h = F.relu(layer(h))
        logits = self.output(h)
        return logits + self.direct(x) if self.direct is not None else logits

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, hidden={self.hidden_sizes}, num_masks={self.num_masks}"

    # ---------------------------------------------------------------- likelihood and samples
    def nll(self, x) -> Tensor:
        """-log p(x) = sum_i BCE(l_i, x_i) per image under the mask in use: Tensor (N,), nats."""
        x = self._binary(x)
        return binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(axis=1)

    def log_prob(self, x, masks=None, batch_size: int = 1000) -> np.ndarray:
        """The ensemble log p(x) = logsumexp_k log p_k(x) - log K over `masks` (default: all), float64 (N,)."""
        masks = range(self.num_masks) if masks is None else list(masks)
        x = self._binary(x).data
        per_mask = np.empty((len(masks), len(x)))
        with no_grad():
            for row, k in enumerate(masks):
                self.use_mask(k)
                for start in range(0, len(x), batch_size):
                    per_mask[row, start:start + batch_size] = -self.nll(x[start:start + batch_size]).data
        top = per_mask.max(axis=0)
        return top + np.log(np.mean(np.exp(per_mask - top), axis=0))

    def sample(self, n: int, rng: np.random.Generator, mask: int = 0) -> np.ndarray:
        """n binary images drawn pixel by pixel in mask `mask`'s ordering (D passes): (n, D) float32."""
        self.use_mask(mask)
        x = np.zeros((n, self.input_dim), self.dtype)
        with no_grad():
            for i in self.ordering(mask):
                p = F.sigmoid(self(Tensor(x))).data[:, i]        # p(x_i = 1 | the pixels drawn so far)
                x[:, i] = rng.random(n) < p
        return x

    def _binary(self, x) -> Tensor:
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.input_dim:
            raise ValueError(f"MADE: expected images of shape (N, {self.input_dim}) (or (N, ...) with "
                             f"{self.input_dim} values each), got {x.shape}")
        x = x.reshape(len(x), self.input_dim)
        if x.size and not np.all((x == 0) | (x == 1)):
            raise ValueError("MADE: pixels must be binary (0 or 1); binarise grey levels first "
                             "(nets.data.binarize_dynamic)")
        return Tensor(x.astype(self.dtype, copy=False))


# ==================================================================== the contract (models/__init__.py)
Config = MADEConfig


def build(cfg: MADEConfig, *, mask_rng: np.random.Generator | None = None) -> MADE:
    """The model of a config: weights from nets' seeded generator, then the masks' degrees from `mask_rng`
    (default: the same generator)."""
    return MADE(784, cfg.hidden, cfg.num_masks, cfg.order_agnostic, cfg.direct, mask_rng=mask_rng)


def build_optimizer(model: MADE, cfg: MADEConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: MADE, optimizer, batch: np.ndarray, rng: np.random.Generator, cfg: MADEConfig) -> dict:
    """One Adam step on a batch of binary images (B, 784), under a mask drawn from `rng`."""
    model.use_mask(int(rng.integers(model.num_masks)))
    loss = model.nll(batch).mean()               # mean over the batch of -log p(x), nats per image
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss)}


def train_epoch(model: MADE, optimizer, data: np.ndarray, rng: np.random.Generator, cfg: MADEConfig) -> dict:
    """One pass over fresh binary draws of the grey-level images `data` (N, 784) or (N, 1, 28, 28) in [0, 1];
    returns the mean training NLL."""
    model.train()
    binary = binarize_dynamic(flatten(data), rng=rng)        # dynamic binarisation: a new draw each epoch
    total = 0.0
    for batch in iterate_minibatches(binary, batch_size=cfg.batch_size, rng=rng):
        total += train_step(model, optimizer, batch, rng, cfg)["loss"] * len(batch)
    return {"loss": total / len(binary)}


def evaluate(model: MADE, data: np.ndarray, rng, cfg: MADEConfig) -> dict:
    """Headline `nll_nats`: the mask ensemble's exact -log p(x), nats per image, averaged over ONE fixed
    binarisation of the grey-level images `data` (nets.data.fixed_binarization; binary images stay as they
    are; rng unused)."""
    model.eval()
    return {"nll_nats": float(-model.log_prob(fixed_binarization(data)).mean())}
