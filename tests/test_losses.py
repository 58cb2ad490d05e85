"""Losses: values against their textbook formulas (NumPy), stability at extreme inputs, bad targets,
the Gaussian KL against numerical integration and Monte Carlo, and a gradient check of each."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from autodiff import Tensor, gradcheck
from nets import losses as L

RNG = np.random.default_rng(0)


def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def integrate(f, lo, hi, n=200_001):
    """The integral of f over [lo, hi] by the trapezoid rule on n points."""
    z = np.linspace(lo, hi, n)
    y = f(z)
    return float((y[1:] + y[:-1]).sum() * (z[1] - z[0]) / 2)


def normal_logpdf(x, mean, var):
    return -0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var)


# ============================================================================ BCE
@pytest.mark.grades("bce_with_logits")
def test_bce_with_logits_matches_the_formula():
    x = RNG.uniform(-5, 5, size=(4, 3))
    t = RNG.uniform(0, 1, size=(4, 3))                # soft targets too
    s = 1 / (1 + np.exp(-x))
    expected = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    np.testing.assert_allclose(L.binary_cross_entropy_with_logits(Tensor(x), t, reduction="none").data, expected)
    np.testing.assert_allclose(L.binary_cross_entropy_with_logits(Tensor(x), t).data, expected.mean())
    np.testing.assert_allclose(L.binary_cross_entropy_with_logits(Tensor(x), t, reduction="sum").data, expected.sum())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.grades("bce_with_logits")
def test_bce_with_logits_is_finite_at_plus_minus_1000(dtype):
    x = Tensor(np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype), requires_grad=True)
    t = np.array([1.0, 0.0, 0.0, 1.0])
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        loss = L.binary_cross_entropy_with_logits(x, t, reduction="sum")
        loss.backward()
    assert loss.dtype == dtype and float(loss) == pytest.approx(2000.0)
    np.testing.assert_allclose(x.grad, [0.0, 0.0, 1.0, -1.0])       # sigmoid(x) - t


@pytest.mark.grades("bce_with_logits", "central_difference")
def test_bce_with_logits_gradients_for_logits_and_targets():
    x = Tensor(RNG.uniform(-3, 3, size=(3, 2)), requires_grad=True)
    t = Tensor(RNG.uniform(0, 1, size=(3, 2)), requires_grad=True)
    assert gradcheck(lambda x, t: L.binary_cross_entropy_with_logits(x, t, reduction="none"), x, t)
    assert gradcheck(lambda x: L.binary_cross_entropy_with_logits(x, t.data), x)


def test_bce_on_probabilities_matches_the_formula_and_clamps_at_minus_100():
    p = RNG.uniform(0.05, 0.95, size=(5,))
    t = RNG.uniform(0, 1, size=(5,))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(L.binary_cross_entropy(Tensor(p), t, reduction="none").data, expected)
    edge = Tensor(np.array([0.0, 1.0, 0.0, 1.0]), requires_grad=True)
    loss = L.binary_cross_entropy(edge, np.array([1.0, 0.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(loss.data, [100.0, 100.0, 0.0, 0.0])   # log 0 clamped to -100
    loss.sum().backward()
    assert np.all(np.isfinite(edge.grad))
    assert gradcheck(lambda p: L.binary_cross_entropy(p, t), Tensor(p, requires_grad=True))


def test_bce_rejects_mismatched_shapes_and_unknown_reduction():
    with pytest.raises(ValueError, match=r"same shape.*\(4, 1\) and \(4,\)"):
        L.binary_cross_entropy_with_logits(Tensor(np.zeros((4, 1))), np.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        L.binary_cross_entropy(Tensor(np.full(3, 0.5)), np.zeros(2))
    with pytest.raises(ValueError, match="reduction must be"):
        L.binary_cross_entropy_with_logits(Tensor(np.zeros(2)), np.zeros(2), reduction="avg")


# ============================================================================ cross entropy
@pytest.mark.grades("cross_entropy_picked")
def test_cross_entropy_with_integer_targets():
    x = RNG.standard_normal((5, 4)) * 3
    y = np.array([0, 3, 3, 1, 2])
    expected = -np_log_softmax(x)[np.arange(5), y]
    np.testing.assert_allclose(L.cross_entropy(Tensor(x), y, reduction="none").data, expected)
    np.testing.assert_allclose(L.cross_entropy(Tensor(x), y).data, expected.mean())
    np.testing.assert_allclose(L.cross_entropy(Tensor(x), Tensor(y), reduction="sum").data, expected.sum())
    assert gradcheck(lambda x: L.cross_entropy(x, y, reduction="none"), Tensor(x, requires_grad=True))


def test_cross_entropy_with_probability_targets():
    x = RNG.standard_normal((3, 4))
    t = RNG.dirichlet(np.ones(4), size=3)
    expected = -(t * np_log_softmax(x)).sum(axis=-1)
    np.testing.assert_allclose(L.cross_entropy(Tensor(x), t, reduction="none").data, expected)
    y = np.array([2, 0, 1])
    np.testing.assert_allclose(L.cross_entropy(Tensor(x), np.eye(4)[y]).data, L.cross_entropy(Tensor(x), y).data)
    assert gradcheck(lambda x: L.cross_entropy(x, t), Tensor(x, requires_grad=True))


@pytest.mark.grades("cross_entropy_picked")
def test_cross_entropy_is_stable_for_huge_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    loss = L.cross_entropy(x, np.array([1]))
    loss.backward()
    assert float(loss) == pytest.approx(1000.0)
    np.testing.assert_allclose(x.grad, [[1.0, -1.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("targets, match", [
    (np.array([0, 4, 1]), r"in \[0, 4\).*\[0, 4\]"),          # out of range
    (np.array([0, -1, 1]), r"in \[0, 4\)"),                     # negative
    (np.array([0, 1]), r"integer targets \(N,\).*\(2,\)"),     # wrong length
    (np.array([0.0, 1.0, 2.0]), "integer targets"),             # floats that are not probabilities
    (np.zeros((3, 5)), "integer targets"),                      # probabilities of the wrong width
])
def test_cross_entropy_rejects_bad_targets(targets, match):
    with pytest.raises(ValueError, match=match):
        L.cross_entropy(Tensor(np.zeros((3, 4))), targets)


def test_cross_entropy_needs_2d_logits():
    with pytest.raises(ValueError, match=r"logits \(N, K\)"):
        L.cross_entropy(Tensor(np.zeros((2, 3, 4))), np.zeros(2, dtype=int))


# ============================================================================ regression losses
def test_mse():
    p, t = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    np.testing.assert_allclose(L.mse_loss(Tensor(p), t).data, ((p - t) ** 2).mean())
    np.testing.assert_allclose(L.mse_loss(Tensor(p), Tensor(t), reduction="sum").data, ((p - t) ** 2).sum())
    assert gradcheck(lambda p, t: L.mse_loss(p, t), Tensor(p, requires_grad=True), Tensor(t, requires_grad=True))
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(4,\)"):
        L.mse_loss(Tensor(p), t[:, 0])                      # would silently broadcast to (4, 4)


@pytest.mark.parametrize("delta", [1.0, 2.0])
def test_huber_in_both_regions(delta):
    d = np.array([-3.0, -0.5, 0.0, 0.25, 1.5, 4.0]) * delta      # quadratic |d| <= delta, linear beyond
    t = RNG.standard_normal(6)
    pred = Tensor(t + d, requires_grad=True)
    loss = L.huber_loss(pred, t, delta=delta, reduction="none")
    expected = np.where(np.abs(d) <= delta, 0.5 * d ** 2, delta * (np.abs(d) - 0.5 * delta))
    np.testing.assert_allclose(loss.data, expected, atol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(pred.grad, np.clip(d, -delta, delta), atol=1e-12)
    assert gradcheck(lambda p, t: L.huber_loss(p, t, delta=delta), pred, Tensor(t, requires_grad=True))


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_smooth_l1_is_pytorchs_definition(beta):
    d = np.array([-2.0, -0.3, 0.1, 0.4, 3.0])
    expected = np.where(np.abs(d) < beta, 0.5 * d ** 2 / beta, np.abs(d) - 0.5 * beta)
    out = L.smooth_l1_loss(Tensor(d), np.zeros(5), beta=beta, reduction="none")
    np.testing.assert_allclose(out.data, expected, atol=1e-12)
    assert gradcheck(lambda p: L.smooth_l1_loss(p, np.zeros(5), beta=beta), Tensor(d, requires_grad=True))


# ============================================================================ Gaussian terms
MU = np.array([[0.0, 1.5, -0.7], [2.0, -1.0, 0.3]])
LOGVAR = np.array([[0.0, -1.0, 0.8], [0.5, -2.0, 1.2]])


@pytest.mark.grades("gaussian_kl")
def test_gaussian_kl_closed_form_equals_numerical_integration():
    kl = L.gaussian_kl(Tensor(MU), Tensor(LOGVAR))
    assert kl.shape == (2,)                                   # one value per example: summed over latents
    for n in range(2):
        total = 0.0
        for mu, logvar in zip(MU[n], LOGVAR[n]):
            var = math.exp(logvar)
            sd = math.sqrt(var)
            # KL(q || p) = integral of q(z) (log q(z) - log p(z)) dz, q = N(mu, var), p = N(0, 1)
            total += integrate(lambda z: np.exp(normal_logpdf(z, mu, var)) *
                               (normal_logpdf(z, mu, var) - normal_logpdf(z, 0.0, 1.0)),
                               mu - 15 * sd, mu + 15 * sd)
        assert float(kl.data[n]) == pytest.approx(total, rel=1e-6)


def test_gaussian_kl_agrees_with_monte_carlo():
    rng = np.random.default_rng(1)
    mu, logvar = MU[1], LOGVAR[1]
    sd = np.exp(0.5 * logvar)                                 # sigma = exp(logvar / 2)
    z = mu + sd * rng.standard_normal((200_000, 3))
    samples = (normal_logpdf(z, mu, sd ** 2) - normal_logpdf(z, 0.0, 1.0)).sum(axis=1)
    standard_error = samples.std() / math.sqrt(len(samples))
    kl = float(L.gaussian_kl(Tensor(mu), Tensor(logvar)))
    assert abs(kl - samples.mean()) < 4 * standard_error


@pytest.mark.grades("gaussian_kl")
def test_gaussian_kl_axis_and_gradient():
    mu, logvar = Tensor(MU, requires_grad=True), Tensor(LOGVAR, requires_grad=True)
    np.testing.assert_allclose(L.gaussian_kl(mu, logvar, axis=0).data,
                               -0.5 * (1 + LOGVAR - MU ** 2 - np.exp(LOGVAR)).sum(axis=0))
    assert float(L.gaussian_kl(Tensor(np.zeros(4)), Tensor(np.zeros(4)))) == 0.0   # q = p
    assert gradcheck(lambda m, lv: L.gaussian_kl(m, lv), mu, logvar)


def test_gaussian_log_likelihood():
    x = RNG.standard_normal((2, 3))
    expected = -0.5 * (np.log(2 * np.pi) + LOGVAR + (x - MU) ** 2 / np.exp(LOGVAR))
    np.testing.assert_allclose(L.gaussian_log_likelihood(x, Tensor(MU), Tensor(LOGVAR)).data, expected)
    np.testing.assert_allclose(L.gaussian_log_likelihood(Tensor(x), Tensor(MU), LOGVAR).data, expected)
    np.testing.assert_allclose(expected, normal_logpdf(x, MU, np.exp(LOGVAR)))
    # a density: exp(log-likelihood) integrates to 1 over x
    mean, logvar = Tensor(np.array(0.4)), Tensor(np.array(-0.6))
    area = integrate(lambda z: np.exp(L.gaussian_log_likelihood(z, mean, logvar).data), -10, 10, 20_001)
    assert area == pytest.approx(1.0, rel=1e-8)
    assert gradcheck(lambda x, m, lv: L.gaussian_log_likelihood(x, m, lv),
                     Tensor(x, requires_grad=True), Tensor(MU, requires_grad=True), Tensor(LOGVAR, requires_grad=True))
