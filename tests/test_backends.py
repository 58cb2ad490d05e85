"""Both backends train the same models: every model (models.REGISTRY) and every agent (rl.AGENTS) takes a few
training steps from one seed with the fast backend and with the reference one, and the losses, the
parameters and the gradients are compared.

Tolerances. Generative models run in float64, where the two backends must agree to 1e-10 relative (the fast
kernels compute the same sums in another order: rounding at 1e-16, grown a little by a few Adam steps).
The agents' networks are built in float32 inside the agent, and there the backends agree to rounding:
the fast Adam divides by sqrt(1 - beta2^t) separately (tests/test_fast.py) and a product split across
threads or fused with its neighbours rounds differently, about 1e-7 per step; 1e-5 relative after a few
steps of tiny networks. (An agent's episodes follow its greedy and sampled actions: a difference large
enough to flip an action would show up as different returns, which are compared exactly.)"""
from __future__ import annotations

import numpy as np
import pytest

import models
import nets
import rl
from autodiff import use_backend
from autodiff.fast import taken
from nets.harness import stream
from rl.common import split_state
from test_contract import TINY_AGENTS, model_case, tiny_config, tiny_text  # noqa: F401  (a fixture)

STEPS = 3


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max(initial=0) / max(np.abs(b).max(initial=0), 1e-30))


def as_float64(batch):
    """The batch with its floating arrays in float64 (labels and token ids stay integers)."""
    if isinstance(batch, tuple):
        return tuple(as_float64(part) for part in batch)
    if isinstance(batch, np.ndarray) and np.issubdtype(batch.dtype, np.floating):
        return batch.astype(np.float64)
    return batch


def train_model(name: str, backend: str, tmp_path, text) -> tuple:
    """(the losses of each step, {parameter: (value, gradient)} after the last step)."""
    module = models.load(name)
    cfg = module.Config(**tiny_config(name, tmp_path, text))
    _, _, batch = model_case(name, module, cfg, np.random.default_rng(0))
    with use_backend(backend), taken() as seen:
        nets.manual_seed(0)
        model = module.build(cfg).double()
        optimizer = module.build_optimizer(model, cfg)
        losses = [module.train_step(model, optimizer, as_float64(batch), stream(0, "step", k), cfg)
                  for k in range(STEPS)]
    assert bool(seen) == (backend == "fast" and optimizer is not None)   # at least the fast Adam ran
    return losses, {name: (p.data.copy(), p.grad) for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_every_model_trains_the_same_with_both_backends_float64(name, tmp_path, tiny_text):
    fast_losses, fast_params = train_model(name, "fast", tmp_path, tiny_text)
    ref_losses, ref_params = train_model(name, "reference", tmp_path, tiny_text)
    for step, (a, b) in enumerate(zip(fast_losses, ref_losses)):
        assert a.keys() == b.keys()
        for key in a:
            assert relative_error(a[key], b[key]) <= 1e-10, (step, key, a[key], b[key])
    assert fast_params.keys() == ref_params.keys()
    # gradients, relative to their overall scale: some are zero but for rounding (a conv bias under batch norm)
    scale = max(np.abs(grad).max() for _, grad in ref_params.values() if grad is not None)
    for key in fast_params:
        (value, grad), (ref_value, ref_grad) = fast_params[key], ref_params[key]
        assert value.dtype == np.float64 and (grad is None) == (ref_grad is None), key
        if grad is not None:
            assert np.abs(grad - ref_grad).max() <= 1e-10 * scale, key
        if grad is not None and np.abs(ref_grad).max() <= 1e-12 * scale:
            continue          # the loss does not depend on it: Adam turns its gradient's rounding into steps
        assert relative_error(value, ref_value) <= 1e-10, key


def train_agent(name: str, backend: str) -> tuple:
    """(the stats of each step, the episode returns, every array of the agent's state, the gradients)."""
    module = rl.load(name)
    with use_backend(backend):
        nets.manual_seed(0)
        agent = module.Agent(module.Config(**TINY_AGENTS[name]), 3)
        stats = [agent.train_step() for _ in range(STEPS)]
    _, sections = split_state(agent.state_dict())
    arrays = {f"{section}.{key}": np.asarray(value) for section, part in sections.items() for key, value in part.items()}
    grads = {f"{attribute}.{key}": p.grad for attribute, network in vars(agent).items()
             if isinstance(network, nets.Module) for key, p in network.named_parameters() if p.grad is not None}
    return stats, list(agent.episode_returns), arrays, grads


@pytest.mark.parametrize("name", list(rl.AGENTS))
def test_every_agent_trains_the_same_with_both_backends_float32(name):
    fast_stats, fast_returns, fast_arrays, fast_grads = train_agent(name, "fast")
    ref_stats, ref_returns, ref_arrays, ref_grads = train_agent(name, "reference")
    assert fast_returns == ref_returns                              # the same actions, the same episodes
    for a, b in zip(fast_stats, ref_stats):
        for key in a:
            assert relative_error(a[key], b[key]) <= 1e-5, (key, a[key], b[key])
    assert fast_arrays.keys() == ref_arrays.keys() and fast_arrays
    for key in fast_arrays:
        if np.issubdtype(fast_arrays[key].dtype, np.floating):
            assert relative_error(fast_arrays[key], ref_arrays[key]) <= 1e-5, key
        else:
            np.testing.assert_array_equal(fast_arrays[key], ref_arrays[key], err_msg=key)
    assert fast_grads.keys() == ref_grads.keys()
    for key in fast_grads:
        assert relative_error(fast_grads[key], ref_grads[key]) <= 1e-5, key
