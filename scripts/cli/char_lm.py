"""`train.py char-lm` and `train.py seq-memory`: sequence models (models/char_lm.py, models/seq_memory.py).

    python scripts/train.py char-lm                        # LSTM on the embedded Shakespeare plays
    python scripts/train.py char-lm --model bigram         # the counting baseline (also mlp, rnn, gru)
    python scripts/train.py char-lm --text my.txt          # any UTF-8 text file
    python scripts/train.py seq-memory                     # RNN vs LSTM vs GRU, recall after T = 10..100

char-lm writes into --out: metrics.json (model, test_nll_nats_per_char, test_bits_per_char, the curves),
samples.txt (temperature samples), loss.png, checkpoint.npz. The held-out split is the last 10% of the text.
seq-memory writes metrics.json (accuracy = {model: {T: fraction}}, grad_norms), accuracy.png, grad_norms.png.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from models import char_lm, seq_memory
from models.char_lm import CharLMConfig
from models.seq_memory import SeqMemoryConfig
from nets.datasets.text import CharCorpus, load_text
from nets.harness import Run, UsageError, add_config_flags, add_run_flags
from cli.common import _pyplot, print_summary, save_curves

SUMMARY_METRICS = {"char-lm": {"test_nll_nats_per_char": "lower"},
                   "seq-memory": {"accuracy_lstm_T100": "higher", "accuracy_rnn_T100": "lower"}}


def register(subparsers) -> None:
    for name, config, text in (("char-lm", CharLMConfig, "character-level language model (bigram .. LSTM)"),
                               ("seq-memory", SeqMemoryConfig, "vanishing gradients: RNN vs LSTM vs GRU")):
        parser = subparsers.add_parser(name, help=text, description=__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_flags(parser)
        add_config_flags(parser, config)
        parser.set_defaults(run=run_char_lm if name == "char-lm" else run_seq_memory)


# ==================================================================== char-lm
def run_char_lm(args) -> None:
    run = Run("char-lm", args, CharLMConfig, may_change=("steps",))
    cfg = run.config
    try:
        text = load_text(cfg.text or None)
        corpus = CharCorpus(text)
        data = char_lm.streams(corpus.train, cfg.batch_size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if cfg.model != "bigram" and data.shape[1] <= cfg.seq_len + 1:
        raise UsageError(f"--seq-len {cfg.seq_len}: each of the {cfg.batch_size} streams holds only "
                         f"{data.shape[1]} characters; use a shorter --seq-len or a smaller --batch-size")
    model = char_lm.build(cfg)
    state = run.state or {"step": 0, "history": [], "losses": []}

    if cfg.model == "bigram":                      # counting, no training loop
        char_lm.train_epoch(model, None, corpus.train, None, cfg)
        run.save(state, model=model.state_dict())
    else:
        optimizer = char_lm.build_optimizer(model, cfg)
        if run.resumed:                            # model.carry, the state carried between chunks, included
            model.load_state_dict(run.sections["model"])
            optimizer.load_state_dict(run.sections["optimizer"])

        def save():
            run.save(state, model=model.state_dict(), optimizer=optimizer.state_dict())

        for step in run.loop(state["step"], cfg.steps, save, unit="step"):
            if cfg.model == "mlp":
                batch = char_lm.mlp_batch(corpus.train, cfg.context, cfg.batch_size * cfg.seq_len,
                                          run.stream("train", step))
            else:
                inputs, targets, new_pass = char_lm.chunk(data, step, cfg.seq_len)
                batch, model.carry = (inputs, targets), (None if new_pass else model.carry)
            stats = char_lm.train_step(model, optimizer, batch, None, cfg)
            run.check_finite(stats["loss"], f"step {step + 1}", hint="--lr")
            state["step"] = step + 1
            state["losses"].append(stats["loss"])
            run.show(loss=stats["loss"])
            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.steps:
                recent = state["losses"][-cfg.eval_every:]
                held_out = char_lm.evaluate(model, corpus.test, None, cfg, context=corpus.train)
                state["history"].append({"step": state["step"], "train_loss": float(np.mean(recent)),
                                         "test_nll": held_out["nll_nats_per_char"]})

    nll = char_lm.evaluate(model, corpus.test, None, cfg, context=corpus.train)["nll_nats_per_char"]
    run.check_finite(nll, "held-out evaluation", hint="--lr")
    samples, known = _samples(run, model, corpus, text, cfg)
    metrics = run.write_metrics({
        "model": cfg.model, "command": "char-lm",
        "test_nll_nats_per_char": nll, "test_bits_per_char": nll / math.log(2),
        "corpus": cfg.text or "embedded Shakespeare (8 plays)", "vocab_size": corpus.vocab_size,
        "train_chars": len(corpus.train), "test_chars": len(corpus.test),
        "steps_completed": state["step"], "chars_seen": state["step"] * cfg.batch_size * cfg.seq_len,
        "parameters": sum(p.size for p in model.parameters()) if cfg.model != "bigram" else model.counts.size,
        "sample_known_word_fraction": known, "history": state["history"], "train_losses": state["losses"],
    })
    with open(run.path("samples.txt"), "w", encoding="utf-8") as f:
        f.write(samples)
    if state["losses"]:
        curves = {"train loss (chunk)": state["losses"]}
        if state["history"]:
            curves["held-out NLL"] = ([h["step"] for h in state["history"]],
                                      [h["test_nll"] for h in state["history"]])
        save_curves(run.path("loss.png"), curves, xlabel="step", ylabel="nats per character",
                    title=f"char-lm {cfg.model}: held-out {nll:.3f} nats/char")
    print_summary(run.dir, {k: metrics[k] for k in ("model", "test_nll_nats_per_char", "test_bits_per_char",
                                                    "wall_seconds")})


def _samples(run: Run, model, corpus: CharCorpus, text: str, cfg: CharLMConfig) -> tuple:
    """Three samples at --temperature and one at 1.0, each started from a newline; and the fraction of
    sampled words that occur in the training text."""
    prompt = corpus.encode("\n") if "\n" in corpus.index else corpus.train[:1]
    parts, sampled = [], ""
    for i, tau in enumerate((cfg.temperature,) * 3 + (1.0,)):
        ids = char_lm.sample(model, cfg.sample_chars, tau, run.stream("samples", i), prompt)
        piece = corpus.decode(ids)
        sampled += piece
        parts.append(f"=== sample {i + 1}, temperature {tau} ===\n{piece}\n")
    known = char_lm.known_word_fraction(sampled, text[:len(corpus.train)])
    header = (f"# char-lm --model {cfg.model}, seed {run.seed}: {len(parts)} samples of {cfg.sample_chars} "
              f"characters; {100 * known:.1f}% of their words occur in the training text\n\n")
    return header + "\n".join(parts), known


# ==================================================================== seq-memory
def run_seq_memory(args) -> None:
    run = Run("seq-memory", args, SeqMemoryConfig)
    cfg = run.config
    try:
        models = seq_memory.model_names(cfg)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if min(cfg.lengths) < 2:
        raise UsageError(f"--lengths: expected lengths >= 2, got {cfg.lengths}")
    jobs = [(m, T) for m in models for T in cfg.lengths]
    state = run.state or {"done": 0, "accuracy": {}, "steps": {}, "grad_norms": {}}

    for unit in run.loop(state["done"], len(jobs), lambda: run.save(state), unit="run"):
        kind, T = jobs[unit]
        model, stats = seq_memory.train(kind, T, cfg, run.stream("train", unit), run.stream("init", unit))
        run.check_finite(stats["loss"], f"{kind} T={T}", hint="--lr")
        test = seq_memory.evaluate(model, T, run.stream("test", T), cfg)
        state["accuracy"].setdefault(kind, {})[str(T)] = test["accuracy"]
        state["steps"].setdefault(kind, {})[str(T)] = stats["steps"]
        if T == max(cfg.lengths):
            batch = seq_memory.make_batch(cfg.batch_size, T, cfg, run.stream("grad_batch", T))
            state["grad_norms"][kind] = seq_memory.grad_norms(model, batch, cfg.clip)
            if kind == "rnn":
                exploding = seq_memory.exploding_rnn(cfg, run.stream("init_exploding"))
                state["grad_norms"]["rnn_exploding"] = seq_memory.grad_norms(exploding, batch, cfg.clip)
        state["done"] = unit + 1
        run.show(**{f"{kind}@{T}": state["accuracy"][kind][str(T)]})

    longest = str(max(cfg.lengths))
    flat = {f"accuracy_{m}_T{longest}": state["accuracy"][m][longest] for m in models}
    metrics = run.write_metrics({"accuracy": state["accuracy"], **flat, "chance": 1 / cfg.symbols,
                                 "steps_used": state["steps"], "grad_norms": state["grad_norms"]})
    lengths = list(cfg.lengths)
    save_curves(run.path("accuracy.png"),
                {m: (lengths, [state["accuracy"][m][str(T)] for T in lengths]) for m in models}
                | {"chance": (lengths, [1 / cfg.symbols] * len(lengths))},
                xlabel="sequence length T", ylabel="held-out accuracy", title="recall the first symbol")
    _grad_figure(run.path("grad_norms.png"), state["grad_norms"], cfg)
    print_summary(run.dir, {"accuracy": metrics["accuracy"], "wall_seconds": metrics["wall_seconds"]})


def _grad_figure(path: str, norms: dict, cfg: SeqMemoryConfig) -> None:
    """||dL/dh_t|| against t, log scale: solid = the gradient, dashed = after clipping (drawn where it differs)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, g) in enumerate(norms.items()):
        label = (f"rnn, untrained, W_hh spectral radius {cfg.explode_radius}" if name == "rnn_exploding"
                 else f"{name}, trained")
        t = np.arange(1, len(g["raw"]) + 1)
        ax.plot(t, np.maximum(g["raw"], 1e-30), color=f"C{i}", label=label)
        if not np.allclose(g["clipped"], g["raw"]):
            ax.plot(t, np.maximum(g["clipped"], 1e-30), color=f"C{i}", linestyle="--",
                    label=f"{label}, clipped to norm {cfg.clip}")
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(f"the gradient reaching step t from the loss at t = {len(g['raw'])}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
