"""The op families of autodiff/ops (elementwise, reductions, shape, contractions, linear algebra), the six
gradient bugs of the issue "The engine a learner expects" and the dtype rules.

The ops join the table machinery of tests/test_tensor.py: each row of NEW_OPS is checked against NumPy
(value, shape, float32 kept), against central differences (gradcheck), and for its second derivative
(gradcheck of x -> d/dx sum(w * f(x)) computed with create_graph=True). Then what a table cannot say:
prod with zeros, std at zero variance, einsum's forms, the linear-algebra identities, errors.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import autodiff
import autodiff.functional as F
from autodiff import Tensor, gradcheck
from test_tensor import (BROADCAST_PAIRS, SIDE, Op, _as_list, away_from, check_forward, check_gradient,
                         grid, real, reduction_cases, shapes_1, two_inputs)

FEW = settings(max_examples=6)             # the listed cases carry the load; hypothesis adds a few shapes


def second_derivative_check(fn, *inputs, seed=2):
    """gradcheck of the first derivative: x -> d/dx sum(w * fn(x)), differentiated through create_graph."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(out.shape) for out in _as_list(fn(*inputs))]

    def first_derivative(*xs):
        with autodiff.enable_grad():                 # gradcheck evaluates fn under no_grad
            loss = sum(((out * Tensor(w)).sum() for out, w in zip(_as_list(fn(*xs)), weights)), Tensor(0.0))
            grads = autodiff.grad(loss, list(xs), create_graph=True, allow_unused=True)
        return tuple(Tensor(np.zeros(x.shape)) if g is None else g for g, x in zip(grads, xs))
    assert gradcheck(first_derivative, *inputs)


# ============================================================================ the table
def unary(name, fn, ref, domain=None, **kw):
    return Op(name, fn, ref, st.one_of(st.just(((2, 3),)), shapes_1.map(lambda s: (s,))).map(lambda s: (s, {})),
              domain or real(), examples=[(((3, 4),), {}), (((),), {})], **kw)


def binary(name, fn, ref, domain=None):
    return Op(name, fn, ref, two_inputs, domain or real(), examples=[(pair, {}) for pair in BROADCAST_PAIRS[:4]])


def listed(name, fn, ref, *examples, domain=None):
    """An op checked on a fixed list of cases (input shapes, keyword arguments)."""
    return Op(name, fn, ref, st.sampled_from(list(examples)), domain or real(), examples=list(examples))


def one(shape, **params):
    """A case with one input of `shape`."""
    return (shape,), params


@st.composite
def std_cases(draw):
    (shape,), params = draw(reduction_cases())
    axis = params["axis"]
    n = int(np.prod(shape if axis is None else [shape[a] for a in ((axis,) if isinstance(axis, int) else axis)]))
    return (shape,), dict(params, ddof=draw(st.sampled_from([0, 1] if n > 1 else [0])))


@st.composite
def cumsum_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, **SIDE))
    return (shape,), dict(axis=draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1))))


def _sym_pd(a):
    """A symmetric positive-definite matrix from any square a (for cholesky)."""
    n = a.shape[-1]
    eye = np.eye(n) if isinstance(a, np.ndarray) else Tensor(np.eye(n, dtype=a.dtype))
    return (a + a.swapaxes(-1, -2)) * 0.5 + 4 * n * eye


def well_conditioned(lo=-1.0, hi=1.0):
    return lambda rng, shape: rng.uniform(lo, hi, size=shape) + 3 * np.eye(shape[-1])


def _np_solve(a, b):
    """np.linalg.solve with PyTorch's rule: b is a batch of vectors when b.shape == a.shape[:-1]."""
    vector = b.ndim == 1 or b.shape == a.shape[:-1]
    return np.linalg.solve(a, b[..., None])[..., 0] if vector else np.linalg.solve(a, b)


def _chunks(a, n, axis):
    size = -(-a.shape[axis] // n)
    return np.array_split(a, range(size, a.shape[axis], size), axis)


EINSUM = [("ij,jk->ik", (3, 4), (4, 2)), ("ij,jk", (3, 4), (4, 2)), ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
          ("i,i->", (4,), (4,)), ("i,j->ij", (3,), (2,)), ("ii->i", (3, 3)), ("ii", (3, 3)), ("ij->j", (2, 3)),
          ("ij->ji", (2, 3)), ("...ij,...jk->...ik", (2, 1, 3, 4), (5, 4, 2)), ("...i,i->...", (2, 3, 4), (4,)),
          ("i...->...", (3, 2)), ("ijk,jil->kl", (2, 3, 4), (3, 2, 5)), ("iij->j", (3, 3, 2)),
          ("ab,bc,cd->ad", (2, 3), (3, 4), (4, 2)), ("bA,Ac", (2, 3), (3, 4)), ("i,ij,j", (3,), (3, 4), (4,))]
KINKS = away_from(-2, -1, 0, 1, 2)

NEW_OPS = [
    # elementwise
    unary("sin", F.sin, np.sin), unary("cos", F.cos, np.cos), unary("tan", F.tan, np.tan, real(-1.2, 1.2)),
    unary("sinh", F.sinh, np.sinh), unary("cosh", F.cosh, np.cosh), unary("arctan", F.arctan, np.arctan),
    unary("arcsin", F.arcsin, np.arcsin, real(-0.9, 0.9)), unary("arccos", F.arccos, np.arccos, real(-0.9, 0.9)),
    unary("sign", F.sign, np.sign, away_from(0.0)), unary("floor", F.floor, np.floor, KINKS),
    unary("ceil", F.ceil, np.ceil, KINKS), unary("round", F.round, np.round, away_from(-1.5, -0.5, 0.5, 1.5)),
    unary("x.sin()", lambda a: a.sin(), np.sin),
    binary("arctan2", F.arctan2, np.arctan2, (away_from(0.0), real())),
    binary("mod", F.mod, np.mod, (real(), away_from(0.0, margin=0.5))),
    binary("%", lambda a, b: a % b, np.mod, (real(), away_from(0.0, margin=0.5))),
    binary("logaddexp", F.logaddexp, np.logaddexp),
    binary("hypot", F.hypot, np.hypot, (away_from(0.0), away_from(0.0))),
    # reductions and scans
    Op("prod", lambda a, **kw: a.prod(**kw), lambda a, **kw: np.prod(a, **kw), reduction_cases(), real(),
       examples=[one((2, 3, 4), axis=axis, keepdims=k) for axis in (None, -1, (0, 2)) for k in (False, True)]),
    Op("std", lambda a, **kw: a.std(**kw), lambda a, **kw: np.std(a, **kw), std_cases(), real(),
       examples=[one((2, 3, 4), axis=(0, -1), keepdims=True, ddof=1), one((5,), axis=None, keepdims=False, ddof=0)]),
    Op("cumsum", lambda a, axis: a.cumsum(axis), lambda a, axis: np.cumsum(a, axis), cumsum_cases(), real(),
       examples=[one((2, 3, 4), axis=-2), one((2, 3), axis=None)]),
    # shapes
    listed("squeeze", lambda a, axis: a.squeeze(axis),
           lambda a, axis: np.squeeze(a, axis if axis is None else tuple(i for i in np.atleast_1d(axis)
                                                                         if a.shape[i] == 1)),
           one((2, 1, 3, 1), axis=None), one((2, 1, 3, 1), axis=-1), one((2, 1, 3, 1), axis=(1, 0))),
    listed("unsqueeze", lambda a, axis: a.unsqueeze(axis), lambda a, axis: np.expand_dims(a, axis),
           one((2, 3), axis=0), one((2, 3), axis=-1), one((2, 3), axis=-2), one((), axis=0)),
    listed("flatten", lambda a, s, e: a.flatten(s, e),
           lambda a, s, e: a.reshape(a.shape[:s % a.ndim] + (-1,) + a.shape[e % a.ndim + 1:]),
           one((2, 3, 4), s=0, e=-1), one((2, 3, 4, 2), s=1, e=-2), one((2, 3), s=-1, e=-1)),
    listed("flip", lambda a, axis: a.flip(axis), lambda a, axis: np.flip(a, axis),
           one((2, 3, 4), axis=-1), one((2, 3, 4), axis=(0, -2)), one((3,), axis=None)),
    listed("roll", lambda a, s, axis: a.roll(s, axis), lambda a, s, axis: np.roll(a, s, axis),
           one((2, 3, 4), s=2, axis=None), one((2, 3, 4), s=(1, -3), axis=(0, -1)), one((5,), s=-7, axis=0)),
    listed("repeat", lambda a, reps: a.repeat(*reps), lambda a, reps: np.tile(a, reps),
           one((2, 3), reps=(2, 1)), one((2, 3), reps=(3, 1, 2)), one((), reps=(2,))),
    listed("tile", lambda a, reps: a.tile(reps), lambda a, reps: np.tile(a, reps),
           one((2, 3), reps=2), one((2, 3, 2), reps=(2, 1)), one((3,), reps=(2, 1, 2))),
    listed("repeat_interleave", lambda a, r, axis: F.repeat_interleave(a, r, axis),
           lambda a, r, axis: np.repeat(a, r, axis), one((2, 3), r=2, axis=None), one((2, 3), r=[1, 0, 3], axis=-1)),
    listed("tril", lambda a, k: a.tril(k), lambda a, k: np.tril(a, k),
           one((3, 4), k=0), one((2, 3, 3), k=-1), one((3, 4), k=2)),
    listed("triu", lambda a, k: a.triu(k), lambda a, k: np.triu(a, k), one((3, 4), k=0), one((2, 3, 3), k=1)),
    listed("diag", lambda a, k: a.diag(k), lambda a, k: np.diag(a, k),
           one((3,), k=0), one((3,), k=-2), one((3, 4), k=1), one((4, 3), k=-1)),
    listed("diagonal", lambda a, o, a1, a2: a.diagonal(o, a1, a2), lambda a, o, a1, a2: np.diagonal(a, o, a1, a2),
           one((2, 3, 4), o=0, a1=0, a2=1), one((2, 3, 4), o=1, a1=-1, a2=0), one((3, 3), o=-1, a1=0, a2=1)),
    listed("trace", lambda a, o: a.trace(o), lambda a, o: np.trace(a, o), one((3, 3), o=0), one((3, 4), o=1)),
    listed("sort", lambda a, axis, d: a.sort(axis, d)[0],
           lambda a, axis, d: np.flip(np.sort(a, axis), axis) if d else np.sort(a, axis),
           one((3, 4), axis=-1, d=False), one((3, 4), axis=0, d=True), one((5,), axis=0, d=False), domain=grid()),
    listed("chunk", lambda a, n, axis: a.chunk(n, axis), _chunks, one((5, 3), n=2, axis=0), one((2, 7), n=3, axis=-1)),
    # contractions
    listed("einsum", lambda *ts, spec: F.einsum(spec, *ts), lambda *xs, spec: np.einsum(spec, *xs),
           *((tuple(shapes), dict(spec=spec)) for spec, *shapes in EINSUM)),
    listed("tensordot", lambda a, b, axes: F.tensordot(a, b, axes), lambda a, b, axes: np.tensordot(a, b, axes),
           (((2, 3, 4), (3, 4, 5)), dict(axes=2)), (((2, 3), (4, 5)), dict(axes=0)),
           (((2, 3, 4), (4, 2)), dict(axes=([0, 2], [1, 0])))),
    # linear algebra
    listed("inv", F.inv, np.linalg.inv, one((3, 3)), one((2, 4, 4)), domain=well_conditioned()),
    listed("det", F.det, np.linalg.det, one((3, 3)), one((2, 2, 2)), domain=well_conditioned()),
    listed("slogdet", lambda a: F.slogdet(a * Tensor(np.array([-1.0, 1, 1], a.dtype)))[1],
           lambda a: np.linalg.slogdet(a * np.array([-1.0, 1, 1]))[1], one((3, 3)), one((2, 3, 3)),
           domain=well_conditioned()),
    listed("solve", F.solve, _np_solve, (((3, 3), (3, 2)), {}), (((2, 3, 3), (2, 3)), {}), (((3, 3), (2, 3, 1)), {}),
           (((3, 3), (3,)), {}), domain=(well_conditioned(), real())),
    listed("cholesky", lambda a: F.cholesky(_sym_pd(a)), lambda a: np.linalg.cholesky(_sym_pd(a)),
           one((3, 3)), one((2, 4, 4))),
]
NEW_LISTED = [pytest.param(op, case, id=f"{op.name}-{i}") for op in NEW_OPS for i, case in enumerate(op.examples)]


@pytest.mark.parametrize("op, case", NEW_LISTED)
def test_listed_case(op, case):
    shapes, params = case
    check_forward(op, shapes, params, seed=0)
    check_gradient(op, shapes, params, seed=1)
    inputs = [Tensor(a, requires_grad=True) for a in op.sample(3, shapes)]
    second_derivative_check(lambda *ts: op.fn(*ts, **params), *inputs)


@pytest.mark.parametrize("op", NEW_OPS, ids=lambda op: op.name)
@FEW
@given(data=st.data())
def test_random_cases(op, data):
    shapes, params = data.draw(op.cases, label="case")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    check_forward(op, shapes, params, seed)
    check_gradient(op, shapes, params, seed)


def test_every_op_of_the_issue_is_a_function_and_the_torch_methods_are_methods():
    for name in ("sin cos tan sinh cosh arcsin arccos arctan arctan2 sign floor ceil round mod logaddexp hypot prod "
                 "cumsum std einsum tensordot squeeze unsqueeze flatten flip roll repeat tile tril triu diag diagonal "
                 "trace sort argsort stack concatenate split chunk conv1d conv_transpose1d max_pool1d avg_pool1d "
                 "max_unpool2d inv det slogdet solve cholesky").split():
        assert callable(getattr(F, name)), name
    x = Tensor(np.arange(1.0, 7.0).reshape(2, 3))
    for name, args in (("sin", ()), ("prod", (1,)), ("flip", (0,)), ("std", ()), ("cumsum", (0,)), ("squeeze", ()),
                       ("unsqueeze", (0,)), ("flatten", ()), ("roll", (1,)), ("repeat", (2, 1)), ("tile", (2,)),
                       ("tril", ()), ("triu", ()), ("diagonal", ()), ("trace", ()), ("chunk", (2, 1)),
                       ("sort", ()), ("argsort", ()), ("arctan2", (x,)), ("hypot", (x,)), ("logaddexp", (x,))):
        assert getattr(x, name)(*args) is not None, name


# ============================================================================ the six bugs (each failed first)
def test_bug1_pad_with_one_pair_pads_every_axis_and_its_gradient_is_the_centre():
    x = Tensor(np.arange(4.0).reshape(2, 2), requires_grad=True)
    y = F.pad(x, ((3, 2),))
    assert y.shape == (7, 7)
    (y * Tensor(np.arange(49.0).reshape(7, 7))).sum().backward()
    np.testing.assert_array_equal(x.grad, np.arange(49.0).reshape(7, 7)[3:5, 3:5])


def test_bug2_pow_with_base_zero_differentiates_the_exponent_as_pytorch():
    x = Tensor(np.zeros(6), requires_grad=True)
    y = Tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]), requires_grad=True)
    with np.errstate(divide="ignore"):
        (x ** y).sum().backward()
    np.testing.assert_array_equal(y.grad, [-np.inf, -np.inf, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(x.grad, [-np.inf, -np.inf, 0.0, 1.0, 0.0, 0.0])     # PyTorch's, too


def test_bug3_x_to_the_zero_at_zero_has_gradient_zero():
    x = Tensor(np.array([0.0, 2.0, -1.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])
    second_derivative_check(lambda t: t ** 2 + t ** 0, Tensor(np.array([0.5, -1.5]), requires_grad=True))


@pytest.mark.grades("transpose_backward")
def test_bug4_transpose_with_negative_axes():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 5)), requires_grad=True)
    assert gradcheck(lambda t: t.transpose(-2, -1, 1, 0), x)
    assert x.transpose((-2, -1, 1, 0)).shape == (4, 5, 3, 2)


@pytest.mark.parametrize("reduce", [lambda t, a: t.sum(axis=a), lambda t, a: t.max(axis=a), lambda t, a: t.min(axis=a),
                                    lambda t, a: F.logsumexp(t, axis=a), lambda t, a: t.mean(axis=a),
                                    lambda t, a: t.prod(axis=a), lambda t, a: t.std(axis=a) + t.var(axis=a)])
@pytest.mark.parametrize("axis", [0, -1, (0,)])
def test_bug5_reducing_a_0d_tensor_over_axis_0_or_minus_1(reduce, axis):
    x = Tensor(np.array(1.5), requires_grad=True)
    y = reduce(x, axis)
    assert y.shape == ()
    y.backward()
    assert x.grad.shape == () and np.isfinite(x.grad)


@pytest.mark.parametrize("op", [F.maximum, F.minimum, lambda a, b: F.where(np.array([True, False, True]), a, b),
                                F.arctan2, F.hypot, F.logaddexp, F.mod, lambda a, b: a ** b, lambda a, b: a * b])
@pytest.mark.parametrize("number", [0.5, 2, np.float64(0.5), np.int64(2)])
def test_bug6_python_and_numpy_scalars_keep_float32(op, number):
    x = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    for y in (op(x, number), op(number, x)):
        assert y.dtype == np.float32
        y.sum().backward()
        assert x.grad.dtype == np.float32


# ============================================================================ the same mistakes in the neighbours
def test_a_0d_node_that_receives_three_gradients_keeps_them_all():
    """The engine adds a third gradient in place into the array it allocated for the second; NumPy's
    np.add of two 0-d arrays returns a scalar, on which `+= g` would rebind a name instead of adding."""
    y = Tensor(np.array(1.0), requires_grad=True)
    h = y * 1.0
    loss = h * 2.0 + h * 3.0 + h * 4.0
    assert autodiff.grad(loss, [y])[0].item() == 9.0
    for _ in range(3):                               # a 0-d leaf accumulating across backward() calls
        (y * 1.0 + y * 2.0 + y * 3.0).backward()
    assert y.grad.item() == 18.0 and isinstance(y.grad, np.ndarray)


def test_other_scalar_arguments_keep_float32():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    for y in (F.leaky_relu(x, np.float64(0.2)), x.clip(np.float64(0.0), None), x.clip(None, np.float64(0.5)),
              F.pad(x, 1, value=np.float64(-1.0)), F.stack([x[0, 0], 2.0]),
              F.concatenate([x[0], np.float32(2.0) * x[1]]),
              x * np.int64(3), np.float64(2.0) ** x, F.where(np.ones((2, 3), bool), 0.0, x)):
        assert y.dtype == np.float32, y._op


def test_reductions_over_no_axes_are_the_identity_and_repeated_axes_raise():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    for reduce in (lambda t: t.sum(axis=()), lambda t: t.max(axis=()), lambda t: F.logsumexp(t, axis=()),
                   lambda t: t.prod(axis=()), lambda t: t.mean(axis=())):
        np.testing.assert_allclose(reduce(x).data, x.data)
        assert gradcheck(reduce, x)
    np.testing.assert_array_equal(x.std(axis=()).data, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="duplicate|repeated"):
        x.sum(axis=(0, -2))
    with pytest.raises(ValueError, match="repeated"):
        x.flip((1, -1))
    with pytest.raises(ValueError, match="out of range"):
        x.squeeze(2)


def test_pad_reflect_and_replicate_against_numpy_and_gradcheck():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    widths = ((0, 0), (2, 1), (1, 3))
    for mode, numpy_mode in (("reflect", "reflect"), ("replicate", "edge")):
        np.testing.assert_array_equal(F.pad(x, widths, mode=mode).data, np.pad(x.data, widths, numpy_mode))
        assert gradcheck(lambda t, m=mode: F.pad(t, widths, mode=m), x)
    assert F.pad(Tensor(np.array(1.5)), 2).shape == ()
    with pytest.raises(ValueError, match="mode must be 'constant', 'reflect' or 'replicate', got 'wrap'"):
        F.pad(x, 1, mode="wrap")


def test_clip_with_neither_bound_raises():
    with pytest.raises(ValueError, match=r"clip: give lo or hi"):
        Tensor(np.ones(3)).clip()


# ============================================================================ the dtype rule for integers
def test_integer_inputs_to_ops_with_a_floating_result_raise():
    a = Tensor(np.arange(6).reshape(2, 3))
    for op in (lambda t: t.exp(), F.sin, lambda t: t.mean(), lambda t: t.var(), lambda t: t / 2, lambda t: t.std(),
               F.sigmoid, lambda t: F.softmax(t), lambda t: F.logsumexp(t), lambda t: F.inv(t[:, :2])):
        with pytest.raises(TypeError, match=r"input \(int64(, int64)?\) would give a floating-point result; cast"):
            op(a)


def test_integer_tensors_flow_through_integer_ops_and_next_to_floats_take_the_float_dtype():
    a = Tensor(np.array([[3, 1, 2], [0, 5, 4]]))
    for y in (a.sort()[0], a.argsort(), a.flip(0), a.cumsum(1), a.prod(), a.tile(2), a % 2, a.sign(),
              F.einsum("ij->j", a),
              a.tril(), F.maximum(a, 2), a.diagonal()):
        assert np.issubdtype(y.dtype, np.integer) and not y.requires_grad, y._op
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = x * a + F.maximum(x, a)
    assert y.dtype == np.float32
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, a.data + (1 >= a.data) * np.where(a.data == 1, 0.5, 1.0))
    assert Tensor(np.array([True, False])).astype(np.float32).dtype == np.float32


# ============================================================================ properties
def test_prod_with_one_and_two_zeros():
    """dP/dx_i = the product of the others: nonzero only at the zero with one zero, zero everywhere with two."""
    x = Tensor(np.array([[2.0, 0.0, 3.0, -1.5], [2.0, 0.0, 0.0, 4.0], [1.5, 2.0, -1.0, 0.5]]), requires_grad=True)
    x.prod(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, -9.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-1.0, -0.75, 1.5, -3.0]])
    for axis in (1, None, (0, 1), 0):
        assert gradcheck(lambda t, a=axis: t.prod(axis=a), x)
        second_derivative_check(lambda t, a=axis: t.prod(axis=a), x)


def test_std_at_zero_variance_has_gradient_zero_as_pytorch():
    x = Tensor(np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]]), requires_grad=True)
    x.std(axis=1, ddof=1).sum().backward()
    assert (x.grad[0] == 0).all() and np.isfinite(x.grad).all() and (x.grad[1] != 0).all()
    assert gradcheck(lambda t: t.std(axis=1), Tensor(x.data[1:], requires_grad=True))


def test_sort_sends_each_gradient_back_through_the_permutation_and_argsort_is_stable():
    x = Tensor(np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]]), requires_grad=True)
    values, indices = x.sort(axis=1, descending=True)
    np.testing.assert_array_equal(values.data, [[3.0, 2.0, 1.0], [4.0, 0.5, -1.0]])
    assert indices.dtype == np.int64 and not indices.requires_grad
    (values * Tensor(np.array([[10.0, 20.0, 30.0]]))).sum().backward()
    np.testing.assert_array_equal(x.grad, [[10.0, 30.0, 20.0], [20.0, 30.0, 10.0]])
    ties = Tensor(np.array([1.0, 0.0, 1.0, 0.0]))
    np.testing.assert_array_equal(ties.argsort().data, [1, 3, 0, 2])
    np.testing.assert_array_equal(ties.argsort(descending=True).data, [0, 2, 1, 3])


def test_einsum_broadcasts_size_one_letters_as_pytorch_and_its_backward_is_einsums():
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal((1, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    np.testing.assert_allclose(F.einsum("ij,ij->ij", a, b).data, a.data * b.data)
    assert gradcheck(lambda s, t: F.einsum("ij,ij->ij", s, t), a, b)
    y = F.einsum("ij,jk->ik", a, Tensor(rng.standard_normal((3, 2))))
    assert autodiff.grad(y.sum(), [a], create_graph=True)[0]._op == "einsum"


@pytest.mark.parametrize("spec, shapes, message", [
    ("ij,jk->ik", [(2, 3), (4, 5)], "subscript 'j' has size 3 and 4"),
    ("ij->ii", [(2, 2)], "output subscripts must be distinct letters"),
    ("ij,jk", [(2, 3)], "2 operand subscripts for 1 operands"),
    ("i1", [(2, 3)], "subscripts are letters"),
    ("ijk", [(2, 3)], "subscripts 'ijk' for an operand of shape"),
    ("ij->k", [(2, 3)], "output subscripts must be distinct letters of the inputs"),
])
def test_einsum_errors_say_what_is_wrong(spec, shapes, message):
    with pytest.raises(ValueError, match=message):
        F.einsum(spec, *[Tensor(np.ones(s)) for s in shapes])
    with pytest.raises(TypeError, match="einsum: give the subscripts as a string first"):
        F.einsum(Tensor(np.ones(2)), [0], [0])


def test_slogdet_gradient_is_the_inverse_transpose_and_det_is_its_exponential():
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal((2, 3, 3)) + 2 * np.eye(3), requires_grad=True)
    sign, log_abs = F.slogdet(a)
    np.testing.assert_allclose(sign.data * np.exp(log_abs.data), F.det(a).data)
    log_abs.sum().backward()
    np.testing.assert_allclose(a.grad, np.linalg.inv(a.data).swapaxes(-1, -2))
    low = F.cholesky(_sym_pd(a.data)).data
    np.testing.assert_allclose(low @ low.swapaxes(-1, -2), _sym_pd(a.data))
    assert (np.triu(low, 1) == 0).all()
    b = np.ones((2, 3, 1))
    np.testing.assert_allclose(a.data @ F.solve(a, b).data, b)


def test_linear_algebra_errors():
    with pytest.raises(ValueError, match=r"inv: expected a square matrix or a batch of them .*, got shape \(2, 3\)"):
        F.inv(Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match="inv: Singular matrix"):
        F.inv(Tensor(np.ones((2, 2))))
    with pytest.raises(ValueError, match="cholesky: Matrix is not positive definite"):
        F.cholesky(Tensor(-np.eye(2)))
    with pytest.raises(ValueError, match=r"solve: B must be \(..., 3, k\) or \(..., 3\)"):
        F.solve(Tensor(np.eye(3)), Tensor(np.ones((2, 2))))
