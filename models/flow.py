r"""Normalizing flows built from coupling layers: NICE (additive) and RealNVP (affine).

Change of variables. Let g: data -> code be a bijection and z = g(x). Then

    p_X(x) = p_Z(g(x)) |det dg(x)/dx|,      in logs:   log p_X(x) = log p_Z(z) + log|det dg/dx|.

(The lecture writes the generator x = f(z); our g is its f^-1, so |det dg/dx| = |det df/dz|^-1.)
If g is a chain g_K o ... o g_1, the Jacobian is a product and its log-determinant a sum:
log|det dg/dx| = sum_k log|det dg_k/dh_{k-1}|. Training maximises log p_X(x) exactly.

Direction names used in this file:
    forward(x) -> (z, log_det)   data -> code, the lecture's f^-1, used for the likelihood;
    inverse(z) -> x              code -> data, the lecture's generator f, used for sampling.

Data space and bits/dim (read this once, precisely):
    images (pixel / 255, as load_mnist returns them) are first *dequantised* (nets.data.dequantize):
        x = (pixel + u) / 256,   u ~ U[0, 1) per pixel,          so x lies in [0, 1)^D;
    `Flow.log_prob(x)` is the log-density of x on [0, 1)^D in nats (D = 784 for MNIST);
    bits/dim is reported on the dequantised [0, 256) pixel scale v = 256 x:
        log p(v) = log p(x) - D log 256        (v = 256 x stretches every axis by 256),
        bits/dim = -log p(v) / (D ln 2)  =  -log p(x) / (D ln 2) + 8.
    Because the noise u fills each pixel's unit bin, -log p(v) averaged over u upper-bounds the
    discrete model's -log P(pixel): bits/dim is a bound on the code length per pixel.

The flow, data -> code (each step a Module with forward -> (y, log_det) and inverse):
    LogitTransform   y = logit(a + (1 - 2a) x), a = 1e-6: maps [0, 1) to the real line (no parameters);
    K couplings      AdditiveCoupling (NICE) or AffineCoupling (RealNVP), masks alternating;
    Scaling          NICE only: y = x * exp(log_scale), one learned log-scale per dimension;
then a fixed prior on z: standard Gaussian or standard logistic, independent over dimensions.

The contract (models/__init__.py) at the end: `train_epoch` is maximum likelihood, Adam on the mean -log p(x)
in nats per image of freshly dequantised minibatches, the gradient's global norm clipped before each step;
`data` is the grey-level images (N, 1, 28, 28) or (N, 784) in [0, 1]; `evaluate` reports `bits_per_dim`
(the headline) and `nll_nats`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import dequantize, iterate_minibatches
from nets.harness import hp

COUPLINGS = ("affine", "additive")
MASKS = ("checkerboard", "half")
PRIORS = ("gaussian", "logistic")


@dataclass
class FlowConfig:
    epochs: int = hp(20, "passes over the training digits", check="positive")
    coupling: str = hp("affine", "affine (RealNVP) or additive (NICE, with its scaling layer)", choices=COUPLINGS)
    layers: int = hp(6, "number of coupling layers", check="positive")
    hidden: int = hp(512, "hidden units of each coupling MLP", check="positive")
    batch_size: int = hp(100, "images per Adam step", check="positive")
    lr: float = hp(1e-3, "Adam learning rate", check="positive")
    prior: str = hp("gaussian", "distribution of the code z", choices=PRIORS)
    mask: str = hp("checkerboard", "checkerboard on the image or the vector's two halves, flipped every layer",
                   choices=MASKS)
    clip_grad: float = hp(100.0, "clip the gradient's global L2 norm to this before each step", check="positive")
    invertible_1x1: bool = hp(False, "a Glow invertible 1x1 convolution (mixing 2x2 blocks) before each coupling")


# ==================================================================== masks: which half is kept
def checkerboard_mask(shape: tuple, parity: int = 0, dtype=np.float32) -> np.ndarray:
    """Flattened (H*W,) mask of an H x W checkerboard: 1 where (row + column) % 2 == parity."""
    rows, cols = np.indices(shape)
    return (((rows + cols) % 2) == parity).astype(dtype).reshape(-1)


def half_mask(dim: int, first: bool = True, dtype=np.float32) -> np.ndarray:
    """(dim,) mask over the flattened features: 1 on the first half (first=True) or on the second."""
    mask = (np.arange(dim) < dim // 2).astype(dtype)
    return mask if first else 1 - mask


def make_mask(kind: str, image_shape: tuple, layer: int, dtype=np.float32) -> np.ndarray:
    """The mask of coupling `layer`: flipped on every layer, so each pixel is changed every other layer."""
    if kind == "checkerboard":
        return checkerboard_mask(image_shape, parity=layer % 2, dtype=dtype)
    if kind == "half":
        return half_mask(int(np.prod(image_shape)), first=layer % 2 == 0, dtype=dtype)
    raise ValueError(f"mask must be one of {MASKS}, got {kind!r}")


# ==================================================================== preprocessing: the logit
class LogitTransform(nets.Module):
    r"""y = logit(p) = log p - log(1 - p) with p = a + (1 - 2a) x, for x in [0, 1].

    The squeeze into [a, 1 - a] keeps the logit finite at x = 0 and x = 1. As part of the flow its
    Jacobian is diagonal and counts in the likelihood:
        dy/dx = (1 - 2a) / (p (1 - p)),    log_det = sum_i [log(1 - 2a) - log p_i - log(1 - p_i)].
    1 - p is computed as a + (1 - 2a)(1 - x), which loses no digits when x is close to 1 (float32).
    Inverse: x = (sigmoid(y) - a) / (1 - 2a)."""

    def __init__(self, alpha: float = 1e-6):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor):
        a = self.alpha
        p = a + (1 - 2 * a) * x
        q = a + (1 - 2 * a) * (1 - x)                        # = 1 - p
        log_p, log_q = p.log(), q.log()
        log_det = (math.log(1 - 2 * a) - log_p - log_q).sum(axis=1)
        return log_p - log_q, log_det

    def inverse(self, y: Tensor) -> Tensor:
        return (F.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


# ==================================================================== coupling layers
def coupling_network(dim: int, hidden: int, out: int, dtype, rng) -> nets.Sequential:
    """The MLP that reads the kept half: dim -> hidden -> hidden -> out, ReLU between."""
    return nets.mlp((dim, hidden, hidden, out), dtype=dtype, rng=rng)


class AdditiveCoupling(nets.Module):
    r"""NICE's coupling (the lecture's reversible block), with m the 0/1 mask of the kept half:

        forward:  y = m * x + (1 - m) * (x + t(m * x))        (y1 = x1 + F(x2), y2 = x2)
        inverse:  x = m * y + (1 - m) * (y - t(m * y))        (subtract: m * y = m * x)
        log_det = 0: the Jacobian is triangular with ones on its diagonal (volume preserving).
    In the code t is multiplied by (1 - m) first, which shortens the lines to y = x + t, x = y - t.

    t: MLP dim -> hidden -> hidden -> dim. Its last layer starts at zero, so the layer starts as the
    identity (the usual choice for flows: training begins from the prior pushed through the logit)."""

    def __init__(self, mask: np.ndarray, hidden: int, dtype=np.float32, rng=None):
        super().__init__()
        dim = mask.shape[0]
        self.register_buffer("mask", mask.astype(dtype))     # (D,) 1 = kept (input to t), 0 = changed
        self.net = coupling_network(dim, hidden, dim, dtype, rng)
        last = self.net[-1]
        last.weight.data[...] = last.bias.data[...] = 0

    def forward(self, x: Tensor):
        t = self.net(x * self.mask) * (1 - self.mask)       # (N, D), 0 on the kept half
        return x + t, Tensor(np.zeros(x.shape[0], dtype=x.dtype))

    def inverse(self, y: Tensor) -> Tensor:
        ### BEGIN SOLUTION additive_coupling_inverse
        ### task: undo the additive coupling: the same t, read from the kept half
        ### hint: AdditiveCoupling's docstring: x = m * y + (1 - m) * (y - t(m * y))
        t = self.net(y * self.mask) * (1 - self.mask)       # y * m = x * m: the same t
        return y - t
        ### END SOLUTION


class AffineCoupling(nets.Module):
    r"""RealNVP's coupling, with m the 0/1 mask of the kept half:

        s_raw, t = split(net(m * x))                           (net: dim -> hidden -> hidden -> 2 dim)
        s = scale * tanh(s_raw)                                (log-scale kept in [-|scale|, |scale|])
        forward:  y = m * x + (1 - m) * (x * exp(s) + t)
        inverse:  x = m * y + (1 - m) * (y - t) * exp(-s)      (s, t read m * y = m * x)
        log_det = sum_i (1 - m_i) s_i: the Jacobian is triangular, its diagonal is 1 on the kept
                  half and exp(s_i) on the changed half.
    In the code s and t are first multiplied by (1 - m), so they are 0 on the kept half; then
    exp(s) = 1 there and the two lines shorten to y = x * exp(s) + t and x = (y - t) * exp(-s).

    `scale` (D,) is a learned per-pixel bound on the log-scale, starting at 0, so the layer starts
    with s = 0. The t half of the last layer starts at zero too, so the layer starts as the identity.
    The s half of the last layer keeps its default (random) initialisation on purpose: if both
    `scale` and s_raw were 0, d loss/d scale ~ tanh(s_raw) = 0 and d loss/d s_raw ~ scale = 0, and the
    log-scale would never leave 0 (a saddle point): the flow would stay volume preserving."""

    def __init__(self, mask: np.ndarray, hidden: int, dtype=np.float32, rng=None):
        super().__init__()
        self.dim = dim = mask.shape[0]
        self.register_buffer("mask", mask.astype(dtype))     # (D,) 1 = kept (input to s, t), 0 = changed
        self.net = coupling_network(dim, hidden, 2 * dim, dtype, rng)
        self.scale = nets.Parameter(np.zeros(dim, dtype=dtype))   # (D,) log-scale bound, starts at 0
        last = self.net[-1]
        last.weight.data[dim:] = last.bias.data[dim:] = 0    # rows dim..2dim-1 produce t

    def _log_scale_and_shift(self, kept: Tensor):
        h = self.net(kept)
        change = 1 - self.mask
        s = self.scale * F.tanh(h[:, :self.dim]) * change    # (N, D), 0 on the kept half
        t = h[:, self.dim:] * change                         # (N, D), 0 on the kept half
        return s, t

    def forward(self, x: Tensor):
        ### BEGIN SOLUTION affine_coupling_forward
        ### task: y = x * exp(s) + t and the log-determinant of the layer, per example
        ### hint: AffineCoupling's docstring: forward and log_det = sum_i (1 - m_i) s_i
        s, t = self._log_scale_and_shift(x * self.mask)
        return x * s.exp() + t, s.sum(axis=1)                # kept half: x * 1 + 0
        ### END SOLUTION

    def inverse(self, y: Tensor) -> Tensor:
        ### BEGIN SOLUTION affine_coupling_inverse
        ### task: undo the affine coupling with the same s and t
        ### hint: AffineCoupling's docstring: inverse x = m * y + (1 - m) * (y - t) * exp(-s)
        s, t = self._log_scale_and_shift(y * self.mask)      # y * m = x * m: the same s and t
        return (y - t) * (-s).exp()
        ### END SOLUTION


class Scaling(nets.Module):
    r"""NICE's diagonal scaling, the last step of an additive flow: y = x * exp(log_scale).

    Additive couplings preserve volume; this layer lets the flow give some dimensions more or less
    spread. log_det = sum_i log_scale_i, the same for every example. Storing log(scale) keeps the
    scale positive. Inverse: x = y * exp(-log_scale)."""

    def __init__(self, dim: int, dtype=np.float32):
        super().__init__()
        self.log_scale = nets.Parameter(np.zeros(dim, dtype=dtype))   # (D,)

    def forward(self, x: Tensor):
        log_det = self.log_scale.sum() * Tensor(np.ones(x.shape[0], dtype=x.dtype))
        return x * self.log_scale.exp(), log_det

    def inverse(self, y: Tensor) -> Tensor:
        return y * (-self.log_scale).exp()


# ==================================================================== priors on z
class StandardGaussian:
    r"""log p(z_i) = -z_i^2 / 2 - log(2 pi) / 2 per dimension."""

    @staticmethod
    def log_prob(z: Tensor) -> Tensor:
        return -0.5 * z * z - 0.5 * math.log(2 * math.pi)

    @staticmethod
    def sample(shape, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(shape)


class StandardLogistic:
    r"""log p(z_i) = -log(1 + e^z) - log(1 + e^-z) = -softplus(z) - softplus(-z): NICE's prior, with
    heavier tails than the Gaussian. Sampling: z = log u - log(1 - u), u ~ U(0, 1)."""

    @staticmethod
    def log_prob(z: Tensor) -> Tensor:
        return -F.softplus(z) - F.softplus(-z)

    @staticmethod
    def sample(shape, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(np.finfo(np.float64).tiny, 1.0, size=shape)
        return np.log(u) - np.log1p(-u)


# ==================================================================== the flow
class Flow(nets.Module):
    """A coupling flow on flattened images: logit, `num_layers` couplings with alternating masks,
    and (additive only) NICE's scaling layer, over a standard Gaussian or logistic prior.

    Input of forward/log_prob: dequantised data x in [0, 1]^D, shaped (N, D) or (N, [1,] H, W)."""

    def __init__(self, coupling: str = "affine", num_layers: int = 6, hidden: int = 512,
                 mask: str = "checkerboard", prior: str = "gaussian", image_shape=(28, 28),
                 alpha: float = 1e-6, invertible_1x1: bool = False, dtype=np.float32, rng=None):
        super().__init__()
        if coupling not in COUPLINGS or prior not in PRIORS:
            raise ValueError(f"coupling must be one of {COUPLINGS} and prior one of {PRIORS}, got {coupling!r} "
                             f"and {prior!r}")
        if num_layers < 1 or hidden < 1:
            raise ValueError(f"need num_layers >= 1 and hidden >= 1, got {num_layers} and {hidden}")
        self.image_shape, self.dim = tuple(image_shape), int(np.prod(image_shape))
        self.coupling_kind, self.prior_kind = coupling, prior
        self.prior = StandardGaussian() if prior == "gaussian" else StandardLogistic()
        self.preprocess = LogitTransform(alpha)
        layer = AffineCoupling if coupling == "affine" else AdditiveCoupling
        self.couplings = nets.ModuleList(
            [layer(make_mask(mask, self.image_shape, k, dtype), hidden, dtype, rng) for k in range(num_layers)])
        self.scaling = Scaling(self.dim, dtype) if coupling == "additive" else None
        self.mixers = nets.ModuleList([nets.Invertible1x1Conv(self.image_shape, dtype=dtype, rng=rng)
                                       for _ in range(num_layers)]) if invertible_1x1 else None

    def steps(self) -> list:
        """The bijections from data to code, in order (with invertible_1x1: a mixer before each coupling)."""
        couplings = [s for pair in zip(self.mixers, self.couplings) for s in pair] if self.mixers else self.couplings
        return [self.preprocess, *couplings] + ([self.scaling] if self.scaling is not None else [])

    def _flatten(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.dim:
            raise ValueError(f"Flow: expected a batch of shape (N, {self.dim}) or (N, [1,] "
                             f"{self.image_shape[0]}, {self.image_shape[1]}), got shape {x.shape}")
        return x.reshape(x.shape[0], self.dim) if x.ndim != 2 else x

    def forward(self, x):
        """data -> code: z = g(x) and log|det dg/dx| per example, shapes (N, D) and (N,)."""
        h = self._flatten(x)
        log_det = 0
        for step in self.steps():
            h, step_log_det = step(h)
            log_det = log_det + step_log_det
        return h, log_det

    def inverse(self, z) -> Tensor:
        """code -> data: x = g^-1(z), shape (N, D); the steps undone in reverse order."""
        h = self._flatten(z)
        for step in reversed(self.steps()):
            h = step.inverse(h)
        return h

    def log_prob(self, x) -> Tensor:
        """log p_X(x) = sum_i log p_Z(z_i) + log|det dg/dx|, nats per example, shape (N,).
        x: dequantised data in [0, 1] (see `dequantize`)."""
        x = self._flatten(x)
        if x.size and (x.data.min() < 0 or x.data.max() > 1):
            raise ValueError(f"Flow.log_prob: expected dequantised data in [0, 1] (see dequantize), "
                             f"found values in [{x.data.min():.4g}, {x.data.max():.4g}]")
        z, log_det = self.forward(x)
        return self.prior.log_prob(z).sum(axis=1) + log_det

    def nll_nats(self, x) -> Tensor:
        """-log p(v) in nats per example on the [0, 256) pixel scale v = 256 x: -log p(x) + D log 256."""
        return -self.log_prob(x) + self.dim * math.log(256)

    def bits_per_dim(self, x) -> Tensor:
        """-log p(v) / (D ln 2) per example, v = 256 x the dequantised pixels (see the module docstring)."""
        return self.nll_nats(x) / (self.dim * math.log(2))

    def sample(self, n: int, temperature: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """n images (n, H, W) in the data space [0, 1]: z = temperature * (prior sample), x = g^-1(z).
        Temperature < 1 draws from nearer the prior's mode (cleaner, less varied images)."""
        rng = nets.get_rng(rng)
        dtype = self.couplings[0].mask.dtype
        z = (temperature * self.prior.sample((n, self.dim), rng)).astype(dtype)
        with no_grad():
            x = self.inverse(Tensor(z)).data
        return np.clip(x, 0.0, 1.0).reshape(n, *self.image_shape)


def nats_to_bits_per_dim(nats_per_image: float, dim: int) -> float:
    """-log p(x) on [0, 1)^D in nats -> bits/dim on the [0, 256) scale: (nats + D log 256) / (D ln 2)."""
    return (nats_per_image + dim * math.log(256)) / (dim * math.log(2))


# ==================================================================== the contract (models/__init__.py)
Config = FlowConfig


def build(cfg: FlowConfig) -> Flow:
    return Flow(cfg.coupling, cfg.layers, cfg.hidden, cfg.mask, cfg.prior, invertible_1x1=cfg.invertible_1x1)


def build_optimizer(model: Flow, cfg: FlowConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: Flow, optimizer, batch: np.ndarray, rng, cfg: FlowConfig) -> dict:
    """One Adam step of maximum likelihood on dequantised images `batch`: minimise the mean -log p(x) (nats),
    the gradient's global norm clipped to cfg.clip_grad first. (rng: unused, the batch is already dequantised.)"""
    loss = -model.log_prob(batch).mean()
    optimizer.zero_grad()
    loss.backward()
    norm = nets.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    optimizer.step()
    return {"loss": float(loss), "grad_norm": float(norm), "clipped": float(norm > cfg.clip_grad)}


def train_epoch(model: Flow, optimizer, data: np.ndarray, rng, cfg: FlowConfig) -> dict:
    """One pass over the images `data` (N, 1, 28, 28) or (N, 784) in [0, 1] in a fresh order, each batch freshly
    dequantised. Returns the epoch's train bits/dim, mean loss, mean gradient norm and fraction of clipped steps."""
    model.train()
    totals, seen, steps = {"loss": 0.0, "grad_norm": 0.0, "clipped": 0.0}, 0, 0
    for batch in iterate_minibatches(data, batch_size=cfg.batch_size, rng=rng):
        stats = train_step(model, optimizer, dequantize(batch, rng), rng, cfg)
        for key, weight in (("loss", len(batch)), ("grad_norm", 1), ("clipped", 1)):
            totals[key] += stats[key] * weight
        seen, steps = seen + len(batch), steps + 1
    loss = totals["loss"] / seen
    return {"loss": loss, "train_bits_per_dim": nats_to_bits_per_dim(loss, model.dim),
            "mean_grad_norm": totals["grad_norm"] / steps, "fraction_clipped": totals["clipped"] / steps}


def evaluate(model: Flow, data: np.ndarray, rng, cfg: FlowConfig, *, batch_size: int = 500) -> dict:
    """Headline `bits_per_dim` (dequantised [0, 256) scale, one dequantisation draw per image from rng) on the
    images `data` in [0, 1], and the same number as `nll_nats`, -log p per image in nats (bits * 784 ln 2)."""
    total = 0.0
    with no_grad():
        for start in range(0, len(data), batch_size):
            x = dequantize(data[start:start + batch_size], rng)
            total += float(model.bits_per_dim(x).data.astype(np.float64).sum())
    bits = total / len(data)
    return {"bits_per_dim": bits, "nll_nats": bits * model.dim * math.log(2)}
