"""The table behind scripts/gradcheck.py: input makers, the registry of checks (CHECKS, filled by `check` and
`simple`), and the rows, one module per part of the project:
    engine.py    the Tensor's operators and methods (autodiff/tensor.py), autodiff/functional.py
    ops.py       the op families of autodiff/ops, convolution, pooling, batch norm, dropout
    layers.py    the losses (nets/losses.py) and every layer of nets (its input and every parameter)
A row registers `build(rng) -> (fn, inputs)`; the script measures it (see its docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from autodiff import Tensor


# ============================================================================ inputs
def real(rng, *shape, lo=-2.0, hi=2.0):
    return Tensor(rng.uniform(lo, hi, size=shape), requires_grad=True)


def positive(rng, *shape):
    return real(rng, *shape, lo=0.5, hi=2.0)


def away_from_zero(rng, *shape):
    """Values with |x| >= 0.2: the checks never straddle relu's or abs's kink."""
    x = rng.uniform(0.2, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return Tensor(x, requires_grad=True)


def distinct(rng, *shape, offset=0.0):
    """All different, at least 0.2 apart: no ties for max, min and max-pooling."""
    n = int(np.prod(shape))
    return Tensor(((rng.permutation(n) - n // 2) * 0.2 + offset).reshape(shape), requires_grad=True)


def probabilities(rng, *shape):
    return Tensor(rng.uniform(0.1, 0.9, size=shape), requires_grad=True)


def constant(x):
    return Tensor(np.asarray(x, dtype=np.float64))


# ============================================================================ the checks
@dataclass
class Check:
    group: str
    name: str
    config: str
    build: Callable          # rng -> (fn, inputs)


CHECKS: list = []


def check(group, name, config):
    """Decorator: register `build(rng) -> (fn, list of inputs)` as one row of the table."""
    def register(build):
        CHECKS.append(Check(group, name, config, build))
        return build
    return register


def simple(group, name, config, fn, *makers):
    """A row whose inputs are made by `makers` (each: rng -> Tensor)."""
    check(group, name, config)(lambda rng: (fn, [make(rng) for make in makers]))


from . import engine, ops, layers  # noqa: E402,F401  (each registers its rows)
