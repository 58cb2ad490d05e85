"""batch_norm (train and eval) and dropout: gradients against central differences (float64), running
statistics against the formula, dtypes, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from autodiff import Tensor, gradcheck
from autodiff.norm import batch_norm, dropout

CHEAP = settings(deadline=None, max_examples=25, derandomize=True)


def t64(a, grad=False):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@st.composite
def bn_cases(draw):
    """(shape, seed): (N, C) or (N, C, H, W) with more than one value per channel."""
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (N, C) if draw(st.booleans()) else (N, C, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if np.prod(shape) // C < 2:
        shape = (2,) + shape[1:]
    return shape, draw(st.integers(0, 2 ** 16))


# ==================================================================== batch norm: gradients
@CHEAP
@given(bn_cases(), st.booleans(), st.booleans())
@pytest.mark.grades("batch_norm_backward")
def test_batch_norm_train_gradcheck(case, with_gamma, with_beta):
    shape, seed = case
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = t64(rng.standard_normal(shape), True)
    gamma = t64(rng.standard_normal(C), True) if with_gamma else None
    beta = t64(rng.standard_normal(C), True) if with_beta else None
    inputs = [t for t in (x, gamma, beta) if t is not None]

    def fn(*ts):
        it = iter(ts[1:])
        g = next(it) if with_gamma else None
        b = next(it) if with_beta else None
        return batch_norm(ts[0], g, b, None, None, training=True)
    gradcheck(fn, *inputs)


@CHEAP
@given(bn_cases())
@pytest.mark.grades("batch_norm_eval", "batch_norm_backward")
def test_batch_norm_eval_gradcheck(case):
    shape, seed = case
    rng = np.random.default_rng(seed)
    C = shape[1]
    x, gamma, beta = t64(rng.standard_normal(shape), True), t64(rng.standard_normal(C), True), \
        t64(rng.standard_normal(C), True)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    gradcheck(lambda a, g, b: batch_norm(a, g, b, rm, rv, training=False), x, gamma, beta)


# ==================================================================== batch norm: values
@pytest.mark.parametrize("shape", [(8, 3), (8, 3, 4, 4)])
def test_batch_norm_train_normalises_each_channel(shape):
    x = np.random.default_rng(0).normal(3.0, 2.0, shape)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, 1.0])
    y = batch_norm(t64(x), t64(gamma), t64(beta), None, None, training=True).data
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, gamma.reshape(bshape) * x_hat + beta.reshape(bshape), rtol=1e-10)
    np.testing.assert_allclose(x_hat.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(x_hat.var(axis=axes), 1, rtol=1e-4)        # eps = 1e-5


@pytest.mark.grades("batch_norm_running_stats")
def test_running_statistics_after_two_steps_match_the_formula():
    rng = np.random.default_rng(0)
    C, momentum = 3, 0.1
    rm, rv = np.zeros(C), np.ones(C)
    batches = [rng.normal(1.0, 2.0, (4, C, 2, 3)), rng.normal(-1.0, 0.5, (4, C, 2, 3))]
    expected_mean, expected_var = np.zeros(C), np.ones(C)
    for xb in batches:
        batch_norm(t64(xb), None, None, rm, rv, training=True, momentum=momentum)
        n = xb.size // C
        unbiased = xb.var(axis=(0, 2, 3)) * n / (n - 1)          # = xb.var(..., ddof=1)
        expected_mean = (1 - momentum) * expected_mean + momentum * xb.mean(axis=(0, 2, 3))
        expected_var = (1 - momentum) * expected_var + momentum * unbiased
    np.testing.assert_allclose(rm, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(rv, expected_var, rtol=1e-12)


@pytest.mark.grades("batch_norm_eval")
def test_batch_norm_eval_uses_running_statistics_and_works_for_batch_of_one():
    rm, rv = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    x = np.array([[3.0, -1.0]])
    y = batch_norm(t64(x), t64([2.0, 1.0]), t64([0.5, 0.0]), rm, rv, training=False, eps=0.0)
    np.testing.assert_allclose(y.data, [[2.0 * (3 - 1) / 2 + 0.5, (-1 + 2) / 0.5]])
    np.testing.assert_array_equal(rm, [1.0, -2.0])          # eval leaves the running stats alone


def test_batch_norm_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), requires_grad=True)
    gamma = Tensor(np.ones(3, np.float32), requires_grad=True)
    beta = Tensor(np.zeros(3, np.float32), requires_grad=True)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for training in (True, False):
        out = batch_norm(x, gamma, beta, rm, rv, training=training)
        assert out.dtype == np.float32
        out.sum().backward()
    assert x.grad.dtype == gamma.grad.dtype == beta.grad.dtype == rm.dtype == rv.dtype == np.float32


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(t64(np.zeros((1, 3))), None, None, None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(t64(np.zeros((1, 3, 1, 1))), None, None, np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="eval mode"):
        batch_norm(t64(np.zeros((2, 3))), None, None, None, None, training=False)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\).*\(2, 3\).*got \(4,\)"):
        batch_norm(t64(np.zeros((2, 3))), t64(np.ones(4)), None, None, None, training=True)
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\).*\(2, 3, 4\)"):
        batch_norm(t64(np.zeros((2, 3, 4))), None, None, None, None, training=True)


# ==================================================================== dropout
def test_dropout_eval_and_p0_are_the_identity():
    x = t64(np.arange(6.0), True)
    rng = np.random.default_rng(0)
    assert dropout(x, 0.5, training=False, rng=rng) is x
    assert dropout(x, 0.0, training=True, rng=rng) is x


@pytest.mark.grades("dropout")
def test_dropout_train_statistics_and_exact_gradient():
    p = 0.3
    x = Tensor(np.full((200, 500), 2.0, np.float32), requires_grad=True)
    y = dropout(x, p, training=True, rng=np.random.default_rng(0))
    assert y.dtype == np.float32
    kept = y.data != 0
    assert abs((1 - kept.mean()) - p) < 0.01                     # zeros fraction ~ p
    assert abs(y.data.mean() - 2.0) < 0.03                       # inverted scaling keeps the mean
    np.testing.assert_allclose(y.data[kept], 2.0 / (1 - p), rtol=1e-6)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g * (kept.astype(np.float32) / np.float32(1 - p)))


@pytest.mark.grades("dropout")
def test_dropout_gradcheck_for_a_fixed_mask():
    x = t64(np.random.default_rng(0).standard_normal((3, 4)), True)
    gradcheck(lambda t: dropout(t, 0.5, training=True, rng=np.random.default_rng(7)), x)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        dropout(t64(np.ones(3)), p, training=True, rng=np.random.default_rng(0))
