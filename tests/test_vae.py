"""VAE and CVAE (models/vae.py, models/cvae.py) and their command line (scripts/cli/vae.py).

The math: the closed-form KL against Monte Carlo, the reparameterised samples' mean and standard
deviation, the loss's gradients against finite differences, the bounds against an exact log p(x)
computed by quadrature. The command line: a short run lowers the loss and writes the contract files,
Ctrl-C + --resume equals an uninterrupted run, bad flags and missing data give clear messages.
"""
import json
import math
import os
import signal

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models.cvae import CVAE
from models.vae import VAE, reparameterize
from nets.losses import gaussian_kl

import evaluate as evaluate_script
import train
from cli import vae as cli_vae


# ==================================================================== the math
def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 4))
    logvar = rng.normal(scale=0.8, size=(3, 4))
    closed = gaussian_kl(Tensor(mu), Tensor(logvar), axis=1).data           # (3,)

    n = 50_000
    sigma = np.exp(0.5 * logvar)
    z = mu + sigma * rng.standard_normal((n, 3, 4))
    log_q = -0.5 * np.sum(np.log(2 * np.pi) + logvar + ((z - mu) / sigma) ** 2, axis=-1)
    log_p = -0.5 * np.sum(np.log(2 * np.pi) + z ** 2, axis=-1)
    terms = log_q - log_p                                                      # (n, 3)
    estimate, standard_error = terms.mean(axis=0), terms.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(estimate - closed) < 5 * standard_error), (estimate, closed, standard_error)
    assert np.all(closed > 0)


@pytest.mark.grades("reparameterize")
def test_reparameterised_samples_have_mean_mu_and_std_exp_half_logvar():
    rng = np.random.default_rng(1)
    n = 100_000
    mu = np.array([[0.5, -2.0, 3.0]])
    logvar = np.array([[-2.0, 0.0, 1.5]])          # std 0.37, 1, 2.12: exp(logvar) would be 0.14, 1, 4.48
    eps = rng.standard_normal((n, 3))
    z = reparameterize(Tensor(np.repeat(mu, n, 0)), Tensor(np.repeat(logvar, n, 0)), eps).data
    std = np.exp(0.5 * logvar[0])
    assert np.all(np.abs(z.mean(axis=0) - mu[0]) < 5 * std / math.sqrt(n))
    assert np.all(np.abs(z.std(axis=0) - std) < 5 * std / math.sqrt(2 * n))


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.grades("reparameterize", "neg_elbo")
def test_loss_passes_gradcheck(conditional):
    nets.manual_seed(0)
    model = (CVAE(6, 3, hidden=5, latent=2) if conditional else VAE(6, hidden=5, latent=2)).double()
    rng = np.random.default_rng(2)
    x = (rng.random((4, 6)) < 0.5).astype(np.float64)
    y = np.array([0, 2, 1, 2]) if conditional else None
    eps = rng.standard_normal((4, 2))               # the same noise in every call gradcheck makes
    loss = (lambda: model.loss(x, y, eps=eps)) if conditional else (lambda: model.loss(x, eps=eps))
    terms = loss()
    np.testing.assert_allclose(terms.neg_elbo.data, terms.recon.data + terms.kl.data)
    assert gradcheck(lambda *params: loss().neg_elbo, *model.parameters())


@pytest.mark.grades("iwae_bound")
def test_bounds_agree_with_exact_log_likelihood_by_quadrature():
    """latent = 1: log p(x) = log integral p(x|z) N(z; 0, 1) dz on a fine grid. Then
    ELBO <= IWAE(k) <= log p(x) (up to Monte-Carlo noise) and IWAE(5000) is within 0.05 nats."""
    nets.manual_seed(3)
    model = VAE(8, hidden=6, latent=1).double()
    for p in model.parameters():                    # a less trivial posterior than at initialisation
        p.data *= 3
    rng = np.random.default_rng(4)
    x = (rng.random((5, 8)) < 0.5).astype(np.float64)

    z = np.linspace(-10, 10, 20001)[:, None]
    logits = model.decode(z).data                                   # (Z, 8)
    log_px_z = -(np.maximum(logits, 0)[:, None] - logits[:, None] * x
                 + np.log1p(np.exp(-np.abs(logits)))[:, None]).sum(-1)   # (Z, 5)
    log_joint = log_px_z - 0.5 * (z ** 2 + np.log(2 * np.pi))
    top = log_joint.max(axis=0)
    exact = top + np.log(np.exp(log_joint - top).sum(axis=0) * (z[1, 0] - z[0, 0]))

    bounds = model.bounds(x, k=5000, rng=np.random.default_rng(5))
    assert np.all(bounds.elbo <= exact + 1e-9)                      # the ELBO has analytic KL: a true bound
    assert np.all(np.abs(bounds.iwae - exact) < 0.05), (bounds.iwae, exact)
    assert np.all(bounds.elbo <= bounds.iwae + 1e-6)
    single = model.bounds(x, k=1, rng=np.random.default_rng(6)).iwae
    assert single.dtype == np.float64 and single.shape == (5,)


def test_sampling_api_and_errors():
    nets.manual_seed(0)
    vae, cvae = VAE(hidden=8, latent=3), CVAE(hidden=8, latent=3)
    rng = np.random.default_rng(0)
    images = vae.sample(7, rng=rng)
    assert images.shape == (7, 784) and images.min() >= 0 and images.max() <= 1
    images = cvae.sample(10, np.arange(10), rng=rng)
    assert images.shape == (10, 784) and images.min() >= 0 and images.max() <= 1
    assert cvae.sample(4, 3, rng=rng).shape == (4, 784)             # one int for the whole batch
    x = (rng.random((5, 1, 28, 28)) < 0.3).astype(np.float32)      # image shape accepted, flattened
    assert vae.reconstruct(x).shape == (5, 784)
    assert cvae.loss(x, np.arange(5), rng=rng).neg_elbo.shape == (5,)
    # the same seed gives the same samples (no hidden global randomness)
    np.testing.assert_array_equal(vae.sample(3, rng=np.random.default_rng(9)),
                                  vae.sample(3, rng=np.random.default_rng(9)))
    with pytest.raises(TypeError, match="labels"):
        cvae.loss(x, None)
    with pytest.raises(TypeError):
        vae.loss(x, np.arange(5))                                   # the VAE takes no labels
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        vae.loss(np.zeros((5, 100)))
    with pytest.raises(ValueError, match="0..9"):
        cvae.loss(x, np.array([0, 1, 2, 3, 10]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.loss(x * 255)


# ==================================================================== the command line
TINY = ["--epochs", "2", "--hidden", "16", "--latent", "2", "--limit", "300", "--batch-size", "50",
        "--iwae-k", "5", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cvae"
    assert train.main(["cvae", *TINY, "--seed", "3", "--out", str(out)]) == 0
    return out


def test_train_writes_the_contract_files(cvae_run):
    metrics = json.loads((cvae_run / "metrics.json").read_text())
    assert metrics["model"] == "cvae"
    assert metrics["config"]["epochs"] == 2 and metrics["config"]["latent"] == 2
    assert len(metrics["train_loss"]) == len(metrics["val_loss"]) == 2
    assert metrics["wall_seconds"] > 0
    with np.load(cvae_run / "samples.npz") as samples:
        images, labels = samples["images"], samples["labels"]
    assert images.dtype == np.float32 and images.shape == (1000, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert np.array_equal(np.bincount(labels), np.full(10, 100))    # balanced classes
    checkpoint = nets.load_checkpoint(cvae_run / "checkpoint.npz")
    assert {"model", "optimizer", "meta"} <= set(checkpoint) and checkpoint["meta"]["state"]["epoch"] == 2
    for png in ("loss.png", "reconstructions.png", "cvae_grid.png", "interpolation.png"):
        assert (cvae_run / png).stat().st_size > 0


def test_short_run_lowers_the_loss(cvae_run):
    metrics = json.loads((cvae_run / "metrics.json").read_text())
    assert metrics["train_loss"][1] < metrics["train_loss"][0] - 10
    assert metrics["val_loss"][1] < metrics["val_loss"][0]


def test_evaluate_prints_one_json_line(cvae_run, capsys, monkeypatch):
    monkeypatch.setattr(cli_vae, "EVAL_K", 20)          # the real k is 200; 20 keeps the test quick
    assert evaluate_script.main([str(cvae_run)]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["n_test"] == 500 and result["k"] == 20
    for kind in ("", "_binarized"):
        assert np.isfinite(result[f"test_neg_elbo_nats{kind}"])
        assert result[f"test_iwae_nats{kind}"] <= result[f"test_neg_elbo_nats{kind}"]


def test_interrupt_then_resume_equals_an_uninterrupted_run(cvae_run, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    calls = {"n": 0}
    original = CVAE.loss

    def ctrl_c_in_epoch_one(self, *args, **kwargs):        # 300 digits / 50 = 6 batches per epoch
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)             # a real Ctrl-C: the epoch finishes, then saves
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CVAE, "loss", ctrl_c_in_epoch_one)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["cvae", *TINY, "--seed", "3", "--out", str(out)])
    assert exit_info.value.code == 130
    assert nets.load_checkpoint(out / "checkpoint.npz")["meta"]["state"]["epoch"] == 1
    monkeypatch.setattr(CVAE, "loss", original)

    assert train.main(["cvae", "--resume", str(out), "--epochs", "2"]) == 0
    straight, resumed = (nets.load_checkpoint(d / "checkpoint.npz") for d in (cvae_run, out))
    for name, value in straight["model"].items():
        np.testing.assert_array_equal(resumed["model"][name], value, err_msg=name)
    for name, value in straight["optimizer"].items():
        np.testing.assert_array_equal(resumed["optimizer"][name], value, err_msg=name)
    assert resumed["meta"]["state"] == straight["meta"]["state"]
    with np.load(cvae_run / "samples.npz") as a, np.load(out / "samples.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])


def test_resume_extends_a_finished_run(tmp_path):
    out = tmp_path / "vae"
    args = ["vae", "--epochs", "1", "--hidden", "8", "--latent", "2", "--limit", "100", "--iwae-k", "2",
            "--out", str(out)]
    assert train.main(args) == 0
    assert train.main(["vae", "--resume", str(out), "--epochs", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "vae" and metrics["epochs_completed"] == 2 and len(metrics["val_loss"]) == 2
    for png in ("loss.png", "reconstructions.png", "interpolation.png"):
        assert (out / png).exists()
    assert not (out / "cvae_grid.png").exists()


def _exit_code_and_message(argv, capsys):
    """train.py exits 2 for bad input: argparse raises SystemExit(2), a UsageError makes main return 2."""
    try:
        code = train.main(argv)
    except SystemExit as error:
        code = error.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--latent", "-1"), ("--lr", "0"),
                                         ("--batch-size", "many")])
def test_bad_flags_exit_2_naming_the_flag(flag, value, tmp_path, capsys):
    code, message = _exit_code_and_message(["cvae", flag, value, "--out", str(tmp_path)], capsys)
    assert code == 2 and flag in message


def test_missing_data_and_bad_resume_give_clear_messages(cvae_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, message = _exit_code_and_message(["vae", "--data-dir", str(empty), "--out", str(tmp_path / "o")],
                                           capsys)
    assert code == 2 and "no MNIST images" in message and str(empty) in message and "Traceback" not in message

    code, message = _exit_code_and_message(["cvae", "--resume", str(empty)], capsys)
    assert code == 2 and "no checkpoint.npz" in message

    code, message = _exit_code_and_message(["cvae", "--resume", str(cvae_run), "--hidden", "32"], capsys)
    assert code == 2 and "--hidden" in message

    code, message = _exit_code_and_message(["vae", "--resume", str(cvae_run)], capsys)
    assert code == 2 and "cvae" in message

    assert evaluate_script.main([str(cvae_run), "--data-dir", str(empty)]) == 2
    assert "no MNIST images" in capsys.readouterr().err


def test_evaluate_needs_only_the_test_files_of_a_data_dir(cvae_run, capsys, monkeypatch):
    from conftest import SHARED_MNIST
    monkeypatch.setattr(cli_vae, "EVAL_K", 2)                       # the files matter here, not the bound
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("the real MNIST test set is not beside the repo")
    assert evaluate_script.main([str(cvae_run), "--data-dir", str(SHARED_MNIST)]) == 0   # no train files there
    result = json.loads(capsys.readouterr().out)
    assert result["n_test"] == 10000 and np.isfinite(result["test_iwae_nats_binarized"])
