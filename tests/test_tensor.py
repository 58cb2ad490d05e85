"""Tests of the autodiff engine: one table of ops, graph semantics, bad input, the checker, the printer.

How the table works. Every row of OPS names an op, says how to call it on Tensors (`fn`), how to
compute the same thing with NumPy (`ref`), which shapes and keyword arguments to try (`cases`, a
hypothesis strategy) and where to draw input values (`domain`: away from kinks such as relu's 0, from
ties in max/min, from non-positive numbers in log). The same rows then drive
    test_forward_matches_numpy   value, shape and dtype against NumPy (and float32 stays float32),
    test_gradient                autodiff.gradcheck: backward vs central differences, float64,
    test_listed_case             cases that must run every time (broadcast pairs such as (N,1)x(1,M),
                                 scalar x tensor and (C,1,1)x(N,C,H,W); matmul with vectors; every
                                 axis form of every reduction; gathers with repeated indices).
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autodiff
import autodiff.functional as F
from autodiff import GradcheckError, Tensor, gradcheck, graph_str, no_grad, print_graph, to_dot
from conftest import ROOT


# ============================================================================ input domains
# A domain is (rng, shape) -> float64 array. Gradient checks perturb each element by eps = 1e-6, so
# every value must stay well away from the points where the op is not differentiable.

def real(lo=-2.0, hi=2.0):
    return lambda rng, shape: rng.uniform(lo, hi, size=shape)


def positive(lo=0.5, hi=2.0):
    return real(lo, hi)


def away_from(*points, margin=0.1, lo=-2.0, hi=2.0):
    """Uniform on [lo, hi] but at least `margin` from every kink in `points`."""
    def sample(rng, shape):
        x = rng.uniform(lo, hi, size=shape)
        while True:
            close = np.zeros(x.shape, dtype=bool)
            for p in points:
                close |= np.abs(x - p) < margin
            if not close.any():
                return x
            x[close] = rng.uniform(lo, hi, size=int(close.sum()))
    return sample


def grid(offset=0.0, spacing=0.2):
    """Distinct values on the grid offset + spacing * k: no ties inside one array, and two arrays with
    offsets 0 and spacing/2 never tie with each other (for max, min, maximum, minimum)."""
    def sample(rng, shape):
        n = int(np.prod(shape, dtype=int))
        return ((rng.permutation(n) - n // 2) * spacing + offset).reshape(shape).astype(np.float64)
    return sample


# ============================================================================ shapes and cases
# A case is (tuple of input shapes, dict of keyword arguments for fn and ref).
SIDE = dict(min_side=1, max_side=4)
shapes_1 = hnp.array_shapes(min_dims=0, max_dims=3, **SIDE)

# broadcast pairs that must always be covered, then random broadcastable pairs from hypothesis
BROADCAST_PAIRS = [
    ((3, 1), (1, 4)),            # (N, 1) x (1, M)
    ((), (2, 3)),                # scalar x tensor
    ((2, 3), ()),                # tensor x scalar
    ((3, 1, 1), (2, 3, 2, 2)),   # (C, 1, 1) x (N, C, H, W): a per-channel bias
    ((2, 3, 2, 2), (3, 1, 1)),
    ((4,), (3, 4)),              # leading axis added
    ((2, 3), (2, 3)),            # same shape
]
broadcast_pairs = st.one_of(
    st.sampled_from(BROADCAST_PAIRS),
    hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, **SIDE).map(lambda b: b.input_shapes),
)


def plain(shapes):
    """Cases without keyword arguments."""
    return shapes.map(lambda s: (tuple(s), {}))


one_input = plain(shapes_1.map(lambda s: (s,)))
two_inputs = plain(broadcast_pairs)


def _count(shape, axis):
    if axis is None:
        return int(np.prod(shape, dtype=int))
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes], dtype=int))


@st.composite
def reduction_cases(draw, ddof=False):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, **SIDE))
    axis = draw(st.one_of(
        st.none(),
        st.integers(-len(shape), len(shape) - 1),
        st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True).map(tuple)))
    params = dict(axis=axis, keepdims=draw(st.booleans()))
    if ddof and _count(shape, axis) > 1:
        params["ddof"] = draw(st.sampled_from([0, 1]))
    return (shape,), params


REDUCTION_EXAMPLES = [(((2, 3, 4),), dict(axis=axis, keepdims=keepdims))
                      for axis in (None, 0, -1, (0, 2), (1,)) for keepdims in (False, True)]


@st.composite
def axis_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, **SIDE))
    return (shape,), dict(axis=draw(st.integers(-len(shape), len(shape) - 1)))


MATMUL_PAIRS = [
    ((2, 3), (3, 4)),            # matrix @ matrix
    ((2, 2, 3), (2, 3, 4)),      # batched
    ((2, 2, 3), (3, 4)),         # batch axes broadcast on the left
    ((2, 3), (2, 3, 4)),         # ... and on the right
    ((2, 1, 2, 3), (3, 3, 2)),   # batch axes (2, 1) x (3,)
    ((3,), (3, 4)),              # vector @ matrix
    ((2, 3), (3,)),              # matrix @ vector
    ((3,), (3,)),                # vector @ vector (a scalar)
    ((2, 2, 3), (3,)),           # batched matrix @ vector
    ((3,), (2, 3, 4)),           # vector @ batched matrix
]


@st.composite
def matmul_cases(draw):
    n, k, m, b = (draw(st.integers(1, 4)) for _ in range(4))
    left = draw(st.sampled_from([(k,), (n, k), (b, n, k)]))
    right = draw(st.sampled_from([(k,), (k, m), (b, k, m)]))
    return (left, right), {}


@st.composite
def reshape_cases(draw):
    shape = draw(shapes_1)
    target = draw(st.sampled_from([(-1,), tuple(reversed(shape)), (1,) + shape, shape + (1,),
                                   (int(np.prod(shape, dtype=int)),)]))
    return (shape,), dict(target=target, splat=draw(st.booleans()))


@st.composite
def transpose_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, **SIDE))
    axes = draw(st.one_of(st.none(), st.permutations(range(len(shape))).map(tuple)))
    return (shape,), dict(axes=axes)


@st.composite
def index_cases(draw):
    """Slices, ints, Ellipsis/None, boolean masks and integer-array gathers whose indices repeat
    (the gradient of a repeated index must add up: np.add.at, not assignment)."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, **SIDE))
    n = shape[0]
    kinds = ["slice", "slices", "int", "gather", "ellipsis", "newaxis", "mask"]
    if len(shape) >= 2:
        kinds.append("gather_pairs")
    kind = draw(st.sampled_from(kinds))
    if kind == "slice":
        index = draw(st.slices(n))
    elif kind == "slices":
        index = tuple(draw(st.slices(s)) for s in shape)
    elif kind == "int":
        index = draw(st.integers(-n, n - 1))
    elif kind == "gather":                      # x[[i, j, ..., i]]: the first index repeats
        picks = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5))
        index = np.array(picks + [picks[0]])
    elif kind == "gather_pairs":                # q[rows, actions] with a repeated (row, action) pair
        rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))
        cols = draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(rows), max_size=len(rows)))
        index = (np.array(rows + [rows[0]]), np.array(cols + [cols[0]]))
    elif kind == "ellipsis":
        index = (Ellipsis, draw(st.slices(shape[-1])))
    elif kind == "newaxis":
        index = (None, draw(st.slices(n)))
    else:
        index = draw(hnp.arrays(bool, shape))
    return (shape,), dict(index=index)


GATHER_EXAMPLES = [
    (((4, 3),), dict(index=(np.arange(4), np.array([2, 0, 2, 1])))),       # q[arange(N), actions]
    (((4, 3),), dict(index=(np.array([1, 1, 1]), np.array([2, 2, 0])))),   # the same element twice
    (((5,),), dict(index=np.array([0, 0, 0, 4, 4]))),
    (((3, 4),), dict(index=np.array([2, 2, -1]))),                          # whole rows, repeated
    (((3, 4),), dict(index=(slice(None), np.array([0, 3, 0])))),
    (((2, 3, 4),), dict(index=(Ellipsis, slice(1, None, 2)))),
    (((4, 3),), dict(index=slice(None, None, -1))),
]


@st.composite
def clip_cases(draw):
    shape = draw(shapes_1)
    bounds = draw(st.sampled_from([(-0.5, 0.5), (None, 0.5), (-0.5, None)]))
    return (shape,), dict(lo=bounds[0], hi=bounds[1])


@st.composite
def concatenate_cases(draw):
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, **SIDE))
    axis = draw(st.integers(-len(base), len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    shapes = tuple(base[:axis % len(base)] + (s,) + base[axis % len(base) + 1:] for s in sizes)
    return shapes, dict(axis=axis)


@st.composite
def stack_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, **SIDE))
    k = draw(st.integers(1, 3))
    return (shape,) * k, dict(axis=draw(st.integers(-len(shape) - 1, len(shape))))


@st.composite
def split_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    sections = draw(st.one_of(st.sampled_from(divisors),
                              st.lists(st.integers(0, n), min_size=1, max_size=3).map(sorted)))
    return (shape,), dict(sections=sections, axis=axis)


@st.composite
def pad_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
    widths = st.integers(0, 2)
    pad_width = draw(st.one_of(widths,
                               st.tuples(widths, widths),
                               st.tuples(*[st.tuples(widths, widths) for _ in shape])))
    return (shape,), dict(pad_width=pad_width, value=draw(st.sampled_from([0.0, -1.5])))


@st.composite
def leaky_cases(draw):
    return (draw(shapes_1),), dict(slope=draw(st.sampled_from([0.01, 0.2])))


def _checker(a_shape, b_shape):
    """A fixed checkerboard condition of the broadcast shape, for `where`."""
    shape = np.broadcast_shapes(a_shape, b_shape)
    return np.indices(shape).sum(axis=0) % 2 == 0 if shape else np.array(True)


# ============================================================================ NumPy references
def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else (out.reshape(()) if axis is None else np.squeeze(out, axis=axis))


def np_log_softmax(x, axis=-1):
    return x - np_logsumexp(x, axis=axis, keepdims=True)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _reshape(x, target, splat):
    return x.reshape(*target) if splat else x.reshape(target)


# ============================================================================ the table
@dataclass
class Op:
    name: str
    fn: Callable                         # (*Tensors, **params) -> Tensor or list of Tensors
    ref: Callable                        # (*ndarrays, **params) -> ndarray or list of ndarrays
    cases: st.SearchStrategy = one_input
    domain: object = field(default_factory=real)   # one domain for every input, or a tuple of them
    examples: list = field(default_factory=list)   # cases run on every test run

    def sample(self, seed: int, shapes) -> list:
        rng = np.random.default_rng(seed)
        domains = self.domain if isinstance(self.domain, tuple) else (self.domain,) * len(shapes)
        return [d(rng, s) for d, s in zip(domains, shapes)]

    def __repr__(self):
        return self.name


def binary(name, fn, ref, domain=None):
    """A broadcasting binary op: random broadcast pairs plus the listed ones."""
    return Op(name, fn, ref, two_inputs, domain or real(),
              examples=[(pair, {}) for pair in BROADCAST_PAIRS])


def reduction(name, fn, ref, domain=None, ddof=False):
    return Op(name, fn, ref, reduction_cases(ddof), domain or real(), examples=REDUCTION_EXAMPLES)


OPS = [
    # arithmetic (broadcasting)
    binary("add", lambda a, b: a + b, np.add),
    binary("sub", lambda a, b: a - b, np.subtract),
    binary("mul", lambda a, b: a * b, np.multiply),
    binary("div", lambda a, b: a / b, np.divide, (real(), away_from(0.0, margin=0.5))),
    binary("pow", lambda a, b: a ** b, np.power, (positive(), real())),
    Op("matmul", lambda a, b: a @ b, np.matmul, matmul_cases(),
       examples=[(pair, {}) for pair in MATMUL_PAIRS]),
    # with Python numbers and arrays on either side
    Op("add_number", lambda a: a + 1.5, lambda a: a + 1.5),
    Op("radd_number", lambda a: 1.5 + a, lambda a: 1.5 + a),
    Op("rsub_number", lambda a: 3.0 - a, lambda a: 3.0 - a),
    Op("rmul_number", lambda a: -2.5 * a, lambda a: -2.5 * a),
    Op("rdiv_number", lambda a: 2.0 / a, lambda a: 2.0 / a, domain=away_from(0.0, margin=0.5)),
    Op("pow_int", lambda a: a ** 3, lambda a: a ** 3),
    Op("pow_half", lambda a: a ** 0.5, np.sqrt, domain=positive()),
    Op("rpow_number", lambda a: 2.0 ** a, lambda a: 2.0 ** a),
    Op("array_rmul", lambda a: np.full(a.shape, 0.75, a.dtype) * a, lambda a: 0.75 * a),
    Op("neg", lambda a: -a, np.negative),
    # elementwise
    Op("exp", lambda a: a.exp(), np.exp),
    Op("log", lambda a: a.log(), np.log, domain=positive(0.2, 3.0)),
    Op("sqrt", lambda a: a.sqrt(), np.sqrt, domain=positive(0.2, 3.0)),
    Op("abs", lambda a: a.abs(), np.abs, domain=away_from(0.0)),
    Op("clip", lambda a, lo, hi: a.clip(lo, hi), lambda a, lo, hi: np.clip(a, lo, hi), clip_cases(),
       away_from(-0.5, 0.5)),
    # reductions
    reduction("sum", lambda a, **kw: a.sum(**kw), lambda a, **kw: np.sum(a, **kw)),
    reduction("mean", lambda a, **kw: a.mean(**kw), lambda a, **kw: np.mean(a, **kw)),
    reduction("var", lambda a, **kw: a.var(**kw), lambda a, **kw: np.var(a, **kw), ddof=True),
    reduction("max", lambda a, **kw: a.max(**kw), lambda a, **kw: np.max(a, **kw), grid(spacing=0.1)),
    reduction("min", lambda a, **kw: a.min(**kw), lambda a, **kw: np.min(a, **kw), grid(spacing=0.1)),
    # shapes
    Op("reshape", lambda a, target, splat: _reshape(a, target, splat),
       lambda a, target, splat: a.reshape(target), reshape_cases()),
    Op("transpose", lambda a, axes: a.transpose(axes) if axes else a.transpose(),
       lambda a, axes: np.transpose(a, axes), transpose_cases()),
    Op("transpose_splat", lambda a: a.transpose(*reversed(range(a.ndim))), lambda a: a.T),
    Op("T", lambda a: a.T, lambda a: a.T),
    Op("getitem", lambda a, index: a[index], lambda a, index: a[index], index_cases(),
       examples=GATHER_EXAMPLES),
    Op("astype", lambda a: a.astype(np.float64).astype(a.dtype), lambda a: a),   # there and back
    # functional: activations
    Op("relu", F.relu, lambda a: np.maximum(a, 0), domain=away_from(0.0)),
    Op("leaky_relu", F.leaky_relu, lambda a, slope: np.where(a > 0, a, slope * a), leaky_cases(),
       away_from(0.0)),
    Op("sigmoid", F.sigmoid, np_sigmoid, domain=real(-5, 5)),
    Op("softplus", F.softplus, lambda a: np.log1p(np.exp(a)), domain=real(-5, 5)),
    Op("tanh", F.tanh, np.tanh),
    Op("F.exp", F.exp, np.exp),
    Op("F.log", F.log, np.log, domain=positive(0.2, 3.0)),
    # functional: log-probabilities
    reduction("logsumexp", lambda a, **kw: F.logsumexp(a, **kw), np_logsumexp, real(-3, 3)),
    Op("log_softmax", lambda a, axis: F.log_softmax(a, axis=axis), np_log_softmax, axis_cases(), real(-3, 3),
       examples=[(((2, 3),), dict(axis=-1)), (((2, 3, 4),), dict(axis=1))]),
    Op("softmax", lambda a, axis: F.softmax(a, axis=axis),
       lambda a, axis: np.exp(np_log_softmax(a, axis)), axis_cases(), real(-3, 3),
       examples=[(((2, 3),), dict(axis=-1)), (((2, 3, 4),), dict(axis=0))]),
    # functional: choosing
    binary("maximum", F.maximum, np.maximum, (grid(0.0), grid(0.1))),
    binary("minimum", F.minimum, np.minimum, (grid(0.0), grid(0.1))),
    binary("where", lambda a, b: F.where(_checker(a.shape, b.shape), a, b),
           lambda a, b: np.where(_checker(a.shape, b.shape), a, b)),
    # functional: joining and cutting
    Op("concatenate", lambda *ts, axis: F.concatenate(ts, axis=axis),
       lambda *xs, axis: np.concatenate(xs, axis=axis), concatenate_cases()),
    Op("stack", lambda *ts, axis: F.stack(ts, axis=axis), lambda *xs, axis: np.stack(xs, axis=axis),
       stack_cases()),
    Op("split", lambda a, sections, axis: F.split(a, sections, axis=axis),
       lambda a, sections, axis: np.split(a, sections, axis=axis), split_cases(),
       examples=[(((4, 3),), dict(sections=2, axis=0)), (((2, 5),), dict(sections=[1, 3], axis=-1))]),
    Op("pad", lambda a, pad_width, value: F.pad(a, pad_width, value),
       lambda a, pad_width, value: np.pad(a, pad_width, constant_values=value), pad_cases(),
       examples=[(((2, 3),), dict(pad_width=((1, 0), (0, 2)), value=0.0)),
                 (((1, 2, 2, 2),), dict(pad_width=((0, 0), (0, 0), (1, 1), (1, 1)), value=0.0))]),
]

LISTED = [pytest.param(op, case, id=f"{op.name}-{i}") for op in OPS for i, case in enumerate(op.examples)]


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check_forward(op, shapes, params, seed):
    """Our op against NumPy in float64; then in float32 the value, every gradient and its dtype."""
    arrays = op.sample(seed, shapes)
    outs = _as_list(op.fn(*[Tensor(a) for a in arrays], **params))
    refs = _as_list(op.ref(*arrays, **params))
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert isinstance(out, Tensor)
        assert out.shape == np.shape(ref), f"{op.name}: shape {out.shape}, NumPy gives {np.shape(ref)}"
        assert out.dtype == np.float64
        np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)

    singles = [Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    outs = _as_list(op.fn(*singles, **params))
    total = sum((out.sum() for out in outs), Tensor(np.float32(0)))
    assert all(out.dtype == np.float32 for out in outs), [out.dtype for out in outs]
    assert total.dtype == np.float32
    total.backward()
    for x in singles:
        assert x.grad.dtype == np.float32 and x.grad.shape == x.shape


def check_gradient(op, shapes, params, seed):
    inputs = [Tensor(a, requires_grad=True) for a in op.sample(seed, shapes)]
    assert gradcheck(lambda *ts: op.fn(*ts, **params), *inputs)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@given(data=st.data())
def test_forward_matches_numpy(op, data):
    shapes, params = data.draw(op.cases, label="case")
    check_forward(op, shapes, params, data.draw(st.integers(0, 2**32 - 1), label="seed"))


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@given(data=st.data())
def test_gradient(op, data):
    shapes, params = data.draw(op.cases, label="case")
    check_gradient(op, shapes, params, data.draw(st.integers(0, 2**32 - 1), label="seed"))


@pytest.mark.parametrize("op, case", LISTED)
def test_listed_case(op, case):
    shapes, params = case
    check_forward(op, shapes, params, seed=0)
    check_gradient(op, shapes, params, seed=1)


def test_table_names_are_unique():
    names = [op.name for op in OPS]
    assert len(names) == len(set(names))


# ============================================================================ astype and dtypes
def test_astype_changes_dtype_and_casts_the_gradient_back():
    x = Tensor(np.array([1.5, -2.0, 3.25], dtype=np.float32), requires_grad=True)
    y = x.astype(np.float64)
    assert y.dtype == np.float64 and y.requires_grad
    w = np.array([0.1, 0.2, 0.3])
    (y * Tensor(w)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, w.astype(np.float32))


def test_astype_to_an_integer_type_ends_the_graph():
    x = Tensor(np.array([1.7, -2.2]), requires_grad=True)
    i = x.astype(np.int64)
    assert i.dtype == np.int64 and not i.requires_grad and i.data.tolist() == [1, -2]


def test_float32_stays_float32_with_python_numbers():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    for y in (x * 2.5, 2.5 * x, x + 1, x / 3.0, 1.0 - x, x ** 2, 2.0 ** x, x.mean(), x.var(),
              F.leaky_relu(x, 0.2), F.pad(x, 1, value=-1.0), x.clip(0.0, 0.5)):
        assert y.dtype == np.float32, y._op
    loss = (x * 2.5 + 1).mean()
    loss.backward()
    assert x.grad.dtype == np.float32 and loss.dtype == np.float32


def test_integer_tensors_work_without_grad():
    a = Tensor(np.arange(6).reshape(2, 3))
    for y in (a + 1, a * 2, a - a, a @ a.T, a.sum(axis=0), a.max(), a.reshape(3, 2), a[:, 1], a.T, -a, a.abs()):
        assert np.issubdtype(y.dtype, np.integer) and not y.requires_grad
    np.testing.assert_array_equal((a * 2 + 1).data, np.arange(6).reshape(2, 3) * 2 + 1)
    # an integer tensor mixed with a float tensor that needs grad: only the float one gets a gradient
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    (x * a).sum().backward()
    np.testing.assert_array_equal(x.grad, a.data)
    assert a.grad is None
    assert float(a.sum()) == 15.0 and a.sum().item() == 15


def test_comparisons_give_plain_arrays_and_detach_cuts_the_graph():
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    assert isinstance(x > 0, np.ndarray) and (x > 0).tolist() == [True, False]
    assert (x == Tensor(np.array([1.0, 2.0]))).tolist() == [True, False]
    d = x.detach()
    assert not d.requires_grad and d._parents == () and d.data is x.data
    y = (x * 2 + d * 3).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


# ============================================================================ graph semantics
def test_a_plus_a_counts_twice():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a + a).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])


@pytest.mark.grades("mul_backward")
def test_x_times_x_is_2x():
    x = Tensor(np.array([1.5, -3.0, 0.5]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


@pytest.mark.grades("mul_backward", "exp_backward", "topological_order")
def test_diamond():
    # x -> a = 2x and b = e^x -> c = a * b:  dc/dx = 2 e^x + 2x e^x
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    a, b = x * 2, x.exp()
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data) * (1 + x.data))


@pytest.mark.grades("matmul_backward", "tanh_backward", "topological_order")
def test_reused_subgraph():
    # h = tanh(W x) used three times: L = sum(h * h) + sum(h) + h[0]
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    h = F.tanh(W @ x)
    loss = (h * h).sum() + h.sum() + h[0]
    loss.backward()
    dh = 2 * h.data + 1 + np.eye(3)[0]
    dz = dh * (1 - h.data ** 2)
    np.testing.assert_allclose(W.grad, np.outer(dz, x.data))
    np.testing.assert_allclose(x.grad, W.data.T @ dz)
    assert gradcheck(lambda W, x: (lambda h: (h * h).sum() + h.sum() + h[0])(F.tanh(W @ x)), W, x)


@pytest.mark.grades("topological_order")
def test_5000_node_chain_needs_no_recursion():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 5000)
    assert len(graph_str(y).splitlines()) == 1 + 2 * 50      # printed down to max_depth=50, iteratively
    assert to_dot(y).count(" -> ") == 2 * 5000                 # each mul has x-side and constant inputs


def test_backward_twice_accumulates_on_leaves_only():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3                           # an intermediate node
    loss = (h * h).sum()
    loss.backward(retain_graph=True)
    first_x, first_h = x.grad.copy(), h.grad.copy()
    np.testing.assert_allclose(first_x, 18 * x.data)
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, 2 * first_x)    # leaves: added twice
    np.testing.assert_allclose(h.grad, first_h)        # intermediates: recomputed, not compounded
    x.grad = None
    loss.backward()                                    # the last walk frees the graph ...
    np.testing.assert_allclose(x.grad, first_x)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()                                # ... so a further one says so, never silently wrong


def test_two_forward_passes_accumulate_without_retain_graph():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_backward_frees_the_graph_by_reference_counting():
    """No reference cycles survive backward(): the graph dies with the loss, without the gc."""
    import gc
    import weakref
    gc.disable()
    try:
        x = Tensor(np.ones(3), requires_grad=True)
        h = (x * 2).exp()
        probe = weakref.ref(h)
        loss = h.sum()
        del h
        loss.backward()
        del loss
        assert probe() is None
    finally:
        gc.enable()


def test_a_branch_that_never_reaches_the_loss_is_freed_without_the_gc():
    """backward() never visits such a branch (an LSTM's unused final state is one), so only the
    closures themselves can avoid the cycle: they take their output as an argument."""
    import gc
    import weakref
    from nets.recurrent import LSTM
    gc.disable()
    try:
        x = Tensor(np.ones(3), requires_grad=True)
        h = x * 2
        unused = h.exp().sum()
        probe = weakref.ref(unused)
        del unused
        assert probe() is None                                  # freed at once, not by the gc
        lstm = LSTM(4, 5, num_layers=2, dtype=np.float64, rng=np.random.default_rng(0))
        for fused in (True, False):
            lstm.fused = fused
            output, (h_n, c_n) = lstm(Tensor(np.ones((3, 2, 4))))
            probes = [weakref.ref(t) for t in (h_n, c_n)]
            output.sum().backward()
            del output, h_n, c_n
            assert all(probe() is None for probe in probes), fused
    finally:
        gc.enable()


def test_a_rule_gets_the_gradient_the_inputs_and_the_output_and_returns_the_input_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    out = Tensor._make(2 * x.data, (x,), "double")
    seen = []
    out._backward = lambda g, x, out: seen.append((g, x, out)) or 2 * g
    (out * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    g, x_value, out_value = seen[0]
    assert all(isinstance(a, np.ndarray) for a in seen[0])           # arrays in an ordinary backward
    np.testing.assert_array_equal(out_value, [2.0, 2.0, 2.0])


def test_a_rule_whose_gradient_has_the_wrong_shape_is_named():
    x = Tensor(np.ones(3), requires_grad=True)
    out = Tensor._make(2 * x.data, (x,), "double")
    out._backward = lambda g, x, out: np.ones(4)
    with pytest.raises(ValueError, match=r"shape \(4,\) for an input of shape \(3,\)"):
        out.sum().backward()


def test_no_grad_keeps_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2).exp()
    assert y._parents == () and not y.requires_grad


def test_backward_with_explicit_gradient():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(x.grad, [2.0, 0.0, -6.0])


def test_no_grad_builds_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not autodiff.is_grad_enabled()
        y = (x * 2).exp().sum()
        z = F.softmax(x) + x[0]
    assert autodiff.is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    # grad mode is restored after an exception, and nesting works
    with pytest.raises(KeyError):
        with no_grad():
            with no_grad():
                pass
            assert not autodiff.is_grad_enabled()
            raise KeyError("boom")
    assert autodiff.is_grad_enabled() and (x * 2).requires_grad


def test_constant_inputs_get_no_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    c = Tensor(np.full(3, 2.0))
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


@pytest.mark.grades("unbroadcast")
def test_unbroadcast_sums_added_and_stretched_axes():
    g = np.ones((2, 3, 4))
    assert autodiff.unbroadcast(g, (3, 1)).tolist() == np.full((3, 1), 8.0).tolist()
    assert autodiff.unbroadcast(g, ()).shape == () and autodiff.unbroadcast(g, ()) == 24
    assert autodiff.unbroadcast(g, (2, 3, 4)) is g


# ============================================================================ bad input
@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
                                lambda a, b: a / b, lambda a, b: a ** b, F.maximum, F.minimum])
def test_broadcast_mismatch_names_both_shapes(op):
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4,)))
    with pytest.raises(ValueError) as error:
        op(a, b)
    assert "(2, 3)" in str(error.value) and "(4,)" in str(error.value)


@pytest.mark.parametrize("left, right", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)),
                                         ((2, 2, 3), (3, 3, 4))])
def test_matmul_mismatch_names_both_shapes(left, right):
    with pytest.raises(ValueError) as error:
        Tensor(np.ones(left)) @ Tensor(np.ones(right))
    message = str(error.value)
    assert "matmul" in message
    # the vector forms are reported as the (1, K) row / (K, 1) column they were turned into
    assert str(left) in message or str((1,) + left) in message
    assert str(right) in message or str(right + (1,)) in message


def test_matmul_of_a_scalar_is_refused():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        Tensor(np.array(2.0)) @ Tensor(np.ones(3))


def test_backward_on_non_scalar_without_grad():
    y = Tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match="grad has shape"):
        y.backward(np.ones(3))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
def test_requires_grad_on_integer_array(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.ones(3, dtype=dtype), requires_grad=True)


def test_reshape_mismatch_message():
    with pytest.raises(ValueError) as error:
        Tensor(np.ones((2, 3))).reshape(4, 2)
    assert "(2, 3)" in str(error.value) and "(4, 2)" in str(error.value) and "6 elements" in str(error.value)


# ============================================================================ the checker itself
def double_with_wrong_backward(x: Tensor) -> Tensor:
    """f(x) = 2x, but the backward forgets the factor 2."""
    out = Tensor._make(2 * x.data, (x,), "double_wrong")
    out._backward = lambda g, x, out: g                       # forgot the factor 2
    return out


def test_checker_rejects_a_wrong_backward():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(GradcheckError) as error:
        gradcheck(double_with_wrong_backward, x)
    message = str(error.value)
    assert "input 0" in message and "worst at index" in message and "analytic" in message and "numeric" in message
    assert gradcheck(double_with_wrong_backward, x, raise_exception=False) is False


def test_checker_names_the_wrong_input():
    a = Tensor(np.ones(3) * 0.5, requires_grad=True)
    b = Tensor(np.ones(3) * 0.7, requires_grad=True)
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(lambda a, b: a * double_with_wrong_backward(b), a, b)


def test_checker_rejects_a_monkeypatched_sigmoid(monkeypatch):
    original = F.sigmoid

    def sigmoid_with_wrong_backward(x):
        out = original(x)
        out._backward = lambda g, x, out: g * out                       # lost the factor (1 - s)
        return out

    x = Tensor(np.random.default_rng(1).standard_normal(5), requires_grad=True)
    assert gradcheck(F.sigmoid, x)
    monkeypatch.setattr(F, "sigmoid", sigmoid_with_wrong_backward)
    with pytest.raises(GradcheckError):
        gradcheck(F.sigmoid, x)


def test_checker_refuses_float32_and_inputs_without_grad():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2, Tensor(np.ones(2, np.float32), requires_grad=True))
    with pytest.raises(ValueError, match="no input"):
        gradcheck(lambda x: x * 2, Tensor(np.ones(2)))


def test_checker_leaves_inputs_and_their_grads_unchanged():
    x = Tensor(np.array([0.1, 0.2]), requires_grad=True)
    x.grad = np.array([5.0, 6.0])
    before = x.data.copy()
    gradcheck(lambda x: x.exp(), x)
    np.testing.assert_array_equal(x.data, before)
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])


def softmax_with_wrong_backward(x: Tensor) -> Tensor:
    """softmax whose backward forgets to multiply by s: g - sum(g * s). Against w = 1 both this and
    the true gradient s * (g - sum(g * s)) are zero, so a plain-sum check cannot tell them apart."""
    s = np.exp(x.data - x.data.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    out = Tensor._make(s, (x,), "softmax_wrong")
    out._backward = lambda g, x, out: g - (g * out).sum(axis=-1, keepdims=True)
    return out


def plain_sum_check(fn, x: Tensor, eps=1e-6, tol=1e-5) -> bool:
    """The weak check (what DeZero does): compare the gradient of sum(fn(x)) with finite differences."""
    x.grad = None
    fn(x).sum().backward()
    numeric = np.zeros_like(x.data)
    for i in np.ndindex(x.shape):
        old = x.data[i]
        x.data[i] = old + eps
        plus = float(fn(x).data.sum())
        x.data[i] = old - eps
        minus = float(fn(x).data.sum())
        x.data[i] = old
        numeric[i] = (plus - minus) / (2 * eps)
    return bool(np.allclose(x.grad, numeric, atol=tol))


def test_random_projection_catches_what_a_plain_sum_misses():
    x = Tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
    assert plain_sum_check(softmax_with_wrong_backward, x)          # the weak check is fooled
    with pytest.raises(GradcheckError):
        gradcheck(softmax_with_wrong_backward, x)                   # ours is not
    assert gradcheck(F.softmax, x)


# ============================================================================ graph printer
def test_graph_str_shows_ops_shapes_and_dtypes(capsys):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    W = Tensor(np.ones((4, 3)), requires_grad=True)
    h = x @ W.T
    loss = (h * h).sum()
    text = graph_str(loss)
    lines = text.splitlines()
    assert lines[0].startswith("sum () float64")
    assert any(line.strip().startswith("mul (2, 4) float64") for line in lines)
    assert any(line.strip().startswith("matmul (2, 4)") for line in lines)
    assert any(line.strip().startswith("transpose (3, 4)") for line in lines)
    assert "param (2, 3) float64" in text and "(seen)" in text          # h is reached twice
    assert lines[1].startswith("  ") and not lines[0].startswith(" ")    # indented by depth
    print_graph(loss)
    assert capsys.readouterr().out.strip() == text


def test_to_dot_is_valid_looking_dot():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x.exp() + x).sum()
    dot = to_dot(y)
    lines = dot.splitlines()
    assert lines[0] == "digraph G {" and lines[-1] == "}"
    assert dot.count("{") == dot.count("}")
    nodes = {line.split()[0] for line in lines if "[label=" in line}
    edges = [line.strip().rstrip(";").split(" -> ") for line in lines if "->" in line]
    assert len(nodes) == 4                      # x, exp, add, sum
    assert len(edges) == 4                      # x->exp, exp->add, x->add, add->sum
    assert all(a in nodes and b in nodes for a, b in edges)
    assert '"sum () float64"' in dot and '"exp (3,) float64"' in dot


# ============================================================================ scripts/gradcheck.py
def test_gradcheck_script_passes_and_reports_a_broken_op(monkeypatch, capsys):
    import gradcheck as script                      # scripts/gradcheck.py (conftest puts scripts/ on the path)
    assert script.main(["--only", "engine"]) == 0
    out = capsys.readouterr().out
    assert "max rel error" in out and " 0 failed" in out and "FAIL" not in out

    def exp_with_wrong_backward(self):
        out = Tensor._make(np.exp(self.data), (self,), "exp")
        out._backward = lambda g, x, out: out                           # forgot g
        return out
    monkeypatch.setattr(Tensor, "exp", exp_with_wrong_backward)
    assert script.main(["--only", "exp", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "engine/exp" in out and "analytic" in out


# ============================================================================ imports
def _modules_after(statement: str) -> set:
    """Top-level modules a fresh interpreter has loaded after `statement`, minus those it loads anyway
    (site hooks of the Python installation)."""
    def loaded(code):
        code = f"import sys; {code}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True)
        return set(result.stdout.split())
    return loaded(statement) - loaded("pass")


HEAVY = {"matplotlib", "gymnasium", "gym", "scipy", "torch", "jax", "tensorflow", "tqdm", "PIL", "pandas"}


def test_engine_imports_with_numpy_alone():
    tops = _modules_after("import autodiff, autodiff.functional")
    assert not tops & HEAVY, tops & HEAVY
    third_party = {m for m in tops - set(sys.stdlib_module_names) if not m.startswith("_")}
    assert third_party <= {"numpy", "autodiff"}, third_party


def test_nets_and_models_do_not_import_matplotlib():
    tops = _modules_after("import nets, models")
    assert not tops & {"matplotlib", "torch", "jax", "scipy"}, tops


# ==================================================================== memory behaviour of backward
def test_gradient_accumulation_never_writes_into_a_shared_array():
    """x feeds three additions: its first gradient is the caller's array itself (no copy), the
    second is added into a new array that x owns, the third in place into that one. The caller's
    array must be left untouched and x.grad must be 3 g."""
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    g = np.full((2, 3), 0.5)
    (x + x + x).backward(g)
    np.testing.assert_array_equal(g, np.full((2, 3), 0.5))
    np.testing.assert_array_equal(x.grad, 3 * g)
    user = np.ones((2, 3))                             # a gradient the user assigned is not ours
    x.grad = user
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(user, np.ones((2, 3)))
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 3.0))


@pytest.mark.grades("index_add")
def test_slices_accumulate_into_one_gradient():
    """The two halves of h (as a coupling layer cuts its network's output) scatter their gradients
    into one array; the overlap of two slices adds up."""
    h = Tensor(np.arange(8.0).reshape(2, 4), requires_grad=True)
    (h[:, :2] * 2.0 + h[:, 2:] * 3.0).sum().backward()
    np.testing.assert_array_equal(h.grad, [[2, 2, 3, 3], [2, 2, 3, 3]])
    h.grad = None
    (h[:, :3].sum() + h[:, 1:].sum()).backward()
    np.testing.assert_array_equal(h.grad, [[1, 2, 2, 1], [1, 2, 2, 1]])


def test_matmul_with_a_transposed_weight_gives_a_contiguous_weight_gradient(fast_backend):
    """y = x W^T (a Linear layer): W^T is a column-major view, and its gradient is computed in that
    layout, so W.grad comes back C-contiguous (the optimizer reads it many times) and equals x^T g
    transposed. gradcheck covers both layouts of both operands."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    g = rng.standard_normal((5, 4))
    (x @ w.T).backward(g)
    assert w.grad.flags.c_contiguous
    np.testing.assert_allclose(w.grad, g.T @ x.data, rtol=1e-12)
    np.testing.assert_allclose(x.grad, g @ w.data, rtol=1e-12)
    a = Tensor(np.asfortranarray(rng.standard_normal((3, 4))), requires_grad=True)
    gradcheck(lambda x, w, a: (x @ w.T) @ a.T @ a, x, w, a)
    batch = Tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)     # batched input, 2-D weight
    gradcheck(lambda batch, w: batch @ w.T, batch, w)


# ============================================================================ README's engine snippets
def _readme_blocks(after: str) -> list:
    text = open(ROOT / "README.md").read()
    section = text[text.index(after):]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:3]]


def test_readme_gradcheck_and_new_op_examples_run():
    check, new_op = _readme_blocks("## Gradient-check your own function")
    namespace = {}
    exec(check, namespace)                                          # gradcheck(my_fn, x, w) inside
    exec("from autodiff import Tensor\n" + new_op, namespace)
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    assert gradcheck(namespace["cube"], x)
    second, = autodiff.grad(namespace["cube"](x).sum(), [x], create_graph=True)
    np.testing.assert_allclose(autodiff.grad(second.sum(), [x])[0].data, 6 * x.data)      # f'' = 6x


def test_readme_reading_list_sizes_are_the_files_sizes():
    import re
    text = open(ROOT / "README.md").read()
    section = text[text.index("### Read the engine"):text.index("**Where to find a derivative.**")]
    listed = dict(re.findall(r"`(?:autodiff/)?((?:ops/)?[a-z_0-9]+\.py)` \((\d+)\)", section))
    assert len(listed) >= 10
    for name, lines in listed.items():
        assert sum(1 for _ in open(ROOT / "autodiff" / name)) == int(lines), name
    files = [f"{folder}{n.name}" for folder in ("", "ops/") for n in (ROOT / "autodiff" / folder).iterdir()
             if n.suffix == ".py"]
    assert set(listed) == set(files)                                # every file of the core and ops is listed
