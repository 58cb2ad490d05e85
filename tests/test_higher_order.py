"""Gradients of gradients (autodiff.grad / backward with create_graph=True).

1. Every row of scripts/gradcheck.py's table (every op, loss and layer) and every listed case of
   tests/test_tensor.py's op table: its second derivative, by gradcheck of x -> d/dx sum(w * f(x))
   (a random projection for the first derivative, gradcheck's own for the second).
2. Hessian-vector products of three small nets (an MLP; a conv net with a transposed conv; a batch-norm
   net) against finite differences of gradients, and the same with both backends.
3. Third derivatives of tanh and sin against their closed forms.
4. What the engine must get right beyond the rules: gradients only for what was asked, dtypes, 0-d
   tensors, reversible stacks, and a checker that catches a rule correct to first order only.
5. README's Newton's method, run as written.
"""
from __future__ import annotations

import numpy as np
import pytest

import autodiff
import autodiff.functional as F
from autodiff import Tensor, gradcheck, use_backend
from autodiff.conv import conv2d, conv_transpose2d
from autodiff.norm import batch_norm
from gradchecks import CHECKS                        # scripts/gradchecks: the table of scripts/gradcheck.py
from test_ops import second_derivative_check
from test_tensor import LISTED                      # test_tensor's op table, one row per listed case


# ============================================================================ 1. every op, twice
# The rows sized for Winograd's tiles (16 channels) are left out: a create_graph backward rebuilds a fast node
# with the reference ops (engine.py), whose second derivatives the smaller conv rows check at a tenth of the cost.
ROWS = [i for i, c in enumerate(CHECKS) if "Winograd" not in c.config]


@pytest.mark.parametrize("row", ROWS, ids=[f"{CHECKS[i].group}/{CHECKS[i].name}[{CHECKS[i].config}]" for i in ROWS])
def test_second_derivative_of_every_gradcheck_row(row):
    fn, inputs = CHECKS[row].build(np.random.default_rng([0, row]))
    second_derivative_check(fn, *inputs)


@pytest.mark.parametrize("op, case", LISTED)
def test_second_derivative_of_every_listed_op(op, case):
    """(test_ops.py checks its own table's second derivatives in its test_listed_case.)"""
    shapes, params = case
    inputs = [Tensor(a, requires_grad=True) for a in op.sample(5, shapes)]
    second_derivative_check(lambda *ts: op.fn(*ts, **params), *inputs)


def test_the_check_rejects_a_rule_that_is_right_to_first_order_only(monkeypatch):
    """tanh' = 1 - out^2 with `out` taken as a constant array: first derivative right, second wrong."""
    def tanh_with_constant_output(x):
        out = Tensor._make(np.tanh(x.data), (x,), "tanh")
        out._backward = lambda g, x, out: g * (1 - autodiff.tensor.value(out) ** 2)
        return out
    x = Tensor(np.array([0.3, -1.2, 0.8]), requires_grad=True)
    assert gradcheck(tanh_with_constant_output, x)
    with pytest.raises(autodiff.GradcheckError):
        second_derivative_check(tanh_with_constant_output, x)


# ============================================================================ 2. Hessian-vector products
def mlp(params, x, labels):
    """x (8, 5) -> tanh(x W1 + b1) -> softplus(. W2 + b2) -> W3 + b3: logits (8, 3); cross-entropy."""
    w1, b1, w2, b2, w3, b3 = params
    h = F.softplus(F.tanh(x @ w1 + b1) @ w2 + b2)
    return -F.log_softmax(h @ w3 + b3, axis=1)[np.arange(len(labels)), labels].mean()


def conv_net(params, x, target):
    """x (2, 2, 7, 7) -> conv2d k3 s2 p1 -> tanh (2, 3, 4, 4) -> conv_transpose2d k3 s2 p1 (2, 2, 7, 7);
    squared error to target (a small autoencoder)."""
    w1, b1, w2, b2 = params
    h = F.tanh(conv2d(x, w1, b1, stride=2, padding=1))
    out = conv_transpose2d(h, w2, b2, stride=2, padding=1)
    return ((out - target) ** 2).mean()


def bn_net(params, x, target):
    """x (6, 2, 3, 3) -> conv2d k2 -> batch_norm (training: batch statistics) -> tanh -> mean over H, W
    (6, 4) -> linear (6, 2) -> batch_norm -> squared error to target."""
    w1, b1, gamma1, beta1, w2, gamma2, beta2 = params
    h = F.tanh(batch_norm(conv2d(x, w1, b1), gamma1, beta1, None, None, True))
    out = batch_norm(h.mean(axis=(2, 3)) @ w2, gamma2, beta2, None, None, True)
    return ((out - target) ** 2).sum() / len(x)


def nets_and_data(seed=0):
    """{name: (loss function, parameters (float64 arrays), data)} for the three nets."""
    rng = np.random.default_rng(seed)
    r = lambda *shape, scale=0.5: rng.standard_normal(shape) * scale            # noqa: E731
    return {
        "mlp": (mlp, [r(5, 6), r(6), r(6, 4), r(4), r(4, 3), r(3)], [r(8, 5, scale=1), rng.integers(0, 3, 8)]),
        "conv": (conv_net, [r(3, 2, 3, 3), r(3), r(3, 2, 3, 3), r(2)], [r(2, 2, 7, 7, scale=1), r(2, 2, 7, 7)]),
        "bn": (bn_net, [r(4, 2, 2, 2), r(4), 1 + r(4), r(4), r(4, 2), 1 + r(2), r(2)],
               [r(6, 2, 3, 3, scale=1), r(6, 2, scale=1)]),
    }


def gradient(loss_fn, arrays, data, create_graph=False):
    params = [Tensor(a, requires_grad=True) for a in arrays]
    inputs = [Tensor(d) if d.dtype.kind == "f" else d for d in data]
    return params, autodiff.grad(loss_fn(params, *inputs), params, create_graph=create_graph)


def hessian_vector_product(loss_fn, arrays, data, v) -> list:
    """H v = d/d(params) (grad . v), by double backward."""
    params, grads = gradient(loss_fn, arrays, data, create_graph=True)
    dot = sum((g * Tensor(vi)).sum() for g, vi in zip(grads, v))
    return [h.data for h in autodiff.grad(dot, params)]


def finite_difference_hvp(loss_fn, arrays, data, v, eps=1e-5) -> list:
    """H v ~ (grad(params + eps v) - grad(params - eps v)) / (2 eps)."""
    plus = gradient(loss_fn, [a + eps * vi for a, vi in zip(arrays, v)], data)[1]
    minus = gradient(loss_fn, [a - eps * vi for a, vi in zip(arrays, v)], data)[1]
    return [(p.data - m.data) / (2 * eps) for p, m in zip(plus, minus)]


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


@pytest.mark.parametrize("name", ["mlp", "conv", "bn"])
def test_hessian_vector_product_matches_finite_differences_of_gradients(name):
    loss_fn, arrays, data = nets_and_data()[name]
    v = [np.random.default_rng(1).standard_normal(a.shape) for a in arrays]
    exact = flat(hessian_vector_product(loss_fn, arrays, data, v))
    numeric = flat(finite_difference_hvp(loss_fn, arrays, data, v))
    assert np.abs(exact).max() > 1e-2                           # a real curvature, not zero against zero
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-8 * np.abs(numeric).max())


@pytest.mark.parametrize("name", ["mlp", "conv", "bn"])
def test_create_graph_in_the_fast_backend_equals_the_reference(name):
    loss_fn, arrays, data = nets_and_data()[name]
    v = [np.random.default_rng(1).standard_normal(a.shape) for a in arrays]
    results = {}
    for backend in ("fast", "reference"):
        with use_backend(backend):
            results[backend] = flat(hessian_vector_product(loss_fn, arrays, data, v))
    np.testing.assert_allclose(results["fast"], results["reference"], rtol=1e-10, atol=1e-12)


# ============================================================================ 3. third derivatives
def nth_derivative(fn, x: np.ndarray, n: int) -> np.ndarray:
    """d^n/dx^n fn(x), elementwise, by n backward passes (each one differentiable but the last)."""
    t = Tensor(x, requires_grad=True)
    out = fn(t)
    for k in range(n):
        out, = autodiff.grad(out.sum(), [t], create_graph=k < n - 1)
    return out.data


def test_third_derivatives_of_tanh_and_sin_are_the_closed_forms():
    x = np.linspace(-2.5, 2.5, 11)
    t = np.tanh(x)
    np.testing.assert_allclose(nth_derivative(F.tanh, x, 3), (1 - t ** 2) * (6 * t ** 2 - 2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nth_derivative(F.sin, x, 3), -np.cos(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nth_derivative(F.sin, x, 4), np.sin(x), rtol=1e-12, atol=1e-14)


# ============================================================================ 4. the engine
def test_grad_runs_only_the_rules_on_paths_to_the_requested_inputs():
    """d(loss)/dx of a layer x @ w: w's rule (and everything above w) is not run, with or without a graph."""
    calls = []

    def recorded(a):
        out = Tensor._make(a.data * 2, (a,), "double")
        out._backward = lambda g, a, out: calls.append("double") or g * 2
        return out
    x, w = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.ones((3, 4)), requires_grad=True)
    for create_graph in (False, True):
        calls.clear()
        loss = (F.tanh(x @ recorded(w)) ** 2).sum()
        gx, = autodiff.grad(loss, [x], create_graph=create_graph)
        assert calls == [] and gx.shape == x.shape
        assert gx.requires_grad == create_graph
    autodiff.grad((x @ recorded(w)).sum(), [w])
    assert calls == ["double"]


def test_create_graph_gives_each_input_its_own_dtype():
    """A float32 input mixed with a float64 tensor: its gradient is float32, as without create_graph."""
    x = Tensor(np.array([0.5, -1.0, 2.0], np.float32), requires_grad=True)
    y = ((x * 2.0 + Tensor(np.ones(3))) ** 2).sum()                   # float64
    plain, = autodiff.grad(y, [x], retain_graph=True)
    graph, = autodiff.grad(y, [x], create_graph=True)
    assert plain.dtype == graph.dtype == np.float32
    second, = autodiff.grad(graph.sum(), [x])
    assert second.dtype == np.float32 and np.allclose(second.data, 8.0)


def test_a_0d_tensor_receiving_several_gradients_in_a_graph_sums_them():
    x = Tensor(np.array(0.7), requires_grad=True)
    y = x * x + 3 * x + F.sin(x)                               # three paths meet at x
    first, = autodiff.grad(y, [x], create_graph=True)
    second, = autodiff.grad(first, [x])
    assert first.shape == second.shape == ()
    np.testing.assert_allclose([first.data, second.data], [2 * 0.7 + 3 + np.cos(0.7), 2 - np.sin(0.7)], rtol=1e-14)


def test_reversible_stack_has_the_second_derivative_of_the_stored_stack():
    from models.revnet import RevBlock, mlp as block_mlp, reversible_stack, stored_stack
    rng = np.random.default_rng(0)
    blocks = [RevBlock(block_mlp(2, 4, np.float64, rng), block_mlp(2, 4, np.float64, rng)) for _ in range(2)]
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4))

    def hvp(stack):
        xt = Tensor(x, requires_grad=True)
        gx, = autodiff.grad((F.tanh(stack(xt, blocks)) * Tensor(w)).sum(), [xt], create_graph=True)
        return autodiff.grad((gx * Tensor(w)).sum(), [xt])[0].data
    np.testing.assert_allclose(hvp(reversible_stack), hvp(stored_stack), rtol=1e-12)


# ============================================================================ 5. README
def test_readme_newton_beats_gradient_descent_as_stated():
    import re
    from conftest import ROOT
    text = open(ROOT / "README.md").read()
    section = text[text.index("### Gradients of gradients"):]
    code = section.split("```python\n")[1].split("```")[0]
    namespace = {}
    exec(code, namespace)
    newton, descent = namespace["newton_steps"], namespace["descent_steps"]
    stated = re.search(r"Newton: (\d+) iterations, gradient descent: (\d+)", section)
    assert (newton, descent) == (int(stated.group(1)), int(stated.group(2)))
    assert newton < 20 < descent
