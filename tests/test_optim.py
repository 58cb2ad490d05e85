"""Optimizers against their update rules written out by hand (Adam as in the paper, SGD/RMSProp/Adagrad
as PyTorch defines them), resuming from state_dict, clip_grad_norm_, and convergence on a quadratic."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nets
from autodiff import Tensor
from nets.checkpoint import load_npz, save_npz_atomic

P0 = np.array([0.5, -1.0, 2.0])
GRADS = [np.array([0.1, -0.2, 0.3]), np.array([-0.5, 0.4, 0.0]), np.array([0.05, 1.0, -2.0])]


def run(optimizer_class, grads=GRADS, p0=P0, **kwargs):
    """Parameter values after each step, feeding the given gradient sequence."""
    p = nets.Parameter(p0.copy())
    opt = optimizer_class([p], **kwargs)
    values = []
    for g in grads:
        opt.zero_grad()
        p.grad = g.copy()
        opt.step()
        values.append(p.data.copy())
    return values, opt


# ============================================================================ update rules
@pytest.mark.grades("adam_bias_correction", "adam_moments")
def test_adam_first_three_steps_follow_the_paper():
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    values, opt = run(nets.Adam, lr=lr, betas=(beta1, beta2), eps=eps)
    g1, g2, g3 = GRADS
    p = P0.copy()
    # step 1: the moments start at zero, so the bias correction divides by (1 - beta)
    m = (1 - beta1) * g1
    v = (1 - beta2) * g1 ** 2
    m_hat = m / (1 - beta1 ** 1)
    v_hat = v / (1 - beta2 ** 1)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(values[0], p, rtol=1e-12)
    np.testing.assert_allclose(values[0], P0 - lr * np.sign(g1), rtol=1e-6)   # the first step is lr * sign(g)
    # step 2
    m = beta1 * m + (1 - beta1) * g2
    v = beta2 * v + (1 - beta2) * g2 ** 2
    m_hat = m / (1 - beta1 ** 2)
    v_hat = v / (1 - beta2 ** 2)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(values[1], p, rtol=1e-12)
    # step 3
    m = beta1 * m + (1 - beta1) * g3
    v = beta2 * v + (1 - beta2) * g3 ** 2
    m_hat = m / (1 - beta1 ** 3)
    v_hat = v / (1 - beta2 ** 3)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(values[2], p, rtol=1e-12)
    np.testing.assert_allclose(opt.state[0]["m"], m, rtol=1e-12)
    np.testing.assert_allclose(opt.state[0]["v"], v, rtol=1e-12)
    assert opt.step_count == 3


def test_adam_weight_decay_is_added_to_the_gradient():
    lr, wd = 0.01, 0.1
    values, _ = run(nets.Adam, grads=GRADS[:1], lr=lr, weight_decay=wd)
    g = GRADS[0] + wd * P0
    m_hat, v_hat = g, g ** 2                          # after bias correction on step 1
    np.testing.assert_allclose(values[0], P0 - lr * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-12)


def test_sgd_plain_and_with_weight_decay():
    values, _ = run(nets.SGD, lr=0.1)
    np.testing.assert_allclose(values[-1], P0 - 0.1 * sum(GRADS), rtol=1e-12)
    values, _ = run(nets.SGD, lr=0.1, weight_decay=0.5)
    p = P0.copy()
    for g, got in zip(GRADS, values):
        p = p - 0.1 * (g + 0.5 * p)
        np.testing.assert_allclose(got, p, rtol=1e-12)


@pytest.mark.parametrize("nesterov, dampening, wd", [(False, 0.0, 0.0), (True, 0.0, 0.0), (False, 0.3, 0.0),
                                                     (True, 0.0, 0.05)])
@pytest.mark.grades("sgd_momentum", "sgd_nesterov")
def test_sgd_momentum_matches_pytorchs_formula(nesterov, dampening, wd):
    lr, mu = 0.1, 0.9
    values, _ = run(nets.SGD, lr=lr, momentum=mu, dampening=dampening, nesterov=nesterov, weight_decay=wd)
    p, buf = P0.copy(), None
    for g, got in zip(GRADS, values):
        d = g + wd * p
        buf = d.copy() if buf is None else mu * buf + (1 - dampening) * d     # buf = d on the first step
        step = d + mu * buf if nesterov else buf
        p = p - lr * step
        np.testing.assert_allclose(got, p, rtol=1e-12)


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.1)])
def test_rmsprop_matches_its_formula(momentum, wd):
    lr, alpha, eps = 0.01, 0.9, 1e-8
    values, _ = run(nets.RMSProp, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=wd)
    p, v, buf = P0.copy(), np.zeros(3), np.zeros(3)
    for g, got in zip(GRADS, values):
        g = g + wd * p
        v = alpha * v + (1 - alpha) * g ** 2
        step = g / (np.sqrt(v) + eps)
        if momentum:
            buf = momentum * buf + step
            step = buf
        p = p - lr * step
        np.testing.assert_allclose(got, p, rtol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.2])
def test_adagrad_matches_its_formula(wd):
    lr, eps = 0.5, 1e-10
    values, _ = run(nets.Adagrad, lr=lr, eps=eps, weight_decay=wd)
    p, s = P0.copy(), np.zeros(3)
    for g, got in zip(GRADS, values):
        g = g + wd * p
        s = s + g ** 2
        p = p - lr * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(got, p, rtol=1e-12)
    if wd == 0:                    # the third coordinate's second gradient is 0: it does not move
        assert values[1][2] == values[0][2]


# ============================================================================ bookkeeping
def test_zero_grad_and_parameters_without_gradient_are_skipped():
    a, b = nets.Parameter(np.ones(2)), nets.Parameter(np.ones(2))
    opt = nets.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(2), None
    opt.step()
    assert not np.allclose(a.data, 1.0) and np.array_equal(b.data, np.ones(2))
    assert "m" not in opt.state[1]
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_dtype_is_kept_and_lr_can_be_changed():
    p = nets.Parameter(np.ones(3, np.float32))
    opt = nets.SGD([p], lr=0.1)
    p.grad = np.ones(3)                       # a float64 gradient
    opt.step()
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.data, 0.9, rtol=1e-6)
    opt.lr = 0.5
    p.grad = np.ones(3, np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, 0.4, rtol=1e-6)


def test_optimizer_argument_errors():
    p = nets.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        nets.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        nets.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="parameter 0"):
        nets.SGD([Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        nets.Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        nets.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        nets.Adam([p], betas=(1.0, 0.999))


MORE_GRADS = [np.random.default_rng(i).standard_normal(3) for i in range(3)]
OPTIMIZERS = [(nets.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (nets.Adam, dict(lr=0.05)),
              (nets.RMSProp, dict(lr=0.01, momentum=0.5)), (nets.Adagrad, dict(lr=0.3))]


@pytest.mark.parametrize("optimizer_class, kwargs", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_state_dict_round_trip_gives_identical_steps(optimizer_class, kwargs, tmp_path):
    rng = np.random.default_rng(0)
    params = [nets.Parameter(rng.standard_normal(3)), nets.Parameter(rng.standard_normal((2, 2)))]
    opt = optimizer_class(params, **kwargs)

    def steps(opt, params, grads):
        for g in grads:
            opt.zero_grad()
            params[0].grad, params[1].grad = g, np.outer(g[:2], g[1:])
            opt.step()

    steps(opt, params, GRADS)
    save_npz_atomic(tmp_path / "opt.npz", opt.state_dict())          # through a file, as a resume would
    clones = [nets.Parameter(p.data.copy()) for p in params]
    resumed = optimizer_class(clones, **{**kwargs, "lr": 123.0})      # same settings; lr comes from the state
    resumed.load_state_dict(load_npz(tmp_path / "opt.npz"))
    assert resumed.lr == opt.lr and resumed.step_count == 3
    steps(opt, params, MORE_GRADS)
    steps(resumed, clones, MORE_GRADS)
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_holds_copies_and_load_checks_shapes():
    p = nets.Parameter(np.ones(3))
    opt = nets.Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    state = opt.state_dict()
    assert set(state) == {"step", "lr", "0.step", "0.m", "0.v"}
    state["0.m"][...] = 100
    assert not np.any(opt.state[0]["m"] == 100)
    state["0.m"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"'0.m' has shape \(4,\)"):
        opt.load_state_dict(state)
    state = opt.state_dict()
    state["3.m"] = np.zeros(3)
    with pytest.raises(ValueError, match="parameter 3"):
        opt.load_state_dict(state)


# ============================================================================ clip_grad_norm_
@pytest.mark.grades("clip_grad_norm")
def test_clip_grad_norm_scales_all_gradients_together():
    a, b, c = nets.Parameter(np.zeros(3)), nets.Parameter(np.zeros((2, 2))), nets.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0, 4.0]), np.array([[12.0, 0.0], [0.0, 0.0]])   # norm 13
    original = [a.grad.copy(), b.grad.copy()]
    norm = nets.clip_grad_norm_([a, b, c], max_norm=6.5)
    assert norm == pytest.approx(13.0)                               # the norm before clipping
    new_norm = math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum())
    assert new_norm == pytest.approx(6.5, rel=1e-6)
    np.testing.assert_allclose(a.grad, original[0] * new_norm / 13)  # same direction
    np.testing.assert_allclose(b.grad, original[1] * new_norm / 13)
    assert c.grad is None
    # under the limit: untouched
    norm = nets.clip_grad_norm_([a, b], max_norm=100.0)
    assert norm == pytest.approx(6.5, rel=1e-6)
    assert math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()) == pytest.approx(6.5, rel=1e-6)
    # any iterable of parameters, e.g. a generator, as in PyTorch
    norm = nets.clip_grad_norm_((p for p in [a, b]), max_norm=1.0)
    assert norm == pytest.approx(6.5, rel=1e-6)
    assert math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()) == pytest.approx(1.0, rel=1e-6)


# ============================================================================ convergence
@pytest.mark.parametrize("optimizer_class, kwargs, steps", [
    (nets.SGD, dict(lr=0.04), 300),
    (nets.SGD, dict(lr=0.01, momentum=0.9), 300),
    (nets.SGD, dict(lr=0.01, momentum=0.9, nesterov=True), 300),
    (nets.Adam, dict(lr=0.05), 500),
    (nets.RMSProp, dict(lr=0.01), 500),
    (nets.Adagrad, dict(lr=0.5), 500),
], ids=["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"])
def test_optimizers_converge_on_a_quadratic(optimizer_class, kwargs, steps):
    # f(p) = sum(a * (p - c)^2), an ill-conditioned bowl with its minimum at c
    a, c = Tensor(np.array([1.0, 10.0, 3.0])), np.array([1.0, -2.0, 0.5])
    p = nets.Parameter(np.zeros(3))
    opt = optimizer_class([p], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        (a * (p - c) ** 2).sum().backward()
        opt.step()
    np.testing.assert_allclose(p.data, c, atol=2e-2)


@pytest.mark.grades("adam_bias_correction")
def test_adam_bias_correction_counts_each_parameters_own_steps():
    """A parameter without a gradient in step 1 takes, in step 2, Adam's *first* step (t = 1):
    lr * g / (|g| + eps) = lr * sign(g), as in PyTorch; a global t = 2 would give a different value."""
    a = Tensor(np.zeros(2), requires_grad=True)
    b = Tensor(np.zeros(2), requires_grad=True)
    opt = nets.Adam([a, b], lr=0.1)
    a.grad = np.array([1.0, -2.0])
    opt.step()
    a.grad, b.grad = np.array([1.0, -2.0]), np.array([3.0, -0.5])
    opt.step()
    np.testing.assert_allclose(b.data, -0.1 * np.sign([3.0, -0.5]), rtol=1e-6)
