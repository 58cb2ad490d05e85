r"""A conditional variational autoencoder (Sohn, Lee & Yan, 2015): the VAE of models/vae.py with every
distribution conditioned on the class label y, so one can ask for "a 7".

The model
---------
    prior             p(z | y)     = N(0, I)                (the label does not move the prior)
    decoder           p(x | z, y)  = prod_d Bernoulli(x_d; sigmoid(l_d)),  l = decoder([z, onehot(y)])
    encoder (approx.) q(z | x, y)  = N(mu, diag(sigma^2)),   (mu, log sigma^2) = encoder([x, onehot(y)])
The label enters as a one-hot vector (num_classes wide) concatenated to the encoder's input x and to
the decoder's input z. Otherwise the networks are the VAE's: one ReLU hidden layer each.

The conditional ELBO
--------------------
The VAE's derivation with y carried along. For any q(z | x, y),
    log p(x | y) = log  integral p(x | z, y) p(z | y) dz
                 = log  E_q[ p(x | z, y) p(z | y) / q(z | x, y) ]
                >=      E_q[ log p(x | z, y) ] + E_q[ log p(z | y) - log q(z | x, y) ]     (Jensen)
                 =      E_q[ log p(x | z, y) ]  -  KL( q(z | x, y) || p(z | y) ),
with gap KL(q(z | x, y) || p(z | x, y)) >= 0.
    * E_q[log p(x | z, y)]      reconstruction term (<= 0); one sample: -sum_d BCE(l_d, x_d).
    * KL(q(z | x, y) || p(z|y)) regulariser (>= 0), subtracted from the bound.
Minimised loss, nats per image:  -ELBO = recon + kl  with  recon = sum_d BCE(l_d, x_d) >= 0.

The KL in closed form
---------------------
q factorises over the m latent dimensions and p(z | y) = N(0, I), so the KL is a sum of one-dimensional
KLs between N(mu_j, sigma_j^2) and N(0, 1) (derived in models/vae.py):
    KL(q(z | x, y) || p(z | y)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).

Generating a chosen digit: z ~ N(0, I), then sigmoid(decoder([z, onehot(y)])). Keeping z and changing y
changes the digit but keeps the style (slant, stroke width): the 3 x 10 grid shows exactly that.

Where the code is: the networks and the training step are written out below; the pieces of the ELBO
(reparameterisation z = mu + sigma * eps with sigma = exp(0.5 * logvar), the -ELBO terms, the
importance-weighted bound) and the epoch loop with dynamic binarisation are models/vae.py's functions.
The contract's `data` is the pair (grey-level images (N, 784) or (N, 1, 28, 28), labels (N,)); `evaluate`
reports `neg_elbo_nats` (the headline) and `neg_iwae_nats` of log p(x | y), nats per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import one_hot
from nets.harness import hp
from .vae import (Bounds, ELBOTerms, binarized_epoch, check_images, check_size, importance_bounds, neg_elbo, noise,
                  reparameterize)


@dataclass
class CVAEConfig:
    # latent 2 leaves z room for style only, so the decoder must use the label for the class
    # (with latent 20 the encoder can pass the digit through z and the decoder half-ignores y)
    epochs: int = hp(80, "passes over the training digits", check="positive")
    batch_size: int = hp(100, "images per Adam step", check="positive")
    lr: float = hp(1e-3, "Adam learning rate", check="positive")
    hidden: int = hp(500, "units in the encoder's and the decoder's hidden layer", check="positive")
    latent: int = hp(2, "dimension of z", check="positive")
    num_samples: int = hp(1000, "samples written to samples.npz (labels 0..9 in turn)", check="positive")
    iwae_k: int = hp(100, "importance samples for the final validation IWAE bound", check="positive")
    limit: int | None = hp(None, "train on the first N training digits only (for quick tests)", check="positive")


class CVAE(nets.Module):
    """CVAE(input_dim=784, num_classes=10, hidden=500, latent=20): encoder q(z | x, y) on [x, onehot(y)],
    decoder p(x | z, y) on [z, onehot(y)]. Labels y: ints in 0..num_classes-1, an array (N,) or one int."""

    def __init__(self, input_dim: int = 784, num_classes: int = 10, hidden: int = 500, latent: int = 20, *,
                 dtype=np.float32, rng=None):
        super().__init__()
        check_size("CVAE", input_dim=input_dim, num_classes=num_classes, hidden=hidden, latent=latent)
        self.input_dim, self.num_classes, self.hidden, self.latent = input_dim, num_classes, hidden, latent
        c = num_classes
        self.encoder_hidden = nets.Linear(input_dim + c, hidden, dtype=dtype, rng=rng)   # (hidden, 784 + 10)
        self.encoder_mu = nets.Linear(hidden, latent, dtype=dtype, rng=rng)              # (latent, hidden)
        self.encoder_logvar = nets.Linear(hidden, latent, dtype=dtype, rng=rng)          # (latent, hidden)
        self.decoder_hidden = nets.Linear(latent + c, hidden, dtype=dtype, rng=rng)      # (hidden, latent + 10)
        self.decoder_logits = nets.Linear(hidden, input_dim, dtype=dtype, rng=rng)       # (784, hidden)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, num_classes={self.num_classes}, hidden={self.hidden}, latent={self.latent}"

    @property
    def dtype(self):
        return self.encoder_hidden.weight.dtype

    def onehot(self, y, n: int) -> Tensor:
        """onehot(y) (n, num_classes), with a clear error for missing or out-of-range labels."""
        if y is None:
            raise TypeError("CVAE needs the class labels y (ints in 0..num_classes-1) for this call")
        labels = np.asarray(y.data if isinstance(y, Tensor) else y)
        labels = np.full(n, labels) if labels.ndim == 0 else labels
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"CVAE: expected integer labels of shape ({n},) (or one int), "
                             f"got {labels.dtype} {labels.shape}")
        try:
            return Tensor(one_hot(labels, self.num_classes).astype(self.dtype, copy=False))
        except ValueError as error:
            raise ValueError(f"CVAE: {error}") from None

    def encode(self, x, y) -> tuple:
        """q(z | x, y): (mu, logvar), Tensors (N, latent), from the hidden layer on [x, onehot(y)]."""
        x = check_images(x, self.input_dim, self.dtype, "CVAE")
        h = F.relu(self.encoder_hidden(F.concatenate([x, self.onehot(y, len(x))], axis=1)))
        return self.encoder_mu(h), self.encoder_logvar(h)

    def decode(self, z, y) -> Tensor:
        """p(x | z, y): Bernoulli logits (N, input_dim) from the hidden layer on [z, onehot(y)]."""
        z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, dtype=self.dtype))
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"CVAE.decode: expected z of shape (N, {self.latent}), got {z.shape}")
        h = F.relu(self.decoder_hidden(F.concatenate([z, self.onehot(y, len(z))], axis=1)))
        return self.decoder_logits(h)

    def loss(self, x, y, *, rng=None, eps=None) -> ELBOTerms:
        """-ELBO(x | y) per example with one reparameterised sample: recon + KL(q(z | x, y) || N(0, I))."""
        x = check_images(x, self.input_dim, self.dtype, "CVAE")
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, noise(mu.shape, rng, eps, self.dtype))
        return neg_elbo(self.decode(z, y), x, mu, logvar)

    def generate(self, z, y) -> np.ndarray:
        with no_grad():
            return F.sigmoid(self.decode(z, y)).data

    def sample(self, n: int, y, *, rng=None) -> np.ndarray:
        """n images of class y (one int, or an array (n,)): z ~ N(0, I), Bernoulli means in [0, 1]."""
        return self.generate(nets.get_rng(rng).standard_normal((n, self.latent)).astype(self.dtype), y)

    def reconstruct(self, x, y) -> np.ndarray:
        with no_grad():
            return self.generate(self.encode(x, y)[0].data, y)

    def bounds(self, x, y, *, k: int = 100, rng=None) -> Bounds:
        """ELBO and IWAE bound on log p(x | y) (k samples) per example, float64."""
        x = check_images(x, self.input_dim, self.dtype, "CVAE").data
        labels = np.asarray(y)
        labels = np.full(len(x), labels) if labels.ndim == 0 else labels
        return importance_bounds(
            lambda rows: tuple(t.data for t in self.encode(x[rows], labels[rows])),
            lambda z, rows: self.decode(z.reshape(-1, self.latent), np.tile(labels[rows], len(z))).data
            .reshape(z.shape[0], z.shape[1], -1),
            x, k, rng)


# ==================================================================== the contract (models/__init__.py)
Config = CVAEConfig


def build(cfg: CVAEConfig) -> CVAE:
    return CVAE(784, 10, hidden=cfg.hidden, latent=cfg.latent)


def build_optimizer(model: CVAE, cfg: CVAEConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: CVAE, optimizer, batch: tuple, rng, cfg: CVAEConfig) -> dict:
    """One Adam step on the mean -ELBO(x | y) of a batch (x, y): binary images (B, 784) and labels (B,)."""
    x, y = batch
    terms = model.loss(x, y, rng=rng)
    loss = terms.neg_elbo.mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss), "recon": float(terms.recon.data.mean()), "kl": float(terms.kl.data.mean())}


def train_epoch(model: CVAE, optimizer, data: tuple, rng, cfg: CVAEConfig) -> dict:
    """One epoch over `data` = (grey-level images (N, 784) or (N, 1, 28, 28), labels (N,)), the images
    dynamically binarised (models/vae.py's binarized_epoch)."""
    images, labels = data
    return binarized_epoch(train_step, model, optimizer, images, labels, rng, cfg)


def evaluate(model: CVAE, data: tuple, rng, cfg: CVAEConfig, *, k: int | None = None) -> dict:
    """Headline `neg_elbo_nats`: -ELBO of log p(x | y) on `data` = (grey-level images, labels), nats per image,
    averaged; `neg_iwae_nats`: the negative IWAE bound with k samples (default cfg.iwae_k)."""
    images, labels = data
    model.eval()
    bounds = model.bounds(images, labels, k=cfg.iwae_k if k is None else k, rng=rng)
    return {"neg_elbo_nats": float(-bounds.elbo.mean()), "neg_iwae_nats": float(-bounds.iwae.mean())}
