r"""Gradient-check every op, loss and layer of the project, and print one table.

    python scripts/gradcheck.py              # everything, seed 0
    python scripts/gradcheck.py --seed 3     # other random inputs
    python scripts/gradcheck.py --only conv  # just the rows whose group or name contains "conv"

What one row means. For a function f and its inputs x (small, random, float64), take a fixed random
array w of f's output shape and the scalar L = sum(w * f(x)). Then compare, element by element,
    analytic  dL/dx  from our backward pass,
    numeric   dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)   (central differences).
The random w matters: with a plain sum, softmax's true gradient is exactly zero and a broken backward
would pass. Every input that requires grad is checked (layers: the input and every parameter).

The column "max rel error" is the largest |analytic - numeric| / (|numeric| + 0.1) over all elements.
A row passes when it is at most 1e-4, which is exactly autodiff.gradcheck's test
|analytic - numeric| <= atol + rtol |numeric| with atol = 1e-5, rtol = 1e-4. Healthy rows show 1e-8
or less (the fast backend's Winograd rows ~1e-6: its float64 forward rounds more); a wrong derivative
shows 1e-2 or more. The rows run on the backend NUMPY_DL_LAB_BACKEND selects (default fast).

The exit status is 1 if any row fails, so scripts and CI can use it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import autodiff.functional as F                     # noqa: E402
import nets                                          # noqa: E402
from autodiff import Tensor, no_grad                 # noqa: E402
from nets import losses as L                         # noqa: E402

ATOL, RTOL = 1e-5, 1e-4


# ============================================================================ the measurement
@dataclass
class Result:
    error: float            # max over elements of |a - n| / (|n| + ATOL/RTOL)
    worst: str              # where and what, for the details under the table


def gradient_error(fn: Callable, inputs: list, eps: float, seed: int) -> Result:
    """Analytic vs numeric gradient of L = sum(w * fn(*inputs)) for every input that requires grad."""
    outputs = fn(*inputs)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(out.shape) for out in outputs]

    def projected() -> float:
        with no_grad():
            outs = fn(*inputs)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            return sum(float(np.sum(w * out.data)) for w, out in zip(weights, outs))

    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    for x in checked:
        x.grad = None
    loss = sum(((out * Tensor(w)).sum() for out, w in zip(outputs, weights) if out.requires_grad), Tensor(0.0))
    if loss.requires_grad:
        loss.backward()

    worst = Result(0.0, "")
    for number, x in enumerate(checked):
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        numeric = np.zeros_like(x.data)
        for index in np.ndindex(x.shape):
            original = x.data[index]
            x.data[index] = original + eps
            plus = projected()
            x.data[index] = original - eps
            minus = projected()
            x.data[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        errors = np.abs(analytic - numeric) / (np.abs(numeric) + ATOL / RTOL)
        if errors.size and errors.max() >= worst.error:
            i = np.unravel_index(np.argmax(errors), errors.shape)
            worst = Result(float(errors[i]),
                           f"input {number} {tuple(x.shape)} at {tuple(int(k) for k in i)}: "
                           f"analytic {analytic[i]:.8g}, numeric {numeric[i]:.8g}")
    return worst


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


# ---------------------------------------------------------------- engine ops (autodiff/tensor.py)
E = "engine"
simple(E, "add", "(3,1) + (1,4)", lambda a, b: a + b, lambda r: real(r, 3, 1), lambda r: real(r, 1, 4))
simple(E, "sub", "scalar - (2,3)", lambda a, b: a - b, lambda r: real(r), lambda r: real(r, 2, 3))
simple(E, "mul", "(3,1,1) * (2,3,2,2)", lambda a, b: a * b, lambda r: real(r, 3, 1, 1), lambda r: real(r, 2, 3, 2, 2))
simple(E, "div", "(2,3) / (3,)", lambda a, b: a / b, lambda r: real(r, 2, 3), lambda r: positive(r, 3))
simple(E, "pow", "(2,3) ** (2,3), base > 0", lambda a, b: a ** b, lambda r: positive(r, 2, 3), lambda r: real(r, 2, 3))
simple(E, "pow", "x ** 3", lambda a: a ** 3, lambda r: real(r, 2, 3))
simple(E, "neg", "(2,3)", lambda a: -a, lambda r: real(r, 2, 3))
simple(E, "matmul", "(2,3) @ (3,4)", lambda a, b: a @ b, lambda r: real(r, 2, 3), lambda r: real(r, 3, 4))
simple(E, "matmul", "batched (2,2,3) @ (3,4)", lambda a, b: a @ b, lambda r: real(r, 2, 2, 3), lambda r: real(r, 3, 4))
simple(E, "matmul", "vector (3,) @ (3,4)", lambda a, b: a @ b, lambda r: real(r, 3), lambda r: real(r, 3, 4))
simple(E, "matmul", "vector (2,3) @ (3,)", lambda a, b: a @ b, lambda r: real(r, 2, 3), lambda r: real(r, 3))
simple(E, "exp", "(2,3)", lambda a: a.exp(), lambda r: real(r, 2, 3))
simple(E, "log", "(2,3), x > 0", lambda a: a.log(), lambda r: positive(r, 2, 3))
simple(E, "sqrt", "(2,3), x > 0", lambda a: a.sqrt(), lambda r: positive(r, 2, 3))
simple(E, "abs", "(2,3), |x| >= 0.2", lambda a: a.abs(), lambda r: away_from_zero(r, 2, 3))
simple(E, "clip", "(-1, 1), inside and outside", lambda a: a.clip(-1.0, 1.0),
       lambda r: Tensor(np.array([[-1.9, -0.6, 0.3], [0.7, 1.4, -1.3]]), requires_grad=True))
simple(E, "sum", "axis=(0,2)", lambda a: a.sum(axis=(0, 2)), lambda r: real(r, 2, 3, 2))
simple(E, "mean", "axis=1, keepdims", lambda a: a.mean(axis=1, keepdims=True), lambda r: real(r, 2, 3))
simple(E, "var", "axis=0", lambda a: a.var(axis=0), lambda r: real(r, 4, 3))
simple(E, "var", "all, ddof=1", lambda a: a.var(ddof=1), lambda r: real(r, 4, 3))
simple(E, "max", "axis=-1, no ties", lambda a: a.max(axis=-1), lambda r: distinct(r, 3, 4))
simple(E, "min", "all, no ties", lambda a: a.min(), lambda r: distinct(r, 3, 4))
simple(E, "reshape", "(2,3,2) -> (3,4)", lambda a: a.reshape(3, 4), lambda r: real(r, 2, 3, 2))
simple(E, "transpose", "axes (2,0,1)", lambda a: a.transpose(2, 0, 1), lambda r: real(r, 2, 3, 2))
simple(E, "getitem", "slices [1:, ::-2]", lambda a: a[1:, ::-2], lambda r: real(r, 3, 4))
simple(E, "getitem", "gather q[arange, a], repeats", lambda a: a[np.array([0, 1, 1, 2, 0]), np.array([3, 0, 0, 2, 3])],
       lambda r: real(r, 3, 4))

# ---------------------------------------------------------------- functional (autodiff/functional.py)
FN = "functional"
simple(FN, "relu", "|x| >= 0.2", F.relu, lambda r: away_from_zero(r, 3, 4))
simple(FN, "leaky_relu", "slope 0.2, |x| >= 0.2", lambda a: F.leaky_relu(a, 0.2), lambda r: away_from_zero(r, 3, 4))
simple(FN, "sigmoid", "(3,4)", F.sigmoid, lambda r: real(r, 3, 4, lo=-5, hi=5))
simple(FN, "softplus", "(3,4)", F.softplus, lambda r: real(r, 3, 4, lo=-5, hi=5))
simple(FN, "tanh", "(3,4)", F.tanh, lambda r: real(r, 3, 4))
simple(FN, "logsumexp", "axis=1", lambda a: F.logsumexp(a, axis=1), lambda r: real(r, 3, 4))
simple(FN, "log_softmax", "axis=-1", lambda a: F.log_softmax(a, axis=-1), lambda r: real(r, 3, 4))
simple(FN, "softmax", "axis=0", lambda a: F.softmax(a, axis=0), lambda r: real(r, 3, 4))
simple(FN, "maximum", "(3,1) vs (4,), no ties", F.maximum, lambda r: distinct(r, 3, 1), lambda r: distinct(r, 4, offset=0.1))
simple(FN, "minimum", "(3,4) vs scalar, no ties", F.minimum, lambda r: distinct(r, 3, 4), lambda r: distinct(r, offset=0.1))
simple(FN, "where", "checkerboard condition", lambda a, b: F.where(np.indices((3, 4)).sum(0) % 2 == 0, a, b),
       lambda r: real(r, 3, 4), lambda r: real(r, 1, 4))
simple(FN, "concatenate", "axis=1", lambda a, b: F.concatenate([a, b], axis=1), lambda r: real(r, 2, 3), lambda r: real(r, 2, 1))
simple(FN, "stack", "axis=-1", lambda a, b: F.stack([a, b], axis=-1), lambda r: real(r, 2, 3), lambda r: real(r, 2, 3))
simple(FN, "split", "[1, 3] along axis 1", lambda a: F.split(a, [1, 3], axis=1), lambda r: real(r, 2, 5))
simple(FN, "pad", "((1,0),(2,1)), value -1", lambda a: F.pad(a, ((1, 0), (2, 1)), value=-1.0), lambda r: real(r, 2, 3))

# ---------------------------------------------------------------- convolution, pooling, batch norm, dropout
from autodiff.conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d
C = "conv"
simple(C, "conv2d", "N2 C2->3 k3, bias", lambda x, w, b: conv2d(x, w, b),
       lambda r: real(r, 2, 2, 5, 5), lambda r: real(r, 3, 2, 3, 3), lambda r: real(r, 3))
simple(C, "conv2d", "k3 stride 2 padding 1", lambda x, w: conv2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 2, 5, 5), lambda r: real(r, 2, 2, 3, 3))
simple(C, "conv2d", "k2x3 stride (1,2) dilation 2", lambda x, w: conv2d(x, w, stride=(1, 2), dilation=2),
       lambda r: real(r, 1, 1, 5, 6), lambda r: real(r, 2, 1, 2, 3))
simple(C, "conv_transpose2d", "C3->2 k3, bias", lambda x, w, b: conv_transpose2d(x, w, b),
       lambda r: real(r, 2, 3, 3, 3), lambda r: real(r, 3, 2, 3, 3), lambda r: real(r, 2))
simple(C, "conv_transpose2d", "k4 stride 2 padding 1", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 2, 3, 3), lambda r: real(r, 2, 1, 4, 4))
simple(C, "conv_transpose2d", "k3 s2 p1 output_padding 1", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1,
                                                                                         output_padding=1),
       lambda r: real(r, 1, 2, 3, 3), lambda r: real(r, 2, 2, 3, 3))
simple(C, "conv2d", "C16->16 k3 padding 1 (Winograd F(4,3))", lambda x, w: conv2d(x, w, padding=1),
       lambda r: real(r, 1, 16, 6, 6), lambda r: real(r, 16, 16, 3, 3))
simple(C, "conv_transpose2d", "C16->16 k4 s2 p1 (Winograd F(4,2))", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1),
       lambda r: real(r, 1, 16, 3, 3), lambda r: real(r, 16, 16, 4, 4))
simple(C, "max_pool2d", "k2, no ties", lambda x: max_pool2d(x, 2), lambda r: distinct(r, 2, 2, 4, 4))
simple(C, "max_pool2d", "k3 stride 2 padding 1", lambda x: max_pool2d(x, 3, stride=2, padding=1),
       lambda r: distinct(r, 1, 2, 5, 5))
simple(C, "avg_pool2d", "k2", lambda x: avg_pool2d(x, 2), lambda r: real(r, 2, 2, 4, 4))
simple(C, "avg_pool2d", "k3 stride 2 padding 1", lambda x: avg_pool2d(x, 3, stride=2, padding=1),
       lambda r: real(r, 1, 2, 5, 5))

from autodiff.norm import batch_norm, dropout
BN = "norm"
simple(BN, "batch_norm", "train (N,C) = (5,3)",
       lambda x, g, b: batch_norm(x, g, b, np.zeros(3), np.ones(3), True),
       lambda r: real(r, 5, 3), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "batch_norm", "train (N,C,H,W) = (2,3,2,2)",
       lambda x, g, b: batch_norm(x, g, b, np.zeros(3), np.ones(3), True),
       lambda r: real(r, 2, 3, 2, 2), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "batch_norm", "train, no gamma/beta", lambda x: batch_norm(x, None, None, None, None, True),
       lambda r: real(r, 4, 2, 2, 2))
simple(BN, "batch_norm", "eval (running stats)",
       lambda x, g, b: batch_norm(x, g, b, np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0]), False),
       lambda r: real(r, 2, 3, 2, 2), lambda r: positive(r, 3), lambda r: real(r, 3))
simple(BN, "dropout", "p=0.5, fixed mask", lambda x: dropout(x, 0.5, True, np.random.default_rng(7)),
       lambda r: real(r, 3, 4))

# ---------------------------------------------------------------- losses (nets/losses.py)
LS = "loss"
simple(LS, "bce_with_logits", "logits and soft targets", lambda x, t: L.binary_cross_entropy_with_logits(x, t),
       lambda r: real(r, 4, 3, lo=-4, hi=4), lambda r: probabilities(r, 4, 3))
simple(LS, "binary_cross_entropy", "probabilities in (0.1, 0.9)",
       lambda p: L.binary_cross_entropy(p, np.array([[1.0, 0.0, 0.3]] * 2)), lambda r: probabilities(r, 2, 3))
simple(LS, "cross_entropy", "integer targets", lambda x: L.cross_entropy(x, np.array([0, 3, 3])),
       lambda r: real(r, 3, 4))
simple(LS, "cross_entropy", "probability targets",
       lambda x: L.cross_entropy(x, np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]])), lambda r: real(r, 2, 4))
simple(LS, "mse_loss", "(3,4)", L.mse_loss, lambda r: real(r, 3, 4), lambda r: real(r, 3, 4))
simple(LS, "huber_loss", "delta 1, both regions", lambda p: L.huber_loss(p, constant(np.zeros(6))),
       lambda r: Tensor(np.array([-3.0, -0.5, 0.2, 0.7, 1.5, 4.0]), requires_grad=True))
simple(LS, "smooth_l1_loss", "beta 0.5, both regions", lambda p: L.smooth_l1_loss(p, np.zeros(6), beta=0.5),
       lambda r: Tensor(np.array([-3.0, -0.3, 0.2, 0.4, 1.5, 4.0]), requires_grad=True))
simple(LS, "gaussian_kl", "mu, logvar (3,4)", L.gaussian_kl, lambda r: real(r, 3, 4), lambda r: real(r, 3, 4))
simple(LS, "gaussian_log_likelihood", "x, mean, logvar (3,4)", L.gaussian_log_likelihood,
       lambda r: real(r, 3, 4), lambda r: real(r, 3, 4), lambda r: real(r, 3, 4, lo=-1, hi=1))


# ---------------------------------------------------------------- layers (nets/layers.py): input and every parameter
def layer_check(name: str, config: str, make_layer: Callable, make_input: Callable) -> None:
    """One row for a layer: checks the input and every parameter (in float64 via .double())."""
    @check("layer", name, config)
    def build(rng):
        layer = make_layer(rng).double()
        return (lambda x, *params: layer(x)), [make_input(rng), *layer.parameters()]


def _with_affine(bn, rng):
    """gamma and beta away from their initial 1 and 0, so the check sees their general effect."""
    bn.weight.data[...] = rng.uniform(0.5, 2.0, size=bn.weight.shape)
    bn.bias.data[...] = rng.uniform(-1.0, 1.0, size=bn.bias.shape)
    return bn


def _trained(bn, rng, shape):
    """A BatchNorm whose running statistics have seen a few batches (eval mode uses them)."""
    _with_affine(bn, rng)
    for _ in range(3):
        bn(Tensor((rng.standard_normal(shape) * 2 + 1).astype(np.float32)))
    return bn


class _FixedDropout(nets.Module):
    """nets.Dropout drawing the same mask on every call (a fresh generator with a fixed seed), so that
    finite differences see one function."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return nets.Dropout(self.p, rng=np.random.default_rng(7))(x)


class _OutputOnly(nets.Module):
    """A recurrent layer's output sequence (h_n is its last row, so it is checked through it)."""
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]


layer_check("Linear", "3 -> 2, batch 4", lambda r: nets.Linear(3, 2, rng=r), lambda r: real(r, 4, 3))
layer_check("Linear", "no bias, (2,2,3) input", lambda r: nets.Linear(3, 2, bias=False, rng=r), lambda r: real(r, 2, 2, 3))
layer_check("Sequential", "Linear-Tanh-Linear-Sigmoid",
            lambda r: nets.Sequential(nets.Linear(3, 4, rng=r), nets.Tanh(), nets.Linear(4, 2, rng=r), nets.Sigmoid()),
            lambda r: real(r, 2, 3))
layer_check("ReLU", "|x| >= 0.2", lambda r: nets.ReLU(), lambda r: away_from_zero(r, 3, 4))
layer_check("LeakyReLU", "slope 0.2", lambda r: nets.LeakyReLU(0.2), lambda r: away_from_zero(r, 3, 4))
layer_check("Tanh", "(3,4)", lambda r: nets.Tanh(), lambda r: real(r, 3, 4))
layer_check("Sigmoid", "(3,4)", lambda r: nets.Sigmoid(), lambda r: real(r, 3, 4))
layer_check("Softplus", "(3,4)", lambda r: nets.Softplus(), lambda r: real(r, 3, 4))
layer_check("Flatten+Unflatten", "(2,3,2,2) -> (2,12) -> (2,4,3)",
            lambda r: nets.Sequential(nets.Flatten(), nets.Unflatten(1, (4, 3))), lambda r: real(r, 2, 3, 2, 2))
layer_check("Conv2d", "2->3 k3 stride 2 padding 1", lambda r: nets.Conv2d(2, 3, 3, stride=2, padding=1, rng=r),
            lambda r: real(r, 2, 2, 4, 4))
layer_check("ConvTranspose2d", "3->2 k4 stride 2 padding 1",
            lambda r: nets.ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=r), lambda r: real(r, 1, 3, 2, 2))
layer_check("MaxPool2d", "k2, no ties", lambda r: nets.MaxPool2d(2), lambda r: distinct(r, 1, 2, 4, 4))
layer_check("AvgPool2d", "k2 stride 1", lambda r: nets.AvgPool2d(2, stride=1), lambda r: real(r, 1, 2, 3, 3))
layer_check("BatchNorm1d", "train, (5,3)", lambda r: _with_affine(nets.BatchNorm1d(3), r), lambda r: real(r, 5, 3))
layer_check("BatchNorm1d", "eval, (2,3)", lambda r: _trained(nets.BatchNorm1d(3), r, (6, 3)).eval(),
            lambda r: real(r, 2, 3))
layer_check("BatchNorm2d", "train, (2,3,2,2)", lambda r: _with_affine(nets.BatchNorm2d(3), r),
            lambda r: real(r, 2, 3, 2, 2))
layer_check("BatchNorm2d", "eval, (1,3,2,2)", lambda r: _trained(nets.BatchNorm2d(3), r, (4, 3, 2, 2)).eval(),
            lambda r: real(r, 1, 3, 2, 2))
layer_check("Dropout", "p=0.3, fixed mask", lambda r: _FixedDropout(0.3), lambda r: real(r, 3, 4))
layer_check("MaskedLinear", "4 -> 3, random mask", lambda r: nets.MaskedLinear(4, 3, mask=r.random((3, 4)) < 0.5, rng=r),
            lambda r: real(r, 2, 4))
for kind in ("A", "B"):
    layer_check("MaskedConv2d", f"type {kind}, 2->3 k5", lambda r, kind=kind: nets.MaskedConv2d(2, 3, 5, kind, rng=r),
                lambda r: real(r, 1, 2, 5, 5))
for name, config, make in (("RNN", "2 layers, batch-first", lambda: nets.RNN(2, 3, num_layers=2, batch_first=True)),
                           ("LSTM", "2 layers, batch-first", lambda: nets.LSTM(2, 3, 2, batch_first=True)),
                           ("LSTM", "1 layer", lambda: nets.LSTM(2, 3)),
                           ("GRU", "composed cells", lambda: nets.GRU(2, 3))):
    layer_check(name, config + ", (2,4,2)", lambda r, make=make: _OutputOnly(make()), lambda r: real(r, 2, 4, 2))


# ============================================================================ running and printing
def run(checks: list, seed: int, eps: float) -> list:
    rows = []
    for number, c in enumerate(checks):
        rng = np.random.default_rng([seed, number])
        try:
            fn, inputs = c.build(rng)
            result = gradient_error(fn, inputs, eps, seed)
            status = "pass" if result.error <= RTOL else "FAIL"
        except Exception as error:                  # a crash is a failure too, shown with its message
            result, status = Result(float("nan"), f"{type(error).__name__}: {error}"), "ERROR"
        rows.append((c, result, status))
    return rows


def print_table(rows: list, seed: int, eps: float, seconds: float) -> None:
    header = ("group", "check", "configuration", "max rel error", "result")
    lines = [(c.group, c.name, c.config, f"{r.error:.1e}" if np.isfinite(r.error) else "-", status)
             for c, r, status in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    print(f"Gradient check: backward pass vs central differences (eps={eps:g}), float64, seed {seed}.")
    print(f"max rel error = max |analytic - numeric| / (|numeric| + {ATOL / RTOL:g}); pass if <= {RTOL:g}.")
    print()
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    group = None
    for line in lines:
        if group is not None and line[0] != group:
            print()
        group = line[0]
        print(fmt(line))
    failed = [(c, r, s) for c, r, s in rows if s != "pass"]
    print()
    print(f"{len(rows)} checks, {len(rows) - len(failed)} passed, {len(failed)} failed ({seconds:.1f} s)")
    for c, r, status in failed:
        print(f"  {status} {c.group}/{c.name} [{c.config}]: {r.worst}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="random inputs and projections (default 0)")
    parser.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="run only rows whose group or name contains TEXT (e.g. conv, loss, softmax)")
    args = parser.parse_args(argv)
    checks = [c for c in CHECKS if args.only.lower() in f"{c.group} {c.name}".lower()]
    if not checks:
        parser.error(f"no check matches --only {args.only!r}")
    start = time.perf_counter()
    rows = run(checks, args.seed, args.eps)
    print_table(rows, args.seed, args.eps, time.perf_counter() - start)
    return 0 if all(status == "pass" for _, _, status in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
