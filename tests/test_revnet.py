"""Reversible networks (models/revnet.py, scripts/cli/revnet.py): the exact inverse, the backward pass by
reconstruction against the ordinary one and against finite differences, a block that cannot be
reconstructed (and the test noticing), memory growth with depth, and the `train.py revnet` command."""
import json

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models.revnet import (RevBlock, RevNet, RevNetConfig, gradients, max_grad_difference, memory_vs_depth, mlp,
                           reversible_stack, stored_stack)


def random_blocks(depth=3, half=3, hidden=5, seed=0, f=None):
    """float64 blocks with every parameter random (biases too), so no term of the gradient is trivial."""
    rng = np.random.default_rng(seed)
    blocks = [RevBlock(f() if f else mlp(half, hidden, np.float64, rng), mlp(half, hidden, np.float64, rng))
              for _ in range(depth)]
    for block in blocks:
        for p in block.parameters():
            p.data[...] = rng.normal(0.0, 0.7, p.shape)
    return blocks


def stack_grads(stack, blocks, x, w):
    """Gradients of sum(w * stack(x)) for x and every parameter, by the chosen stack."""
    params = [p for b in blocks for p in b.parameters()]
    x_t = Tensor(x.copy(), requires_grad=True)
    for p in params:
        p.grad = None
    (stack(x_t, blocks) * Tensor(w)).sum().backward()
    return [x_t.grad] + [p.grad.copy() for p in params]


@pytest.mark.grades("revblock_inverse")
def test_block_inverse_is_exact_and_the_stack_outputs_agree(rng):
    blocks = random_blocks()
    x = rng.normal(size=(4, 6))
    y1, y2 = (t.data for t in blocks[0](Tensor(x[:, :3]), Tensor(x[:, 3:])))
    x1, x2 = blocks[0].inverse(y1, y2)
    np.testing.assert_allclose(np.concatenate([x1, x2], axis=1), x, rtol=0, atol=1e-13)
    assert np.abs(y1 - x[:, :3]).max() > 0.1          # the block is not (close to) the identity
    np.testing.assert_array_equal(reversible_stack(Tensor(x), blocks).data, stored_stack(Tensor(x), blocks).data)


@pytest.mark.grades("revblock_gradient")
def test_reconstruction_gradients_equal_the_stored_ones(rng):
    blocks = random_blocks(depth=4)
    x, w = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    reversible = stack_grads(reversible_stack, blocks, x, w)
    stored = stack_grads(stored_stack, blocks, x, w)
    assert len(reversible) == 1 + 4 * 8
    for a, b in zip(reversible, stored):
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.grades("revblock_gradient")
def test_reversible_stack_passes_gradcheck_for_input_and_every_parameter(rng):
    blocks = random_blocks(depth=2, half=2, hidden=3)
    params = [p for b in blocks for p in b.parameters()]
    x = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    assert gradcheck(lambda x, *ps: reversible_stack(x, blocks), x, *params)


def test_a_block_that_cannot_be_reconstructed_gives_wrong_gradients(rng):
    """Dropout draws a new mask when the backward recomputes f: the reconstructed input is wrong, and so
    are the gradients. This is what the comparison with the stored backward catches."""
    nets.manual_seed(0)
    blocks = random_blocks(f=lambda: nets.Sequential(nets.Linear(3, 3, dtype=np.float64), nets.Dropout(0.5)))
    x, w = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    out = reversible_stack(Tensor(x), blocks).data
    x1, x2 = out[:, :3], out[:, 3:]
    for block in reversed(blocks):
        x1, x2 = block.inverse(x1, x2)
    assert np.abs(np.concatenate([x1, x2], axis=1) - x).max() > 1e-3
    nets.manual_seed(1)
    reversible = stack_grads(reversible_stack, blocks, x, w)
    nets.manual_seed(1)                   # the stored backward sees the same masks as its forward
    stored = stack_grads(stored_stack, blocks, x, w)
    assert max(np.abs(a - b).max() for a, b in zip(reversible, stored)) > 1e-3


def test_classifier_gradients_agree_and_differ_from_a_perturbed_model(rng):
    nets.manual_seed(0)
    model = RevNet(width=8, hidden=6, depth=3).double()
    images, labels = rng.random((6, 784)), rng.integers(0, 10, 6)
    assert max_grad_difference(model, images, labels) < 1e-12
    before = gradients(model, images, labels, store_activations=True)
    model.blocks[1].g[0].bias.data += 0.5           # a different network has different gradients
    after = gradients(model, images, labels, store_activations=False)
    assert max(np.abs(before[k] - after[k]).max() for k in before) > 1e-4


def test_reversible_memory_grows_at_most_half_as_fast_with_depth():
    cfg = RevNetConfig(width=32, hidden=64, memory_depths=(1, 2, 4), memory_batch=64)
    nets.manual_seed(0)
    result = memory_vs_depth(cfg, np.random.default_rng(0))
    stored, reversible = result["bytes_per_block"]["stored"], result["bytes_per_block"]["reversible"]
    assert stored > 0
    assert reversible <= 0.5 * stored
    assert set(result["peak_memory_bytes"]["stored"]) == {"1", "2", "4"}


def test_cli_tiny_run_writes_the_contract_keys(tmp_path):
    import train
    out = tmp_path / "run"
    tiny = ["revnet", "--epochs", "1", "--width", "8", "--hidden", "8", "--depth", "2", "--batch-size", "500",
            "--memory-depths", "1", "2", "3", "--memory-batch", "16"]
    assert train.main(tiny + ["--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1
    assert 0 <= metrics["max_grad_difference"] < 1e-4
    for kind in ("reversible", "stored"):
        assert set(metrics["peak_memory_bytes"][kind]) == {"1", "2", "3"}
    assert (out / "memory.png").exists()
    assert train.main(tiny[:-6] + ["--memory-depths", "2", "4", "--out", str(tmp_path / "bad")]) == 2
