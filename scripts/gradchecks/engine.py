"""Rows: the engine's operators and methods (autodiff/tensor.py) and autodiff/functional.py."""
import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from . import away_from_zero, distinct, real, positive, simple


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
simple(FN, "linear", "(4,3) W (2,3) b (2,)", F.linear, lambda r: real(r, 4, 3), lambda r: real(r, 2, 3), lambda r: real(r, 2))
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
