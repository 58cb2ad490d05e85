"""DCGAN (models/dcgan.py, scripts/cli/dcgan.py): the homework's architecture and shapes, the losses
against their formulas (finite at logits +-1000), gradient checks of both losses on tiny networks,
which player each step changes, and the CLI's files, warning and exact resuming."""
import json
import math
import os

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models.dcgan import (NOISE_DIM, bce_loss, build_discriminator, build_generator, discriminator_loss,
                          discriminator_step, game_step, generate, generator_loss, generator_step, get_optimizer,
                          sample_noise)


def tiny_pair(dtype=np.float32, seed=0):
    """D and G small enough for finite differences: 16 x 16 images (G: 4 x 4 -> 8 -> 16)."""
    rng = np.random.default_rng(seed)
    D = build_discriminator(channels=(2, 3), hidden=5, image_size=16, dtype=dtype, rng=rng)
    G = build_generator(noise_dim=4, hidden=6, channels=(3, 2), start_size=4, dtype=dtype, rng=rng)
    return D, G


def states(*modules):
    return [{k: v.copy() for k, v in m.state_dict().items()} for m in modules]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ==================================================================== the homework's functions
def test_sample_noise_is_uniform_in_minus_one_one_and_seeded():
    z = sample_noise(500, rng=np.random.default_rng(0))
    assert z.shape == (500, NOISE_DIM) and z.dtype == np.float32 and not z.requires_grad
    assert -1 <= z.data.min() < -0.99 and 0.99 < z.data.max() <= 1
    assert abs(z.data.mean()) < 0.02 and abs(z.data.var() - 1 / 3) < 0.01     # U[-1, 1]: variance 1/3
    np.testing.assert_array_equal(sample_noise(3, 7, rng=5).data, sample_noise(3, 7, rng=5).data)


def test_homework_architecture_and_output_shapes():
    nets.manual_seed(0)
    D, G = build_discriminator(), build_generator()
    kinds = [type(m).__name__ for m in D]
    assert kinds == ["Conv2d", "LeakyReLU", "MaxPool2d", "Conv2d", "LeakyReLU", "MaxPool2d", "Flatten",
                     "Linear", "LeakyReLU", "Linear"]
    assert [m.negative_slope for m in D if isinstance(m, nets.LeakyReLU)] == [0.01] * 3
    assert [p.shape for p in D.parameters()] == [(32, 1, 5, 5), (32,), (64, 32, 5, 5), (64,),
                                                 (1024, 1024), (1024,), (1, 1024), (1,)]
    assert D.num_parameters() == 1_102_721
    kinds = [type(m).__name__ for m in G]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Linear", "ReLU", "BatchNorm1d", "Unflatten",
                     "ConvTranspose2d", "ReLU", "BatchNorm2d", "ConvTranspose2d", "Tanh"]
    assert [p.shape for p in G.parameters()] == [(1024, 96), (1024,), (1024,), (1024,), (6272, 1024),
                                                 (6272,), (6272,), (6272,), (128, 64, 4, 4), (64,),
                                                 (64,), (64,), (64, 1, 4, 4), (1,)]
    images = G(sample_noise(3, rng=0))
    assert images.shape == (3, 1, 28, 28) and images.dtype == np.float32
    assert np.all(np.abs(images.data) <= 1)
    assert D(images).shape == (3, 1)
    optimizer = get_optimizer(D)
    assert isinstance(optimizer, nets.Adam) and optimizer.lr == 1e-3 and optimizer.betas == (0.5, 0.999)


def bce_reference(x, t):
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    p = 1 / (1 + np.exp(-x))
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))


def test_bce_loss_matches_its_formula_and_gradient():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (6, 1))
    t = np.array([[0], [1], [0.3], [1], [0], [0.5]])
    logits = Tensor(x, requires_grad=True)
    loss = bce_loss(logits, t)
    np.testing.assert_allclose(float(loss), bce_reference(x, t), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(logits.grad, (1 / (1 + np.exp(-x)) - t) / len(x), rtol=1e-12)
    assert gradcheck(lambda a: bce_loss(a, t), Tensor(x, requires_grad=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_loss_is_finite_at_logits_plus_minus_1000(dtype):
    x = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]], dtype)
    t = np.array([[1.0], [0.0], [0.0], [1.0]], dtype)
    logits = Tensor(x, requires_grad=True)
    loss = bce_loss(logits, t)
    loss.backward()
    # right answers cost 0, confidently wrong ones cost |logit| = 1000: mean 500
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(500.0)
    assert np.all(np.isfinite(logits.grad))
    np.testing.assert_allclose(logits.grad, np.array([[0], [0], [1], [-1]]) / 4)


def test_bce_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        bce_loss(Tensor(np.zeros((4, 1))), np.zeros(4))


@pytest.mark.grades("gan_discriminator_loss", "gan_generator_loss")
def test_gan_losses_are_the_right_cross_entropies():
    zero = Tensor(np.zeros((5, 1)))
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2))   # D(x) = 1/2
    assert float(generator_loss(zero)) == pytest.approx(math.log(2))
    real, fake = np.array([[2.0], [-1.0]]), np.array([[0.5], [-3.0]])
    expected_d = bce_reference(real, np.ones_like(real)) + bce_reference(fake, np.zeros_like(fake))
    assert float(discriminator_loss(Tensor(real), Tensor(fake))) == pytest.approx(expected_d)
    # non-saturating: -log D(G(z)) = mean(-log sigmoid(a)), large (not ~0) when D rejects the fakes
    assert float(generator_loss(Tensor(fake))) == pytest.approx(np.mean(np.log1p(np.exp(-fake))))


# ==================================================================== gradient checks (float64, tiny nets)
def test_discriminator_loss_passes_gradcheck_on_every_parameter_of_D():
    D, G = tiny_pair(np.float64)
    rng = np.random.default_rng(1)
    real = Tensor(rng.uniform(-1, 1, (3, 1, 16, 16)))
    fake = G(sample_noise(3, 4, rng, dtype=np.float64)).detach()
    assert gradcheck(lambda *params: discriminator_loss(D(real), D(fake)), *D.parameters())


def test_generator_loss_passes_gradcheck_on_every_parameter_of_G():
    D, G = tiny_pair(np.float64)
    noise = sample_noise(4, 4, np.random.default_rng(2), dtype=np.float64)
    assert G.training                     # BatchNorm uses the batch statistics (and their gradient)
    assert gradcheck(lambda *params: generator_loss(D(G(noise))), *G.parameters())


# ==================================================================== which player each step changes
def test_discriminator_step_changes_only_D():
    D, G = tiny_pair()
    opt_D = get_optimizer(D)
    rng = np.random.default_rng(3)
    fake = G(sample_noise(8, 4, rng))             # G's forward (train mode) happens before the D step
    d_before, g_before = states(D, G)
    discriminator_step(D, opt_D, Tensor(rng.uniform(-1, 1, (8, 1, 16, 16)).astype(np.float32)), fake)
    d_after, g_after = states(D, G)
    assert all(not np.array_equal(d_before[k], d_after[k]) for k in d_before)   # every D parameter moved
    assert same(g_before, g_after)                  # G's parameters AND BatchNorm running statistics
    assert all(p.grad is None for p in G.parameters())   # the fakes were detached: nothing reached G


def test_generator_step_changes_only_G_and_computes_no_gradient_for_D():
    D, G = tiny_pair()
    opt_G = get_optimizer(G)
    fake = G(sample_noise(8, 4, np.random.default_rng(4)))
    d_before, g_before = states(D, G)
    generator_step(D, opt_G, fake)
    d_after, g_after = states(D, G)
    assert same(d_before, d_after)
    assert all(p.grad is None for p in D.parameters())   # D was frozen: no weight gradient at all
    assert all(p.requires_grad for p in D.parameters())  # ... and unfrozen afterwards
    changed = [k for k in g_before if not np.array_equal(g_before[k], g_after[k])]
    assert set(changed) == {name for name, _ in G.named_parameters()}   # buffers untouched by the step


def test_game_step_returns_float_losses_and_generate_uses_eval_mode():
    D, G = tiny_pair()
    opt_D, opt_G = get_optimizer(D), get_optimizer(G)
    rng = np.random.default_rng(5)
    d_loss, g_loss = game_step(D, G, opt_D, opt_G, rng.uniform(-1, 1, (8, 1, 16, 16)).astype(np.float32),
                               sample_noise(8, 4, rng))
    assert isinstance(d_loss, float) and isinstance(g_loss, float) and d_loss > 0 and g_loss > 0
    noise = sample_noise(6, 4, rng)
    before = states(G)[0]
    images = generate(G, noise, batch_size=4)        # two chunks; eval mode: chunking changes nothing
    assert images.shape == (6, 1, 16, 16) and G.training
    assert same(before, states(G)[0])                # eval mode: running statistics not updated
    np.testing.assert_allclose(images, generate(G, noise, batch_size=6), atol=1e-6)


# ==================================================================== the command line
def read_metrics(directory):
    with open(os.path.join(directory, "metrics.json")) as f:
        return json.load(f)


def test_cli_three_iterations_writes_the_contract_files(tmp_path):
    import train
    from nets.checkpoint import load_checkpoint
    out = tmp_path / "run"
    assert train.main(["dcgan", "--iterations", "3", "--batch-size", "16", "--seed", "0",
                       "--out", str(out)]) == 0
    for name in ("samples_iter_0000.png", "samples_iter_0003.png", "progress.png", "losses.png",
                 "samples.npz", "metrics.json", "checkpoint.npz"):
        assert (out / name).exists(), name
    metrics = read_metrics(out)
    assert metrics["model"] == "dcgan" and metrics["iterations"] == 3
    assert metrics["config"]["iterations"] == 3 and metrics["config"]["batch_size"] == 16
    assert len(metrics["d_loss"]) == len(metrics["g_loss"]) == 3
    assert metrics["seconds_per_iteration"] > 0 and metrics["wall_seconds"] > 0
    assert metrics["warnings"] == [] and set(metrics["grids"]) == {"0", "3"}
    with np.load(out / "samples.npz") as samples:
        images = samples["images"]
    assert images.shape == (2000, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    checkpoint = load_checkpoint(out / "checkpoint.npz")
    assert {"D", "G", "opt_D", "opt_G", "grids"} <= set(checkpoint)
    assert "1.running_mean" not in checkpoint["G"] and "2.running_mean" in checkpoint["G"]   # BN buffers
    assert checkpoint["meta"]["state"]["iteration"] == 3


def straight_and_resumed(tmp_path, flags: list) -> tuple:
    """The checkpoints of a 5-iteration run and of a 3-iteration run resumed to 5, with the same flags."""
    import train
    from nets.checkpoint import load_checkpoint
    assert train.main(flags + ["--iterations", "5", "--out", str(tmp_path / "straight")]) == 0
    assert train.main(flags + ["--iterations", "3", "--out", str(tmp_path / "resumed")]) == 0
    assert train.main(flags + ["--iterations", "5", "--resume", str(tmp_path / "resumed")]) == 0
    return tuple(load_checkpoint(tmp_path / name / "checkpoint.npz") for name in ("straight", "resumed"))


def test_cli_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import train
    import cli.dcgan as cli
    monkeypatch.setattr(cli, "NUM_SAMPLES", 20)
    monkeypatch.setattr(cli, "save_image_grid", lambda *args, **kwargs: None)   # pictures are slow and
    monkeypatch.setattr(cli, "save_curves", lambda *args, **kwargs: None)       # tested above
    # batch 1000: 4 batches per epoch, so 3 -> 5 resumes mid-epoch and crosses an epoch boundary
    flags = ["dcgan", "--batch-size", "1000", "--seed", "3",           # 28 x 28 like the real ones, but cheap
             "--hidden", "8", "--d-channels", "2", "3", "--g-channels", "4", "2"]
    a, b = straight_and_resumed(tmp_path, flags)
    for section in ("D", "G", "opt_D", "opt_G"):
        assert a[section].keys() == b[section].keys()
        for key in a[section]:
            np.testing.assert_allclose(a[section][key], b[section][key], rtol=0, atol=1e-6,
                                       err_msg=f"{section}/{key}")
    ma, mb = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert ma["iterations"] == mb["iterations"] == 5
    np.testing.assert_allclose(ma["d_loss"], mb["d_loss"], atol=1e-6)
    np.testing.assert_allclose(ma["g_loss"], mb["g_loss"], atol=1e-6)
    with np.load(tmp_path / "straight" / "samples.npz") as sa, \
            np.load(tmp_path / "resumed" / "samples.npz") as sb:
        np.testing.assert_allclose(sa["images"], sb["images"], atol=1e-6)
    # asking for fewer iterations than the run already has is a usage error (exit 2)
    assert train.main(flags + ["--iterations", "2", "--resume", str(tmp_path / "resumed")]) == 2


def test_cli_rejects_a_batch_larger_than_the_data(tmp_path, capsys):
    import train
    assert train.main(["dcgan", "--batch-size", "100000", "--out", str(tmp_path / "x")]) == 2
    assert "larger than the 4500 training images" in capsys.readouterr().err
    assert train.main(["dcgan", "--d-channels", "2", "3", "4", "--out", str(tmp_path / "y")]) == 2
    assert "d_channels and g_channels take two numbers each" in capsys.readouterr().err


def test_warns_when_D_loss_stays_near_zero():
    from models.dcgan import D_WINS_WINDOW, check_d_wins

    state = {"iteration": D_WINS_WINDOW - 1, "d_loss": [0.01] * (D_WINS_WINDOW - 1), "warnings": [],
             "d_wins_warned": False}
    assert check_d_wins(state) is None and state["warnings"] == []     # not a full window yet
    state["d_loss"].append(0.01)
    state["iteration"] += 1
    message = check_d_wins(state)
    assert len(state["warnings"]) == 1 and "D is winning" in state["warnings"][0] == message
    state["d_loss"].append(0.01)
    assert check_d_wins(state) is None and len(state["warnings"]) == 1    # once is enough
    healthy = {"iteration": 200, "d_loss": [1.2] * 200, "warnings": [], "d_wins_warned": False}
    check_d_wins(healthy)
    assert healthy["warnings"] == []
