r"""A variational autoencoder (Kingma & Welling, 2014) with MLP encoder and decoder and a Bernoulli
likelihood for binary images (MNIST: 784 pixels, each 0 or 1).

The model
---------
    prior             p(z)      = N(0, I)                                  z in R^m (m = `latent`)
    decoder           p(x | z)  = prod_d Bernoulli(x_d; sigmoid(l_d)),      l = decoder(z): logits (N, 784)
    encoder (approx.) q(z | x)  = N(mu, diag(sigma^2)),                     (mu, log sigma^2) = encoder(x)
Encoder  x -> Linear(784, hidden) -> ReLU -> Linear(hidden, m) twice (mu and logvar = log sigma^2).
Decoder  z -> Linear(m, hidden) -> ReLU -> Linear(hidden, 784) = logits (no sigmoid: the loss takes logits).

The evidence lower bound (ELBO)
-------------------------------
For any distribution q(z | x),
    log p(x) = log  integral p(x | z) p(z) dz
             = log  E_q[ p(x | z) p(z) / q(z | x) ]
            >=      E_q[ log p(x | z) + log p(z) - log q(z | x) ]             (Jensen: log is concave)
             =      E_q[ log p(x | z) ]  -  KL( q(z | x) || p(z) )  =:  ELBO(x).
The gap is exactly KL(q(z | x) || p(z | x)) >= 0: the bound is tight when q is the true posterior.
    * E_q[log p(x | z)]   the reconstruction term, <= 0 (a log-probability of binary pixels). With one
      reparameterised sample z it is  -sum_d BCE(l_d, x_d)  (binary cross-entropy from logits).
    * KL(q || p)          the regulariser, >= 0, and it is *subtracted*: it pulls q(z | x) towards the prior.
We minimise the NEGATIVE ELBO, in nats per image:
    loss = recon + kl,   recon = sum_d BCE(l_d, x_d) >= 0,   kl = KL(q(z | x) || N(0, I)) >= 0.

The KL in closed form
---------------------
q and p factorise over the m latent dimensions, so the KL is a sum of m one-dimensional KLs. For one
dimension, q = N(mu, sigma^2), p = N(0, 1), using E_q[(z - mu)^2] = sigma^2 and E_q[z^2] = mu^2 + sigma^2:
    KL = E_q[log q(z) - log p(z)]
       = E_q[ -1/2 log 2 pi - 1/2 log sigma^2 - (z - mu)^2 / (2 sigma^2) + 1/2 log 2 pi + z^2 / 2 ]
       = -1/2 log sigma^2 - 1/2 + (mu^2 + sigma^2) / 2,
so  KL(q(z | x) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).

The reparameterisation trick
----------------------------
z ~ N(mu, sigma^2) is written z = mu + sigma * eps with eps ~ N(0, I) drawn outside the graph, so the
sample is a differentiable function of (mu, logvar) and the gradient of the reconstruction term flows
into the encoder. sigma = exp(0.5 * logvar) is the STANDARD DEVIATION (logvar = log sigma^2); using
exp(logvar) (the variance) instead is a classic bug that no gradient check catches.

Honest evaluation: the importance-weighted bound (Burda et al., 2016)
--------------------------------------------------------------------
    log p(x) >= E[ log (1/k) sum_{i=1..k} w_i ],   w_i = p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x).
k = 1 is the ELBO; the bound tightens as k grows. `VAE.bounds(x, k)` returns both per example.

The contract (models/__init__.py) at the end: `train_step` / `train_epoch` train with dynamic binarisation --
every epoch each training image t is replaced by a fresh binary draw x ~ Bernoulli(t) -- then Adam on the
mean negative ELBO of each minibatch; `data` is the grey-level images (N, 784) or (N, 1, 28, 28) in [0, 1].
`evaluate` reports `neg_elbo_nats` (the headline) and `neg_iwae_nats`, nats per image on the grey levels.
models/cvae.py is the same model with the label y written into both networks.

Randomness: every method that draws noise takes `rng` (a np.random.Generator); without one it uses the
project's seeded generator `nets.get_rng()` (set by `nets.manual_seed`), never NumPy's global state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import binarize_dynamic, iterate_minibatches
from nets.harness import hp
from nets.losses import binary_cross_entropy_with_logits, gaussian_kl

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    epochs: int = hp(50, "passes over the training digits", check="positive")
    batch_size: int = hp(128, "images per Adam step", check="positive")
    lr: float = hp(1e-3, "Adam learning rate", check="positive")
    hidden: int = hp(400, "units in the encoder's and the decoder's hidden layer", check="positive")
    latent: int = hp(20, "dimension of z", check="positive")
    num_samples: int = hp(1000, "prior samples written to samples.npz", check="positive")
    iwae_k: int = hp(100, "importance samples for the final validation IWAE bound", check="positive")
    limit: int | None = hp(None, "train on the first N training digits only (for quick tests)", check="positive")


class ELBOTerms(NamedTuple):
    """Three Tensors of shape (N,), nats per example, with neg_elbo = recon + kl."""
    neg_elbo: Tensor    # -ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z))
    recon: Tensor       # -log p(x|z) at the sampled z: BCE summed over pixels (>= 0)
    kl: Tensor          # KL(q(z|x) || N(0, I)) in closed form (>= 0)


class Bounds(NamedTuple):
    """Float64 arrays (N,) of lower bounds on log p(x) in nats (higher is better)."""
    elbo: np.ndarray    # E_q[log p(x|z)] - KL, the reconstruction averaged over the k samples
    iwae: np.ndarray    # log (1/k) sum_i p(x, z_i) / q(z_i | x)


# ==================================================================== the pieces of the ELBO (used by cvae.py too)
def reparameterize(mu: Tensor, logvar: Tensor, eps) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) given: z is differentiable in mu and logvar."""
    ### BEGIN SOLUTION reparameterize
    ### task: z = mu + sigma * eps, with sigma the standard deviation from logvar
    ### hint: reparameterize's docstring, and the module docstring: sigma = exp(0.5 * logvar)
    sigma = (0.5 * logvar).exp()   # sigma = exp(0.5 * logvar): the standard deviation, NOT the variance
    return mu + sigma * Tensor(np.asarray(eps, dtype=mu.dtype))
    ### END SOLUTION


def neg_elbo(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> ELBOTerms:
    """-ELBO per example with one reparameterised sample (the logits were decoded from it)."""
    # reconstruction: -log p(x | z) = sum over the pixels of BCE(logits, x)        (>= 0)
    ### BEGIN SOLUTION neg_elbo
    ### task: -ELBO per example: the pixels' BCE summed, plus the Gaussian KL
    ### hint: the comments of neg_elbo: -ELBO = recon + kl, both >= 0
    recon = binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=1)
    # regulariser: KL(q(z | x) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)   (>= 0)
    kl = gaussian_kl(mu, logvar, axis=1)
    # negative ELBO = -(E_q[log p(x | z)] - KL) = recon + kl
    return ELBOTerms(recon + kl, recon, kl)
    ### END SOLUTION


def importance_bounds(encode, decode, x: np.ndarray, k: int, rng, rows_per_chunk: int = 8192) -> Bounds:
    """The ELBO and the importance-weighted bound with k samples of q(z | x), per example (float64), without
    a graph, in chunks of about `rows_per_chunk` decoder rows. encode(rows) -> (mu, logvar) arrays of the
    examples x[rows]; decode(z, rows) -> logits (k, B, D) for z (k, B, m) of those examples.
        log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x),  z_i = mu + sigma * eps_i
        iwae    = logsumexp_i(log w_i) - log k
        elbo    = mean_i log p(x | z_i) - KL(q(z | x) || N(0, I))   (closed-form KL: less noise).
    For binary x these bound log p(x). For grey levels x in [0, 1], "log p(x | z)" is minus the
    cross-entropy against the grey levels, the expected log p of binary draws x' ~ Bernoulli(x)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"bounds: k must be a positive integer, got {k!r}")
    rng = nets.get_rng(rng)
    step = max(1, rows_per_chunk // k)
    elbo, iwae = np.empty(len(x)), np.empty(len(x))
    with no_grad():
        for start in range(0, len(x), step):
            rows = slice(start, start + step)
            xb = x[rows]                                             # (B, D)
            mu, logvar = encode(rows)                                # (B, m) each
            eps = rng.standard_normal((k,) + mu.shape).astype(mu.dtype)
            z = mu + np.exp(0.5 * logvar) * eps                      # (k, B, m)
            logits = decode(z, rows).astype(np.float64)              # (k, B, D), float64 from here on
            bce = binary_cross_entropy_with_logits(Tensor(logits), np.broadcast_to(xb, logits.shape), reduction="none")
            log_px_z = -bce.data.sum(axis=-1)                        # (k, B): Bernoulli log-likelihood
            log_pz = -0.5 * np.sum(z.astype(np.float64) ** 2 + LOG_2PI, axis=-1)
            log_qz = -0.5 * np.sum(eps.astype(np.float64) ** 2 + logvar + LOG_2PI, axis=-1)
            ### BEGIN SOLUTION iwae_bound
            ### task: the log importance weights and a stable log-mean-exp over the k samples
            ### hint: importance_bounds' docstring, the lines log w_i = ... and iwae = ...
            log_w = log_px_z + log_pz - log_qz
            top = log_w.max(axis=0)
            iwae[rows] = top + np.log(np.mean(np.exp(log_w - top), axis=0))
            ### END SOLUTION
            kl = gaussian_kl(Tensor(mu.astype(np.float64)), Tensor(logvar.astype(np.float64)), axis=1).data
            elbo[rows] = log_px_z.mean(axis=0) - kl
    return Bounds(elbo, iwae)


def check_images(x, input_dim: int, dtype, who: str) -> Tensor:
    """Images (N, input_dim) or (N, ...) with input_dim values each, pixels in [0, 1] -> Tensor (N, input_dim)."""
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != input_dim:
        raise ValueError(f"{who}: expected images of shape (N, {input_dim}) (or (N, ...) with {input_dim} "
                         f"values each), got {x.shape}")
    x = x.reshape(len(x), input_dim).astype(dtype, copy=False)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{who}: pixels must lie in [0, 1] (Bernoulli decoder), got values in "
                         f"[{x.min()}, {x.max()}]")
    return Tensor(x)


def noise(shape: tuple, rng, eps, dtype) -> np.ndarray:
    """eps ~ N(0, I) of `shape` from rng, or the given eps (gradient checks fix it)."""
    if eps is not None:
        eps = np.asarray(eps.data if isinstance(eps, Tensor) else eps)
        if eps.shape != tuple(shape):
            raise ValueError(f"eps must have shape {tuple(shape)}, got {eps.shape}")
        return eps
    return nets.get_rng(rng).standard_normal(shape).astype(dtype)


def check_size(who: str, **sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")


# ==================================================================== the model
class VAE(nets.Module):
    """MLP VAE with a Bernoulli decoder: VAE(input_dim=784, hidden=400, latent=20).

    Parameters (in order): encoder_hidden (hidden, input_dim), encoder_mu and encoder_logvar
    (latent, hidden), decoder_hidden (hidden, latent), decoder_logits (input_dim, hidden); each Linear has
    PyTorch's default initialisation."""

    def __init__(self, input_dim: int = 784, hidden: int = 400, latent: int = 20, *, dtype=np.float32, rng=None):
        super().__init__()
        check_size("VAE", input_dim=input_dim, hidden=hidden, latent=latent)
        self.input_dim, self.hidden, self.latent = input_dim, hidden, latent
        # recognition model q(z | x): one hidden layer, then the two heads mu and log sigma^2
        self.encoder_hidden = nets.Linear(input_dim, hidden, dtype=dtype, rng=rng)    # (hidden, 784)
        self.encoder_mu = nets.Linear(hidden, latent, dtype=dtype, rng=rng)           # (latent, hidden)
        self.encoder_logvar = nets.Linear(hidden, latent, dtype=dtype, rng=rng)       # (latent, hidden)
        # generative model p(x | z): one hidden layer, then 784 Bernoulli logits
        self.decoder_hidden = nets.Linear(latent, hidden, dtype=dtype, rng=rng)       # (hidden, latent)
        self.decoder_logits = nets.Linear(hidden, input_dim, dtype=dtype, rng=rng)    # (784, hidden)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, hidden={self.hidden}, latent={self.latent}"

    @property
    def dtype(self):
        return self.encoder_hidden.weight.dtype

    def encode(self, x) -> tuple:
        """q(z | x): returns (mu, logvar), each a Tensor (N, latent); logvar = log sigma^2."""
        h = F.relu(self.encoder_hidden(check_images(x, self.input_dim, self.dtype, "VAE")))
        return self.encoder_mu(h), self.encoder_logvar(h)

    def decode(self, z) -> Tensor:
        """p(x | z): the Bernoulli logits, a Tensor (N, input_dim). sigmoid(logits) = pixel means."""
        z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, dtype=self.dtype))
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"VAE.decode: expected z of shape (N, {self.latent}), got {z.shape}")
        return self.decoder_logits(F.relu(self.decoder_hidden(z)))

    def loss(self, x, *, rng=None, eps=None) -> ELBOTerms:
        """Negative ELBO per example with one reparameterised sample: ELBOTerms(neg_elbo, recon, kl),
        Tensors (N,) in nats. `eps` (N, latent) fixes the noise (for gradient checks); else drawn from rng."""
        x = check_images(x, self.input_dim, self.dtype, "VAE")
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, noise(mu.shape, rng, eps, self.dtype))
        return neg_elbo(self.decode(z), x, mu, logvar)

    def generate(self, z) -> np.ndarray:
        """Pixel probabilities sigmoid(decoder(z)) for latents z (N, latent): ndarray (N, input_dim)."""
        with no_grad():
            return F.sigmoid(self.decode(z)).data

    def sample(self, n: int, *, rng=None) -> np.ndarray:
        """n images: z ~ N(0, I), then the Bernoulli means in [0, 1]. ndarray (n, input_dim)."""
        return self.generate(nets.get_rng(rng).standard_normal((n, self.latent)).astype(self.dtype))

    def reconstruct(self, x) -> np.ndarray:
        """Decoder means at the posterior mean z = mu(x): ndarray (N, input_dim) in [0, 1]."""
        with no_grad():
            return self.generate(self.encode(x)[0].data)

    def bounds(self, x, *, k: int = 100, rng=None) -> Bounds:
        """ELBO and IWAE bound (k samples) per example, float64; see importance_bounds."""
        x = check_images(x, self.input_dim, self.dtype, "VAE").data
        return importance_bounds(
            lambda rows: tuple(t.data for t in self.encode(x[rows])),
            lambda z, rows: self.decode(z.reshape(-1, self.latent)).data.reshape(z.shape[0], z.shape[1], -1),
            x, k, rng)


# ==================================================================== the contract (models/__init__.py)
Config = VAEConfig


def build(cfg: VAEConfig) -> VAE:
    """The model of a config (initial weights from nets' seeded generator: nets.manual_seed)."""
    return VAE(784, hidden=cfg.hidden, latent=cfg.latent)


def build_optimizer(model: VAE, cfg: VAEConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: VAE, optimizer, batch: np.ndarray, rng, cfg: VAEConfig) -> dict:
    """One Adam step on the mean -ELBO of a batch of binary images (B, 784); the noise eps from rng."""
    terms = model.loss(batch, rng=rng)
    loss = terms.neg_elbo.mean()                   # mean over the batch of -ELBO (nats per image)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss), "recon": float(terms.recon.data.mean()), "kl": float(terms.kl.data.mean())}


def train_epoch(model: VAE, optimizer, data: np.ndarray, rng, cfg: VAEConfig) -> dict:
    """One pass over the grey-level training images `data` (N, 784) or (N, 1, 28, 28) in [0, 1], dynamically
    binarised: the epoch's means of loss, recon and kl (nats per image)."""
    return binarized_epoch(train_step, model, optimizer, data, None, rng, cfg)


def evaluate(model: VAE, data: np.ndarray, rng, cfg: VAEConfig, *, k: int | None = None) -> dict:
    """Headline `neg_elbo_nats`: the negative ELBO on the grey-level images `data`, nats per image, averaged;
    `neg_iwae_nats`: the negative IWAE bound with k samples (default cfg.iwae_k), the tighter of the two."""
    model.eval()
    bounds = model.bounds(data, k=cfg.iwae_k if k is None else k, rng=rng)
    return {"neg_elbo_nats": float(-bounds.elbo.mean()), "neg_iwae_nats": float(-bounds.iwae.mean())}


def binarized_epoch(step, model, optimizer, images: np.ndarray, labels, rng, cfg) -> dict:
    """One pass of `step` over fresh binary draws x ~ Bernoulli(t) of the grey-level images t (a new draw every
    epoch: dynamic binarisation), in batches of cfg.batch_size; with `labels` (the CVAE's) each batch is the
    pair (x, y). Returns the epoch's means of the step's numbers, weighted by batch size."""
    model.train()
    arrays = (binarize_dynamic(images, rng=rng),) + (() if labels is None else (labels,))
    totals, seen = {}, 0
    for batch in iterate_minibatches(*arrays, batch_size=cfg.batch_size, rng=rng):
        size = len(batch[0]) if isinstance(batch, tuple) else len(batch)
        for key, value in step(model, optimizer, batch, rng, cfg).items():
            totals[key] = totals.get(key, 0.0) + value * size
        seen += size
    return {key: total / seen for key, total in totals.items()}
