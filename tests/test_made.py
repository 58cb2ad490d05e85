"""MADE (models/made.py): the autoregressive property on the engine's gradients, exact normalisation, the
mask ensemble, sampling from the model's own distribution, seeded masks, checkpoints, bad input."""
import itertools
import json

import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from models import made
from nets.data import load_mnist


def small_made(input_dim=6, hidden=(12, 12), num_masks=3, seed=0, order_agnostic=True, dtype=np.float64):
    nets.manual_seed(seed)
    return made.MADE(input_dim, hidden, num_masks, order_agnostic, dtype=dtype,
                     mask_rng=np.random.default_rng(seed))


def all_binary(d):
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def jacobian(model, x):
    """J[i, j] = d logit_i / d x_j for one input row x (D,), by D backward passes."""
    d = len(x)
    J = np.zeros((d, d))
    xt = Tensor(x[None].copy(), requires_grad=True)
    for i in range(d):
        xt.grad = None
        seed = np.zeros((1, d))
        seed[0, i] = 1.0
        (model(xt) * Tensor(seed)).sum().backward()
        J[i] = xt.grad[0]
    return J


# ==================================================================== the autoregressive property
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.grades("made_masks")
def test_logit_i_has_zero_gradient_wrt_inputs_at_or_after_i(direct):
    """d l_i / d x_j == 0 exactly whenever m(j) >= m(i) (j at or after i in the mask's ordering)."""
    nets.manual_seed(3)
    model = made.MADE(8, (16, 16), 4, direct=direct, dtype=np.float64, mask_rng=np.random.default_rng(3))
    x = np.random.default_rng(0).standard_normal(8)          # any real input: causality does not need binary x
    for k in range(model.num_masks):
        model.use_mask(k)
        order = model.degrees(k)[0]
        J = jacobian(model, x)
        forbidden = order[None, :] >= order[:, None]              # [i, j]: m(j) >= m(i)
        assert np.all(J[forbidden] == 0), f"mask {k}: logit depends on a later input"
        assert np.any(J[~forbidden] != 0), f"mask {k}: no dependence at all (the test would be vacuous)"
        last = int(np.argmax(order))
        assert np.count_nonzero(J[last]) >= 2                     # the last pixel sees several earlier ones


def test_orderings_differ_between_masks_and_are_seeded():
    a, b = small_made(seed=1), small_made(seed=1)
    for k in range(3):
        for da, db in zip(a.degrees(k), b.degrees(k)):
            np.testing.assert_array_equal(da, db)
    orders = {tuple(a.ordering(k)) for k in range(3)}
    assert len(orders) > 1                                        # order-agnostic: not all the same ordering
    np.testing.assert_array_equal(small_made(order_agnostic=False).ordering(2), np.arange(6))


# ==================================================================== a true distribution
@pytest.mark.grades("made_masks")
def test_probabilities_of_all_binary_images_sum_to_one_for_each_mask_and_the_ensemble():
    model = small_made()
    x = all_binary(6)
    for k in range(3):
        assert np.exp(model.log_prob(x, masks=[k])).sum() == pytest.approx(1.0, abs=1e-10)
    p_ensemble = np.exp(model.log_prob(x))
    assert p_ensemble.sum() == pytest.approx(1.0, abs=1e-10)
    mean_of_masks = np.mean([np.exp(model.log_prob(x, masks=[k])) for k in range(3)], axis=0)
    np.testing.assert_allclose(p_ensemble, mean_of_masks, rtol=1e-10)     # averaged probabilities, not logits


def test_samples_follow_the_model_distribution():
    model = small_made(input_dim=3, hidden=(8,), num_masks=2, seed=5)
    for k in range(model.num_masks):                               # samples of mask k follow p_k
        samples = model.sample(20000, np.random.default_rng(k), mask=k)
        assert set(np.unique(samples)) <= {0.0, 1.0}
        codes = samples @ np.array([4, 2, 1])
        freq = np.bincount(codes.astype(int), minlength=8) / len(samples)
        p = np.exp(model.log_prob(all_binary(3), masks=[k]))
        np.testing.assert_allclose(freq, p, atol=0.015)


def test_nll_gradcheck():
    model = small_made(input_dim=5, hidden=(4,), num_masks=2)
    x = (np.random.default_rng(0).random((3, 5)) < 0.5).astype(np.float64)
    model.use_mask(1)
    assert gradcheck(lambda *params: model.nll(x), *model.parameters())


# ==================================================================== training and state
def test_checkpoint_restores_masks_and_likelihood(tmp_path):
    model = small_made(seed=2)
    other = small_made(seed=9)
    x = all_binary(6)
    other.load_state_dict(model.state_dict())
    np.testing.assert_allclose(other.log_prob(x), model.log_prob(x))


def test_a_few_epochs_lower_the_training_nll():
    images = load_mnist("train")[0][:200]
    cfg = made.MADEConfig(hidden=(32,), num_masks=2, batch_size=50)
    nets.manual_seed(0)
    model = made.build(cfg, mask_rng=np.random.default_rng(0))
    optimizer = nets.Adam(model.parameters(), lr=3e-3)
    losses = [made.train_epoch(model, optimizer, images, np.random.default_rng(e), cfg)["loss"]
              for e in range(4)]
    assert losses[-1] < losses[0] - 50                  # from ~540 nats (uniform) down quickly
    assert np.isfinite(made.evaluate(model, images[:20], None, cfg)["nll_nats"])


def test_bad_input_is_refused_clearly():
    model = small_made()
    with pytest.raises(ValueError, match="binary"):
        model.log_prob(np.full((2, 6), 0.5))
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        model.nll(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="mask index"):
        model.use_mask(3)


# ==================================================================== the command line (scripts/cli/autoregressive.py)
TINY = ["--epochs", "2", "--hidden", "32", "--num-masks", "2", "--limit", "300", "--batch-size", "50",
        "--lr", "3e-3", "--num-samples", "10"]


def test_train_and_evaluate_write_the_contract_files(tmp_path, capsys):
    import evaluate as evaluate_script
    import train
    out = tmp_path / "made"
    assert train.main(["made", *TINY, "--seed", "4", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "made" and metrics["wall_seconds"] > 0 and metrics["num_train"] == 300
    assert len(metrics["train_nll"]) == len(metrics["val_nll"]) == 2
    assert metrics["val_nll"][1] < metrics["val_nll"][0]
    with np.load(out / "samples.npz") as samples:
        images = samples["images"]
    assert images.dtype == np.float32 and images.shape == (10, 28, 28) and set(np.unique(images)) <= {0.0, 1.0}
    assert (out / "samples.png").stat().st_size > 0 and (out / "loss.png").stat().st_size > 0
    capsys.readouterr()
    assert evaluate_script.main([str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["n_test"] == 500
    assert result["test_nll_nats"] == pytest.approx(metrics["test_nll_nats"], rel=1e-6)   # same fixed draw
    assert train.main(["made", "--resume", str(out), "--num-masks", "3"]) == 2           # refused, one line


def test_resume_continues_exactly(tmp_path):
    """1 epoch, then --resume to 2 epochs: the same weights, masks and optimizer state as 2 epochs at once."""
    import train
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main(["made", *TINY, "--seed", "4", "--out", str(straight)]) == 0
    assert train.main(["made", *TINY, "--epochs", "1", "--seed", "4", "--out", str(resumed)]) == 0
    assert train.main(["made", "--resume", str(resumed), "--epochs", "2"]) == 0
    a, b = (nets.load_checkpoint(d / "checkpoint.npz") for d in (straight, resumed))
    for section in ("model", "optimizer"):
        for name, value in a[section].items():
            np.testing.assert_array_equal(b[section][name], value, err_msg=name)
    assert a["meta"]["state"]["history"] == b["meta"]["state"]["history"]
