r"""Fast forward_no_grad: replaces rl/common.py's forward_no_grad (an agent acting on one observation, or
scoring a batch without a graph) for a nets.Sequential of Linear, ReLU and Tanh layers (every agent's
network; others: NotImplemented, the reference runs).

Why it computes the same thing. The arrays go through the NumPy expressions of the fast ops themselves,
one observation as a batch of one as the reference does: Linear as elementwise.linear (parallel.matmul
(x, W^T), then + b), ReLU as functional.relu (np.maximum(x, 0)), Tanh as np.tanh; so the result is the
reference's, bit for bit (tests/test_fast.py). Only the Tensor, the grad-mode check and the dispatch per
op are left out: for a 4-64-64-2 network on one observation they are most of the time.
"""
from __future__ import annotations

import functools

import numpy as np

from .elementwise import affine
from .taken import note


def forward_no_grad(net, obs):
    """Replaces rl.common.forward_no_grad (see the module docstring)."""
    steps = _plain_steps(net)
    if steps is None:
        return NotImplemented
    note("forward_no_grad")
    obs = np.asarray(obs, dtype=np.float32)
    h = obs if obs.ndim == 2 else obs[None]
    for kind, layer in steps:
        if kind == "linear":
            h = affine(h, layer.weight.data, None if layer.bias is None else layer.bias.data)
        elif kind == "relu":
            h = np.maximum(h, 0)
        else:
            h = np.tanh(h)
    return h if obs.ndim == 2 else h[0]


def _plain_steps(net) -> list | None:
    """[(kind, layer)] for a Sequential of float32 Linear, ReLU and Tanh layers, else None."""
    sequential, kinds = _layer_kinds()
    if type(net).forward is not sequential.forward:
        return None
    steps = [(kinds.get(type(layer)), layer) for layer in net]
    if any(kind is None for kind, _ in steps) or any(
            kind == "linear" and layer.weight.data.dtype != np.float32 for kind, layer in steps):
        return None
    return steps


@functools.cache
def _layer_kinds() -> tuple:
    """nets.Sequential and {layer class: kind}, looked up once (nets is the agents' package, loaded whenever
    an agent runs; the engine does not import it)."""
    import nets
    return nets.Sequential, {nets.Linear: "linear", nets.ReLU: "relu", nets.Tanh: "tanh"}
