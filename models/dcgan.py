r"""DCGAN on MNIST: noise, the two networks, their optimiser and losses, and one training iteration in two
numbered phases.

The game. A generator G maps noise z ~ U[-1, 1]^96 to an image; a discriminator D maps an image to a
logit, D(x) = sigmoid(logit) = its belief that x is real. With x ~ data and z ~ noise,
    D maximises   E_x[log D(x)] + E_z[log(1 - D(G(z)))]          (a binary classifier: real 1, fake 0)
    G maximises   E_z[log D(G(z))]                               (the "non-saturating" generator loss)
Both become binary cross-entropies (BCE) on logits a, minimised:
    discriminator_loss = BCE(a_real, 1) + BCE(a_fake, 0) = -log D(x) - log(1 - D(G(z)))
    generator_loss     = BCE(a_fake, 1)                  = -log D(G(z))

Why non-saturating. The minimax game would have G minimise log(1 - D(G(z))). Early on D rejects G's
samples easily, D(G(z)) ~ 0, and there d/da log(1 - sigmoid(a)) = -sigmoid(a) ~ 0: G gets almost no
gradient exactly when it is worst. With -log D(G(z)) the gradient is -(1 - sigmoid(a)) ~ -1 there,
so G learns fastest when it is most wrong. Both losses have the same fixed point (D(G(z)) = 1/2).

Images are scaled to [-1, 1] (the range of G's tanh): real = 2 * pixel - 1.
Shapes: N batch; D: (N, 1, 28, 28) -> (N, 1) logits; G: (N, 96) noise -> (N, 1, 28, 28) in [-1, 1].
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

import nets
from autodiff import Tensor, no_grad
from nets.harness import hp
from nets.losses import binary_cross_entropy_with_logits

NOISE_DIM = 96


@dataclass
class DCGANConfig:
    iterations: int = hp(3000, "training iterations (one D step + one G step each)", check="positive")
    batch_size: int = hp(128, "real images per D step (and fakes per step)", check="positive")


# ==================================================================== noise, networks, optimiser, losses
def sample_noise(batch_size: int, dim: int = NOISE_DIM, rng=None, dtype=np.float32) -> Tensor:
    """z ~ U[-1, 1]^dim: a (batch_size, dim) Tensor. rng: np.random.Generator, a seed, or None (fresh)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return Tensor(rng.uniform(-1.0, 1.0, size=(batch_size, dim)).astype(dtype))


def _conv_out(size: int, kernel: int) -> int:
    return size - kernel + 1


def build_discriminator(channels: tuple = (32, 64), hidden: int = 1024, image_size: int = 28,
                        dtype=np.float32, rng=None) -> nets.Sequential:
    """D: (N, 1, 28, 28) image -> (N, 1) logit. The defaults (the CS231n DCGAN):
        conv 1->32 k5 -> LeakyReLU(0.01) -> max-pool 2       28 -> 24 -> 12
        conv 32->64 k5 -> LeakyReLU(0.01) -> max-pool 2      12 -> 8 -> 4
        flatten (64*4*4 = 1024) -> linear 1024->1024 -> LeakyReLU(0.01) -> linear 1024->1
    No sigmoid: the losses take logits (stable). Smaller `channels`, `hidden`, `image_size` (>= 16)
    give the tiny copies the tests check gradients on."""
    side = _conv_out(_conv_out(image_size, 5) // 2, 5) // 2
    if side < 1:
        raise ValueError(f"build_discriminator: image_size must be at least 16, got {image_size}")
    c1, c2 = channels
    kw = dict(dtype=dtype, rng=rng)
    return nets.Sequential(
        nets.Conv2d(1, c1, 5, **kw), nets.LeakyReLU(0.01), nets.MaxPool2d(2),
        nets.Conv2d(c1, c2, 5, **kw), nets.LeakyReLU(0.01), nets.MaxPool2d(2),
        nets.Flatten(),
        nets.Linear(c2 * side * side, hidden, **kw), nets.LeakyReLU(0.01),
        nets.Linear(hidden, 1, **kw),
    )


def build_generator(noise_dim: int = NOISE_DIM, hidden: int = 1024, channels: tuple = (128, 64),
                    start_size: int = 7, dtype=np.float32, rng=None) -> nets.Sequential:
    """G: (N, noise_dim) noise -> (N, 1, 28, 28) image in [-1, 1]. The defaults (the CS231n DCGAN):
        linear 96->1024 -> ReLU -> BatchNorm1d
        linear 1024->7*7*128 -> ReLU -> BatchNorm1d -> reshape (128, 7, 7)
        convT 128->64 k4 s2 p1 -> ReLU -> BatchNorm2d           7 -> 14
        convT 64->1 k4 s2 p1 -> tanh                            14 -> 28
    (A k4 s2 p1 transposed convolution exactly doubles the side: (H-1)*2 - 2 + 4 = 2H.)
    The output side is 4 * start_size; smaller arguments give the tests' tiny copies."""
    c1, c2 = channels
    kw = dict(dtype=dtype, rng=rng)
    return nets.Sequential(
        nets.Linear(noise_dim, hidden, **kw), nets.ReLU(), nets.BatchNorm1d(hidden, dtype=dtype),
        nets.Linear(hidden, c1 * start_size * start_size, **kw), nets.ReLU(),
        nets.BatchNorm1d(c1 * start_size * start_size, dtype=dtype),
        nets.Unflatten(1, (c1, start_size, start_size)),
        nets.ConvTranspose2d(c1, c2, 4, stride=2, padding=1, **kw), nets.ReLU(),
        nets.BatchNorm2d(c2, dtype=dtype),
        nets.ConvTranspose2d(c2, 1, 4, stride=2, padding=1, **kw), nets.Tanh(),
    )


def get_optimizer(model: nets.Module) -> nets.Adam:
    """Adam, lr 1e-3, betas (0.5, 0.999): the DCGAN paper's beta1 = 0.5 (less momentum than the usual
    0.9, because the other player keeps moving the target)."""
    return nets.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))


def bce_loss(logits: Tensor, targets) -> Tensor:
    """Mean binary cross-entropy from logits, softplus(a) - t a (nets.losses has the derivation)."""
    return binary_cross_entropy_with_logits(logits, targets, reduction="mean")


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), each averaged over its batch: real images are labelled 1, fakes 0.
    Minimising it is D maximising log D(x) + log(1 - D(G(z)))."""
    ones = np.ones(logits_real.shape, logits_real.dtype)
    zeros = np.zeros(logits_fake.shape, logits_fake.dtype)
    return bce_loss(logits_real, ones) + bce_loss(logits_fake, zeros)


def generator_loss(logits_fake: Tensor) -> Tensor:
    """Non-saturating: -log D(G(z)) = BCE(logits_fake, 1), i.e. G maximises log D(G(z))."""
    return bce_loss(logits_fake, np.ones(logits_fake.shape, logits_fake.dtype))


# ==================================================================== one training step
@contextlib.contextmanager
def frozen(model: nets.Module):
    """Inside the block the model's parameters do not require grad (PyTorch: p.requires_grad_(False)):
    gradients still flow THROUGH the model to its input, but no weight gradient is computed for it."""
    params = model.parameters()
    try:
        for p in params:
            p.requires_grad = False
        yield model
    finally:
        for p in params:
            p.requires_grad = True


def discriminator_step(D: nets.Module, opt_D, real: Tensor, fake: Tensor) -> float:
    """One Adam step of D on real images (label 1) and fakes (label 0). The fakes are DETACHED: no
    gradient reaches G, and G's graph (if any) is left intact for the generator step."""
    opt_D.zero_grad()
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    d_loss.backward()
    opt_D.step()
    return float(d_loss)


def generator_step(D: nets.Module, opt_G, fake: Tensor) -> float:
    """One Adam step of G: `fake` must carry G's graph. D is frozen, so the gradient of -log D(G(z))
    flows through D into G's parameters without computing (or keeping) any weight gradient of D."""
    opt_G.zero_grad()
    with frozen(D):
        g_loss = generator_loss(D(fake))
        g_loss.backward()
    opt_G.step()
    return float(g_loss)


def train_step(D: nets.Module, G: nets.Module, opt_D, opt_G, real: np.ndarray, noise: Tensor) -> tuple:
    """One iteration of the game on real images (N, 1, 28, 28) in [-1, 1] and noise (N, 96).
    Returns (d_loss, g_loss) as floats. D and G should be in training mode.

    G(noise) is computed ONCE, with its graph. Phase (1) trains D on that batch detached; phase (2)
    runs the UPDATED D on the same batch and backpropagates through the kept graph of G. G has not
    changed in between, so this equals the usual loop (a second batch from fresh noise for phase (2))
    in distribution, at half the generator cost; BatchNorm's running statistics in G are updated
    once per iteration instead of twice."""
    fake = G(noise)                                   # (N, 1, 28, 28), graph kept for phase (2)
    # (1) update D on real and detached fake: minimise -log D(x) - log(1 - D(G(z)))
    d_loss = discriminator_step(D, opt_D, Tensor(real), fake)
    # (2) update G: minimise -log D(G(z)) through the updated D
    g_loss = generator_step(D, opt_G, fake)
    return d_loss, g_loss


def train_iteration(D, G, opt_D, opt_G, images: np.ndarray, iteration: int, batch_size: int, stream) -> dict:
    """Iteration `iteration` of training on images (N, 1, 28, 28) in [-1, 1]: the batch comes from a fresh
    shuffle every epoch (the last incomplete batch is dropped), the noise from its own stream.
    stream(purpose, *position) -> np.random.Generator (the run's named streams)."""
    epoch, batch = divmod(iteration, len(images) // batch_size)
    order = stream("shuffle", epoch).permutation(len(images))
    real = images[order[batch * batch_size:(batch + 1) * batch_size]]
    d_loss, g_loss = train_step(D, G, opt_D, opt_G, real, sample_noise(batch_size, NOISE_DIM,
                                                                       stream("noise", iteration)))
    return {"d_loss": d_loss, "g_loss": g_loss}


D_WINS_WINDOW, D_WINS_LOSS = 100, 0.05   # warn when D's loss averages below this over the window


def check_d_wins(state: dict) -> str | None:
    """The warning (once, also appended to state["warnings"]) when D's loss has stayed near 0 over the
    last D_WINS_WINDOW iterations; else None."""
    if state["d_wins_warned"] or len(state["d_loss"]) < D_WINS_WINDOW:
        return None
    mean = float(np.mean(state["d_loss"][-D_WINS_WINDOW:]))
    if mean >= D_WINS_LOSS:
        return None
    it = state["iteration"]
    message = (f"iterations {it - D_WINS_WINDOW + 1}-{it}: D's loss averaged {mean:.4f} (near 0). "
               f"D is winning: it tells real from fake almost perfectly (D(G(z)) ~ 0). G still gets a "
               f"gradient from -log D(G(z)), but only towards whatever D's overconfident decision "
               f"surface currently rejects least, not towards the data: the samples usually stop "
               f"improving or collapse onto a few outputs. Look at the latest samples_iter_*.png. "
               f"Remedies: another --seed, a smaller learning rate or capacity for D, one-sided "
               f"label smoothing (real target 0.9), or noise added to D's inputs.")
    state["warnings"].append(message)
    state["d_wins_warned"] = True
    return message


def generate(G: nets.Module, noise: Tensor, batch_size: int = 500) -> np.ndarray:
    """G's images for the given noise, in EVAL mode (BatchNorm's running statistics), without a graph:
    (N, 1, 28, 28) in [-1, 1]. G's previous mode is restored."""
    was_training = G.training
    G.eval()
    try:
        with no_grad():
            chunks = [G(noise[i:i + batch_size]).data for i in range(0, len(noise), batch_size)]
    finally:
        G.train(was_training)
    return np.concatenate(chunks)

