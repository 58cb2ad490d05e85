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
k = 1 is the ELBO; the bound tightens as k grows. `log_likelihood(x, k)` returns it per example.

Randomness: every method that draws noise takes `rng` (a np.random.Generator); without one it uses the
project's seeded generator `nets.get_rng()` (set by `nets.manual_seed`), never NumPy's global state.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.losses import binary_cross_entropy_with_logits, gaussian_kl

LOG_2PI = math.log(2 * math.pi)


class ELBOTerms(NamedTuple):
    """What `loss` returns: three Tensors of shape (N,), nats per example, with
    neg_elbo = recon + kl.  Train on `neg_elbo.mean()`."""
    neg_elbo: Tensor    # -ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z))
    recon: Tensor       # -log p(x|z) at the sampled z: BCE summed over pixels (>= 0)
    kl: Tensor          # KL(q(z|x) || N(0, I)) in closed form (>= 0)


class Bounds(NamedTuple):
    """What `bounds` returns: float64 arrays (N,) of lower bounds on log p(x) in nats (higher is better)."""
    elbo: np.ndarray    # E_q[log p(x|z)] - KL, the reconstruction averaged over the k samples
    iwae: np.ndarray    # log (1/k) sum_i p(x, z_i) / q(z_i | x)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), per row."""
    return gaussian_kl(mu, logvar, axis=1)        # nets/losses.py, the one implementation


def reparameterize(mu: Tensor, logvar: Tensor, eps) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) given: z is differentiable in mu and logvar."""
    sigma = (0.5 * logvar).exp()   # sigma = exp(0.5 * logvar): the standard deviation, NOT the variance
    return mu + sigma * Tensor(np.asarray(eps, dtype=mu.dtype))


class VAE(nets.Module):
    """MLP VAE with a Bernoulli decoder: VAE(input_dim=784, hidden=400, latent=20).

    `condition_dim` (keyword, default 0) appends a vector of that width to the encoder's and the
    decoder's input; the plain VAE has none. models.cvae.CVAE uses it for the one-hot class label.

    Parameters (in order): encoder_hidden (hidden, input_dim [+ condition_dim]), encoder_mu and
    encoder_logvar (latent, hidden), decoder_hidden (hidden, latent [+ condition_dim]),
    decoder_logits (input_dim, hidden); each Linear has PyTorch's default initialisation.
    """

    def __init__(self, input_dim: int = 784, hidden: int = 400, latent: int = 20, *,
                 condition_dim: int = 0, dtype=np.float32, rng=None):
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden", hidden), ("latent", latent)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {value!r}")
        self.input_dim, self.hidden, self.latent, self.condition_dim = input_dim, hidden, latent, condition_dim
        # recognition model q(z | x): one hidden layer, then the two heads mu and log sigma^2
        self.encoder_hidden = nets.Linear(input_dim + condition_dim, hidden, dtype=dtype, rng=rng)
        self.encoder_mu = nets.Linear(hidden, latent, dtype=dtype, rng=rng)
        self.encoder_logvar = nets.Linear(hidden, latent, dtype=dtype, rng=rng)
        # generative model p(x | z): one hidden layer, then 784 Bernoulli logits
        self.decoder_hidden = nets.Linear(latent + condition_dim, hidden, dtype=dtype, rng=rng)
        self.decoder_logits = nets.Linear(hidden, input_dim, dtype=dtype, rng=rng)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, hidden={self.hidden}, latent={self.latent}"

    @property
    def dtype(self):
        return self.encoder_hidden.weight.dtype

    # ---------------------------------------------------------------- the two networks
    def encode(self, x, y=None) -> tuple:
        """q(z | x): returns (mu, logvar), each a Tensor (N, latent); logvar = log sigma^2."""
        x, c = self._inputs(x, y)
        h = F.relu(self.encoder_hidden(self._join(x, c)))
        return self.encoder_mu(h), self.encoder_logvar(h)

    def decode(self, z, y=None) -> Tensor:
        """p(x | z): the Bernoulli logits, a Tensor (N, input_dim). sigmoid(logits) = pixel means."""
        z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, dtype=self.dtype))
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"{type(self).__name__}.decode: expected z of shape (N, {self.latent}), "
                             f"got {z.shape}")
        c = self._condition(y, len(z))
        h = F.relu(self.decoder_hidden(self._join(z, c)))
        return self.decoder_logits(h)

    def forward(self, x, y=None, *, rng=None, eps=None) -> tuple:
        """One pass x -> (mu, logvar) -> z = mu + sigma * eps -> logits. Returns (logits, mu, logvar)."""
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, self._noise(mu.shape, rng, eps))
        return self.decode(z, y), mu, logvar

    # ---------------------------------------------------------------- the loss: negative ELBO
    def loss(self, x, y=None, *, rng=None, eps=None) -> ELBOTerms:
        """Negative ELBO per example with one reparameterised sample: ELBOTerms(neg_elbo, recon, kl),
        Tensors (N,) in nats. x: (N, input_dim) (or (N, 1, 28, 28)) with values in [0, 1], binary for a
        true likelihood. `eps` (N, latent) fixes the noise (for gradient checks); else drawn from `rng`."""
        x_tensor, _ = self._inputs(x, y)
        logits, mu, logvar = self.forward(x_tensor, y, rng=rng, eps=eps)
        # reconstruction: -log p(x | z) = sum over the pixels of BCE(logits, x)        (>= 0)
        recon = binary_cross_entropy_with_logits(logits, x_tensor, reduction="none").sum(axis=1)
        # regulariser: KL(q(z | x) || N(0, I)) in closed form                           (>= 0)
        kl = kl_to_standard_normal(mu, logvar)
        # negative ELBO = -(E_q[log p(x | z)] - KL) = recon + kl
        return ELBOTerms(recon + kl, recon, kl)

    # ---------------------------------------------------------------- generating
    def generate(self, z, y=None) -> np.ndarray:
        """Pixel probabilities sigmoid(decoder(z)) for given latents z (N, latent): ndarray (N, input_dim)."""
        with no_grad():
            return F.sigmoid(self.decode(z, y)).data

    def sample(self, n: int, y=None, *, rng=None) -> np.ndarray:
        """n images from the model: z ~ N(0, I), then the Bernoulli means sigmoid(logits) in [0, 1]
        (what one displays; draw x ~ Bernoulli of them for binary samples). ndarray (n, input_dim)."""
        z = nets.get_rng(rng).standard_normal((n, self.latent)).astype(self.dtype)
        return self.generate(z, y)

    def reconstruct(self, x, y=None) -> np.ndarray:
        """Decoder means at the posterior mean z = mu(x): deterministic, ndarray (N, input_dim) in [0, 1]."""
        with no_grad():
            mu, _ = self.encode(x, y)
            return self.generate(mu.data, y)

    # ---------------------------------------------------------------- evaluating: bounds on log p(x)
    def bounds(self, x, y=None, *, k: int = 100, rng=None, rows_per_chunk: int = 8192) -> Bounds:
        """The ELBO and the importance-weighted bound with k samples of q(z | x), per example (float64).

        Computed in chunks of about `rows_per_chunk` decoder rows (k * examples), without a graph:
            log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x),  z_i = mu + sigma * eps_i
            iwae    = logsumexp_i(log w_i) - log k
            elbo    = mean_i log p(x | z_i) - KL(q(z | x) || N(0, I))   (closed-form KL: less noise).
        For binary x these bound log p(x). For grey levels x in [0, 1], "log p(x | z)" is minus the
        cross-entropy against the grey levels, the expected log p of binary draws x' ~ Bernoulli(x)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"bounds: k must be a positive integer, got {k!r}")
        x_all, _ = self._inputs(x, y)
        x_all = x_all.data
        labels = None if y is None else self._labels_array(y, len(x_all))
        rng = nets.get_rng(rng)
        step = max(1, rows_per_chunk // k)
        elbo, iwae = np.empty(len(x_all)), np.empty(len(x_all))
        with no_grad():
            for start in range(0, len(x_all), step):
                xb = x_all[start:start + step]                       # (B, D)
                yb = None if labels is None else labels[start:start + step]
                mu, logvar = (t.data for t in self.encode(xb, yb))   # (B, m) each
                sigma = np.exp(0.5 * logvar)                         # standard deviation
                eps = rng.standard_normal((k,) + mu.shape).astype(mu.dtype)
                z = mu + sigma * eps                                 # (k, B, m)
                yk = None if yb is None else np.tile(yb, k)
                logits = self.decode(z.reshape(-1, self.latent), yk).data.reshape(k, len(xb), -1)
                # log p(x | z) = -sum_d BCE(l_d, x_d)         (Bernoulli log-likelihood of the pixels)
                log_px_z = -_bce_with_logits_sum(logits, xb)        # (k, B)
                log_pz = -0.5 * np.sum(z.astype(np.float64) ** 2 + LOG_2PI, axis=-1)
                log_qz = -0.5 * np.sum(eps.astype(np.float64) ** 2 + logvar + LOG_2PI, axis=-1)
                log_w = log_px_z + log_pz - log_qz
                top = log_w.max(axis=0)
                iwae[start:start + len(xb)] = top + np.log(np.mean(np.exp(log_w - top), axis=0))
                kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1, dtype=np.float64)
                elbo[start:start + len(xb)] = log_px_z.mean(axis=0) - kl
        return Bounds(elbo, iwae)

    def log_likelihood(self, x, y=None, *, k: int = 100, rng=None) -> np.ndarray:
        """Importance-weighted lower bound on log p(x) per example, float64 (N,), nats:
        log (1/k) sum_i p(x, z_i) / q(z_i | x). k = 1 gives a (single-sample) ELBO estimate."""
        return self.bounds(x, y, k=k, rng=rng).iwae

    # ---------------------------------------------------------------- input checking and conditioning
    def _inputs(self, x, y) -> tuple:
        """x as a Tensor (N, input_dim) of the model's dtype, and the condition array (or None)."""
        if isinstance(x, Tensor):
            if x.ndim == 2 and x.shape[1] == self.input_dim:
                return x, self._condition(y, len(x))
            x = x.data
        x = np.asarray(x)
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.input_dim:
            raise ValueError(f"{type(self).__name__}: expected images of shape (N, {self.input_dim}) "
                             f"(or (N, ...) with {self.input_dim} values each), got {x.shape}")
        x = x.reshape(len(x), self.input_dim).astype(self.dtype, copy=False)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{type(self).__name__}: pixels must lie in [0, 1] (Bernoulli decoder), "
                             f"got values in [{x.min()}, {x.max()}]")
        return Tensor(x), self._condition(y, len(x))

    def _condition(self, y, n: int):
        """The vector appended to the networks' inputs: none for the plain VAE (CVAE: one-hot labels)."""
        if y is not None:
            raise TypeError(f"{type(self).__name__} is unconditional and takes no labels; "
                            f"use models.cvae.CVAE for a label-conditioned model")
        return None

    def _labels_array(self, y, n: int):
        return y

    def _join(self, v: Tensor, c) -> Tensor:
        return v if c is None else F.concatenate([v, Tensor(c.astype(v.dtype, copy=False))], axis=1)

    def _noise(self, shape: tuple, rng, eps) -> np.ndarray:
        if eps is not None:
            eps = np.asarray(eps.data if isinstance(eps, Tensor) else eps)
            if eps.shape != tuple(shape):
                raise ValueError(f"{type(self).__name__}: eps must have shape {tuple(shape)}, got {eps.shape}")
            return eps
        return nets.get_rng(rng).standard_normal(shape).astype(self.dtype)


def _bce_with_logits_sum(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_d BCE(l_d, x_d) over the last axis in float64, for logits (k, B, D) and targets x (B, D):
        BCE(l, x) = softplus(l) - l x,   softplus(l) = max(l, 0) + log(1 + e^-|l|)   (stable for any l).
    Written with in-place operations: on 10,000 test images x k samples this is the evaluation's hot loop."""
    l_dot_x = np.einsum("kbd,bd->kb", logits, x, dtype=np.float64)
    softplus = np.abs(logits)
    np.negative(softplus, out=softplus)
    np.exp(softplus, out=softplus)
    softplus += 1
    np.log(softplus, out=softplus)                   # log(1 + e^-|l|), in (0, log 2]
    softplus += np.maximum(logits, 0)
    return softplus.sum(axis=-1, dtype=np.float64) - l_dot_x
