r"""Reversible residual networks (RevNet, Gomez et al. 2017): backprop without storing activations.

The reversible block
--------------------
Split the features into two halves x = (x1, x2); F and G are any two networks (here small MLPs):
    forward    y1 = x1 + F(x2)            y2 = x2 + G(y1)
    inverse    x2 = y2 - G(y1)            x1 = y1 - F(x2)
The inverse only subtracts what the forward added, so it needs no inverse of F or G: it is exact whatever
F and G are, as long as they are deterministic functions (exact to rounding in floating point).

Backprop by reconstruction
--------------------------
Ordinary backprop keeps every intermediate array of every block alive until the backward pass, so its
memory grows linearly with depth. A stack of reversible blocks keeps only its output: walking backwards,
each block recomputes its input from its output, building on the way the small graph of F and G that its
own gradient needs (Algorithm 1 of the paper). From y = (y1, y2) and the gradient (dy1, dy2):
    g = G(y1)   (graph on a leaf y1)      x2 = y2 - g              reconstruct x2
    f = F(x2)   (graph on a leaf x2)      x1 = y1 - f              reconstruct x1
    backward of <g, dy2>:   dz1 = dy1 + (dG/dy1)^T dy2             (y1 also feeds y2 through G)
    backward of <f, dz1>:   dx2 = dy2 + (dF/dx2)^T dz1,  dx1 = dz1
and the two local backward passes (autodiff.grad) also give the gradients of G's and F's parameters. Each
local graph is freed before the next block, so the activations held at any moment are ONE block's,
whatever the depth; the price is one more forward pass of F and G per block. (Parameter gradients still
grow with depth: one array per weight.)

Files: `RevBlock` (one block), `reversible_stack` (the custom op: forward without a graph, backward by
reconstruction), `stored_stack` (the ordinary backward, same blocks: the reference it must equal),
`RevNet` (a small MNIST classifier), the contract (models/__init__.py: `data` is the pair (digits, labels),
`evaluate` reports `accuracy`), and the two measurements the lecture asks for:
`max_grad_difference` (both backward passes on the same weights and batch) and `memory_vs_depth`.
"""
from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, enable_grad, grad, no_grad
from nets.data import iterate_minibatches
from nets.harness import hp
from nets.losses import cross_entropy


@dataclass
class RevNetConfig:
    epochs: int = hp(15, "passes over the training digits", check="positive")
    batch_size: int = hp(100, "digits per Adam step", check="positive")
    lr: float = hp(1e-3, "Adam learning rate", check="positive")
    width: int = hp(128, "features after the stem; each block works on two halves of width/2", check="positive")
    hidden: int = hp(256, "hidden units of each F and G (Linear-ReLU-Linear)", check="positive")
    depth: int = hp(4, "reversible blocks in the classifier", check="positive")
    store_activations: bool = hp(False, "train with the ordinary backward (store every activation)")
    memory_depths: tuple = hp((2, 4, 8, 16), "depths at which peak memory is taken (three or more)")
    memory_batch: int = hp(256, "batch size of the memory measurement", check="positive")


# ==================================================================== the block
def mlp(features: int, hidden: int, dtype=np.float32, rng=None) -> nets.Sequential:
    """F or G: (N, features) -> Linear(features, hidden) -> ReLU -> Linear(hidden, features)."""
    return nets.mlp((features, hidden, features), dtype=dtype, rng=rng)


class RevBlock(nets.Module):
    """y1 = x1 + f(x2), y2 = x2 + g(y1) on two halves (N, D) each; `f` and `g` are any Modules mapping
    (N, D) -> (N, D) that are deterministic (no dropout: the reconstruction must see the same function)."""

    def __init__(self, f: nets.Module, g: nets.Module):
        super().__init__()
        self.f, self.g = f, g

    def forward(self, x1: Tensor, x2: Tensor) -> tuple:
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return y1, y2

    def inverse(self, y1: np.ndarray, y2: np.ndarray) -> tuple:
        """x2 = y2 - g(y1), x1 = y1 - f(x2): the block's input from its output (arrays, no graph)."""
        with no_grad():
            ### BEGIN SOLUTION revblock_inverse
            ### task: the block's input (x1, x2) from its output (y1, y2)
            ### hint: RevBlock.inverse's docstring: x2 = y2 - g(y1), x1 = y1 - f(x2)
            x2 = y2 - self.g(Tensor(y1)).data
            x1 = y1 - self.f(Tensor(x2)).data
            ### END SOLUTION
        return x1, x2

    def backward_from_output(self, y1, y2, dy1, dy2) -> tuple:
        """Algorithm 1 (see the module docstring): from the output (y1, y2) and its gradient, return the
        input (x1, x2), ITS gradient (dx1, dx2), and the gradients of f's and g's parameters (in the
        order of self.parameters())."""
        z1 = Tensor(y1, requires_grad=True)
        g = self.g(z1)                          # g's graph, rebuilt from the output
        x2 = y2 - g.data                        # reconstruct x2
        dz1, *dg = grad(g, [z1, *self.g.parameters()], dy2)        # (dG/dy1)^T dy2, and g's parameters'
        ### BEGIN SOLUTION revblock_gradient
        ### task: the total gradient of y1: directly, and through y2 = x2 + g(y1)
        ### hint: Algorithm 1 in the module docstring of models/revnet.py
        dz1 = dy1 + dz1.data                    # total gradient of y1 (directly, and through y2 = x2 + g(y1))
        ### END SOLUTION
        x2_leaf = Tensor(x2, requires_grad=True)
        f = self.f(x2_leaf)                     # f's graph, on the reconstructed x2
        x1 = y1 - f.data                        # reconstruct x1
        dx2, *df = grad(f, [x2_leaf, *self.f.parameters()], dz1)   # (dF/dx2)^T dz1, and f's parameters'
        return x1, x2, dz1, dy2 + dx2.data, [t.data for t in df + dg]


# ==================================================================== two ways to run a stack of blocks
def _halves(x: Tensor) -> int:
    if x.ndim != 2 or x.shape[1] % 2:
        raise ValueError(f"reversible stack: expected features (N, 2 D) with an even number of columns, "
                         f"got shape {x.shape}")
    return x.shape[1] // 2


def stored_stack(x: Tensor, blocks) -> Tensor:
    """The blocks applied in order to x = [x1 | x2] (N, 2 D), with the ordinary backward: the engine keeps
    every intermediate array until backward(). The reference that `reversible_stack` must equal."""
    half = _halves(x)
    x1, x2 = x[:, :half], x[:, half:]
    for block in blocks:
        x1, x2 = block(x1, x2)
    return F.concatenate([x1, x2], axis=1)


def reversible_stack(x: Tensor, blocks) -> Tensor:
    """The same function as `stored_stack`, as ONE op: the forward runs without a graph and keeps only the
    output; the backward walks the blocks from last to first, reconstructing each block's input from its
    output (RevBlock.backward_from_output). Its parents are x and every parameter of the blocks.
    A backward with create_graph=True reruns the stack with a graph (`stored_stack`) and differentiates
    that: a second derivative keeps the activations after all."""
    half = _halves(x)
    params = tuple(p for block in blocks for p in block.parameters())
    with no_grad():
        y1, y2 = x.data[:, :half], x.data[:, half:]
        for block in blocks:
            y1, y2 = (t.data for t in block(Tensor(y1), Tensor(y2)))
    out = Tensor._make(np.concatenate([y1, y2], axis=1), (x, *params), "reversible_stack")

    def gradients(g, *inputs):             # (dL/dx, dL/d(each parameter)), on arrays
        y1, y2 = out_data[:, :half], out_data[:, half:]
        dy1, dy2 = g[:, :half], g[:, half:]
        param_grads = []
        with enable_grad():                # each block's backward rebuilds a small graph
            for block in reversed(blocks):
                y1, y2, dy1, dy2, block_grads = block.backward_from_output(y1, y2, dy1, dy2)
                param_grads = block_grads + param_grads
        return (np.concatenate([dy1, dy2], axis=1), *param_grads)
    out_data = out.data
    out._backward = gradients
    if out.requires_grad:                  # create_graph: backprop through the stack run with a graph
        out._recompute = lambda: stored_stack(x, blocks)
    return out


# ==================================================================== the classifier
class RevNet(nets.Module):
    """MNIST classifier: (N, 784) -> stem Linear(784, width) -> `depth` reversible blocks on two halves of
    width/2 -> ReLU -> head Linear(width, 10) = logits. `store_activations` picks the backward pass."""

    def __init__(self, width: int = 128, hidden: int = 256, depth: int = 4, num_classes: int = 10,
                 dtype=np.float32, rng=None):
        super().__init__()
        if width % 2:
            raise ValueError(f"RevNet: width must be even (two halves of width/2), got {width}")
        half = width // 2
        self.stem = nets.Linear(784, width, dtype=dtype, rng=rng)                  # (N, 784) -> (N, width)
        self.blocks = nets.ModuleList([RevBlock(mlp(half, hidden, dtype, rng), mlp(half, hidden, dtype, rng))
                                       for _ in range(depth)])                     # (N, width) -> (N, width)
        self.head = nets.Linear(width, num_classes, dtype=dtype, rng=rng)          # (N, width) -> (N, 10)

    def forward(self, x, store_activations: bool = False) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=self.stem.weight.dtype))
        h = self.stem(x.reshape(len(x), -1))
        stack = stored_stack if store_activations else reversible_stack
        return self.head(F.relu(stack(h, list(self.blocks))))


# ==================================================================== the contract (models/__init__.py)
Config = RevNetConfig


def build(cfg: RevNetConfig) -> RevNet:
    return RevNet(cfg.width, cfg.hidden, cfg.depth)


def build_optimizer(model: RevNet, cfg: RevNetConfig) -> nets.Adam:
    return nets.Adam(model.parameters(), lr=cfg.lr)


def train_step(model: RevNet, optimizer, batch: tuple, rng, cfg: RevNetConfig) -> dict:
    """One Adam step on the cross-entropy of a batch (images (B, 784), labels (B,)); rng: unused."""
    images, labels = batch
    logits = model(images, store_activations=cfg.store_activations)
    loss = cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss), "correct": int(np.sum(logits.data.argmax(axis=1) == labels))}


def train_epoch(model: RevNet, optimizer, data: tuple, rng: np.random.Generator, cfg: RevNetConfig) -> dict:
    """One pass over `data` = (digits (N, 784) or (N, 1, 28, 28), labels (N,)) in a random order from `rng`."""
    images, labels = data
    model.train()
    total, correct = 0.0, 0
    for batch in iterate_minibatches(images, labels, batch_size=cfg.batch_size, rng=rng):
        stats = train_step(model, optimizer, batch, rng, cfg)
        total += stats["loss"] * len(batch[1])
        correct += stats["correct"]
    return {"loss": total / len(labels), "train_accuracy": correct / len(labels)}


def evaluate(model: RevNet, data: tuple, rng, cfg: RevNetConfig, *, batch_size: int = 500) -> dict:
    """Headline `accuracy` on `data` = (digits, labels), and `nll_nats`, the mean cross-entropy in nats per digit
    (rng: unused)."""
    images, labels = data
    model.eval()
    with no_grad():
        logits = np.concatenate([model(images[i:i + batch_size]).data for i in range(0, len(images), batch_size)])
        nll = float(cross_entropy(Tensor(logits), labels))
    return {"accuracy": float(np.mean(logits.argmax(axis=1) == labels)), "nll_nats": nll}


# ==================================================================== the two measurements
def gradients(model: RevNet, images, labels, store_activations: bool) -> dict:
    """{parameter name: d loss / d parameter} for one batch, by the chosen backward pass."""
    model.zero_grad()
    cross_entropy(model(images, store_activations), labels).backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    return grads


def max_grad_difference(model: RevNet, images, labels) -> float:
    """max |reversible - stored| over every parameter gradient, same weights and batch."""
    reversible = gradients(model, images, labels, store_activations=False)
    stored = gradients(model, images, labels, store_activations=True)
    return max(float(np.max(np.abs(reversible[k] - stored[k]))) for k in stored)


def peak_memory_bytes(model: RevNet, images, labels, store_activations: bool) -> int:
    """Peak bytes allocated (NumPy reports its buffers to tracemalloc) during one forward and backward
    pass, above what was allocated before it. Gradients are cleared first so that they count too."""
    gradients(model, images, labels, store_activations)          # warm-up: first-call allocations
    gc.collect()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    cross_entropy(model(images, store_activations), labels).backward()
    peak = tracemalloc.get_traced_memory()[1]
    if not tracing:
        tracemalloc.stop()
    model.zero_grad()
    return int(peak - before)


def memory_vs_depth(cfg: RevNetConfig, rng: np.random.Generator) -> dict:
    """Peak memory of one training step at each depth in cfg.memory_depths, both backward passes, on one
    random batch of cfg.memory_batch images; and the slope (bytes per block) of a least-squares line."""
    images = rng.random((cfg.memory_batch, 784), dtype=np.float32)
    labels = rng.integers(0, 10, cfg.memory_batch)
    peaks = {"reversible": {}, "stored": {}}
    for depth in cfg.memory_depths:
        model = build(dataclasses.replace(cfg, depth=depth))
        for kind in peaks:
            peaks[kind][str(depth)] = peak_memory_bytes(model, images, labels, kind == "stored")
    depths = np.array(cfg.memory_depths, dtype=float)
    slopes = {kind: float(np.polyfit(depths, [peaks[kind][str(d)] for d in cfg.memory_depths], 1)[0])
              for kind in peaks}
    return {"peak_memory_bytes": peaks, "bytes_per_block": slopes,
            "slope_ratio": slopes["reversible"] / slopes["stored"]}
