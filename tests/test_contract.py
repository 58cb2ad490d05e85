"""The one contract of every generative model (models.REGISTRY) and every RL agent (rl.AGENTS), checked on each:
the names and argument order, two training steps and an epoch, an evaluation of finite numbers under the
headline key, and a state_dict round trip (through a checkpoint file) that reproduces the next step bit for bit.
And README's "Train a model in ten lines", run for every model with only its name and data changed."""
import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import models
import nets
import rl
from nets.checkpoint import load_checkpoint, save_checkpoint
from nets.data import binarize_dynamic, flatten, load_mnist
from nets.harness import stream
from rl.common import split_state

ROOT = Path(__file__).resolve().parents[1]
TINY_TEXT = ("the cat sat on the mat. the dog sat on the log. " * 30).strip()


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return str(path)


def tiny_config(name: str, tmp_path, text: str) -> dict:
    """The default config of each model, shrunk through its own fields so that a step takes milliseconds."""
    return {"vae": dict(hidden=8, latent=2, batch_size=16, iwae_k=3),
            "cvae": dict(hidden=8, latent=2, batch_size=16, iwae_k=3),
            "dcgan": dict(batch_size=8, hidden=8, d_channels=(2, 3), g_channels=(4, 2)),
            "wgan-gp": dict(batch_size=4, n_critic=2, hidden=8, d_channels=(2, 3), g_channels=(4, 2)),
            "flow": dict(layers=2, hidden=8, batch_size=16),
            "conv-vae": dict(num_frames=40, reset_every=8, hidden_dims=(2, 4), latent_dim=2, batch_size=8,
                             cache_dir=str(tmp_path / "frames")),
            "made": dict(hidden=(8,), num_masks=2, batch_size=16),
            "pixelcnn": dict(channels=4, inner=2, blocks=1, head=4, batch_size=8),
            "revnet": dict(width=8, hidden=8, depth=2, batch_size=16),
            "char-lm": dict(hidden=8, embed=4, batch_size=4, seq_len=8, context=3, text=text),
            "seq-memory": dict(hidden=4, batch_size=8, steps=3, test_size=16, lengths=(5,))}[name]


# ==================================================================== the models
def mnist(n: int = 32):
    images, labels = load_mnist("train")
    return images[:n], labels[:n]


def model_case(name: str, module, cfg, rng) -> tuple:
    """(data, test data, one training batch) in the form the model's contract names."""
    images, labels = mnist()
    binary = binarize_dynamic(flatten(images[:8]), rng=rng)
    if name in ("vae", "made"):
        return images, images[:16], binary
    if name == "cvae":
        return (images, labels), (images[:16], labels[:16]), (binary, labels[:8])
    if name == "pixelcnn":
        return images, images[:16], binary.reshape(8, 1, 28, 28)
    if name in ("dcgan", "wgan-gp"):
        return images, images[:16], module.signed_images(images[:8])
    if name == "flow":
        return images, images[:16], module.dequantize(images[:8], rng)
    if name == "revnet":
        return (images, labels), (images[:16], labels[:16]), (images[:8], labels[:8])
    if name == "conv-vae":
        frames = rng.random((16, 1, 32, 32), dtype=np.float32)
        return frames, frames[:8], frames[:8]
    if name == "char-lm":
        corpus = module.load_corpus(cfg)
        batch = (module.mlp_batch(corpus.train, cfg.context, cfg.batch_size, rng) if cfg.model == "mlp" else
                 module.chunk(module.streams(corpus.train, cfg.batch_size), 0, cfg.seq_len)[:2])
        return corpus.train, corpus.test, batch
    if name == "seq-memory":
        return 5, 5, module.make_batch(cfg.batch_size, 5, cfg, rng)
    raise AssertionError(f"no test case for {name}")


HEADLINE = {"vae": "neg_elbo_nats", "cvae": "neg_elbo_nats", "dcgan": "d_loss", "wgan-gp": "critic_loss",
            "flow": "bits_per_dim",
            "conv-vae": "mse", "made": "nll_nats", "pixelcnn": "nll_nats", "revnet": "accuracy",
            "char-lm": "nll_nats_per_char", "seq-memory": "accuracy"}
CASES = [(name, {}) for name in models.REGISTRY] + [("char-lm", {"model": kind}) for kind in ("bigram", "mlp", "gru")]


def finite_numbers(stats: dict) -> bool:
    return isinstance(stats, dict) and bool(stats) and all(
        isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
        for v in stats.values())


def parameters(function) -> list:
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind != p.KEYWORD_ONLY]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_the_registry_names_every_command_and_only_those():
    import train
    assert set(models.REGISTRY) | set(rl.AGENTS) | {"tabular"} == set(train.COMMANDS)
    with pytest.raises(ValueError, match="unknown model 'gan'"):
        models.load("gan")
    with pytest.raises(ValueError, match="unknown agent 'ppo'"):
        rl.load("ppo")


@pytest.mark.parametrize("name, change", CASES, ids=[f"{n}-{c.get('model', 'default')}" for n, c in CASES])
def test_every_model_keeps_the_contract(name, change, tmp_path, tiny_text):
    module = models.load(name)
    assert getattr(module, module.Config.__name__) is module.Config           # the old name (VAEConfig) too
    assert parameters(module.build) == ["cfg"] and parameters(module.build_optimizer) == ["model", "cfg"]
    assert parameters(module.train_step) == ["model", "optimizer", "batch", "rng", "cfg"]
    assert parameters(module.train_epoch) == ["model", "optimizer", "data", "rng", "cfg"]
    assert parameters(module.evaluate) == ["model", "data", "rng", "cfg"]
    cfg = module.Config(**{**tiny_config(name, tmp_path, tiny_text), **change})
    data, test_data, batch = model_case(name, module, cfg, np.random.default_rng(0))

    nets.manual_seed(0)
    model = module.build(cfg)
    optimizer = module.build_optimizer(model, cfg)
    for step in range(2):
        assert finite_numbers(module.train_step(model, optimizer, batch, stream(0, "step", step), cfg))
    assert finite_numbers(module.train_epoch(model, optimizer, data, stream(0, "epoch"), cfg))
    result = module.evaluate(model, test_data, stream(0, "eval"), cfg)
    assert finite_numbers(result) and HEADLINE[name] in result

    # the round trip: through a checkpoint file into a model built from other weights
    sections = {"model": model.state_dict()}
    if optimizer is not None:                                     # the bigram counts: it has no optimizer
        sections["optimizer"] = optimizer.state_dict()
    save_checkpoint(tmp_path / "checkpoint.npz", meta={}, **sections)
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    nets.manual_seed(1)
    twin = module.build(cfg)
    twin_optimizer = module.build_optimizer(twin, cfg)
    twin.load_state_dict(saved["model"])
    if optimizer is not None:
        twin_optimizer.load_state_dict(saved["optimizer"])
    assert module.train_step(model, optimizer, batch, stream(0, "next"), cfg) == \
        module.train_step(twin, twin_optimizer, batch, stream(0, "next"), cfg)
    assert_same_state(model.state_dict(), twin.state_dict())
    if optimizer is not None:
        assert_same_state(optimizer.state_dict(), twin_optimizer.state_dict())


# ==================================================================== the agents
TINY_AGENTS = {
    "dqn": dict(episodes=4, hidden=(8,), batch_size=8, buffer_size=500, learning_starts=20, train_frequency=1,
                eps_decay_steps=100, eval_interval=30, eval_episodes=2, confirm_episodes=2),
    "reinforce": dict(episodes=8, hidden=(8,), baseline="value", episodes_per_update=2),
    "es": dict(generations=3, population_pairs=2, hidden=(4,)),
    "actor-critic": dict(steps=200, n_envs=2, n_steps=8, hidden=(8,)),
}
AGENT_METHODS = ("finished", "budget", "train_step", "evaluate", "evaluate_final", "losses", "extra_metrics",
                 "figures", "state_dict", "load_state_dict")


@pytest.mark.parametrize("name", list(rl.AGENTS))
def test_every_agent_keeps_the_contract(name):
    module = rl.load(name)
    assert set(TINY_AGENTS) == set(rl.AGENTS)
    assert getattr(module, module.Config.__name__) is module.Config
    assert all(callable(getattr(module.Agent, method)) for method in AGENT_METHODS)
    assert parameters(module.Agent.evaluate) == ["self", "n_episodes", "env_seed"]
    cfg = module.Config(**TINY_AGENTS[name])
    agent = module.Agent(cfg, 3)
    twin = module.Agent(cfg, 3)                                   # left at the start, then loaded
    assert agent.unit in ("episode", "update", "generation") and agent.delivered in ("final", "best_eval")
    for _ in range(2):
        assert finite_numbers(agent.train_step())
    done, total = agent.budget()
    assert 0 < done <= total and agent.env_steps > 0 and agent.episode_returns
    returns = agent.evaluate(2, env_seed=11)
    assert len(returns) == 2 and all(isinstance(r, float) and r >= 1 for r in returns)
    assert isinstance(agent.losses(), dict) and isinstance(agent.extra_metrics(), dict)
    assert isinstance(agent.figures(), dict)

    # ONE dict: the JSON part goes through JSON, the arrays are copied, as in a checkpoint
    meta, sections = split_state(agent.state_dict())
    assert sections and json.loads(json.dumps(meta)).keys() == meta.keys()
    twin.load_state_dict({**json.loads(json.dumps(meta)),
                          **{k: {n: np.array(a) for n, a in v.items()} for k, v in sections.items()}})
    assert json.dumps(agent.train_step()) == json.dumps(twin.train_step())
    meta_a, sections_a = split_state(agent.state_dict())
    meta_b, sections_b = split_state(twin.state_dict())
    assert json.dumps(meta_a) == json.dumps(meta_b) and sections_a.keys() == sections_b.keys()
    for key in sections_a:
        assert_same_state(sections_a[key], sections_b[key])


# ==================================================================== README's ten lines, for every model
def readme_section() -> tuple:
    """(the code block, {model: (data expression, headline key)}) of README's "Train a model in ten lines"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Train a model in ten lines"):]
    section = section[:section.index("\n## ", 3)]
    code = section[section.index("```python\n") + 10:section.index("```", section.index("```python\n") + 10)]
    table = {}
    for row in re.findall(r"^\| (.+) \|$", section, flags=re.M):
        cells = [c.strip() for c in row.split(" | ")]
        if cells[0].startswith("`") and len(cells) == 4:
            for model in re.findall(r"`([a-z-]+)`", cells[0]):
                table[model] = (cells[1].strip("`"), cells[3].strip("`"))
    return code, table


def test_readme_ten_lines_train_every_model(tmp_path, tiny_text, monkeypatch):
    code, table = readme_section()
    assert set(table) == set(models.REGISTRY)
    assert code.count("models.vae") == 1 and code.count("family.Config()") == 1
    data_line = next(line for line in code.splitlines() if line.startswith("data, test_data = "))
    import nets.data
    digits = {split: tuple(a[:64] for a in load_mnist(split)) for split in ("train", "test")}
    monkeypatch.setattr(nets.data, "load_mnist", lambda split="train", data_dir=None: digits[split])
    for name, path in models.REGISTRY.items():
        expression, headline = table[name]
        lines = (code.replace("models.vae", path)
                 .replace("family.Config()", f"family.Config(**{tiny_config(name, tmp_path, tiny_text)!r})")
                 .replace(data_line, f"data, test_data = {expression}"))
        namespace = {}
        exec(compile(lines, f"README ten lines ({name})", "exec"), namespace)
        assert finite_numbers(namespace["result"]) and headline in namespace["result"], name
