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

The contract (models/__init__.py) at the end: the `model` is a GAN, a small Module holding D and G, and the
`optimizer` is a GANOptimizers, holding one Adam for D and one for G (each player's step moves only its own
parameters). `data` is the digits as load_mnist returns them, (N, 1, 28, 28) or (N, 784) in [0, 1]
(`train_step`'s batch is already in [-1, 1]). A GAN has no likelihood: `evaluate` reports `d_loss`, D's loss on
held-out digits and fresh fakes without updating anything (2 ln 2 = 1.39 at the game's equilibrium
D = 1/2, near 0 when D wins), with `g_loss`, `d_real` = mean D(x) and `d_fake` = mean D(G(z)).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.data import iterate_minibatches, to_signed
from nets.harness import hp
from nets.losses import binary_cross_entropy_with_logits

NOISE_DIM = 96


@dataclass
class DCGANConfig:
    iterations: int = hp(3000, "training iterations (one D step + one G step each)", check="positive")
    batch_size: int = hp(128, "real images per D step (and fakes per step)", check="positive")
    lr: float = hp(1e-3, "Adam learning rate of D and of G", check="positive")
    hidden: int = hp(1024, "units of the fully connected hidden layer of D and of G", check="positive")
    d_channels: tuple = hp((32, 64), "channels of D's two 5x5 convolutions")
    g_channels: tuple = hp((128, 64), "channels of G's 7x7 feature map and of its first transposed convolution")


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


def get_optimizer(model: nets.Module, lr: float = 1e-3) -> nets.Adam:
    """Adam with betas (0.5, 0.999): the DCGAN paper's beta1 = 0.5 (less momentum than the usual 0.9,
    because the other player keeps moving the target)."""
    return nets.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))


def bce_loss(logits: Tensor, targets) -> Tensor:
    """Mean binary cross-entropy from logits, softplus(a) - t a (nets.losses has the derivation)."""
    return binary_cross_entropy_with_logits(logits, targets, reduction="mean")


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), each averaged over its batch: real images are labelled 1, fakes 0.
    Minimising it is D maximising log D(x) + log(1 - D(G(z)))."""
    ### BEGIN SOLUTION gan_discriminator_loss
    ### task: BCE with real images labelled 1 and fakes labelled 0
    ### hint: discriminator_loss' docstring: -log D(x) - log(1 - D(G(z)))
    ones = np.ones(logits_real.shape, logits_real.dtype)
    zeros = np.zeros(logits_fake.shape, logits_fake.dtype)
    return bce_loss(logits_real, ones) + bce_loss(logits_fake, zeros)
    ### END SOLUTION


def generator_loss(logits_fake: Tensor) -> Tensor:
    """Non-saturating: -log D(G(z)) = BCE(logits_fake, 1), i.e. G maximises log D(G(z))."""
    ### BEGIN SOLUTION gan_generator_loss
    ### task: the non-saturating generator loss
    ### hint: generator_loss' docstring: -log D(G(z)) = BCE(logits_fake, 1)
    return bce_loss(logits_fake, np.ones(logits_fake.shape, logits_fake.dtype))
    ### END SOLUTION


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


def game_step(D: nets.Module, G: nets.Module, opt_D, opt_G, real: np.ndarray, noise: Tensor) -> tuple:
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


# ==================================================================== the contract (models/__init__.py)
Config = DCGANConfig


class GAN(nets.Module):
    """The contract's `model`: D, the discriminator, and G, the generator (state_dict keys D.* and G.*)."""

    def __init__(self, D: nets.Sequential, G: nets.Sequential):
        super().__init__()
        self.D, self.G = D, G

    @property
    def noise_dim(self) -> int:
        return self.G[0].in_features


class GANOptimizers:
    """The contract's `optimizer`: one Adam for D and one for G (`make(module, lr)`, default get_optimizer),
    saved side by side."""

    def __init__(self, model: GAN, lr: float, make=get_optimizer):
        self.D, self.G = make(model.D, lr), make(model.G, lr)

    def state_dict(self) -> dict:
        return {f"{player}.{key}": value for player in ("D", "G")
                for key, value in getattr(self, player).state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for player in ("D", "G"):
            getattr(self, player).load_state_dict(
                {key[2:]: value for key, value in state.items() if key.startswith(player + ".")})


def build(cfg: DCGANConfig) -> GAN:
    """D, then G (initial weights from nets' seeded generator, in that order)."""
    if len(cfg.d_channels) != 2 or len(cfg.g_channels) != 2:
        raise ValueError(f"DCGAN: d_channels and g_channels take two numbers each, got {cfg.d_channels} and "
                         f"{cfg.g_channels}")
    return GAN(build_discriminator(cfg.d_channels, cfg.hidden), build_generator(NOISE_DIM, cfg.hidden, cfg.g_channels))


def build_optimizer(model: GAN, cfg: DCGANConfig) -> GANOptimizers:
    return GANOptimizers(model, cfg.lr)


def train_step(model: GAN, optimizer: GANOptimizers, batch: np.ndarray, rng, cfg: DCGANConfig) -> dict:
    """One iteration of the game (game_step) on real images `batch` (B, 1, 28, 28) in [-1, 1], noise from rng."""
    d_loss, g_loss = game_step(model.D, model.G, optimizer.D, optimizer.G, batch,
                               sample_noise(len(batch), model.noise_dim, rng))
    return {"d_loss": d_loss, "g_loss": g_loss}


def signed_images(data: np.ndarray) -> np.ndarray:
    """load_mnist's digits in [0, 1] -> (N, 1, 28, 28) in [-1, 1], tanh's range."""
    return to_signed(data).reshape(len(data), 1, 28, 28)


def train_epoch(model: GAN, optimizer: GANOptimizers, data: np.ndarray, rng, cfg: DCGANConfig) -> dict:
    """One pass over the digits `data` in [0, 1] in a fresh order (the last incomplete batch is dropped: every
    batch has batch_size images for BatchNorm); the epoch's mean d_loss and g_loss."""
    model.train()
    losses = [train_step(model, optimizer, real, rng, cfg)
              for real in iterate_minibatches(signed_images(data), batch_size=cfg.batch_size, rng=rng, drop_last=True)]
    return {key: float(np.mean([step[key] for step in losses])) for key in ("d_loss", "g_loss")}


def train_iteration(model: GAN, optimizer: GANOptimizers, images: np.ndarray, iteration: int, stream,
                    cfg: DCGANConfig) -> dict:
    """Iteration `iteration` of a run (scripts/cli/dcgan.py) on images (N, 1, 28, 28) in [-1, 1]: the batch comes
    from a fresh shuffle every epoch (the last incomplete batch is dropped), the noise from its own stream, so a
    resumed run draws what it would have. stream(purpose, *position) -> np.random.Generator (the run's)."""
    epoch, batch = divmod(iteration, len(images) // cfg.batch_size)
    order = stream("shuffle", epoch).permutation(len(images))
    real = images[order[batch * cfg.batch_size:(batch + 1) * cfg.batch_size]]
    return train_step(model, optimizer, real, stream("noise", iteration), cfg)


def evaluate(model: GAN, data: np.ndarray, rng, cfg: DCGANConfig, *, batch_size: int = 500) -> dict:
    """Headline `d_loss`: D's loss on the held-out digits `data` in [0, 1] and as many fakes G(z), z from rng,
    with nothing updated (G in eval mode); `g_loss` = -log D(G(z)); `d_real`, `d_fake`: mean D(x), mean D(G(z))."""
    real = signed_images(data)
    fake = generate(model.G, sample_noise(len(real), model.noise_dim, rng))
    with no_grad():
        logits_real, logits_fake = (Tensor(np.concatenate([model.D(Tensor(x[i:i + batch_size])).data
                                                           for i in range(0, len(x), batch_size)]))
                                    for x in (real, fake))
        return {"d_loss": float(discriminator_loss(logits_real, logits_fake)),
                "g_loss": float(generator_loss(logits_fake)),
                "d_real": float(F.sigmoid(logits_real).data.mean()), "d_fake": float(F.sigmoid(logits_fake).data.mean())}
