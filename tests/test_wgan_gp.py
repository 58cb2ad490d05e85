"""WGAN-GP (models/wgan_gp.py, scripts/cli/wgan_gp.py): the gradient penalty (its value against finite
differences of the critic, its gradient w.r.t. the critic's weights by gradcheck, and that check failing
when the inner gradient is taken without create_graph), the paper's settings, and the CLI's files,
checkpoint quality figure and exact resuming, and scripts/wgan_vs_dcgan.py's budget split and summary."""
import json
import os

import numpy as np
import pytest

import autodiff
import nets
from autodiff import Tensor, gradcheck
from models import wgan_gp
from models.dcgan import build_discriminator
from models.wgan_gp import WGANGPConfig, build, build_optimizer, gradient_penalty, train_step
from test_dcgan import straight_and_resumed


def tiny_critic(seed=0):
    """DCGAN's discriminator on 16 x 16 images, float64: small enough for finite differences."""
    return build_discriminator(channels=(2, 2), hidden=3, image_size=16, dtype=np.float64,
                               rng=np.random.default_rng(seed))


def interpolation_case(seed=1, n=2):
    rng = np.random.default_rng(seed)
    real, fake = rng.uniform(-1, 1, (n, 1, 16, 16)), rng.uniform(-1, 1, (n, 1, 16, 16))
    return real, fake, rng.uniform(0, 1, (n, 1, 1, 1))


def numeric_input_gradient(D, x: np.ndarray, eps=1e-6) -> np.ndarray:
    """d(sum of D(x))/dx by central differences."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        with autodiff.no_grad():
            grad[index] = (D(Tensor(plus)).data.sum() - D(Tensor(minus)).data.sum()) / (2 * eps)
    return grad


def test_penalty_is_the_mean_squared_distance_of_the_gradient_norm_from_one():
    D = tiny_critic()
    real, fake, e = interpolation_case()
    grad = numeric_input_gradient(D, e * real + (1 - e) * fake)
    expected = np.mean((np.sqrt((grad.reshape(len(real), -1) ** 2).sum(axis=1)) - 1) ** 2)
    assert float(gradient_penalty(D, real, fake, e)) == pytest.approx(expected, rel=1e-7)


def test_penalty_gradient_wrt_the_critic_weights_passes_gradcheck():
    D = tiny_critic()
    real, fake, e = interpolation_case()
    assert gradcheck(lambda *params: gradient_penalty(D, real, fake, e), *D.parameters())


def test_the_check_fails_when_the_inner_gradient_is_taken_without_create_graph(monkeypatch):
    D = tiny_critic()
    real, fake, e = interpolation_case()
    plain = autodiff.grad
    monkeypatch.setattr(wgan_gp.autodiff, "grad",
                        lambda *args, **kwargs: plain(*args, **{**kwargs, "create_graph": False}))
    with pytest.raises(autodiff.GradcheckError):
        gradcheck(lambda *params: gradient_penalty(D, real, fake, e) + 0 * params[0].sum(), *D.parameters())


def test_the_papers_settings_but_dcgans_learning_rate_and_a_critic_without_sigmoid_or_batch_norm():
    cfg = WGANGPConfig()
    assert (cfg.n_critic, cfg.penalty, cfg.lr) == (5, 10.0, 1e-3)
    nets.manual_seed(0)
    model = build(WGANGPConfig(hidden=8, d_channels=(2, 3), g_channels=(4, 2)))
    optimizer = build_optimizer(model, cfg)
    assert optimizer.D.betas == optimizer.G.betas == (0.0, 0.9)
    layers = [type(layer).__name__ for layer in model.D]
    assert not any("BatchNorm" in name or "Sigmoid" in name for name in layers)
    assert layers[-1] == "Linear" and model.D[-1].out_features == 1


def test_train_step_takes_n_critic_critic_steps_and_one_generator_step():
    cfg = WGANGPConfig(batch_size=4, n_critic=3, hidden=8, d_channels=(2, 3), g_channels=(4, 2))
    nets.manual_seed(0)
    model = build(cfg)
    optimizer = build_optimizer(model, cfg)
    batch = np.random.default_rng(0).uniform(-1, 1, (12, 1, 28, 28)).astype(np.float32)
    stats = train_step(model, optimizer, batch, np.random.default_rng(1), cfg)
    assert optimizer.D.step_count == 3 and optimizer.G.step_count == 1
    assert stats["penalty"] > 0 and all(np.isfinite(v) for v in stats.values())


# ==================================================================== the command
TINY = ["wgan-gp", "--batch-size", "8", "--n-critic", "2", "--hidden", "8", "--d-channels", "2", "3",
        "--g-channels", "4", "2", "--seed", "3"]


def read_metrics(directory):
    with open(os.path.join(directory, "metrics.json")) as f:
        return json.load(f)


def test_cli_writes_the_contract_files_and_the_quality_figure(tmp_path, monkeypatch):
    import train
    import cli.wgan_gp as cli
    # a stand-in for the classifier: a "quality" that depends on the images, so the correlation is defined
    monkeypatch.setattr(cli, "quality_scorer", lambda x_test, n: lambda images: {
        "frechet_distance": float(np.abs(images.mean() - x_test.mean())), "class_entropy_bits": 1.0,
        "classes_covered": 3})
    out = tmp_path / "run"
    assert train.main(TINY + ["--iterations", "4", "--quality-samples", "20", "--out", str(out)]) == 0
    for name in ("samples_iter_0000.png", "samples_iter_0004.png", "progress.png", "losses.png", "quality.png",
                 "samples.npz", "metrics.json", "checkpoint.npz"):
        assert (out / name).exists(), name
    metrics = read_metrics(out)
    assert metrics["model"] == "wgan-gp" and metrics["iterations"] == 4
    assert len(metrics["critic_loss"]) == len(metrics["penalty"]) == len(metrics["g_loss"]) == 4
    assert [c["iteration"] for c in metrics["checkpoints"]] == [0, 1, 2, 3, 4]
    keys = {"wasserstein_estimate", "frechet_distance", "classes_covered"}
    assert all(keys <= set(c) for c in metrics["checkpoints"])
    assert -1 <= metrics["wasserstein_vs_frechet_correlation"] <= 1
    with np.load(out / "samples.npz") as samples:
        images = samples["images"]
    assert images.shape == (2000, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1


def test_the_correlation_leaves_out_the_untrained_critic():
    from cli.wgan_gp import trained_critic_correlation
    checkpoints = [{"iteration": 0, "wasserstein_estimate": 0.0, "frechet_distance": 1700.0},
                   *({"iteration": i, "wasserstein_estimate": w, "frechet_distance": f}
                     for i, w, f in ((30, 26.0, 390.0), (60, 8.0, 340.0), (90, 5.0, 200.0), (120, 3.6, 140.0)))]
    r = np.corrcoef([26.0, 8.0, 5.0, 3.6], [390.0, 340.0, 200.0, 140.0])[0, 1]
    assert trained_critic_correlation(checkpoints) == pytest.approx(r) and r > 0.7
    assert trained_critic_correlation(checkpoints[:3]) is None                    # 2 trained points: undefined


def test_cli_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import cli.dcgan as dcgan_cli
    import cli.wgan_gp as cli
    monkeypatch.setattr(cli, "NUM_SAMPLES", 20)
    monkeypatch.setattr(dcgan_cli, "save_image_grid", lambda *args, **kwargs: None)   # pictures are slow and
    monkeypatch.setattr(cli, "draw_figures", lambda *args, **kwargs: None)            # tested above
    # 2 x 500 images per iteration: 4 iterations per epoch, so 3 -> 5 resumes mid-epoch and crosses an epoch
    flags = TINY[:2] + ["500"] + TINY[3:] + ["--quality-samples", "0"]
    a, b = straight_and_resumed(tmp_path, flags)
    for section in ("D", "G", "opt_D", "opt_G"):
        for key in a[section]:
            np.testing.assert_array_equal(a[section][key], b[section][key], err_msg=f"{section}/{key}")
    ma, mb = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    for key in ("critic_loss", "penalty", "g_loss", "checkpoints"):
        assert ma[key] == mb[key], key


def test_cli_rejects_more_images_per_iteration_than_the_data(tmp_path, capsys):
    import train
    assert train.main(["wgan-gp", "--batch-size", "1000", "--out", str(tmp_path / "x")]) == 2
    assert "5 x --batch-size 1000 images per iteration is more than the 4500 training images" in capsys.readouterr().err


# ==================================================================== scripts/wgan_vs_dcgan.py
def test_the_comparison_script_splits_one_budget_and_summarises_the_seeds(tmp_path, monkeypatch):
    """Timing and training replaced by stand-ins: iterations = budget / seconds per iteration, every run scored,
    medians and ranges, the runs covering >= 8 classes, the checkpoints' correlations collected."""
    import json as json_module
    import compare_generative as cg
    import wgan_vs_dcgan as script
    from test_compare_generative import StubClassifier, fake_run
    asked = {}

    def train_pair(seed, iterations, out, quality_samples):
        asked[seed] = iterations
        rng = np.random.default_rng(seed)
        folders = {m: fake_run(tmp_path / f"{m}-{seed}", m, rng.random((30, 28, 28))) for m in iterations}
        checkpoints = [{"iteration": i, "wasserstein_estimate": w, "frechet_distance": f}     # iteration 0: left out
                       for i, w, f in ((0, 0.0, 20.0), (5, 3.0, 9.0), (10, 2.0, 7.0))]
        metrics = {"model": "wgan-gp", "wall_seconds": 1.0, "checkpoints": checkpoints,
                   "wasserstein_vs_frechet_correlation": 0.5 + seed / 100}
        (tmp_path / f"wgan-gp-{seed}" / "metrics.json").write_text(json_module.dumps(metrics))
        return folders
    monkeypatch.setattr(script, "seconds_per_iteration", lambda: {"dcgan": 2.0, "wgan-gp": 6.0})
    monkeypatch.setattr(script, "train_pair", train_pair)
    monkeypatch.setattr(cg, "Classifier", StubClassifier)
    assert script.main(["--budget", "60", "--seeds", "1,2", "--num-samples", "20", "--out", str(tmp_path)]) == 0
    assert asked == {1: {"dcgan": 30, "wgan-gp": 10}, 2: {"dcgan": 30, "wgan-gp": 10}}
    summary = json_module.loads((tmp_path / "summary.json").read_text())
    assert summary["iterations"] == {"dcgan": 30, "wgan-gp": 10} and len(summary["runs"]) == 4
    for model in ("dcgan", "wgan-gp"):
        scores = [row["frechet_distance"] for row in summary["runs"] if row["model"] == model]
        assert summary["models"][model]["frechet_distance"] == {"median": np.median(scores), "min": min(scores),
                                                                "max": max(scores)}
        covered = sum(row["classes_covered"] >= 8 for row in summary["runs"] if row["model"] == model)
        assert summary["models"][model]["runs_covering_8_or_more_classes"] == covered
    by_seed = {(row["model"], row["run"][-1]): row["frechet_distance"] for row in summary["runs"]}
    wins = sum(by_seed["wgan-gp", seed] <= by_seed["dcgan", seed] for seed in "12")
    assert summary["paired"]["seeds"] == 2 and summary["paired"]["wgan_gp_frechet_at_most_dcgans"] == wins
    correlation = summary["models"]["wgan-gp"]["wasserstein_vs_frechet_correlation"]
    assert correlation["per_run"] == [0.51, 0.52] and correlation["pooled_checkpoints"] == 4
