r"""Elementwise functions: trigonometric and hyperbolic, their inverses, the two-argument ones (arctan2, mod,
logaddexp, hypot) and the piecewise-constant ones (sign, floor, ceil, round: zero gradient almost
everywhere, and 0 is also what PyTorch gives at their jumps).

Each op is one call of `_unary` or `_binary`: its NumPy forward and its rule(s), under the docstring that
states the derivative. Rules use engine ops (sin, cos, F.exp, ...), which take arrays or Tensors.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_tensor, broadcast_shape, value
from .. import functional as F


def _unary(name: str, x, forward, rule) -> Tensor:
    """out = forward(x), dL/dx = rule(g, x, out)."""
    x = as_tensor(x)
    out = Tensor._make(forward(x.data), (x,), name)
    out._backward = rule
    return out


def _binary(name: str, a, b, forward, rule_a, rule_b) -> Tensor:
    """out = forward(a, b) (broadcasting; a Python number takes the other's dtype), one rule per input."""
    a, b = F.operands(a, b)
    broadcast_shape(name, a.shape, b.shape)
    out = Tensor._make(forward(a.data, b.data), (a, b), name)
    out._backward = (rule_a, rule_b)
    return out


def _zero(g, x, out):
    """The gradient of a piecewise-constant function: 0 (one value, broadcast by the engine)."""
    return np.zeros((), g.dtype)


# ==================================================================== trigonometric and hyperbolic
def sin(x) -> Tensor:
    """sin: f'(x) = cos x."""
    return _unary("sin", x, np.sin, lambda g, x, out: g * cos(x))


def cos(x) -> Tensor:
    """cos: f'(x) = -sin x."""
    return _unary("cos", x, np.cos, lambda g, x, out: -g * sin(x))


def tan(x) -> Tensor:
    """tan: f'(x) = 1 / cos^2 x = 1 + tan^2 x (reuse the output)."""
    return _unary("tan", x, np.tan, lambda g, x, out: g * (1 + out * out))


def sinh(x) -> Tensor:
    """sinh: f'(x) = cosh x."""
    return _unary("sinh", x, np.sinh, lambda g, x, out: g * cosh(x))


def cosh(x) -> Tensor:
    """cosh: f'(x) = sinh x."""
    return _unary("cosh", x, np.cosh, lambda g, x, out: g * sinh(x))


def arcsin(x) -> Tensor:
    """arcsin: f'(x) = 1 / sqrt(1 - x^2) on (-1, 1)."""
    return _unary("arcsin", x, np.arcsin, lambda g, x, out: g / (1 - x * x) ** 0.5)


def arccos(x) -> Tensor:
    """arccos: f'(x) = -1 / sqrt(1 - x^2) on (-1, 1)."""
    return _unary("arccos", x, np.arccos, lambda g, x, out: -g / (1 - x * x) ** 0.5)


def arctan(x) -> Tensor:
    """arctan: f'(x) = 1 / (1 + x^2)."""
    return _unary("arctan", x, np.arctan, lambda g, x, out: g / (1 + x * x))


def arctan2(y, x) -> Tensor:
    """arctan2(y, x), the angle of the point (x, y): d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2)
    (0 at the origin, as PyTorch: the denominator is read as 1 there)."""
    def square_radius(y, x):
        return F.where((value(x) == 0) & (value(y) == 0), 1, x * x + y * y)
    return _binary("arctan2", y, x, np.arctan2,
                   lambda g, y, x, out: g * x / square_radius(y, x),
                   lambda g, y, x, out: -g * y / square_radius(y, x))


# ==================================================================== two-argument functions
def mod(a, b) -> Tensor:
    """mod (np.mod, PyTorch's remainder and `%`: the sign of b): f = a - b floor(a / b), d/da = 1,
    d/db = -floor(a / b) (floor is constant between its jumps)."""
    return _binary("mod", a, b, np.mod,
                   lambda g, a, b, out: g,
                   lambda g, a, b, out: -g * np.floor(value(a) / value(b)))


def logaddexp(a, b) -> Tensor:
    """logaddexp: f = log(e^a + e^b) (no overflow: NumPy's), d/da = e^(a - f), d/db = e^(b - f)."""
    return _binary("logaddexp", a, b, np.logaddexp,
                   lambda g, a, b, out: g * F.exp(a - out),
                   lambda g, a, b, out: g * F.exp(b - out))


def hypot(a, b) -> Tensor:
    """hypot: f = sqrt(a^2 + b^2) (no overflow: NumPy's), d/da = a / f, d/db = b / f."""
    return _binary("hypot", a, b, np.hypot,
                   lambda g, a, b, out: g * a / out,
                   lambda g, a, b, out: g * b / out)


# ==================================================================== piecewise constant: zero gradient
def sign(x) -> Tensor:
    """sign: -1, 0 or 1; f'(x) = 0 (PyTorch's choice at the jump x = 0 too)."""
    return _unary("sign", x, np.sign, _zero)


def floor(x) -> Tensor:
    """floor: f'(x) = 0 (at the jumps too, as PyTorch)."""
    return _unary("floor", x, np.floor, _zero)


def ceil(x) -> Tensor:
    """ceil: f'(x) = 0 (at the jumps too, as PyTorch)."""
    return _unary("ceil", x, np.ceil, _zero)


def round(x, decimals: int = 0) -> Tensor:                              # noqa: A001  (Tensor.round)
    """round to `decimals` places, halves to even (as NumPy and PyTorch): f'(x) = 0 (at the jumps too)."""
    return _unary("round", x, lambda data: np.round(data, decimals), _zero)
