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

Where the code is: the reparameterisation z = mu + sigma * eps with sigma = exp(0.5 * logvar) (the
standard deviation), the loss, the sampling and the importance-weighted bound are the VAE's
(models/vae.py); this class supplies the label as the condition, and every method requires it.
"""
from __future__ import annotations

import numpy as np

from autodiff import Tensor
from nets.data import one_hot
from .vae import VAE, ELBOTerms, Bounds


class CVAE(VAE):
    """CVAE(input_dim=784, num_classes=10, hidden=500, latent=20): the VAE with onehot(y) appended to
    the encoder's input (input_dim + num_classes wide) and to the decoder's input (latent + num_classes).

    Labels `y` are integers in 0..num_classes-1: an array (N,) or one int for the whole batch."""

    def __init__(self, input_dim: int = 784, num_classes: int = 10, hidden: int = 500, latent: int = 20, *,
                 dtype=np.float32, rng=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"CVAE: num_classes must be a positive integer, got {num_classes!r}")
        super().__init__(input_dim, hidden, latent, condition_dim=num_classes, dtype=dtype, rng=rng)
        self.num_classes = num_classes

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.num_classes}"

    # ---------------------------------------------------------------- the VAE's methods, y required
    def encode(self, x, y) -> tuple:
        """q(z | x, y): (mu, logvar), Tensors (N, latent)."""
        return super().encode(x, y)

    def decode(self, z, y) -> Tensor:
        """p(x | z, y): Bernoulli logits (N, input_dim)."""
        return super().decode(z, y)

    def forward(self, x, y, *, rng=None, eps=None) -> tuple:
        return super().forward(x, y, rng=rng, eps=eps)

    def loss(self, x, y, *, rng=None, eps=None) -> ELBOTerms:
        """-ELBO(x | y) per example with one reparameterised sample: ELBOTerms(neg_elbo, recon, kl),
        Tensors (N,), neg_elbo = recon + kl (see the module docstring)."""
        return super().loss(x, y, rng=rng, eps=eps)

    def generate(self, z, y) -> np.ndarray:
        """Pixel probabilities for latents z (N, latent) and labels y: ndarray (N, input_dim)."""
        return super().generate(z, y)

    def sample(self, n: int, y, *, rng=None) -> np.ndarray:
        """n images of class y (one int, or an array (n,)): z ~ N(0, I), Bernoulli means in [0, 1]."""
        return super().sample(n, y, rng=rng)

    def reconstruct(self, x, y) -> np.ndarray:
        """Decoder means at z = mu(x, y): ndarray (N, input_dim) in [0, 1]."""
        return super().reconstruct(x, y)

    def bounds(self, x, y, *, k: int = 100, rng=None, rows_per_chunk: int = 8192) -> Bounds:
        """ELBO and importance-weighted bound on log p(x | y) per example (float64)."""
        return super().bounds(x, y, k=k, rng=rng, rows_per_chunk=rows_per_chunk)

    def log_likelihood(self, x, y, *, k: int = 100, rng=None) -> np.ndarray:
        """log (1/k) sum_i p(x, z_i | y) / q(z_i | x, y) per example: float64 (N,), nats."""
        return super().log_likelihood(x, y, k=k, rng=rng)

    # ---------------------------------------------------------------- the condition: one-hot labels
    def _labels_array(self, y, n: int) -> np.ndarray:
        if y is None:
            raise TypeError("CVAE needs the class labels y (ints in 0..num_classes-1) for this call")
        labels = np.asarray(y.data if isinstance(y, Tensor) else y)
        if labels.ndim == 0:
            labels = np.full(n, labels)
        if labels.shape != (n,):
            raise ValueError(f"CVAE: expected labels of shape ({n},) (or one int), got {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise ValueError(f"CVAE: labels must be integers 0..{self.num_classes - 1}, "
                             f"got dtype {labels.dtype}")
        return labels

    def _condition(self, y, n: int) -> np.ndarray:
        """onehot(y): (n, num_classes), appended to the encoder's and the decoder's input."""
        labels = self._labels_array(y, n)
        try:
            return one_hot(labels, self.num_classes).astype(self.dtype, copy=False)
        except ValueError as error:
            raise ValueError(f"CVAE: {error}") from None
