r"""A convolutional autoencoder / variational autoencoder for small square frames.

Shapes: N batch, C image channels (1 gray, 3 RGB), S image size (S x S), L = len(hidden_dims) blocks,
s = S / 2^L the bottleneck's spatial size, D = hidden_dims[-1] * s * s the flattened width, Z latent_dim.

    encoder   L blocks  Conv2d(k3, s2, p1) -> BatchNorm2d -> LeakyReLU     (N, C, S, S) -> (N, h_L, s, s)
              each block halves the image: 32 px -> 16 -> 8 -> 4 -> 2 -> 1; 64 px -> ... -> 2
    flatten                                                              (N, h_L, s, s) -> (N, D)
    bottleneck 'ae':  z = z_simple(h)                                    Linear(D, Z)
               'vae': mu = z_mu(h), logvar = z_logvar(h)                 two Linear(D, Z) heads
                      z = mu + sigma * eps, sigma = exp(0.5 logvar), eps ~ N(0, I)   (reparameterisation)
    decoder   decoder_input Linear(Z, D) -> unflatten to (N, h_L, s, s)
              L-1 blocks ConvTranspose2d(k3, s2, p1, output_padding 1) -> BatchNorm2d -> LeakyReLU,
              channels h_L -> ... -> h_1, each doubling the image; then the final block: one more
              such ConvTranspose2d(h_1 -> h_1) back to S x S, and Conv2d(h_1 -> C, k3, p1) -> sigmoid,
              so the reconstruction is in [0, 1] like the frames.

Which components run when:
    forward pass (training)  encoder -> bottleneck (z_simple, or z_mu + z_logvar + reparameterise)
                             -> decoder. Every parameter gets a gradient.
    sampling                 z ~ N(0, I) -> decoder only. The encoder and the bottleneck heads are
                             not used at all: they exist to train the decoder.

What differs between the AE and the VAE: the AE maps a frame to one point z and
is trained on reconstruction alone, so nothing says where in R^Z its codes lie -- decoding z ~ N(0, I)
gives shapes the decoder never saw (`sample` on an AE shows it). The VAE maps a frame to a Gaussian
q(z|x) = N(mu, sigma^2), decodes a *sample* of it, and pays KL(q(z|x) || N(0, I)) for moving away from
the prior: codes fill the region the prior draws from, so prior samples decode to frames.

The loss (per image, averaged over the batch; see `loss`):
    'mse': sum over pixels of (x - x_hat)^2  +  beta * KL      ('ae': the first term only)
    'bce': sum over pixels of BCE(x_hat, x)   +  beta * KL
The summed squared error is -log N(x; x_hat, sigma_x^2 I) up to a constant with sigma_x^2 = 1/2, scaled
by 1/beta: beta sets how much the KL costs against the pixels. Frames are mostly a constant background
with a small moving cart and a thin pole, so the pixel term per image is small and beta must be small
(the default 0.05) or the KL wins and every reconstruction becomes the mean frame.

The contract (models/__init__.py) at the end: `train_epoch` is Adam on that loss over shuffled minibatches of
frames; `data` is frames (N, C, S, S) in [0, 1] (`load_data(cfg, seed)` renders them and holds out whole
episodes); `evaluate` reports `mse`, the per-pixel error of reconstructions at z = mu.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import nets
from autodiff import Tensor, no_grad
import autodiff.functional as F
from nets.data import iterate_minibatches
from nets.harness import hp, stream
from nets.losses import binary_cross_entropy_with_logits, gaussian_kl
from .vae import reparameterize

VARIANTS = ("ae", "vae")
RECON_LOSSES = ("mse", "bce")


@dataclass
class ConvVAEConfig:
    # ---- frames (rl/frames.py)
    env: str = hp("CartPole-v1", "gymnasium env with render_mode='rgb_array'")
    num_frames: int = hp(3000, "frames kept (after the angle filter), training + held out", check="positive")
    size: int = hp(32, "frame size in pixels", choices=(32, 64))
    rgb: bool = hp(False, "3 colour channels instead of gray")
    reset_every: int | None = hp(20, "reset the env after this many frames (omit: only at its time limit)",
                                 check="positive")
    angle_range: str = hp("auto", "keep frames with |angle| <= this (rad); 'none': keep all; 'auto': 0.3 for "
                                  "CartPole-v1, none for other envs")
    crop: str = hp("auto", "auto: the env's window around the action; full: the whole screen",
                   choices=("auto", "full"))
    cache_dir: str | None = hp(None, "frame cache (default ~/.cache/numpy-dl-lab/frames)")
    heldout_fraction: float = hp(0.1, "fraction of episodes held out for heldout_mse and the figures",
                                 check="fraction")
    # ---- model
    variant: str = hp("vae", "vae (mu/logvar heads, KL) or ae (z_simple, reconstruction only)", choices=VARIANTS)
    hidden_dims: tuple = hp((16, 32, 64, 128, 256), "channels of the encoder blocks, each halving the image")
    latent_dim: int = hp(8, "dimension of z", check="positive")
    # ---- training
    epochs: int = hp(10, "passes over the training frames", check="positive")
    batch_size: int = hp(64, "frames per Adam step", check="positive")
    lr: float = hp(2e-3, "Adam learning rate", check="positive")
    beta: float = hp(0.05, "weight of the KL term against the per-image summed reconstruction error",
                     check="non_negative")
    recon: str = hp("mse", "reconstruction term: summed squared error or summed BCE", choices=RECON_LOSSES)
    compare_epochs: int = hp(4, "epochs for a model of the other variant, drawn in ae_vs_vae.png (0: skip)",
                             check="non_negative")


def _block(layer, channels: int, slope: float, dtype) -> nets.Sequential:
    """layer -> BatchNorm2d(channels) -> LeakyReLU(slope)"""
    return nets.Sequential(layer, nets.BatchNorm2d(channels, dtype=dtype), nets.LeakyReLU(slope))


class ConvVAE(nets.Module):
    """Conv encoder -> linear bottleneck ('ae') or Gaussian heads ('vae') -> transposed-conv decoder.
    See the module docstring for the layers, shapes, and which parts run in training and in sampling."""

    def __init__(self, in_channels: int = 1, image_size: int = 32, hidden_dims=(32, 64, 128, 256, 512),
                 latent_dim: int = 16, variant: str = "vae", slope: float = 0.01, dtype=np.float32, rng=None):
        super().__init__()
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if variant not in VARIANTS:
            raise ValueError(f"ConvVAE: variant must be one of {VARIANTS}, got {variant!r}")
        if not hidden_dims or min(hidden_dims) <= 0 or in_channels <= 0 or latent_dim <= 0:
            raise ValueError(f"ConvVAE: in_channels, latent_dim and every hidden dim must be positive, got "
                             f"in_channels={in_channels}, latent_dim={latent_dim}, hidden_dims={hidden_dims}")
        shrink = 2 ** len(hidden_dims)
        if image_size % shrink:
            raise ValueError(f"ConvVAE: image_size {image_size} must be a multiple of 2^{len(hidden_dims)} = "
                             f"{shrink} (one halving per hidden dim, and the decoder doubles back exactly)")
        self.in_channels, self.image_size, self.hidden_dims = in_channels, image_size, hidden_dims
        self.latent_dim, self.variant = latent_dim, variant
        self.bottleneck_size = image_size // shrink                   # s
        flat = hidden_dims[-1] * self.bottleneck_size ** 2             # D

        # encoder: (N, C, S, S) -> (N, h_L, s, s)
        blocks, channels = [], in_channels
        for h in hidden_dims:
            blocks.append(_block(nets.Conv2d(channels, h, 3, stride=2, padding=1, dtype=dtype, rng=rng),
                                 h, slope, dtype))
            channels = h
        self.encoder = nets.Sequential(*blocks)

        # bottleneck: only the heads this variant uses exist (so every parameter is trained)
        if variant == "ae":
            self.z_simple = nets.Linear(flat, latent_dim, dtype=dtype, rng=rng)   # (N, D) -> (N, Z)
        else:
            self.z_mu = nets.Linear(flat, latent_dim, dtype=dtype, rng=rng)       # (N, D) -> (N, Z)
            self.z_logvar = nets.Linear(flat, latent_dim, dtype=dtype, rng=rng)   # (N, D) -> (N, Z)

        # decoder: (N, Z) -> (N, D) -> (N, h_L, s, s) -> ... -> (N, C, S, S)
        self.decoder_input = nets.Linear(latent_dim, flat, dtype=dtype, rng=rng)
        self.unflatten = nets.Unflatten(1, (hidden_dims[-1], self.bottleneck_size, self.bottleneck_size))
        blocks = []
        for h_in, h_out in zip(hidden_dims[::-1], hidden_dims[::-1][1:]):
            blocks.append(_block(nets.ConvTranspose2d(h_in, h_out, 3, stride=2, padding=1, output_padding=1,
                                                      dtype=dtype, rng=rng), h_out, slope, dtype))
        blocks.append(_block(nets.ConvTranspose2d(hidden_dims[0], hidden_dims[0], 3, stride=2, padding=1,
                                                  output_padding=1, dtype=dtype, rng=rng),
                             hidden_dims[0], slope, dtype))
        self.decoder = nets.Sequential(*blocks)
        self.final_conv = nets.Conv2d(hidden_dims[0], in_channels, 3, padding=1, dtype=dtype, rng=rng)

    # ---------------------------------------------------------------- the three parts
    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"ConvVAE: expected frames of shape (N, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}), got {tuple(x.shape)}")

    def encode(self, x: Tensor):
        """'vae': (mu, logvar), each (N, Z), the parameters of q(z|x);  'ae': the code z, (N, Z)."""
        self._check_input(x)
        h = self.encoder(x)
        h = h.reshape(h.shape[0], -1)                                  # flatten: (N, D)
        if self.variant == "ae":
            return self.z_simple(h)
        return self.z_mu(h), self.z_logvar(h)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, rng: np.random.Generator) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I) from rng (models/vae.py's reparameterize)."""
        return reparameterize(mu, logvar, rng.standard_normal(mu.shape).astype(mu.dtype))

    def decode_logits(self, z: Tensor) -> Tensor:
        """(N, Z) -> (N, C, S, S) pre-sigmoid values (the BCE loss works on these, stably)."""
        h = self.unflatten(self.decoder_input(z))
        return self.final_conv(self.decoder(h))

    def decode(self, z: Tensor) -> Tensor:
        """(N, Z) -> (N, C, S, S) frames in [0, 1]."""
        return F.sigmoid(self.decode_logits(z))

    # ---------------------------------------------------------------- using them
    def _code(self, x: Tensor, rng):
        """(z, mu, logvar); 'ae': mu = z and logvar = None. rng None: z = mu (no sampling)."""
        if self.variant == "ae":
            z = self.encode(x)
            return z, z, None
        mu, logvar = self.encode(x)
        return (mu if rng is None else self.reparameterize(mu, logvar, rng)), mu, logvar

    def forward(self, x: Tensor, rng: np.random.Generator | None = None):
        """(reconstruction in [0, 1], mu, logvar). 'vae': z = mu + sigma eps with eps from `rng`, or z = mu
        when rng is None (a deterministic reconstruction). 'ae': mu is the code z and logvar is None."""
        z, mu, logvar = self._code(x, rng)
        return self.decode(z), mu, logvar

    def loss(self, x, rng: np.random.Generator | None = None, beta: float = 1.0, recon: str = "mse"):
        """Negative ELBO per image, averaged over the batch (the module docstring says why `beta`):
            ELBO_n = E_q[log p(x_n|z)] - KL_n   (maximised),  so  loss = -ELBO = recon + KL  (minimised)
            loss = mean_n [ recon_n + beta * KL_n ]       ('ae': mean_n recon_n, no KL)
            recon_n = sum_pixels (x - x_hat)^2  ('mse')   or   sum_pixels BCE(x_hat, x)  ('bce')
            KL_n    = KL(N(mu_n, sigma_n^2) || N(0, I)) = -1/2 sum_j (1 + logvar - mu^2 - e^logvar) >= 0
        Returns (loss Tensor, {"recon": float, "kl": float, "mse": per-pixel MSE float})."""
        if recon not in RECON_LOSSES:
            raise ValueError(f"ConvVAE.loss: recon must be one of {RECON_LOSSES}, got {recon!r}")
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        n = x.shape[0]
        z, mu, logvar = self._code(x, rng)
        logits = self.decode_logits(z)
        x_hat = F.sigmoid(logits)
        if recon == "mse":
            diff = x_hat - x
            recon_loss = (diff * diff).sum() / n
        else:
            recon_loss = binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        total = recon_loss
        kl_value = 0.0
        if self.variant == "vae":
            kl = gaussian_kl(mu, logvar).mean()                        # (N,) -> batch mean
            total = recon_loss + beta * kl
            kl_value = float(kl)
        mse = float(np.mean((x_hat.data - x.data) ** 2))
        return total, {"recon": float(recon_loss), "kl": kl_value, "mse": mse}

    # ---------------------------------------------------------------- without gradients, in eval mode
    def _eval(self, fn):
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return fn()
        finally:
            self.train(was_training)

    def reconstruct(self, x, batch_size: int = 256) -> np.ndarray:
        """Deterministic reconstructions (z = mu; BatchNorm on running statistics) as an ndarray."""
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        dtype = self.decoder_input.weight.dtype
        parts = [self._eval(lambda b=x[i:i + batch_size]: self.forward(Tensor(b.astype(dtype)))[0].data)
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def encode_mean(self, x, batch_size: int = 256):
        """(mu, logvar) as ndarrays ('ae': (z, None)), in eval mode."""
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        dtype = self.decoder_input.weight.dtype
        mus, logvars = [], []
        for i in range(0, len(x), batch_size):
            _, mu, logvar = self._eval(lambda b=x[i:i + batch_size]: self._code(Tensor(b.astype(dtype)), None))
            mus.append(mu.data)
            logvars.append(None if logvar is None else logvar.data)
        return np.concatenate(mus), (None if logvars[0] is None else np.concatenate(logvars))

    def decode_numpy(self, z, batch_size: int = 256) -> np.ndarray:
        """Decode an (N, Z) ndarray of codes in eval mode -> (N, C, S, S) ndarray in [0, 1]."""
        z = np.asarray(z, dtype=self.decoder_input.weight.dtype)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"ConvVAE: expected codes of shape (N, {self.latent_dim}), got {z.shape}")
        return np.concatenate([self._eval(lambda b=z[i:i + batch_size]: self.decode(Tensor(b)).data)
                               for i in range(0, len(z), batch_size)])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n frames decoded from the prior z ~ N(0, I): only the decoder runs (eval mode, no gradients).
        For 'ae' the same call shows what the AE's decoder makes of prior draws (not frames, in general)."""
        return self.decode_numpy(rng.standard_normal((n, self.latent_dim)))


# ==================================================================== data: frames rendered from gymnasium
def check_config(cfg: ConvVAEConfig) -> None:
    if not 0 < cfg.heldout_fraction < 1:
        raise ValueError(f"--heldout-fraction: expected a number strictly between 0 and 1, got {cfg.heldout_fraction}")
    if cfg.size % 2 ** len(cfg.hidden_dims):
        raise ValueError(f"--size {cfg.size} must be a multiple of 2^{len(cfg.hidden_dims)} "
                         f"(one halving per --hidden-dims entry)")
    resolved_angle_range(cfg)


def resolved_angle_range(cfg: ConvVAEConfig):
    if cfg.angle_range == "auto":
        return 0.3 if cfg.env == "CartPole-v1" else None
    if cfg.angle_range == "none":
        return None
    try:
        return float(cfg.angle_range)
    except ValueError:
        raise ValueError(f"--angle-range: expected auto, none or an angle in radians, got {cfg.angle_range!r}") from None


def load_frames(cfg: ConvVAEConfig, seed: int) -> dict:
    """The frames of this config (rendered once with the run's seed, then read from the cache)."""
    from rl.frames import collect_frames           # gymnasium: imported only when frames are needed
    return collect_frames(cfg.env, num_frames=cfg.num_frames, size=cfg.size, gray=not cfg.rgb,
                          reset_every=cfg.reset_every, angle_range=resolved_angle_range(cfg), seed=seed,
                          crop="auto" if cfg.crop == "auto" else None, cache_dir=cfg.cache_dir)


def split_by_episode(episodes: np.ndarray, fraction: float, rng) -> tuple:
    """(train index, held-out index): whole episodes, because neighbouring frames are nearly identical."""
    unique = np.unique(episodes)
    held = rng.permutation(unique)[:max(1, math.ceil(fraction * len(unique)))]
    is_held = np.isin(episodes, held)
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def load_data(cfg: ConvVAEConfig, seed: int) -> tuple:
    """(training frames, held-out frames) of this config, each (N, C, S, S) in [0, 1]: the frames of
    load_frames, whole episodes held out by the seed's "split" stream."""
    data = load_frames(cfg, seed)
    train, held = split_by_episode(data["episodes"], cfg.heldout_fraction, stream(seed, "split"))
    return data["frames"][train], data["frames"][held]


# ==================================================================== the contract (models/__init__.py)
Config = ConvVAEConfig


def build(cfg: ConvVAEConfig) -> ConvVAE:
    return ConvVAE(in_channels=3 if cfg.rgb else 1, image_size=cfg.size, hidden_dims=cfg.hidden_dims,
                   latent_dim=cfg.latent_dim, variant=cfg.variant)


def build_optimizer(model: ConvVAE, cfg: ConvVAEConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: ConvVAE, optimizer, batch: np.ndarray, rng, cfg: ConvVAEConfig) -> dict:
    """One Adam step on the batch's loss (negative ELBO with weight beta on the KL, or the AE's error)."""
    loss, parts = model.loss(batch, rng=rng, beta=cfg.beta, recon=cfg.recon)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss), "recon": parts["recon"], "kl": parts["kl"]}


def train_epoch(model: ConvVAE, optimizer, data: np.ndarray, rng, cfg: ConvVAEConfig) -> dict:
    """One pass over the frames `data` (N, C, S, S) in [0, 1] in a fresh order: the epoch's mean loss, recon, KL."""
    model.train()
    totals, seen = {"loss": 0.0, "recon": 0.0, "kl": 0.0}, 0
    for batch in iterate_minibatches(data, batch_size=cfg.batch_size, rng=rng):
        for key, value in train_step(model, optimizer, batch, rng, cfg).items():
            totals[key] += value * len(batch)
        seen += len(batch)
    return {key: total / seen for key, total in totals.items()}


def evaluate(model: ConvVAE, data: np.ndarray, rng, cfg: ConvVAEConfig) -> dict:
    """Headline `mse`: the per-pixel MSE of deterministic reconstructions of the frames `data` (z = mu,
    BatchNorm's running statistics; rng unused)."""
    return {"mse": heldout_mse(model, data)}


def heldout_mse(model: ConvVAE, frames: np.ndarray) -> float:
    """Per-pixel MSE of deterministic reconstructions (z = mu, BatchNorm's running statistics)."""
    return float(np.mean((model.reconstruct(frames).astype(np.float64) - frames) ** 2))


def mean_frame_mse(train: np.ndarray, heldout: np.ndarray) -> float:
    """Per-pixel MSE of predicting every held-out frame by the mean training frame (the baseline)."""
    return float(np.mean((heldout.astype(np.float64) - train.mean(axis=0, dtype=np.float64)) ** 2))


NEAREST_SAMPLES = 200           # samples compared with every training frame for prior_nearest_frame_mse


def nearest_frame_mse(images: np.ndarray, frames: np.ndarray) -> float:
    """Mean over the first NEAREST_SAMPLES images of the per-pixel MSE to the nearest of `frames`:
    ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2 for all pairs at once (one matrix product)."""
    a = images[:NEAREST_SAMPLES].reshape(min(len(images), NEAREST_SAMPLES), -1).astype(np.float64)
    b = frames.reshape(len(frames), -1).astype(np.float64)
    squared = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return float(np.maximum(squared.min(axis=1), 0).mean() / a.shape[1])


def squeeze_gray(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) -> (N, H, W); RGB (N, 3, H, W) stays."""
    return images[:, 0] if images.shape[1] == 1 else images
