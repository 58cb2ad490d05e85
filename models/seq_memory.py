r"""The vanishing-gradient experiment: remember the first symbol of a sequence for T steps (seed 003, 4.2).

The task
--------
A sequence x_1 .. x_T: x_1 is one of K "signal" symbols, x_2 .. x_T are drawn uniformly from D other
"distractor" symbols (all one-hot, K + D inputs). After reading the whole sequence the network must name
x_1: logits = Linear(H, K)(h_T), loss = cross-entropy. Chance accuracy is 1/K. Nothing but x_1 carries
information, so the only useful gradient is the one that travels from h_T back to step 1.

Why a vanilla RNN fails as T grows
----------------------------------
With h_t = tanh(a_t), a_t = W_ih x_t + W_hh h_t-1 + b,
    dL/dh_t = dL/dh_T * prod_{s=t+1..T} dh_s/dh_s-1,   dh_s/dh_s-1 = diag(1 - h_s^2) W_hh,
a product of T - t Jacobians: its norm shrinks (or grows) geometrically with the distance, like the
largest singular value of W_hh (times tanh' <= 1) to the power T - t. At T = 100 the signal from x_1 is
lost below rounding noise. Clipping the global gradient norm cures the *exploding* case (it rescales
every step's gradient by the same factor) but cannot restore a vanished one.

Why an LSTM does not
--------------------
The cell state is updated additively, c_t = f_t * c_t-1 + i_t * g_t, so along that path
dc_t/dc_t-1 = diag(f_t): with the forget gate near 1 the gradient passes many steps undiminished, and
the gates (learned functions of the input) decide when to write (i) and keep (f). The path must exist
before training can use it: with PyTorch's initialisation f is about sigmoid(0) = 1/2 and 1/2^99 is
1e-30, so we start the forget gate open by adding `forget_bias` to its bias (Gers et al. 2000;
Jozefowicz et al. 2015 use 1, which still gives sigmoid(1)^99 = 1e-13; 5 gives sigmoid(5)^99 = 0.5).
An open forget gate alone is not enough: c_t then SUMS every step's write i_t g_t, drifts far from 0
after 100 steps and saturates tanh(c_T), whose derivative then blocks the gradient at the very end. So we
also start the input gate mostly closed (`input_bias`, sigmoid(-3) = 0.05): keep by default, write
rarely; the network learns to open it for the signal (the same idea as Tallec & Ollivier's 2018
"chrono" initialisation, b_i = -b_f).
A GRU's update gate z plays the forget gate's role (h_t = (1 - z) n + z h_t-1), starting at z = 1/2.

The contract (models/__init__.py): `data` is the sequence length T (the sequences are drawn fresh from rng);
an epoch trains up to `steps` steps; `evaluate` reports `accuracy` on `test_size` fresh sequences. The
experiment (`train`, scripts/cli/char_lm.py) runs it for every model and T. `grad_norms` measures ||dL/dh_t||
for every t on one batch by running the composed cells step by step and reading each h_t's gradient after
backward(); `exploding_rnn` is the opposite failure, for clipping to fix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autodiff import Tensor, no_grad
from nets.harness import hp
from nets.layers import Linear
from nets.losses import cross_entropy
from nets.module import Module
from nets.optim import Adam, clip_grad_norm_
from nets.recurrent import GRU, LSTM, RNN

MODELS = ("rnn", "lstm", "gru")


@dataclass
class SeqMemoryConfig:
    lengths: tuple = hp((10, 25, 50, 100), "sequence lengths T")
    models: str = hp("rnn,lstm,gru", "comma-separated models among rnn, lstm, gru")
    symbols: int = hp(4, "K signal symbols to remember (chance = 1/K)", check="positive")
    distractors: int = hp(4, "D distractor symbols", check="positive")
    hidden: int = hp(64, "hidden units H", check="positive")
    steps: int = hp(600, "at most this many Adam steps per (model, T)", check="positive")
    batch_size: int = hp(64, "sequences per step", check="positive")
    lr: float = hp(3e-3, "Adam learning rate", check="positive")
    clip: float = hp(1.0, "clip the global gradient norm to this", check="positive")
    forget_bias: float = hp(5.0, "added to the LSTM forget-gate bias at initialisation", check="non_negative")
    input_bias: float = hp(-3.0, "added to the LSTM input-gate bias at initialisation")
    explode_radius: float = hp(3.0, "spectral radius of W_hh in the exploding-gradient example", check="positive")
    stop_accuracy: float = hp(0.99, "stop early once the last 20 batches average this accuracy", check="fraction")
    test_size: int = hp(1000, "held-out sequences per T for the accuracy", check="positive")


def model_names(cfg: SeqMemoryConfig) -> list:
    names = [m.strip() for m in cfg.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names:
        raise ValueError(f"--models: expected a comma-separated list of {', '.join(MODELS)}, got {cfg.models!r}")
    return names


# ==================================================================== data
def make_batch(n: int, T: int, cfg: SeqMemoryConfig, rng: np.random.Generator) -> tuple:
    """n sequences: one-hot inputs (n, T, K + D) float32 and the first symbols (n,) int."""
    first = rng.integers(0, cfg.symbols, size=n)
    ids = np.concatenate([first[:, None], cfg.symbols + rng.integers(0, cfg.distractors, size=(n, T - 1))], axis=1)
    return np.eye(cfg.symbols + cfg.distractors, dtype=np.float32)[ids], first


# ==================================================================== the model and its training step
class Recaller(Module):
    """One recurrent layer (batch_first) reading the sequence, then Linear(H, K) on its last state."""

    def __init__(self, kind: str, cfg: SeqMemoryConfig, rng: np.random.Generator | None = None):
        super().__init__()
        self.kind = kind
        layer = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
        self.rnn = layer(cfg.symbols + cfg.distractors, cfg.hidden, batch_first=True, rng=rng)   # -> (N, T, H)
        self.out = Linear(cfg.hidden, cfg.symbols, rng=rng)                                     # h_T -> (N, K)
        if kind == "lstm":                              # forget gate open, input gate mostly closed
            self.rnn.bias_hh_l0.data[:cfg.hidden] += cfg.input_bias
            self.rnn.bias_hh_l0.data[cfg.hidden:2 * cfg.hidden] += cfg.forget_bias

    def forward(self, x) -> Tensor:
        output, _ = self.rnn(x if isinstance(x, Tensor) else Tensor(x))
        return self.out(output[:, -1])


# ==================================================================== the contract (models/__init__.py)
Config = SeqMemoryConfig


def build(cfg: SeqMemoryConfig) -> Recaller:
    """The first model of cfg.models (the experiment builds each kind in turn: `train`)."""
    return Recaller(model_names(cfg)[0], cfg)


def build_optimizer(model: Recaller, cfg: SeqMemoryConfig) -> Adam:
    return Adam(model.parameters(), lr=cfg.lr)


def train_step(model: Recaller, optimizer, batch: tuple, rng, cfg: SeqMemoryConfig) -> dict:
    """One Adam step on a batch (one-hot sequences (N, T, K + D), first symbols (N,)); rng: unused."""
    x, first = batch
    logits = model(x)
    loss = cross_entropy(logits, first)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = clip_grad_norm_(optimizer.params, cfg.clip)
    optimizer.step()
    return {"loss": float(loss.data), "accuracy": float((logits.data.argmax(1) == first).mean()),
            "grad_norm": grad_norm}


def train_epoch(model: Recaller, optimizer, data: int, rng, cfg: SeqMemoryConfig) -> dict:
    """Train on sequences of length T = `data` (the task's data are drawn fresh from rng, batch by batch) for
    cfg.steps steps, or until the last 20 batches average stop_accuracy. Returns the last 20 steps' mean loss
    and accuracy, and the steps taken."""
    history = []
    for _ in range(cfg.steps):
        history.append(train_step(model, optimizer, make_batch(cfg.batch_size, data, cfg, rng), rng, cfg))
        if len(history) >= 20 and np.mean([h["accuracy"] for h in history[-20:]]) >= cfg.stop_accuracy:
            break
    return {"loss": float(np.mean([h["loss"] for h in history[-20:]])),
            "accuracy": float(np.mean([h["accuracy"] for h in history[-20:]])), "steps": len(history)}


def evaluate(model: Recaller, data: int, rng, cfg: SeqMemoryConfig) -> dict:
    """Headline `accuracy`: the fraction of cfg.test_size fresh sequences of length T = `data` (drawn from rng)
    whose first symbol the model names (chance: 1 / cfg.symbols)."""
    x, first = make_batch(cfg.test_size, data, cfg, rng)
    with no_grad():
        return {"accuracy": float((model(x).data.argmax(1) == first).mean())}


# ==================================================================== the experiment: every model at every T
def train(kind: str, T: int, cfg: SeqMemoryConfig, rng: np.random.Generator,
          init_rng: np.random.Generator | None = None) -> tuple:
    """Train one model of `kind` (initial weights from `init_rng`) on length T: (model, train_epoch's numbers)."""
    model = Recaller(kind, cfg, init_rng)
    return model, train_epoch(model, build_optimizer(model, cfg), T, rng, cfg)


# ==================================================================== the gradient's decay, made visible
def grad_norms(model: Recaller, batch: tuple, clip: float) -> dict:
    """||dL/dh_t|| (mean over the batch) for t = 1..T on one batch: the layer's own loop, step by step
    (`unroll`), keeps every h_t in the graph, so after backward() h_t.grad is dL/dh_t. "clipped": the
    same after the global clip (every gradient scaled by min(1, clip / ||g||))."""
    x, first = batch
    hs, _ = model.rnn.unroll(Tensor(x))
    loss = cross_entropy(model.out(hs[-1]), first)
    model.zero_grad()
    loss.backward()
    raw = [float(np.linalg.norm(h.grad, axis=1).mean()) for h in hs]
    total = clip_grad_norm_(model.parameters(), np.inf)
    scale = min(1.0, clip / (total + 1e-6))
    model.zero_grad()
    return {"raw": raw, "clipped": [r * scale for r in raw], "param_grad_norm": total}


def exploding_rnn(cfg: SeqMemoryConfig, rng: np.random.Generator | None = None) -> Recaller:
    """A fresh RNN whose W_hh is rescaled to spectral radius `explode_radius`: above 1 the Jacobians'
    product grows, so ||dL/dh_t|| grows backwards in time (the case that clipping is for)."""
    model = Recaller("rnn", cfg, rng)
    weight = model.rnn.weight_hh_l0.data
    weight *= cfg.explode_radius / np.abs(np.linalg.eigvals(weight)).max()
    return model
