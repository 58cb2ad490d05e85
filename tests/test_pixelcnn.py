"""PixelCNN (models/pixelcnn.py): the autoregressive property on the engine's gradients, exact
normalisation on tiny images, the row-by-row sampler against the full forward pass, samples that follow
the model, a short training run, bad input."""
import itertools
import json

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models import pixelcnn
from nets.data import load_mnist


def small_pixelcnn(seed=0, channels=4, blocks=2, head=4, dtype=np.float64):
    nets.manual_seed(seed)
    return pixelcnn.PixelCNN(channels, max(channels // 2, 1), blocks, head, dtype=dtype)


def dependence(model, x):
    """dep[i, j, a, b]: logit (i, j) has a non-zero gradient wrt input pixel (a, b); x (N, 1, H, W)."""
    _, _, H, W = x.shape
    xt = Tensor(x, requires_grad=True)
    dep = np.zeros((H, W, H, W), bool)
    for i, j in itertools.product(range(H), range(W)):
        xt.grad = None
        seed = np.zeros(x.shape)
        seed[:, 0, i, j] = 1.0
        (model(xt) * Tensor(seed)).sum().backward()
        dep[i, j] = np.any(xt.grad[:, 0] != 0, axis=0)
    return dep


# ==================================================================== the autoregressive property
def test_logit_ij_has_zero_gradient_wrt_pixels_at_or_after_ij():
    """Through the type-A input conv and the type-B blocks: logit (i, j) depends only on pixels strictly
    before (i, j) in raster order (and, generically, on the pixels just left of it and just above it)."""
    H, W = 6, 7
    model = small_pixelcnn()
    x = np.random.default_rng(0).standard_normal((2, 1, H, W))
    dep = dependence(model, x)
    rows, cols = np.indices((H, W))
    for i, j in itertools.product(range(H), range(W)):
        later_or_same = (rows > i) | ((rows == i) & (cols >= j))
        assert not dep[i, j][later_or_same].any(), f"logit ({i}, {j}) sees pixel at or after itself"
        if j > 0:
            assert dep[i, j, i, j - 1], f"logit ({i}, {j}) does not see its left neighbour"
        if i > 0:
            assert dep[i, j, i - 1, j], f"logit ({i}, {j}) does not see the pixel above it"
    assert not dep[0, 0].any()                           # the first pixel sees nothing: a learned constant


def test_probabilities_of_all_binary_3x3_images_sum_to_one():
    model = small_pixelcnn(seed=1, channels=8, head=8)
    images = np.array(list(itertools.product([0.0, 1.0], repeat=9))).reshape(-1, 1, 3, 3)
    last_logit = model(Tensor(images)).data[:, 0, 2, 2]
    assert np.ptp(last_logit) > 0.01                     # the logits depend on the pixels: not a vacuous check
    assert np.exp(model.log_prob(images)).sum() == pytest.approx(1.0, abs=1e-10)


def test_nll_gradcheck():
    model = small_pixelcnn(channels=2, blocks=1, head=2)
    x = (np.random.default_rng(0).random((2, 1, 4, 4)) < 0.5).astype(np.float64)
    assert gradcheck(lambda *params: model.nll(x), *model.parameters())


# ==================================================================== sampling
def test_row_by_row_logits_equal_the_full_forward_pass():
    """The sampler's fast path (row r from cached rows above) against the reference forward."""
    model = small_pixelcnn(seed=2, channels=6, blocks=3, dtype=np.float32)
    x = (np.random.default_rng(1).random((3, 1, 28, 28)) < 0.3).astype(np.float32)
    full = model(Tensor(x)).data[:, 0]
    cache = model.new_cache(3)
    cache["x"][:, :, 3:31] = x
    rows = np.stack([model.row_logits(cache, r) for r in range(28)], axis=1)
    np.testing.assert_allclose(rows, full, rtol=1e-5, atol=1e-5)


def test_samples_follow_the_model_distribution():
    model = small_pixelcnn(seed=3)
    samples = model.sample(20000, np.random.default_rng(0), height=2, width=2)
    assert samples.shape == (20000, 1, 2, 2) and set(np.unique(samples)) <= {0.0, 1.0}
    codes = samples.reshape(-1, 4) @ np.array([8, 4, 2, 1])
    freq = np.bincount(codes.astype(int), minlength=16) / len(samples)
    p = np.exp(model.log_prob(np.array(list(itertools.product([0.0, 1.0], repeat=4))).reshape(-1, 1, 2, 2)))
    np.testing.assert_allclose(freq, p, atol=0.015)


# ==================================================================== training and input
def test_a_few_steps_lower_the_nll_of_the_batch():
    x = (load_mnist("train")[0][:16] > 0.5).astype(np.float32)
    nets.manual_seed(0)
    model = pixelcnn.PixelCNN(8, 4, 1, 8)
    optimizer = nets.Adam(model.parameters(), lr=1e-2)
    cfg = pixelcnn.Config()
    before = pixelcnn.evaluate(model, x, None, cfg)["nll_nats"]
    for _ in range(6):
        pixelcnn.train_step(model, optimizer, x, None, cfg)
    assert pixelcnn.evaluate(model, x, None, cfg)["nll_nats"] < before - 50


def test_bad_input_is_refused_clearly():
    model = small_pixelcnn()
    with pytest.raises(ValueError, match="binary"):
        model.nll(np.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model.nll(np.zeros((2, 3, 4, 4)))


# ==================================================================== the command line (scripts/cli/autoregressive.py)
def test_train_and_evaluate_write_the_contract_files(tmp_path, capsys):
    import evaluate as evaluate_script
    import train
    out = tmp_path / "pixelcnn"
    args = ["pixelcnn", "--epochs", "1", "--channels", "4", "--inner", "2", "--blocks", "1", "--head", "4", "--limit", "40",
            "--batch-size", "20", "--num-samples", "2", "--seed", "1", "--out", str(out)]
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "pixelcnn" and metrics["epochs_completed"] == 1 and metrics["wall_seconds"] > 0
    with np.load(out / "samples.npz") as samples:
        assert samples["images"].shape == (2, 28, 28) and samples["images"].dtype == np.float32
    capsys.readouterr()
    assert evaluate_script.main([str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["test_nll_nats"] == pytest.approx(metrics["test_nll_nats"], rel=1e-5)
