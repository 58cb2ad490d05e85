"""The run harness (nets/harness.py) and multi-seed runs (nets/sweep.py): named streams, flags and the
resume policy, strict JSON, a diverging run, a corrupt checkpoint, the seed-list parser, the summary
statistics, and a multi-seed run whose summary agrees with its per-seed metrics (README's notebook example:
tests/test_contract.py)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nets.harness import UsageError, parse_seeds, stream, strict_json
from nets.sweep import bootstrap_interval, interquartile_mean, seed_command, summarize

import train


def strict_load(path):
    """json.load that rejects NaN / Infinity, as a strict parser does."""
    def reject(token):
        raise ValueError(f"non-strict JSON constant {token}")
    return json.loads(Path(path).read_text(), parse_constant=reject)


# ==================================================================== streams and parsing
def test_streams_are_reproducible_and_independent():
    a = stream(3, "train", 1).random(5)
    np.testing.assert_array_equal(a, stream(3, "train", 1).random(5))
    for other in (stream(3, "train", 2), stream(3, "noise", 1), stream(4, "train", 1), stream(2, "train", 1)):
        assert not np.allclose(a, other.random(5))
    # no `seed + k` collisions: seed 1 at position 1 differs from seed 2 at position 0
    assert not np.allclose(stream(1, "x", 1).random(3), stream(2, "x", 0).random(3))


@pytest.mark.parametrize("text, seeds", [("0-3", [0, 1, 2, 3]), ("3,7,11", [3, 7, 11]), ("0-1,5", [0, 1, 5]),
                                         ("7", [7])])
def test_seed_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "5-2", "1,1", "-3", "1,,x"])
def test_bad_seed_lists_are_usage_errors(text):
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(text)


def test_seed_command_replaces_the_sweep_flags(tmp_path):
    argv = ["dqn", "--seeds", "0-9", "--workers=2", "--episodes", "10", "--out", "DIR", "--seed", "4"]
    assert seed_command(argv, 7, str(tmp_path)) == ["dqn", "--episodes", "10", "--seed", "7", "--out", str(tmp_path)]
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    assert seed_command(argv, 7, str(tmp_path))[-2:] == ["--resume", str(tmp_path)]


def test_strict_json_replaces_non_finite_numbers_and_names_them():
    found = []
    clean = strict_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": np.float32(2)}, found=found)
    assert clean == {"a": [1.0, None], "b": {"c": None}, "d": 2.0} and found == ["a[1]", "b.c"]
    json.dumps(clean, allow_nan=False)


# ==================================================================== summary statistics
def test_interquartile_mean_trims_a_quarter_from_each_end():
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5                  # mean of 3, 4, 5, 6
    assert interquartile_mean([0, 0, 0, 1000]) == 0.0                          # the outlier is dropped
    assert math.isclose(interquartile_mean([1, 2, 3]), (0.25 * 1 + 2 + 0.25 * 3) / 1.5)   # fractional weights
    x = np.random.default_rng(0).normal(size=101)
    assert abs(interquartile_mean(x) - np.mean(np.sort(x)[25:76])) < 0.05


def test_bootstrap_interval_contains_the_statistic_and_narrows_with_more_seeds():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=10), rng.normal(size=400)
    low, high = bootstrap_interval(small)
    assert low <= interquartile_mean(small) <= high
    assert (np.subtract(*bootstrap_interval(large)[::-1])) < high - low


def test_rl_summary_counts_each_bar():
    runs = {0: {"first_episode_avg300": 200, "first_episode_avg475": 400, "greedy_eval_mean": 500.0,
                "final_greedy_eval_returns": [300.0] * 4, "wall_seconds": 10.0},
            1: {"first_episode_avg300": None, "first_episode_avg475": None, "greedy_eval_mean": 480.0,
                "final_greedy_eval_returns": [480.0] * 4, "wall_seconds": 20.0}}
    summary = summarize("dqn", runs, None)
    fractions = summary["fractions"]
    assert fractions["avg300_reached"]["count"] == 1 and fractions["delivered_greedy_ge475"]["count"] == 2
    assert fractions["final_greedy_ge475"]["count"] == 1 and fractions["avg300_and_delivered_ge475"]["count"] == 1
    assert summary["statistics"]["wall_seconds"]["median"] == 15.0


# ==================================================================== the command line
def run_main(argv, capsys):
    try:
        code = train.main(argv)
    except SystemExit as error:
        code = error.code
    return code, capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")       # the NaNs on the way are the point
def test_a_diverging_run_stops_with_one_line_and_exit_3(tmp_path, capsys):
    code, err = run_main(["vae", "--lr", "1e4", "--epochs", "2", "--limit", "200", "--hidden", "16",
                          "--out", str(tmp_path / "v")], capsys)
    lines = [line for line in err.splitlines() if "diverged" in line]
    assert code == 3 and len(lines) == 1 and "epoch 1" in lines[0] and "--lr" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("model", sorted(set(train.COMMANDS) - {"tabular"}))
def test_a_garbage_checkpoint_is_one_line_and_exit_2(model, tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_bytes(b"this is not an npz file")
    code, err = run_main([model, "--resume", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_resume_refuses_a_changed_flag_and_accepts_the_budget(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert train.main(["reinforce", "--episodes", "3", "--out", out]) == 0
    code, err = run_main(["reinforce", "--resume", out, "--lr", "0.5"], capsys)
    assert code == 2 and "--lr" in err and "--episodes" in err
    assert train.main(["reinforce", "--resume", out, "--episodes", "5"]) == 0
    assert len(strict_load(f"{out}/metrics.json")["episode_returns"]) == 5
    code, err = run_main(["reinforce", "--episodes", "3", "--out", out], capsys)    # never overwrite a run
    assert code == 2 and "--resume" in err


def test_multi_seed_run_writes_a_summary_that_agrees_with_each_seed(tmp_path):
    out = tmp_path / "sweep"
    assert train.main(["reinforce", "--seeds", "0-2", "--workers", "2", "--episodes", "12", "--out", str(out)]) == 0
    summary = strict_load(out / "summary.json")
    assert summary["seeds"] == [0, 1, 2] and (out / "summary.png").stat().st_size > 0
    greedy = []
    for seed in (0, 1, 2):
        metrics = strict_load(out / f"seed-{seed}" / "metrics.json")
        assert metrics["seed"] == seed and len(metrics["episode_returns"]) == 12
        assert summary["per_seed"][str(seed)]["delivered_greedy_mean"] == metrics["greedy_eval_mean"]
        greedy.append(metrics["greedy_eval_mean"])
    assert summary["statistics"]["delivered_greedy_mean"]["median"] == float(np.median(greedy))
    assert len({tuple(strict_load(out / f"seed-{s}" / "metrics.json")["episode_returns"]) for s in (0, 1, 2)}) == 3
    # --resume on a finished sweep runs nothing again and rewrites the same summary
    assert train.main(["reinforce", "--seeds", "0-2", "--resume", str(out), "--episodes", "12"]) == 0
    assert strict_load(out / "summary.json")["per_seed"] == summary["per_seed"]


def test_the_blas_thread_count_is_saved_and_reused_on_resume(tmp_path, monkeypatch):
    import nets.threads
    out = str(tmp_path / "v")
    args = ["vae", "--epochs", "1", "--limit", "100", "--hidden", "8", "--iwae-k", "2"]
    assert train.main(args + ["--threads", "1", "--out", out]) == 0
    import nets
    assert nets.load_checkpoint(f"{out}/checkpoint.npz")["meta"]["threads"] == 1
    asked = []
    monkeypatch.setattr(nets.threads, "configure_threads", lambda requested=None: asked.append(requested) or 1)
    assert train.main(["vae", "--resume", out, "--epochs", "2"]) == 0
    assert asked == [1]                  # not "auto": the resumed run sums in the same order


def test_tuple_flags_take_no_widths_only_where_the_field_allows_it():
    """`es --hidden` alone is a linear policy (check="may_be_empty"); `made --hidden` alone is refused
    by the parser, with the flag's name, before anything runs."""
    import argparse
    from nets.harness import add_config_flags
    from models.made import MADEConfig
    from rl.es import ESConfig
    es = argparse.ArgumentParser()
    add_config_flags(es, ESConfig)
    assert es.parse_args(["--hidden"]).hidden == [] and es.parse_args(["--hidden", "4"]).hidden
    made = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(made, MADEConfig)
    with pytest.raises(argparse.ArgumentError, match="--hidden"):
        made.parse_args(["--hidden"])
