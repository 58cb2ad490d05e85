r"""WGAN-GP on MNIST (Gulrajani et al., 2017): DCGAN's two networks trained on the Wasserstein distance, the
critic kept 1-Lipschitz by a gradient penalty. One training iteration in two numbered phases.

Why. DCGAN's discriminator estimates the Jensen-Shannon divergence; once it separates real from fake
almost perfectly, that divergence saturates at log 2 and its gradients say little (models/dcgan.py's
"D is winning"). The Wasserstein-1 distance keeps growing with how far apart the two distributions are:
    W(real, fake) = max over 1-Lipschitz f of   E_x[f(x)] - E_z[f(G(z))]        (Kantorovich-Rubinstein)
The critic D plays f: an unbounded score (no sigmoid), and
    critic_loss    = E_z[D(G(z))] - E_x[D(x)] + lambda E_xhat[(||grad_xhat D(x_hat)||_2 - 1)^2]
    generator_loss = -E_z[D(G(z))]
The first two terms of critic_loss are -W_hat, the negative Wasserstein estimate (it should fall towards 0
as the samples improve). The penalty asks for gradient norm 1 at x_hat = e x + (1 - e) G(z), e ~ U[0, 1]
per sample, points between the two distributions (where the optimal critic has norm 1): differentiating
it needs the gradient of a gradient, autodiff.grad(..., create_graph=True).

Architecture. G is DCGAN's generator (with its batch norm). The critic is DCGAN's discriminator as it is
here (build_discriminator: conv, LeakyReLU, max-pool, ..., linear to one score): it has no sigmoid and no
batch norm, as the paper asks (batch norm would mix the samples of a batch, and the penalty is per
sample). n_critic = 5 critic steps per generator step, Adam(betas (0, 0.9)) for both, lambda = 10: the
paper's settings, except the learning rate: 1e-3 (DCGAN's here) instead of the paper's 1e-4, which is
tuned for 200,000 generator steps. In the few hundred a CPU budget allows, 1e-4 leaves G drawing noise:
on seed 1, 300 iterations reach a Frechet distance of 55 at lr 1e-3, 128 at 3e-4 (`--lr 1e-4`: the paper).

Shapes: N batch; D: (N, 1, 28, 28) -> (N, 1) scores; G: (N, 96) noise -> (N, 1, 28, 28) in [-1, 1].
The contract (models/__init__.py) as DCGAN's: the `model` is a GAN (model.D, model.G), the `optimizer` one
Adam per player; a batch of train_step is the real images of one iteration, n_critic batches in a row.
`evaluate`'s headline `critic_loss` is -W_hat on held-out digits and fresh fakes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff
import nets
from autodiff import Tensor, enable_grad, no_grad
from models import dcgan
from models.dcgan import GAN, NOISE_DIM, GANOptimizers, frozen, generate, sample_noise, signed_images
from nets.data import iterate_minibatches
from nets.harness import hp


@dataclass
class WGANGPConfig:
    iterations: int = hp(600, "generator steps (each after n_critic critic steps)", check="positive")
    batch_size: int = hp(64, "real images (and fakes) per critic step", check="positive")
    n_critic: int = hp(5, "critic steps per generator step", check="positive")
    penalty: float = hp(10.0, "lambda, the weight of the gradient penalty", check="positive")
    lr: float = hp(1e-3, "Adam learning rate of the critic and of G (the paper: 1e-4)", check="positive")
    hidden: int = hp(1024, "units of the fully connected hidden layer of the critic and of G", check="positive")
    d_channels: tuple = hp((32, 64), "channels of the critic's two 5x5 convolutions")
    g_channels: tuple = hp((128, 64), "channels of G's 7x7 feature map and of its first transposed convolution")


# ==================================================================== the losses
def wasserstein_estimate(scores_real: Tensor, scores_fake: Tensor) -> Tensor:
    """W_hat = mean D(x) - mean D(G(z)): the critic's estimate of the Wasserstein-1 distance."""
    return scores_real.mean() - scores_fake.mean()


def gradient_penalty(D: nets.Module, real: np.ndarray, fake: np.ndarray, e: np.ndarray) -> Tensor:
    """mean over the batch of (||grad_xhat D(x_hat)||_2 - 1)^2 at x_hat = e real + (1 - e) fake, e (N, 1, 1, 1).
    The gradient is taken with create_graph=True, so the penalty can be differentiated (w.r.t. D's weights)."""
    with enable_grad():                          # a graph even under no_grad (evaluation): D's input gradient
        x_hat = Tensor(e * real + (1 - e) * fake, requires_grad=True)
        grad, = autodiff.grad(D(x_hat).sum(), [x_hat], create_graph=True)     # each score depends on its own x_hat
        norms = (grad.reshape(len(real), -1) ** 2).sum(axis=1).sqrt()
        return ((norms - 1) ** 2).mean()


def critic_step(D: nets.Module, opt_D, real: np.ndarray, fake: np.ndarray, e: np.ndarray, penalty: float) -> tuple:
    """One Adam step of the critic on real images and (constant) fakes: minimise -W_hat + lambda penalty.
    Returns (critic loss -W_hat, penalty) as floats."""
    opt_D.zero_grad()
    minus_w = -wasserstein_estimate(D(Tensor(real)), D(Tensor(fake)))
    gp = gradient_penalty(D, real, fake, e)
    (minus_w + penalty * gp).backward()
    opt_D.step()
    return float(minus_w), float(gp)


def generator_step(D: nets.Module, opt_G, fake: Tensor) -> float:
    """One Adam step of G on -mean D(G(z)); `fake` carries G's graph, D is frozen (no weight gradient)."""
    opt_G.zero_grad()
    with frozen(D):
        g_loss = -D(fake).mean()
        g_loss.backward()
    opt_G.step()
    return float(g_loss)


def wgan_step(D, G, opt_D, opt_G, real_batches: list, rng, cfg: WGANGPConfig) -> dict:
    """One iteration: len(real_batches) = n_critic critic steps, then one generator step. real_batches: arrays
    (B, 1, 28, 28) in [-1, 1]. Noise and interpolation weights come from rng."""
    critic, penalties = [], []
    # (1) n_critic critic steps, each on its own real batch and fresh fakes (G's output as constants)
    for real in real_batches:
        with no_grad():
            fake = G(sample_noise(len(real), NOISE_DIM, rng, real.dtype)).data
        e = rng.uniform(0.0, 1.0, size=(len(real), 1, 1, 1)).astype(real.dtype)
        minus_w, gp = critic_step(D, opt_D, real, fake, e, cfg.penalty)
        critic.append(minus_w)
        penalties.append(gp)
    # (2) one generator step through the updated critic
    g_loss = generator_step(D, opt_G, G(sample_noise(cfg.batch_size, NOISE_DIM, rng, real_batches[0].dtype)))
    return {"critic_loss": float(np.mean(critic)), "penalty": float(np.mean(penalties)), "g_loss": g_loss}


# ==================================================================== the contract (models/__init__.py)
Config = WGANGPConfig


def get_optimizer(module: nets.Module, lr: float = 1e-3) -> nets.Adam:
    """Adam with betas (0, 0.9), the paper's: no momentum (beta1 = 0) for a critic whose target moves."""
    return nets.Adam(module.parameters(), lr=lr, betas=(0.0, 0.9))


def build(cfg: WGANGPConfig) -> GAN:
    """The critic, then G: DCGAN's networks, built by models/dcgan.py's `build` from the same config fields."""
    return dcgan.build(cfg)


def build_optimizer(model: GAN, cfg: WGANGPConfig) -> GANOptimizers:
    return GANOptimizers(model, cfg.lr, get_optimizer)


def train_step(model: GAN, optimizer: GANOptimizers, batch: np.ndarray, rng, cfg: WGANGPConfig) -> dict:
    """One iteration on real images `batch` in [-1, 1]: n_critic critic steps on its n_critic consecutive parts
    (batch_size each for a full batch), then a generator step; noise and interpolation weights from rng."""
    parts = [part for part in np.array_split(batch, cfg.n_critic) if len(part)]
    return wgan_step(model.D, model.G, optimizer.D, optimizer.G, parts, rng, cfg)


def train_epoch(model: GAN, optimizer: GANOptimizers, data: np.ndarray, rng, cfg: WGANGPConfig) -> dict:
    """One pass over the digits `data` in [0, 1] in a fresh order, n_critic * batch_size real images per iteration
    (an incomplete last one is dropped); the epoch's mean critic_loss, penalty and g_loss."""
    model.train()
    per_iteration = cfg.n_critic * cfg.batch_size
    steps = [train_step(model, optimizer, real, rng, cfg)
             for real in iterate_minibatches(signed_images(data), batch_size=per_iteration, rng=rng, drop_last=True)]
    return {key: float(np.mean([step[key] for step in steps])) for key in ("critic_loss", "penalty", "g_loss")}


def train_iteration(model: GAN, optimizer: GANOptimizers, images: np.ndarray, iteration: int, stream,
                    cfg: WGANGPConfig) -> dict:
    """Iteration `iteration` of a run (scripts/cli/wgan_gp.py) on images (N, 1, 28, 28) in [-1, 1]: its
    n_critic * batch_size real images are the next ones of a fresh shuffle every epoch (a partial tail is
    dropped), its noise from its own stream, so a resumed run draws what it would have."""
    per_iteration = cfg.n_critic * cfg.batch_size
    epoch, position = divmod(iteration, len(images) // per_iteration)
    order = stream("shuffle", epoch).permutation(len(images))
    real = images[order[position * per_iteration:(position + 1) * per_iteration]]
    return train_step(model, optimizer, real, stream("noise", iteration), cfg)


def evaluate(model: GAN, data: np.ndarray, rng, cfg: WGANGPConfig, *, batch_size: int = 500) -> dict:
    """Headline `critic_loss` = -W_hat on the held-out digits `data` in [0, 1] and as many fakes G(z), z from rng
    (G in eval mode, nothing updated); `wasserstein_estimate` = W_hat; `penalty` on their interpolates."""
    real = signed_images(data)
    fake = generate(model.G, sample_noise(len(real), model.noise_dim, rng, real.dtype))
    with no_grad():
        scores_real, scores_fake = (Tensor(np.concatenate([model.D(Tensor(x[i:i + batch_size])).data
                                                           for i in range(0, len(x), batch_size)]))
                                    for x in (real, fake))
    w = float(wasserstein_estimate(scores_real, scores_fake))
    e = rng.uniform(0.0, 1.0, size=(len(real), 1, 1, 1)).astype(real.dtype)
    gp = _batched_penalty(model.D, real, fake, e, batch_size)
    return {"critic_loss": -w, "wasserstein_estimate": w, "penalty": gp}


def _batched_penalty(D, real, fake, e, batch_size: int) -> float:
    """The penalty's mean over all samples, computed batch_size at a time."""
    total = sum(float(gradient_penalty(D, real[i:i + batch_size], fake[i:i + batch_size], e[i:i + batch_size]))
                * len(real[i:i + batch_size]) for i in range(0, len(real), batch_size))
    return total / len(real)
