"""scripts/compare_generative.py: the Frechet distance and class entropy against known answers, and the
table built from tiny fake runs (metrics.json + samples.npz written here) with stub families and classifier."""
import json
import math

import numpy as np
import pytest

import compare_generative as cg
from nets.harness import strict_json


def random_covariance(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T + 0.1 * np.eye(k)


# ==================================================================== formulas
def test_frechet_distance_of_diagonal_gaussians(rng):
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    var1, var2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert cg.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_with_identity_and_a_full_covariance(rng):
    """S1 = I: tr(S1 + S2 - 2 (S1 S2)^1/2) = sum_i (1 - sqrt(l_i))^2 over the eigenvalues l_i of S2."""
    cov2 = random_covariance(rng, 5)
    mu1, mu2 = np.zeros(5), rng.normal(size=5)
    expected = np.sum(mu2 ** 2) + np.sum((1 - np.sqrt(np.linalg.eigvalsh(cov2))) ** 2)
    assert cg.frechet_distance(mu1, np.eye(5), mu2, cov2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_scaled_covariances_is_symmetric_and_zero_on_itself(rng):
    cov, mu = random_covariance(rng, 6), rng.normal(size=6)
    # N(mu, S) and N(mu, c^2 S): tr(S + c^2 S - 2 c S) = (1 - c)^2 tr S
    assert cg.frechet_distance(mu, cov, mu, 4 * cov) == pytest.approx(np.trace(cov), rel=1e-9)
    other = random_covariance(rng, 6)                 # does not commute with cov
    assert cg.frechet_distance(mu, cov, mu + 1, other) == pytest.approx(cg.frechet_distance(mu + 1, other, mu, cov))
    assert abs(cg.frechet_distance(mu, cov, mu, cov)) < 1e-9


def test_frechet_distance_from_samples_approaches_the_exact_one(rng):
    cov1, cov2 = np.diag([1.0, 4.0]), np.array([[2.0, 0.5], [0.5, 1.0]])
    a = rng.multivariate_normal([0, 0], cov1, 200_000)
    b = rng.multivariate_normal([1, 0], cov2, 200_000)
    exact = cg.frechet_distance(np.zeros(2), cov1, np.array([1.0, 0]), cov2)
    assert cg.frechet_distance(*cg.gaussian_fit(a), *cg.gaussian_fit(b)) == pytest.approx(exact, abs=0.03)


def test_class_entropy():
    assert cg.class_entropy_bits(np.arange(1000) % 10) == pytest.approx(math.log2(10))
    assert cg.class_entropy_bits(np.full(50, 3)) == 0
    assert cg.class_entropy_bits(np.array([1, 1, 7, 7])) == pytest.approx(1.0)
    assert cg.classes_covered(np.arange(1000) % 10) == 10
    assert cg.classes_covered(np.r_[np.full(981, 3), np.arange(19) % 10]) == 1      # 2 of 1000 each: under 2%


# ==================================================================== the table from fake runs
EVALUATIONS = {
    "made": {"test_nll_nats": 95.5},
    "pixelcnn": {"test_nll_nats": 90.25},
    "vae": {"test_neg_elbo_nats_binarized": 104.0, "test_iwae_nats_binarized": 99.5, "k": 200},
    "flow": {"test_bits_per_dim": 2.0, "test_nll_nats": 2.0 * 784 * math.log(2)},
}


def stub_evaluate(run_dir, model, data_dir, seed):
    if model not in EVALUATIONS:
        raise cg.UsageError(f"evaluate.py has nothing to measure for model {model!r}")
    return EVALUATIONS[model]


def stub_sampler(run_dir, model):
    if model == "pixelcnn":
        raise FileNotFoundError("no checkpoint.npz")
    return lambda n, rng: rng.random((n, 28, 28))


class StubClassifier:
    """Features: 4 fixed projections of the pixels; class: the brightest of 10 pixel bands."""

    def __init__(self):
        self.w = np.random.default_rng(0).normal(size=(784, 4))

    def __call__(self, images):
        x = np.asarray(images, dtype=np.float64).reshape(len(images), 784)
        return x @ self.w, x[:, :780].reshape(len(x), 10, 78).sum(axis=2).argmax(axis=1)


def fake_run(path, model, images, seconds=12.5):
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({"model": model, "wall_seconds": seconds}))
    np.savez(path / "samples.npz", images=images.astype(np.float32))
    return str(path)


@pytest.fixture
def test_images():
    return (np.random.default_rng(5).random((60, 28, 28)) ** 4).astype(np.float32)     # dark, unlike U(0, 1)


def test_table_from_six_fake_runs(tmp_path, test_images):
    rng = np.random.default_rng(1)
    runs = [fake_run(tmp_path / m, m, rng.random((40 + 10 * i, 28, 28))) for i, m in enumerate(cg.FAMILIES)]
    runs.append(fake_run(tmp_path / "copy", "vae", test_images[:30]))      # samples = the test images
    result = cg.compare(runs, test_images, StubClassifier(), evaluate=stub_evaluate, sampler=stub_sampler,
                        train_images=test_images, num_samples=1000)
    rows = {row["run"]: row for row in result["rows"]}
    assert result["num_samples"] == 30 and result["missing_families"] == []
    assert rows[runs[0]]["exact_nll_nats"] == 95.5 and rows[runs[1]]["exact_nll_nats"] == 90.25
    assert rows[runs[3]]["neg_iwae_nats"] == 99.5 and "exact_nll_nats" not in rows[runs[3]]
    assert rows[runs[2]]["flow_nll_nats"] == pytest.approx(1086.9, abs=0.1)
    assert not any(k in rows[runs[5]] for k in ("exact_nll_nats", "neg_elbo_nats", "flow_nll_nats"))  # dcgan
    assert "no likelihood: UsageError" in rows[runs[4]]["notes"][0]          # cvae's stub fails: a note
    assert "sampling not timed" in rows[runs[1]]["notes"][0]                 # pixelcnn's stub fails
    assert rows[runs[0]]["sample_100_seconds"] >= 0
    assert rows[runs[4]]["train_seconds"] == 12.5
    # the same images as the reference: a distance far below random noise images' distance
    assert rows[runs[-1]]["frechet_distance"] < 0.2 * rows[runs[0]]["frechet_distance"]
    assert all(0 <= row["class_entropy_bits"] <= math.log2(10) + 1e-9 for row in result["rows"])
    assert [r["run"] for r in result["references"]] == ["training digits", "binarised training digits"]

    table = cg.markdown(result)
    body = [line for line in table.splitlines() if line.startswith("| ") and "family" not in line]
    assert len(body) == len(runs) + 2 and all(line.count("|") == 10 for line in body)
    assert "95.5" in table and "104.0 / 99.5" in table and "2.000 = 1087" in table
    json.dumps(strict_json(result), allow_nan=False)


def test_missing_family_is_named(tmp_path, test_images):
    run = fake_run(tmp_path / "vae", "vae", test_images[:20])
    result = cg.compare([run], test_images, StubClassifier(), evaluate=stub_evaluate, sampler=stub_sampler)
    assert result["missing_families"] == ["made", "pixelcnn", "flow", "cvae", "dcgan", "wgan-gp"]
    assert "no run given for: made, pixelcnn, flow, cvae, dcgan, wgan-gp" in cg.markdown(result)


def test_command_line_rejects_bad_folders_in_one_line(tmp_path, capsys, test_images):
    assert cg.main([str(tmp_path / "nothing")]) == 2
    assert "metrics.json not found" in capsys.readouterr().err
    fake_run(tmp_path / "rev", "revnet", test_images[:5])
    assert cg.main([str(tmp_path / "rev")]) == 2
    assert "'revnet' run" in capsys.readouterr().err
    fake_run(tmp_path / "grey", "vae", 255 * test_images[:5])
    assert cg.main([str(tmp_path / "grey")]) == 2
    assert "in [0, 1]" in capsys.readouterr().err
