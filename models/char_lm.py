r"""Character-level language models, from counting to LSTMs (seed 003, section 4).

The task
--------
A text is a sequence of characters x_1 .. x_n from a vocabulary of V symbols. A language model gives
p(x_t | x_<t); its quality is the held-out negative log-likelihood per character,
    NLL = -1/n sum_t log p(x_t | x_<t)   nats/char   (bits/char = NLL / ln 2),
on a fixed held-out split (the last 10% of the text). Sampling draws x_t ~ p(. | x_<t) with a
temperature tau: p_tau proportional to p^(1/tau) (tau < 1 sharper, tau > 1 flatter).

The models, each conditioning on more of the past
-------------------------------------------------
* bigram: p(x_t | x_t-1) = (count(x_t-1, x_t) + alpha) / (count(x_t-1) + alpha V) -- the baseline any
  neural model must beat; no gradient, just counting. With alpha = 0 its NLL on its own training text
  is the conditional entropy of the next character given the previous one.
* mlp (Bengio et al., 2003): the last k characters are embedded (E each), concatenated, and mapped by
  Linear(k E, H) -> tanh -> Linear(H, V) to the logits of x_t.
* rnn / lstm / gru: x_t -> Embedding(V, E) -> recurrent layer (hidden H) -> Linear(H, V), so the
  prediction depends on the whole past through the state h_t.

Training
--------
The loss is the mean cross-entropy of the next character (nets.losses.cross_entropy). Recurrent models
train with truncated BPTT: the training text is cut into `batch_size` parallel streams; each step takes
the next `seq_len` characters of every stream, starts from the state the previous chunk left (detached,
so the gradient stops at the chunk boundary: nets.recurrent.detach_state), clips the global gradient
norm (nets.optim.clip_grad_norm_) and takes an Adam step. The MLP trains on batch_size x seq_len random
windows per step (as many predicted characters as a recurrent step). Adam's
learning rate follows a cosine from `lr` down to `lr * lr_final` over `steps` Adam steps.

The contract (models/__init__.py): `data` is the encoded corpus, int64 character ids (`load_corpus(cfg)`:
`.train` to train on, `.test` to score); an epoch is one pass over the training streams (the mlp: as many
steps of random windows; the bigram: counting the text once). A recurrent model keeps the state the last
chunk left in `model.carry`, part of its state_dict. `evaluate` reports `nll_nats_per_char` (the headline)
and `bits_per_char`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
from autodiff import Tensor, no_grad
from nets.datasets.text import CharCorpus, load_text
from nets.harness import hp
from nets.layers import Linear
from nets.losses import cross_entropy
from nets.module import Module
from nets.optim import Adam, clip_grad_norm_
from nets.recurrent import GRU, LSTM, RNN, Embedding, detach_state

MODELS = ("bigram", "mlp", "rnn", "lstm", "gru")


@dataclass
class CharLMConfig:
    model: str = hp("lstm", "which language model", choices=MODELS)
    text: str = hp("", "train on this UTF-8 text file instead of the embedded Shakespeare plays")
    steps: int = hp(2500, "training steps (Adam updates; one chunk of every stream each)", check="positive")
    eval_every: int = hp(250, "steps between held-out evaluations (the curves)", check="positive")
    batch_size: int = hp(64, "parallel streams per step (the mlp takes batch-size x seq-len windows)",
                         check="positive")
    seq_len: int = hp(64, "characters per truncated-BPTT chunk", check="positive")
    embed: int = hp(64, "character embedding size E", check="positive")
    hidden: int = hp(128, "hidden units H", check="positive")
    num_layers: int = hp(1, "stacked recurrent layers", check="positive")
    context: int = hp(8, "characters the mlp sees (k)", check="positive")
    lr: float = hp(4e-3, "Adam learning rate at the start", check="positive")
    lr_final: float = hp(0.1, "final learning rate as a fraction of --lr (cosine decay)", check="fraction")
    clip: float = hp(1.0, "clip the global gradient norm to this", check="positive")
    alpha: float = hp(1.0, "bigram add-alpha smoothing", check="non_negative")
    temperature: float = hp(0.8, "sampling temperature for samples.txt", check="positive")
    sample_chars: int = hp(600, "characters per sample in samples.txt", check="positive")


# ==================================================================== the models
class Bigram:
    """The count table: p(b | a) = (N[a, b] + alpha) / (N[a] + alpha V). Fitted by counting, not trained."""

    def __init__(self, vocab_size: int, alpha: float = 1.0):
        self.vocab_size, self.alpha = vocab_size, alpha
        self.counts = np.zeros((vocab_size, vocab_size), np.int64)

    def fit(self, ids: np.ndarray) -> "Bigram":
        return self.count(ids[:-1], ids[1:])

    def count(self, previous: np.ndarray, following: np.ndarray) -> "Bigram":
        """N[a, b] += the number of times b follows a in the pairs (previous, following)."""
        np.add.at(self.counts, (np.ravel(previous), np.ravel(following)), 1)
        return self

    def log_probs(self, previous: np.ndarray) -> np.ndarray:
        """log p(. | previous): (N, V). A never-seen pair with alpha = 0 has log p = -inf."""
        rows = self.counts[previous] + self.alpha
        with np.errstate(divide="ignore"):
            return np.log(rows) - np.log(rows.sum(axis=1, keepdims=True))

    def state_dict(self) -> dict:
        return {"counts": self.counts.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.counts[...] = state["counts"]


class MLPLM(Module):
    """Bengio et al. (2003): logits = W2 tanh(W1 [e(x_t-k); ..; e(x_t-1)] + b1) + b2."""

    def __init__(self, vocab_size: int, context: int, embed: int, hidden: int):
        super().__init__()
        self.context = context
        self.embedding = Embedding(vocab_size, embed)           # (V, E)
        self.hidden = Linear(context * embed, hidden)           # (N, kE) -> (N, H)
        self.out = Linear(hidden, vocab_size)                   # (N, H) -> (N, V)

    def forward(self, windows: np.ndarray) -> Tensor:
        """windows: (N, k) character ids -> logits (N, V) of the next character."""
        e = self.embedding(windows)                             # (N, k, E)
        return self.out(F.tanh(self.hidden(e.reshape(e.shape[0], -1))))


class RecurrentLM(Module):
    """Embedding(V, E) -> RNN / LSTM / GRU (E -> H, batch_first) -> Linear(H, V)."""

    def __init__(self, kind: str, vocab_size: int, embed: int, hidden: int, num_layers: int = 1):
        super().__init__()
        self.kind = kind
        self.embedding = Embedding(vocab_size, embed)                        # (N, T) -> (N, T, E)
        layer = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
        self.rnn = layer(embed, hidden, num_layers=num_layers, batch_first=True)   # -> (N, T, H)
        self.out = Linear(hidden, vocab_size)                                # -> (N, T, V)
        self.carry = None          # training: the detached state the last truncated-BPTT chunk left

    def forward(self, ids: np.ndarray, state=None) -> tuple:
        """ids: (N, T) -> (logits (N, T, V), state after the last step)."""
        h, state = self.rnn(self.embedding(ids), state)                      # (N, T, H)
        logits = self.out(h.reshape(-1, h.shape[-1]))                        # (N T, V): one 2-D matmul
        return logits.reshape(*h.shape[:2], -1), state

    def state_dict(self) -> dict:
        """The parameters, and the carried state as carry.0 (and carry.1: the LSTM's c) during training."""
        parts = () if self.carry is None else self.carry if isinstance(self.carry, tuple) else (self.carry,)
        return {**super().state_dict(), **{f"carry.{i}": part.data.copy() for i, part in enumerate(parts)}}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        parts = tuple(Tensor(np.array(state[f"carry.{i}"])) for i in range(2) if f"carry.{i}" in state)
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith("carry.")}, strict)
        self.carry = None if not parts else parts if len(parts) > 1 else parts[0]


def load_corpus(cfg: CharLMConfig) -> CharCorpus:
    """The text of cfg.text (default: the embedded Shakespeare plays) as character ids, split train / test."""
    return CharCorpus(load_text(cfg.text or None))


def language_model(cfg: CharLMConfig, vocab_size: int):
    """cfg.model over a vocabulary of vocab_size characters (build reads it from the corpus)."""
    if cfg.model == "bigram":
        return Bigram(vocab_size, cfg.alpha)
    if cfg.model == "mlp":
        return MLPLM(vocab_size, cfg.context, cfg.embed, cfg.hidden)
    return RecurrentLM(cfg.model, vocab_size, cfg.embed, cfg.hidden, cfg.num_layers)


# ==================================================================== the loss and one training step
def lm_loss(logits: Tensor, targets: np.ndarray) -> Tensor:
    """Mean next-character cross-entropy, nats/char: logits (..., V), targets (...) int."""
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a text into `batch_size` contiguous streams: (batch_size, len // batch_size)."""
    n = len(ids) // batch_size
    if n < 2:
        raise ValueError(f"a text of {len(ids)} characters is too short for {batch_size} streams")
    return ids[:n * batch_size].reshape(batch_size, n)


def chunk(data: np.ndarray, step: int, seq_len: int) -> tuple:
    """Step `step`'s truncated-BPTT chunk of the streams: inputs and next-character targets (N, T), and
    whether it starts a new pass over the text (the carried state is then reset)."""
    per_pass = (data.shape[1] - 1) // seq_len
    start = (step % per_pass) * seq_len
    return data[:, start:start + seq_len], data[:, start + 1:start + seq_len + 1], start == 0


def mlp_batch(ids: np.ndarray, context: int, batch_size: int, rng: np.random.Generator) -> tuple:
    """Random windows: (batch_size, k) contexts and their next characters."""
    ends = rng.integers(context, len(ids), size=batch_size)
    return ids[ends[:, None] - np.arange(context, 0, -1)], ids[ends]


def set_lr(optimizer, cfg: CharLMConfig, step: int) -> None:
    """Cosine decay: lr_t = lr (f + (1 - f) (1 + cos(pi t / steps)) / 2), f = lr_final, then lr f after `steps`."""
    f, t = cfg.lr_final, min(step, cfg.steps)
    optimizer.lr = cfg.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t / cfg.steps)))


# ==================================================================== the contract (models/__init__.py)
Config = CharLMConfig


def build(cfg: CharLMConfig):
    """cfg.model over the vocabulary of cfg's corpus (so build reads the text: load_corpus)."""
    return language_model(cfg, load_corpus(cfg).vocab_size)


def build_optimizer(model, cfg: CharLMConfig) -> Adam | None:
    """Adam (its learning rate set by train_step's schedule); None for the bigram, which only counts."""
    return None if isinstance(model, Bigram) else Adam(model.parameters(), lr=cfg.lr)


def train_step(model, optimizer, batch: tuple, rng, cfg: CharLMConfig) -> dict:
    """One Adam step on a batch (inputs, targets), at the learning rate of step optimizer.step_count of the
    schedule; a recurrent model starts from model.carry and leaves its new state there, detached. The bigram
    counts the batch's pairs. rng: unused (the batch is given)."""
    inputs, targets = batch
    if isinstance(model, Bigram):
        model.count(inputs, targets)
        log_p = model.log_probs(np.ravel(inputs))[np.arange(np.size(targets)), np.ravel(targets)]
        return {"loss": float(-log_p.mean())}
    set_lr(optimizer, cfg, optimizer.step_count)
    if isinstance(model, RecurrentLM):
        logits, state = model(inputs, model.carry)
        model.carry = detach_state(state)                        # truncated BPTT: stop at the boundary
    else:
        logits = model(inputs)
    loss = lm_loss(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = clip_grad_norm_(optimizer.params, cfg.clip)
    optimizer.step()
    return {"loss": float(loss.data), "grad_norm": float(grad_norm)}


def train_epoch(model, optimizer, data: np.ndarray, rng, cfg: CharLMConfig) -> dict:
    """One pass over the training ids `data`, cut into batch_size streams of seq_len chunks, starting from a
    fresh state (the mlp: as many steps of random windows from rng; the bigram: counts the text afresh).
    Returns the mean loss (nats/char) and, for the networks, the mean gradient norm."""
    if isinstance(model, Bigram):
        model.counts[...] = 0
        model.fit(data)
        a, b = np.nonzero(model.counts)                          # the pairs that occur: -sum N log p(b|a) / sum N
        log_p = model.log_probs(a)[np.arange(len(a)), b]
        return {"loss": float(-(model.counts[a, b] * log_p).sum() / model.counts.sum())}
    data_streams = streams(data, cfg.batch_size)
    model.carry = None
    steps = []
    for step in range((data_streams.shape[1] - 1) // cfg.seq_len):
        if isinstance(model, MLPLM):
            batch = mlp_batch(data, cfg.context, cfg.batch_size * cfg.seq_len, rng)
        else:
            batch = chunk(data_streams, step, cfg.seq_len)[:2]
        steps.append(train_step(model, optimizer, batch, rng, cfg))
    return {key: float(np.mean([s[key] for s in steps])) for key in ("loss", "grad_norm")}


# ==================================================================== held-out evaluation
def evaluate(model, data: np.ndarray, rng, cfg: CharLMConfig, *, context: np.ndarray | None = None) -> dict:
    """Headline `nll_nats_per_char`: the held-out NLL of data[1:], each character given everything before it in
    the ids `data` (for the mlp, windows that reach before data[0] are filled with the end of `context`, the
    training text, or with id 0); and `bits_per_char`. rng: unused."""
    nll = held_out_nll(model, data, cfg, context)
    return {"nll_nats_per_char": nll, "bits_per_char": nll / math.log(2)}


def held_out_nll(model, ids: np.ndarray, cfg: CharLMConfig, context_ids: np.ndarray | None) -> float:
    if isinstance(model, Bigram):
        return float(-model.log_probs(ids[:-1])[np.arange(len(ids) - 1), ids[1:]].mean())
    with no_grad():
        if isinstance(model, MLPLM):
            k = cfg.context
            known = context_ids is not None and len(context_ids) >= k
            before = context_ids[-k:] if known else np.zeros(k, ids.dtype)
            padded = np.concatenate([before, ids])
            total = 0.0
            for lo in range(1, len(ids), 4096):
                ends = np.arange(lo, min(lo + 4096, len(ids))) + k
                windows = padded[ends[:, None] - np.arange(k, 0, -1)]
                total += float(lm_loss(model(windows), padded[ends]).data) * len(ends)
            return total / (len(ids) - 1)
        # recurrent: the whole held-out text as 8 streams, each predicting its characters after the first
        data = streams(ids, 8)
        total, count, state = 0.0, 0, None
        for lo in range(0, data.shape[1] - 1, 256):
            inputs, targets = data[:, lo:lo + 256], data[:, lo + 1:lo + 257]
            logits, state = model(inputs[:, :targets.shape[1]], state)
            total += float(lm_loss(logits, targets).data) * targets.size
            count += targets.size
        return total / count


# ==================================================================== sampling
def sample(model, length: int, temperature: float, rng: np.random.Generator, prompt: np.ndarray) -> np.ndarray:
    """Draw `length` character ids after `prompt` (ids, at least one) with p_tau proportional to p^(1/tau)."""
    out = list(prompt)
    with no_grad():
        if isinstance(model, RecurrentLM):
            logits, state = model(np.asarray(prompt)[None], None)
            last = logits.data[0, -1]
        for _ in range(length):
            if isinstance(model, Bigram):
                last = model.log_probs(np.array([out[-1]]))[0]
            elif isinstance(model, MLPLM):
                window = ([0] * model.context + out)[-model.context:]
                last = model(np.array([window])).data[0]
            logp = last.astype(np.float64) / temperature
            p = np.exp(logp - logp.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(nxt)
            if isinstance(model, RecurrentLM):
                logits, state = model(np.array([[nxt]]), state)
                last = logits.data[0, -1]
    return np.array(out[len(prompt):], dtype=np.int64)


def known_word_fraction(sample_text: str, train_text: str) -> float:
    """Fraction of the sample's words (letters only, lower case) that occur in the training text."""
    words = lambda text: [w for w in "".join(c.lower() if c.isalpha() else " " for c in text).split()]
    vocabulary, sampled = set(words(train_text)), words(sample_text)
    return sum(w in vocabulary for w in sampled) / max(len(sampled), 1)
