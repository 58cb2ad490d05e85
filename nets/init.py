r"""Weight initialisers, and the one random generator that layers draw from.

`manual_seed(s)` reseeds the generator that every layer uses when it is not given its own `rng`, so one
seed makes a whole model's initial weights reproducible (as torch.manual_seed does).

fan_in of a weight = number of inputs feeding one output unit (in_features, or C_in * KH * KW);
fan_out = number of outputs one input feeds (out_features, or C_out * KH * KW).
    xavier/glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))   (keeps variance for tanh)
    kaiming/he normal:     N(0, gain^2 / fan_in), gain = sqrt(2) for ReLU        (keeps variance for ReLU)
    normal(0, 0.02):       the DCGAN paper's initialisation
"""
from __future__ import annotations

import math

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator used by layers (and returned by get_rng())."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def get_rng(rng: np.random.Generator | None = None) -> np.random.Generator:
    return _generator if rng is None else rng


def fans(shape: tuple) -> tuple:
    """(fan_in, fan_out) of a Linear weight (out, in) or a conv weight (C_out, C_in, KH, KW)."""
    if len(shape) < 2:
        raise ValueError(f"fan_in/fan_out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform(shape, bound: float, dtype=np.float32, rng=None) -> np.ndarray:
    return get_rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def xavier_uniform(shape, gain: float = 1.0, dtype=np.float32, rng=None) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    return uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), dtype, rng)


def xavier_normal(shape, gain: float = 1.0, dtype=np.float32, rng=None) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (get_rng(rng).standard_normal(shape) * std).astype(dtype)


def kaiming_normal(shape, gain: float = math.sqrt(2.0), dtype=np.float32, rng=None) -> np.ndarray:
    fan_in, _ = fans(shape)
    return (get_rng(rng).standard_normal(shape) * gain / math.sqrt(fan_in)).astype(dtype)


def kaiming_uniform(shape, gain: float = math.sqrt(2.0), dtype=np.float32, rng=None) -> np.ndarray:
    fan_in, _ = fans(shape)
    return uniform(shape, gain * math.sqrt(3.0 / fan_in), dtype, rng)


def normal(shape, mean: float = 0.0, std: float = 0.02, dtype=np.float32, rng=None) -> np.ndarray:
    return (mean + std * get_rng(rng).standard_normal(shape)).astype(dtype)


glorot_uniform, glorot_normal, he_normal, he_uniform = xavier_uniform, xavier_normal, kaiming_normal, kaiming_uniform


def pytorch_default(shape, fan_in: int, dtype=np.float32, rng=None) -> np.ndarray:
    """PyTorch's default for Linear and Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5) reduces to this bound)."""
    return uniform(shape, 1.0 / math.sqrt(fan_in), dtype, rng)
