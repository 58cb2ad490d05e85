"""Character-level language models and the sequence-memory experiment: the bigram's entropy, sampling,
the text loader and its held-out split, a short training run, and the two commands end to end."""
from __future__ import annotations

import gzip
import json
import math
import os
import signal

import numpy as np
import pytest

import nets
from models import char_lm, seq_memory
from models.char_lm import Bigram, CharLMConfig
from models.seq_memory import SeqMemoryConfig
from nets.datasets import text as text_data
from nets.datasets.text import CharCorpus, load_text

TINY_TEXT = ("the cat sat on the mat. the dog sat on the log. " * 40).strip()


# ============================================================================ the bigram baseline
def test_bigram_nll_on_its_training_text_is_the_count_based_conditional_entropy(rng):
    ids = rng.integers(0, 6, size=3000) ** 2 % 7          # a skewed distribution over 0..6
    model = Bigram(7, alpha=0.0).fit(ids)
    pairs, counts = np.unique(np.stack([ids[:-1], ids[1:]]), axis=1, return_counts=True)
    firsts = {a: counts[pairs[0] == a].sum() for a in np.unique(pairs[0])}
    entropy = -sum(n * math.log(n / firsts[a]) for (a, _), n in zip(pairs.T, counts)) / counts.sum()
    cfg = CharLMConfig(model="bigram", alpha=0.0)
    assert char_lm.evaluate(model, ids, None, cfg)["nll_nats_per_char"] == pytest.approx(entropy, rel=1e-12)
    counted = Bigram(7, alpha=0.0)                         # train_epoch's loss: the same entropy, from the counts
    assert char_lm.train_epoch(counted, None, ids, None, cfg)["loss"] == pytest.approx(entropy, rel=1e-12)
    np.testing.assert_array_equal(counted.counts, model.counts)


def test_bigram_smoothing_gives_unseen_pairs_probability():
    model = Bigram(3, alpha=1.0).fit(np.array([0, 1, 0, 1, 0]))
    probs = np.exp(model.log_probs(np.array([0, 2])))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 1] == pytest.approx(3 / 5) and probs[1, 0] == pytest.approx(1 / 3)


# ============================================================================ sampling
@pytest.mark.parametrize("kind", ["bigram", "mlp", "gru"])
def test_sampling_with_a_seed_is_reproducible(kind):
    corpus = CharCorpus(TINY_TEXT)
    nets.manual_seed(0)
    cfg = CharLMConfig(model=kind, hidden=8, embed=4, context=3)
    model = char_lm.language_model(cfg, corpus.vocab_size)
    if kind == "bigram":
        model.fit(corpus.train)
    draw = lambda seed: char_lm.sample(model, 40, 1.0, np.random.default_rng(seed), corpus.encode("t"))
    first, again, other = draw(1), draw(1), draw(2)
    np.testing.assert_array_equal(first, again)
    assert len(first) == 40 and not np.array_equal(first, other)


def test_low_temperature_sampling_follows_the_most_likely_path():
    model = Bigram(3, alpha=0.0).fit(np.array([0, 1, 2, 0, 1, 2, 0, 1, 0]))   # 1 -> 2 twice, 1 -> 0 once
    ids = char_lm.sample(model, 6, 0.01, np.random.default_rng(0), np.array([0]))
    np.testing.assert_array_equal(ids, [1, 2, 0, 1, 2, 0])


# ============================================================================ data
def test_embedded_corpus_loads_with_its_checksum_and_a_fixed_split():
    text = load_text()
    corpus = CharCorpus(text)
    assert 1_000_000 < len(text) < 1_200_000 and "HAMLET" in text and "Gutenberg" not in text
    assert len(corpus.test) == pytest.approx(0.1 * len(text), abs=1)
    assert corpus.decode(corpus.test[:200]) == text[len(corpus.train):len(corpus.train) + 200]


def test_a_corrupt_embedded_corpus_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "shakespeare.txt.gz"
    bad.write_bytes(gzip.compress(b"To be, or not to be" * 10))
    monkeypatch.setattr(text_data, "EMBEDDED_TEXT_PATH", bad)
    with pytest.raises(ValueError, match="corrupt: SHA-256"):
        load_text()


def test_text_files_are_checked(tmp_path):
    (tmp_path / "ok.txt").write_text("Wherefore art thou. " * 10, encoding="utf-8")
    assert load_text(tmp_path / "ok.txt").startswith("Wherefore")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(ValueError, match="expected a UTF-8 text file"):
        load_text(tmp_path / "latin1.txt")
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 100 characters, found 9"):
        load_text(tmp_path / "short.txt")
    with pytest.raises(ValueError, match="no such file"):
        load_text(tmp_path / "missing.txt")


def test_streams_and_chunks_cover_the_text_in_order():
    ids = np.arange(103)
    data = char_lm.streams(ids, 4)                             # 4 streams of 25
    x, y, new = char_lm.chunk(data, 0, 10)
    assert new and x.shape == (4, 10) and np.array_equal(y, x + 1) and x[1, 0] == 25
    x2, _, new2 = char_lm.chunk(data, 1, 10)
    assert not new2 and x2[0, 0] == 10
    assert char_lm.chunk(data, 2, 10)[2]                       # 2 chunks per pass, then a new pass


# ============================================================================ training
@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_a_short_training_run_beats_the_unigram_entropy(kind):
    corpus = CharCorpus(TINY_TEXT)
    nets.manual_seed(1)
    cfg = CharLMConfig(model=kind, hidden=32, embed=8, context=4, batch_size=8, seq_len=16, lr=1e-2, steps=60)
    model = char_lm.language_model(cfg, corpus.vocab_size)
    optimizer = char_lm.build_optimizer(model, cfg)
    data, rng = char_lm.streams(corpus.train, cfg.batch_size), np.random.default_rng(0)
    for step in range(cfg.steps):
        if kind == "mlp":
            batch = char_lm.mlp_batch(corpus.train, cfg.context, cfg.batch_size, rng)
        else:
            x, y, new = char_lm.chunk(data, step, cfg.seq_len)
            batch, model.carry = (x, y), None if new else model.carry
        stats = char_lm.train_step(model, optimizer, batch, rng, cfg)
        assert stats["grad_norm"] >= 0
    freq = np.bincount(corpus.train, minlength=corpus.vocab_size) / len(corpus.train)
    unigram = -(freq[freq > 0] * np.log(freq[freq > 0])).sum()
    assert char_lm.evaluate(model, corpus.test, None, cfg, context=corpus.train)["nll_nats_per_char"] < 0.7 * unigram


def test_seq_memory_batches_hide_the_answer_in_the_first_step(rng):
    cfg = SeqMemoryConfig(symbols=3, distractors=2)
    x, first = seq_memory.make_batch(50, 7, cfg, rng)
    assert x.shape == (50, 7, 5) and np.array_equal(x[:, 0].argmax(1), first)
    assert (x[:, 1:].argmax(2) >= 3).all() and np.array_equal(x.sum(2), np.ones((50, 7)))


def test_grad_norms_cover_every_step_and_clipping_scales_them_all():
    cfg = SeqMemoryConfig(hidden=6, clip=1e-3)
    nets.manual_seed(0)
    for kind in ("rnn", "lstm", "gru"):
        model = seq_memory.Recaller(kind, cfg)
        g = seq_memory.grad_norms(model, seq_memory.make_batch(8, 12, cfg, np.random.default_rng(0)), cfg.clip)
        assert len(g["raw"]) == 12 and all(r > 0 for r in g["raw"])
        ratios = np.array(g["clipped"]) / np.array(g["raw"])
        assert np.allclose(ratios, ratios[0]) and ratios[0] < 1


# ============================================================================ the commands
def _train(args):
    import train
    return train.main(args)


def test_char_lm_command_writes_the_contract_and_resumes_exactly(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    flags = ["--text", str(corpus), "--hidden", "8", "--embed", "4", "--batch-size", "4", "--seq-len", "8",
             "--eval-every", "2", "--sample-chars", "30"]
    assert _train(["char-lm", "--model", "lstm", "--steps", "4", "--out", str(tmp_path / "a"), *flags]) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["model"] == "lstm" and metrics["steps_completed"] == 4
    assert metrics["test_bits_per_char"] == pytest.approx(metrics["test_nll_nats_per_char"] / math.log(2))
    assert metrics["wall_seconds"] > 0 and (tmp_path / "a" / "samples.txt").read_text().count("=== sample") == 4
    step = char_lm.train_step
    def interrupted_after_two(*args, calls=[]):            # Ctrl-C during the second step
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return step(*args)
    monkeypatch.setattr(char_lm, "train_step", interrupted_after_two)
    with pytest.raises(SystemExit) as stop:
        _train(["char-lm", "--model", "lstm", "--steps", "4", "--out", str(tmp_path / "b"), *flags])
    assert stop.value.code == 130
    monkeypatch.setattr(char_lm, "train_step", step)
    assert _train(["char-lm", "--resume", str(tmp_path / "b")]) == 0
    resumed = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert resumed["test_nll_nats_per_char"] == metrics["test_nll_nats_per_char"]
    assert resumed["train_losses"] == metrics["train_losses"]
    assert _train(["char-lm", "--model", "bigram", "--out", str(tmp_path / "c"), *flags]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["test_nll_nats_per_char"] > 0


def test_char_lm_command_refuses_bad_flags(tmp_path, capsys):
    assert _train(["char-lm", "--text", str(tmp_path / "none.txt"), "--out", str(tmp_path / "a")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train(["char-lm", "--model", "transformer"])


def test_seq_memory_command_writes_accuracy_per_model_and_length(tmp_path):
    out = tmp_path / "run"
    assert _train(["seq-memory", "--lengths", "3", "5", "--steps", "3", "--hidden", "4", "--test-size", "20",
                   "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"rnn", "lstm", "gru"}
    assert all(set(a) == {"3", "5"} and all(0 <= v <= 1 for v in a.values()) for a in metrics["accuracy"].values())
    assert len(metrics["grad_norms"]["lstm"]["raw"]) == 5 and (out / "grad_norms.png").exists()
