"""models/conv_vae.py and `train.py conv-vae`: shapes, the loss's gradients, sampling, the CLI contract."""
import json

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models.conv_vae import ConvVAE


# ==================================================================== shapes
@pytest.mark.parametrize("size, bottleneck", [(32, 1), (64, 2)])
def test_encoder_and_decoder_shapes_for_32_and_64_px(size, bottleneck):
    model = ConvVAE(in_channels=1, image_size=size, hidden_dims=(4, 4, 4, 4, 8), latent_dim=3)
    x = Tensor(np.random.default_rng(0).random((2, 1, size, size)).astype(np.float32))
    assert model.encoder(x).shape == (2, 8, bottleneck, bottleneck)      # 5 halvings
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 3)
    recon, _, _ = model(x, rng=np.random.default_rng(0))
    assert recon.shape == (2, 1, size, size)
    assert 0 <= recon.data.min() and recon.data.max() <= 1                # sigmoid output


def test_rgb_autoencoder_shapes_and_its_only_head():
    model = ConvVAE(in_channels=3, image_size=32, hidden_dims=(4, 8), latent_dim=5, variant="ae")
    names = [name for name, _ in model.named_parameters()]
    assert any(n.startswith("z_simple.") for n in names)
    assert not any(n.startswith(("z_mu.", "z_logvar.")) for n in names)   # every parameter is trained
    x = np.zeros((2, 3, 32, 32), np.float32)
    z = model.encode(Tensor(x))
    assert z.shape == (2, 5)
    recon, code, logvar = model(Tensor(x))
    assert recon.shape == (2, 3, 32, 32) and code.shape == (2, 5) and logvar is None
    assert model.sample(4, np.random.default_rng(0)).shape == (4, 3, 32, 32)


def test_bad_sizes_and_inputs_are_reported():
    with pytest.raises(ValueError, match="multiple of"):
        ConvVAE(image_size=48, hidden_dims=(4, 4, 4, 4, 4))
    with pytest.raises(ValueError, match="variant"):
        ConvVAE(variant="gan")
    model = ConvVAE(image_size=8, hidden_dims=(2, 3), latent_dim=2)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        model.encode(Tensor(np.zeros((2, 1, 16, 16), np.float32)))


# ==================================================================== the loss
def test_reparameterize_uses_the_standard_deviation():
    mu = Tensor(np.zeros((20000, 1)))
    logvar = Tensor(np.full((20000, 1), np.log(4.0)))                     # variance 4, sigma 2
    z = ConvVAE.reparameterize(mu, logvar, np.random.default_rng(0))
    assert abs(z.data.std() - 2.0) < 0.05


@pytest.mark.parametrize("variant, recon, hidden_dims, size", [("vae", "mse", (2, 3), 8),
                                                              ("vae", "bce", (1, 2), 4),
                                                              ("ae", "mse", (1, 2), 4)])
def test_gradcheck_of_a_tiny_conv_vae_loss(variant, recon, hidden_dims, size):
    nets.manual_seed(0)
    model = ConvVAE(in_channels=1, image_size=size, hidden_dims=hidden_dims, latent_dim=2,
                    variant=variant).double()
    model.train()                                                         # BatchNorm on batch statistics
    x = np.random.default_rng(1).random((3, 1, size, size))
    # the same eps on every call: a fresh generator with a fixed seed
    loss = lambda *params: model.loss(x, rng=np.random.default_rng(2), beta=0.7, recon=recon)[0]
    assert gradcheck(loss, *model.parameters(), atol=1e-5, rtol=1e-4)


def test_loss_parts_and_kl_is_absent_for_the_autoencoder():
    nets.manual_seed(0)
    x = np.random.default_rng(1).random((4, 1, 8, 8)).astype(np.float32)
    vae = ConvVAE(image_size=8, hidden_dims=(2, 3), latent_dim=2)
    total, parts = vae.loss(x, rng=np.random.default_rng(0), beta=2.0)
    assert parts["kl"] >= 0
    np.testing.assert_allclose(float(total), parts["recon"] + 2.0 * parts["kl"], rtol=1e-5)
    np.testing.assert_allclose(parts["recon"], parts["mse"] * 64, rtol=1e-4)   # summed per image vs per pixel
    ae = ConvVAE(image_size=8, hidden_dims=(2, 3), latent_dim=2, variant="ae")
    total, parts = ae.loss(x, beta=2.0)
    assert parts["kl"] == 0.0 and float(total) == pytest.approx(parts["recon"])


def test_sampling_runs_only_the_decoder_in_eval_mode_and_restores_training():
    model = ConvVAE(image_size=8, hidden_dims=(2, 3), latent_dim=2)
    model.train()
    before = model.encoder[0][1].running_mean.copy()
    images = model.sample(5, np.random.default_rng(0))
    assert images.shape == (5, 1, 8, 8) and model.training
    np.testing.assert_array_equal(model.encoder[0][1].running_mean, before)   # no statistics updated


# ==================================================================== the CLI
TINY = ["conv-vae", "--num-frames", "48", "--size", "32", "--hidden-dims", "2,2,2,2,4", "--latent-dim", "2",
        "--epochs", "2", "--batch-size", "16", "--reset-every", "8", "--compare-epochs", "1"]


def test_tiny_cli_run_writes_the_contract_files_and_keys(tmp_path):
    import train
    out = tmp_path / "run"
    assert train.main(TINY + ["--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    for name in ("metrics.json", "samples.npz", "checkpoint.npz", "reconstructions.png", "samples.png",
                 "traversal.png", "ae_vs_vae.png", "loss_curves.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "conv-vae" and metrics["config"]["env"] == "CartPole-v1"
    for key in ("heldout_mse", "mean_frame_mse", "train_loss", "wall_seconds", "prior_nearest_frame_mse",
                "heldout_nearest_frame_mse"):
        assert key in metrics, key
    assert len(metrics["train_loss"]) == 2 and metrics["compare"]["variant"] == "ae"
    assert "prior_nearest_frame_mse" in metrics["compare"]
    assert 0 < metrics["heldout_mse"] < 1 and 0 < metrics["mean_frame_mse"] < 1
    with np.load(out / "samples.npz") as samples:
        images = samples["images"]
    assert images.shape == (1000, 32, 32) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1

    import evaluate
    assert evaluate.main([str(out)]) == 0


def test_resume_continues_exactly(tmp_path):
    import train
    cache = ["--cache-dir", str(tmp_path / "cache")]
    tiny = TINY[:TINY.index("--epochs")] + ["--batch-size", "16", "--reset-every", "8", "--compare-epochs", "1"]
    assert train.main(tiny + ["--epochs", "2", "--out", str(tmp_path / "full")] + cache) == 0
    assert train.main(tiny + ["--epochs", "1", "--compare-epochs", "0", "--out", str(tmp_path / "half")]
                      + cache) == 0
    assert train.main(["conv-vae", "--resume", str(tmp_path / "half"), "--epochs", "2",
                       "--compare-epochs", "1"]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    half = json.loads((tmp_path / "half" / "metrics.json").read_text())
    np.testing.assert_allclose(half["train_loss"], full["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(half["heldout_mse"], full["heldout_mse"], rtol=1e-6)
    np.testing.assert_allclose(half["compare"]["train_loss"], full["compare"]["train_loss"], rtol=1e-6)


def test_bad_flags_give_a_clear_error(tmp_path, capsys):
    import train
    code = train.main(["conv-vae", "--size", "32", "--hidden-dims", "2,2,2,2,2,2", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "multiple of 2^6" in capsys.readouterr().err
