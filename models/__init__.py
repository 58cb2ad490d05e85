"""The generative models, one file each, every one with the same contract (README, "Train a model in ten lines"):

    Config                                        the hyperparameter dataclass
    build(cfg) -> model                           initial weights from nets' seeded generator (nets.manual_seed)
    build_optimizer(model, cfg) -> optimizer      Adam with the config's learning rate (DCGAN: one for D, one for G)
    train_step(model, optimizer, batch, rng, cfg) -> dict of floats
    train_epoch(model, optimizer, data, rng, cfg) -> dict of floats
    evaluate(model, data, rng, cfg) -> dict of floats, the headline number under the key the module names
    model.state_dict() / model.load_state_dict(state), and the same for the optimizer

REGISTRY maps each `scripts/train.py` command to its module; `load(name)` imports it. Importing this
package imports no model (and so neither gymnasium nor matplotlib)."""
from __future__ import annotations

import importlib

REGISTRY = {"vae": "models.vae", "cvae": "models.cvae", "dcgan": "models.dcgan", "wgan-gp": "models.wgan_gp",
            "flow": "models.flow", "conv-vae": "models.conv_vae", "made": "models.made", "pixelcnn": "models.pixelcnn",
            "revnet": "models.revnet", "char-lm": "models.char_lm", "seq-memory": "models.seq_memory"}


def load(name: str):
    """The module of command `name` (e.g. "conv-vae" -> models.conv_vae)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
