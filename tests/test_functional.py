"""autodiff.functional beyond the op table in test_tensor.py: numerical stability at |x| = 1000,
the conventions at kinks and ties, and bad arguments."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import autodiff.functional as F
from autodiff import Tensor, gradcheck

BIG = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])


def value_and_grad(fn, data, dtype=np.float64):
    """fn's output and the gradient of its sum, with every NumPy warning (overflow, 0/0) an error."""
    x = Tensor(np.asarray(data, dtype=dtype), requires_grad=True)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        out = fn(x)
        out.sum().backward()
    return out.data, x.grad


# ============================================================================ stability
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.grades("sigmoid_backward")
def test_sigmoid_is_finite_at_plus_minus_1000(dtype):
    value, grad = value_and_grad(F.sigmoid, BIG, dtype)
    assert value.dtype == dtype and np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    assert value[0] == 0 and value[-1] == 1 and value[2] == 0.5
    np.testing.assert_allclose(grad, value * (1 - value))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softplus_is_finite_at_plus_minus_1000(dtype):
    value, grad = value_and_grad(F.softplus, BIG, dtype)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, [0.0, np.log1p(np.exp(-50.0)), np.log(2), 50.0, 1000.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [0.0, 1 / (1 + np.exp(50.0)), 0.5, 1 / (1 + np.exp(-50.0)), 1.0], rtol=1e-6)


@pytest.mark.grades("tanh_backward")
def test_tanh_saturates_cleanly():
    value, grad = value_and_grad(F.tanh, BIG)
    np.testing.assert_array_equal(value[[0, -1]], [-1.0, 1.0])
    np.testing.assert_array_equal(grad[[0, -1]], [0.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.grades("log_softmax_stable", "softmax_backward")
def test_logsumexp_log_softmax_softmax_on_huge_logits(dtype):
    x = np.array([[1000.0, 1000.0, -1000.0], [-1000.0, 0.0, 1000.0]])
    value, grad = value_and_grad(lambda t: F.logsumexp(t, axis=1), x, dtype)
    np.testing.assert_allclose(value, [1000 + np.log(2), 1000.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)

    value, _ = value_and_grad(lambda t: F.log_softmax(t, axis=-1), x, dtype)
    np.testing.assert_allclose(value, [[-np.log(2), -np.log(2), -2000 - np.log(2)], [-2000.0, -1000.0, 0.0]],
                               rtol=1e-6)
    value, _ = value_and_grad(lambda t: F.softmax(t, axis=-1), x, dtype)
    np.testing.assert_allclose(value, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)
    assert value.dtype == dtype


def test_logsumexp_with_minus_infinity():
    x = Tensor(np.array([-np.inf, 0.0]), requires_grad=True)
    out = F.logsumexp(x)
    assert float(out) == 0.0                   # exp(-inf) = 0 contributes nothing
    out.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0])
    with np.errstate(divide="ignore"):
        assert F.logsumexp(Tensor(np.full(3, -np.inf))).item() == -np.inf      # log(0): -inf, not nan


@pytest.mark.grades("log_softmax_stable", "log_softmax_backward", "softmax_backward")
def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 5)) * 10)
    s = F.softmax(x, axis=1).data
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(s), F.log_softmax(x, axis=1).data, atol=1e-12)
    np.testing.assert_allclose(F.softmax(x, axis=0).data.sum(axis=0), 1.0)


# ============================================================================ kinks and ties
def test_relu_leaky_relu_and_abs_at_zero_have_gradient_zero_or_slope():
    _, g = value_and_grad(F.relu, [0.0, -1.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    value, g = value_and_grad(F.leaky_relu, [0.0, -1.0, 2.0])           # default slope 0.01
    np.testing.assert_allclose(value, [0.0, -0.01, 2.0])
    np.testing.assert_allclose(g, [0.01, 0.01, 1.0])
    _, g = value_and_grad(lambda t: t.abs(), [0.0, -3.0, 3.0])
    np.testing.assert_array_equal(g, [0.0, -1.0, 1.0])


def test_clip_passes_gradient_inside_and_on_the_bounds():
    _, g = value_and_grad(lambda t: t.clip(-1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])


@pytest.mark.grades("max_ties")
def test_max_and_min_split_the_gradient_between_ties():
    _, g = value_and_grad(lambda t: t.max(), [1.0, 3.0, 3.0])
    np.testing.assert_allclose(g, [0.0, 0.5, 0.5])
    _, g = value_and_grad(lambda t: t.min(axis=1), [[2.0, 2.0, 5.0], [1.0, 0.0, 4.0]])
    np.testing.assert_allclose(g, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])


def test_maximum_and_minimum_split_ties_evenly_as_pytorch():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 0.0, 5.0]), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0, 1.0])
    a.grad = b.grad = None
    F.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0, 0.0])


def test_maximum_with_a_plain_number():
    x = Tensor(np.array([-1.0, 2.0]), requires_grad=True)
    out = F.maximum(x, 0.5)
    np.testing.assert_array_equal(out.data, [0.5, 2.0])


# ============================================================================ where, join and cut
def test_where_accepts_a_tensor_condition_and_broadcasts():
    rng = np.random.default_rng(3)
    cond = Tensor(np.array([[True], [False], [True]]))             # (3, 1)
    a = Tensor(rng.standard_normal((1, 4)), requires_grad=True)   # (1, 4)
    b = Tensor(np.array(0.5), requires_grad=True)                 # scalar
    out = F.where(cond, a, b)
    np.testing.assert_array_equal(out.data, np.where(cond.data, a.data, b.data))
    assert gradcheck(lambda a, b: F.where(cond, a, b), a, b)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, np.full((1, 4), 2.0))
    assert b.grad == 4.0


def test_concatenate_and_stack_mix_tensors_and_arrays():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    out = F.concatenate([x, np.zeros((1, 2))], axis=0)
    assert out.shape == (3, 2)
    (out * Tensor(np.arange(6.0).reshape(3, 2))).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0], [2.0, 3.0]])
    assert F.stack([x, np.zeros((2, 2))], axis=-1).shape == (2, 2, 2)


def test_split_cuts_like_numpy():
    x = Tensor(np.arange(12.0).reshape(2, 6), requires_grad=True)
    parts = F.split(x, 3, axis=1)
    assert [p.shape for p in parts] == [(2, 2)] * 3
    parts = F.split(x, [1, 4], axis=-1)
    assert [p.shape for p in parts] == [(2, 1), (2, 3), (2, 2)]
    (parts[0].sum() * 2 + parts[2].sum()).backward()
    np.testing.assert_array_equal(x.grad[0], [2, 0, 0, 0, 1, 1])


def test_pad_forms_and_value():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    assert F.pad(x, 1).shape == (4, 5)
    assert F.pad(x, (0, 2)).shape == (4, 5)
    out = F.pad(x, ((1, 0), (0, 0)), value=-7.0)
    np.testing.assert_array_equal(out.data[0], [-7.0] * 3)
    (out * out).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * np.ones((2, 3)))


def test_join_and_cut_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        F.concatenate([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))], axis=0)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(3, 2\)"):
        F.stack([Tensor(np.ones((2, 3))), Tensor(np.ones((3, 2)))])
    with pytest.raises(ValueError, match="size 5 does not divide into 2"):
        F.split(Tensor(np.ones(5)), 2)


def test_conv_and_norm_are_reexported_from_functional():
    pytest.importorskip("autodiff.conv")
    for name in ("conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "batch_norm", "dropout"):
        assert callable(getattr(F, name, None)), f"autodiff.functional.{name} is missing"


def test_leaky_relu_of_integers_raises_instead_of_promoting(fast_backend):
    """An integer input whose result would be floating-point is an error (tensor.py's dtype rule), in the
    reference and through the fast backend (which declines integers)."""
    a = np.array([[3, -2], [0, -5]])
    with pytest.raises(TypeError, match="leaky_relu: integer/boolean input .int64. would give a floating"):
        F.leaky_relu(Tensor(a), 0.1)
    out = F.leaky_relu(Tensor(a.astype(np.float32)), 0.1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, np.where(a > 0, a, np.float32(0.1) * a.astype(np.float32)))
