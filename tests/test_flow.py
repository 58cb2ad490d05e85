"""Coupling flows (models/flow.py, scripts/cli/flow.py): invertibility, log-determinants against
numerical Jacobians, gradient checks of the likelihood, sampling, and the `train.py flow` command."""
import json
import os
import signal
import math

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck, no_grad
from models.flow import (AdditiveCoupling, AffineCoupling, Flow, LogitTransform, Scaling, checkerboard_mask,
                         dequantize, half_mask)
from nets.data import to_pixels

SHAPE = (2, 4)          # a tiny "image": D = 8
D = 8
KINDS = [("affine", "checkerboard", "gaussian"), ("affine", "half", "logistic"),
         ("additive", "checkerboard", "logistic"), ("additive", "half", "gaussian")]


def tiny_flow(coupling, mask="checkerboard", prior="gaussian", layers=3, hidden=6, seed=0):
    """A float64 flow on 8 dimensions with every parameter random (no identity start), so every
    log-determinant and gradient is non-trivial."""
    rng = np.random.default_rng(seed)
    flow = Flow(coupling, num_layers=layers, hidden=hidden, mask=mask, prior=prior, image_shape=SHAPE,
                rng=rng).double()
    for p in flow.parameters():
        p.data[...] = rng.normal(0.0, 0.5, p.shape)
    return flow


def data(n=4, seed=1):
    """Dequantised-looking data in (0, 1), away from the ends so finite differences stay accurate."""
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, D))


def numerical_log_det(fn, x, eps=1e-6):
    """log|det J| per example for a row-wise fn: (N, D) -> (N, D), J by central differences."""
    n, d = x.shape
    jac = np.zeros((n, d, d))
    for j in range(d):
        step = np.zeros_like(x)
        step[:, j] = eps
        with no_grad():
            jac[:, :, j] = (fn(Tensor(x + step)).data - fn(Tensor(x - step)).data) / (2 * eps)
    return np.linalg.slogdet(jac)[1]


# ==================================================================== masks, dequantisation
def test_masks_are_complementary_and_alternate():
    board = checkerboard_mask((28, 28), 0).reshape(28, 28)
    assert board.sum() == 392 and board[0, 0] == 1 and board[0, 1] == 0 and board[1, 0] == 0
    np.testing.assert_array_equal(checkerboard_mask((28, 28), 1), 1 - checkerboard_mask((28, 28), 0))
    np.testing.assert_array_equal(half_mask(8, True), [1, 1, 1, 1, 0, 0, 0, 0])
    flow = Flow("affine", num_layers=3, hidden=4, image_shape=SHAPE)
    masks = [layer.mask for layer in flow.couplings]
    np.testing.assert_array_equal(masks[0] + masks[1], np.ones(D))
    np.testing.assert_array_equal(masks[0], masks[2])


def test_dequantize_stays_in_the_pixel_bin():
    pixels = np.arange(256)
    x = dequantize(pixels / 255, np.random.default_rng(0), dtype=np.float64)
    assert x.min() >= 0 and x.max() < 1
    np.testing.assert_array_equal(np.floor(256 * x), pixels)
    np.testing.assert_array_equal(to_pixels(x), (pixels / 255).astype(np.float32))
    with pytest.raises(ValueError, match=r"expected images in \[0, 1\]"):
        dequantize(np.array([0.0, 255.0]), np.random.default_rng(0))


# ==================================================================== invertibility
@pytest.mark.parametrize("layer_class", [AdditiveCoupling, AffineCoupling])
@pytest.mark.parametrize("mask", [checkerboard_mask(SHAPE, 0, np.float64), half_mask(D, False, np.float64)])
@pytest.mark.grades("additive_coupling_inverse", "affine_coupling_forward", "affine_coupling_inverse")
def test_coupling_inverse_undoes_forward(layer_class, mask):
    rng = np.random.default_rng(0)
    layer = layer_class(mask, hidden=5, dtype=np.float64, rng=rng)
    for p in layer.parameters():
        p.data[...] = rng.normal(0, 0.5, p.shape)
    x = rng.normal(0, 2, (5, D))
    y, _ = layer(Tensor(x))
    np.testing.assert_array_equal(y.data * mask, x * mask)        # the kept half passes unchanged
    assert np.abs(y.data - x).max() > 1e-3                        # the other half really changes
    np.testing.assert_allclose(layer.inverse(y).data, x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("coupling,mask,prior", KINDS)
def test_whole_flow_inverse_undoes_forward_including_the_logit(coupling, mask, prior):
    flow = tiny_flow(coupling, mask, prior)
    x = np.concatenate([data(), [[0.0, 1.0, 1e-7, 1 - 1e-7, 0.5, 0.25, 0.75, 0.999]]])   # also the ends
    z, _ = flow.forward(x)
    assert np.all(np.isfinite(z.data))
    np.testing.assert_allclose(flow.inverse(z).data, x, rtol=0, atol=1e-6)


def test_a_new_flow_is_the_logit_alone():
    """Zero-initialised t (and scale = 0) make every coupling the identity at the start."""
    x = data()
    for coupling in ("affine", "additive"):
        flow = Flow(coupling, num_layers=2, hidden=5, image_shape=SHAPE).double()
        z, log_det = flow.forward(x)
        y, logit_log_det = LogitTransform()(Tensor(x))
        np.testing.assert_allclose(z.data, y.data, atol=1e-12)
        np.testing.assert_allclose(log_det.data, logit_log_det.data, atol=1e-12)


def test_affine_log_scale_is_not_stuck_at_zero():
    """The s half of the last layer is random, so d loss / d scale != 0 at the start (both at 0
    would be a saddle point that training never leaves)."""
    flow = Flow("affine", num_layers=2, hidden=5, image_shape=SHAPE, rng=np.random.default_rng(0)).double()
    (-flow.log_prob(data()).mean()).backward()
    assert np.abs(flow.couplings[0].scale.grad).max() > 1e-6


# ==================================================================== log-determinants
@pytest.mark.parametrize("coupling,mask,prior", KINDS)
@pytest.mark.grades("affine_coupling_forward")
def test_every_log_det_matches_a_numerical_jacobian(coupling, mask, prior):
    flow = tiny_flow(coupling, mask, prior)
    h = Tensor(data())
    for step in flow.steps():                 # logit, couplings, (scaling): each on its real input
        out, log_det = step(h)
        expected = numerical_log_det(lambda v: step(v)[0], h.data)
        np.testing.assert_allclose(log_det.data, expected, rtol=0, atol=1e-6, err_msg=type(step).__name__)
        if not isinstance(step, AdditiveCoupling):      # the check has teeth: these are far from 0
            assert np.abs(expected).min() > 1e-2, type(step).__name__
        h = out
    _, log_det = flow.forward(data())
    expected = numerical_log_det(lambda v: flow.forward(v)[0], data())
    np.testing.assert_allclose(log_det.data, expected, rtol=0, atol=1e-5)


def test_additive_coupling_log_det_is_exactly_zero():
    flow = tiny_flow("additive")
    h = Tensor(np.random.default_rng(2).normal(0, 3, (6, D)))
    for layer in flow.couplings:
        h, log_det = layer(h)
        assert log_det.shape == (6,) and np.all(log_det.data == 0)


def test_scaling_log_det_is_the_sum_of_log_scales():
    layer = Scaling(D, dtype=np.float64)
    layer.log_scale.data[...] = np.random.default_rng(3).normal(0, 1, D)
    x = np.random.default_rng(4).normal(0, 1, (5, D))
    y, log_det = layer(Tensor(x))
    np.testing.assert_array_equal(log_det.data, np.full(5, layer.log_scale.data.sum()))
    np.testing.assert_allclose(y.data, x * np.exp(layer.log_scale.data))


def test_bits_per_dim_is_on_the_256_pixel_scale():
    flow = tiny_flow("affine")
    x = data()
    log_p = flow.log_prob(x).data
    np.testing.assert_allclose(flow.bits_per_dim(x).data, -log_p / (D * math.log(2)) + 8, rtol=1e-12)
    np.testing.assert_allclose(flow.nll_nats(x).data, -log_p + D * math.log(256), rtol=1e-12)


# ==================================================================== gradients
@pytest.mark.parametrize("coupling,prior", [("affine", "gaussian"), ("additive", "logistic")])
def test_negative_log_likelihood_passes_gradcheck(coupling, prior):
    flow = tiny_flow(coupling, prior=prior, layers=2, hidden=4)
    x = data(n=3)                             # dequantisation noise fixed: the same x for every call
    assert gradcheck(lambda *params: flow.nll_nats(x), *flow.parameters())
    x_tensor = Tensor(x, requires_grad=True)
    assert gradcheck(lambda v: flow.nll_nats(v), x_tensor)


# ==================================================================== sampling and bad input
@pytest.mark.parametrize("coupling,mask,prior", KINDS)
def test_samples_are_finite_images_in_range(coupling, mask, prior):
    flow = tiny_flow(coupling, mask, prior)
    for temperature in (1.0, 0.7):
        images = flow.sample(50, temperature=temperature, rng=np.random.default_rng(0))
        assert images.shape == (50, *SHAPE) and np.all(np.isfinite(images))
        assert images.min() >= 0 and images.max() <= 1
    a = flow.sample(3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, flow.sample(3, rng=np.random.default_rng(5)))


def test_bad_input_is_named():
    flow = Flow("affine", num_layers=2, hidden=4, image_shape=SHAPE)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, 8\)"):
        flow.log_prob(np.zeros((3, 9), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dequantised data in \[0, 1\]"):
        flow.log_prob(np.full((3, 8), 255.0, dtype=np.float32))
    with pytest.raises(ValueError, match="coupling must be one of"):
        Flow("sideways")


# ==================================================================== the command line
TINY = ["--layers", "2", "--hidden", "8", "--batch-size", "64", "--seed", "3"]


@pytest.fixture(scope="module")
def few_digits():
    """Train on 192 digits (3 batches) and validate on 100, so a CLI run takes about a second."""
    import cli.flow
    from nets.data import load_mnist
    x, y = load_mnist("train")
    xv, yv = load_mnist("test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.flow, "load_mnist_splits",
                      lambda data_dir: (x[:192], y[:192], xv[:100], yv[:100]))
        yield


@pytest.fixture(scope="module")
def two_epochs(few_digits, tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the tests below."""
    import train
    out = tmp_path_factory.mktemp("flow") / "straight"
    assert train.main(["flow", "--epochs", "2", *TINY, "--out", str(out)]) == 0
    return out


def test_cli_writes_its_files(two_epochs):
    import cli.flow
    out = two_epochs
    for name in ("metrics.json", "checkpoint.npz", "samples.npz", "samples_t1.0.png", "samples_t0.7.png",
                 "bits_per_dim.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "flow" and metrics["config"]["coupling"] == "affine"
    assert metrics["config"]["hidden"] == 8 and metrics["epochs"] == 2
    assert len(metrics["train_bits_per_dim"]) == len(metrics["val_bits_per_dim"]) == 2
    assert metrics["val_bits_per_dim"][1] < metrics["val_bits_per_dim"][0]
    assert metrics["wall_seconds"] > 0
    samples = np.load(out / "samples.npz")
    for key in ("images", "images_t07"):
        assert samples[key].shape == (1000, 28, 28) and samples[key].dtype == np.float32
        assert samples[key].min() >= 0 and samples[key].max() <= 1
    result = cli.flow.evaluate(str(out), "flow", None, 0)
    assert set(result) >= {"test_bits_per_dim", "test_nll_nats", "n_test"} and result["n_test"] == 500
    assert math.isclose(result["test_nll_nats"], result["test_bits_per_dim"] * 784 * math.log(2))


def test_cli_rejects_bad_flags(tmp_path, capsys):
    import train
    assert train.main(["flow", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["flow", "--coupling", "sideways"])


def test_resume_equals_an_uninterrupted_run(two_epochs, tmp_path, monkeypatch):
    """Ctrl-C in the middle of epoch 1: the epoch finishes, a checkpoint is saved, exit 130; --resume then
    finishes the run. Same weights, curves and samples as the uninterrupted run."""
    import train
    straight, pieces = str(two_epochs), str(tmp_path / "pieces")
    clip, calls = nets.clip_grad_norm_, []
    def interrupted_clip(params, max_norm):
        calls.append(1)
        if len(calls) == 2:                   # the second of the 3 batches of epoch 1
            os.kill(os.getpid(), signal.SIGINT)
        return clip(params, max_norm)
    monkeypatch.setattr(nets, "clip_grad_norm_", interrupted_clip)
    with pytest.raises(SystemExit) as stopped:
        train.main(["flow", "--epochs", "2", *TINY, "--out", pieces])
    assert stopped.value.code == 130
    assert nets.load_checkpoint(f"{pieces}/checkpoint.npz")["meta"]["state"]["epoch"] == 1
    monkeypatch.setattr(nets, "clip_grad_norm_", clip)
    assert train.main(["flow", "--epochs", "2", "--resume", pieces]) == 0

    a = nets.load_checkpoint(f"{straight}/checkpoint.npz")
    b = nets.load_checkpoint(f"{pieces}/checkpoint.npz")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        np.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)
    ma = json.loads(open(f"{straight}/metrics.json").read())
    mb = json.loads(open(f"{pieces}/metrics.json").read())
    assert ma["val_bits_per_dim"] == mb["val_bits_per_dim"]
    assert ma["train_bits_per_dim"] == mb["train_bits_per_dim"]
    np.testing.assert_array_equal(np.load(f"{straight}/samples.npz")["images"],
                                  np.load(f"{pieces}/samples.npz")["images"])


# ==================================================================== Glow's invertible 1x1 convolution
def test_invertible_1x1_flow_inverts_and_its_log_dets_match_numerical_jacobians():
    rng = np.random.default_rng(3)
    flow = Flow("affine", num_layers=2, hidden=6, image_shape=SHAPE, invertible_1x1=True, rng=rng).double()
    for p in flow.parameters():
        p.data[...] = rng.normal(0.0, 0.5, p.shape)
    assert [type(s).__name__ for s in flow.steps()] == ["LogitTransform", "Invertible1x1Conv", "AffineCoupling",
                                                        "Invertible1x1Conv", "AffineCoupling"]
    x = data()
    z, log_det = flow.forward(x)
    np.testing.assert_allclose(flow.inverse(z).data, x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(log_det.data, numerical_log_det(lambda v: flow.forward(v)[0], x), rtol=0, atol=1e-5)
    mixer, h = flow.mixers[0], Tensor(rng.normal(0, 2, (3, D)))
    expected = numerical_log_det(lambda v: mixer(v)[0], h.data)
    np.testing.assert_allclose(mixer(h)[1].data, expected, rtol=0, atol=1e-6)
    assert np.abs(expected).min() > 1e-2                              # a real test: W is far from a rotation
    assert gradcheck(lambda w: mixer(h)[1] + (mixer(h)[0] ** 2).sum(axis=1), mixer.weight)


def test_a_new_invertible_1x1_is_orthogonal_and_mixes_only_2x2_blocks():
    mixer = nets.Invertible1x1Conv((28, 28), rng=np.random.default_rng(0))
    w = mixer.weight.data.astype(np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-6)
    x = np.zeros((1, 784), np.float32)
    x[0, 28 * 10 + 6] = 1.0                                          # one pixel of the block at rows 10-11, cols 6-7
    y, log_det = mixer(Tensor(x))
    changed = np.flatnonzero(np.abs(y.data[0]) > 1e-6)
    assert set(changed) <= {28 * 10 + 6, 28 * 10 + 7, 28 * 11 + 6, 28 * 11 + 7} and abs(log_det.data[0]) < 1e-4


def test_cli_invertible_1x1_flag(few_digits, tmp_path):
    import cli.flow
    import train
    assert train.main(["flow", "--epochs", "1", *TINY, "--invertible-1x1", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["invertible_1x1"] is True
    assert "mixers.0.weight" in nets.load_checkpoint(str(tmp_path / "checkpoint.npz"))["model"]
    assert math.isfinite(cli.flow.evaluate(str(tmp_path), "flow", None, 0)["test_bits_per_dim"])
