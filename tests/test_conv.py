"""conv2d, conv_transpose2d, max_pool2d, avg_pool2d on the selected backend: forward against the plain
loops of autodiff/conv.py, gradients against central differences (float64), the adjoint identity,
shapes, dtypes and error messages. (The fast backend's own layouts are forced both ways by `layout`.)"""
import contextlib

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import autodiff.conv as conv
from autodiff import GradcheckError, Tensor, current_backend, gradcheck, use_backend
from autodiff.conv import (conv2d, conv2d_loops as conv2d_reference, conv_transpose2d,
                           conv_transpose2d_loops as conv_transpose2d_reference)
from autodiff.ops.pooling import avg_pool2d, max_pool2d, pool2d_loops as pool2d_reference

CHEAP = settings(deadline=None, max_examples=30, derandomize=True)   # numeric tests are slow-ish


@contextlib.contextmanager
def layout(n_last: bool):
    """Force one of the fast backend's two layouts (tiny test images would otherwise always pick N last);
    nothing to force with the reference backend."""
    if current_backend() != "fast":
        yield
        return
    import autodiff.fast.im2col as fast
    saved = fast.N_LAST_BELOW_GW
    fast.N_LAST_BELOW_GW = 10 ** 9 if n_last else 0
    try:
        yield
    finally:
        fast.N_LAST_BELOW_GW = saved


def t64(a, grad=False):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ==================================================================== hypothesis strategies
@st.composite
def conv_cases(draw):
    """A valid conv2d configuration on tiny shapes (output at least 1x1) and a layout."""
    N, C_in, C_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = (dilation[0] * (KH - 1) + 1, dilation[1] * (KW - 1) + 1)
    H = draw(st.integers(max(1, span[0] - 2 * padding[0]), 7))
    W = draw(st.integers(max(1, span[1] - 2 * padding[1]), 7))
    return dict(N=N, C_in=C_in, C_out=C_out, KH=KH, KW=KW, H=H, W=W, stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()), n_last=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 16)))


@st.composite
def conv_transpose_cases(draw):
    """A valid conv_transpose2d configuration (output at least 1x1, output_padding < max(s, d))."""
    case = draw(conv_cases())
    op = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(case["stride"], case["dilation"]))
    case["H"], case["W"] = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    (sh, sw), (ph, pw), (dh, dw) = case["stride"], case["padding"], case["dilation"]
    OH = (case["H"] - 1) * sh - 2 * ph + dh * (case["KH"] - 1) + op[0] + 1
    OW = (case["W"] - 1) * sw - 2 * pw + dw * (case["KW"] - 1) + op[1] + 1
    assume(OH >= 1 and OW >= 1)
    case["output_padding"] = op
    return case


def conv_arrays(case, transpose=False):
    rng = np.random.default_rng(case["seed"])
    C_in, C_out = case["C_in"], case["C_out"]
    x = rng.standard_normal((case["N"], C_in, case["H"], case["W"]))
    w_shape = (C_in, C_out) if transpose else (C_out, C_in)
    w = rng.standard_normal(w_shape + (case["KH"], case["KW"]))
    b = rng.standard_normal(C_out) if case["bias"] else None
    return x, w, b


# ==================================================================== forward against naive loops
@CHEAP
@given(conv_cases())
@pytest.mark.grades("conv2d_forward")
def test_conv2d_matches_naive_loop(case):
    x, w, b = conv_arrays(case)
    with layout(case["n_last"]):
        out = conv2d(t64(x), t64(w), None if b is None else t64(b),
                     case["stride"], case["padding"], case["dilation"])
    np.testing.assert_allclose(out.data, conv2d_reference(x, w, b, case["stride"], case["padding"], case["dilation"]),
                               rtol=1e-12, atol=1e-12)


@CHEAP
@given(conv_transpose_cases())
@pytest.mark.grades("col2im_add")
def test_conv_transpose2d_matches_naive_scatter(case):
    x, w, b = conv_arrays(case, transpose=True)
    with layout(case["n_last"]):
        out = conv_transpose2d(t64(x), t64(w), None if b is None else t64(b), case["stride"],
                               case["padding"], case["output_padding"], case["dilation"])
    ref = conv_transpose2d_reference(x, w, b, case["stride"], case["padding"], case["output_padding"],
                                 case["dilation"])
    np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_last", [False, True])
def test_batch_of_several_copy_blocks(n_last):
    """N = 18: the layout changes copy 16 images at a time, so this covers a full block and a tail."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((18, 2, 5, 4)), rng.standard_normal((3, 2, 3, 2))
    with layout(n_last):
        out = conv2d(t64(x), t64(w), stride=(2, 1), padding=1)
        back = conv_transpose2d(out, t64(w), stride=(2, 1), padding=1)
    np.testing.assert_allclose(out.data, conv2d_reference(x, w, None, (2, 1), (1, 1), (1, 1)), rtol=1e-12, atol=1e-12)
    ref = conv_transpose2d_reference(out.data, w, None, (2, 1), (1, 1), (0, 0), (1, 1))
    np.testing.assert_allclose(back.data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_last", [False, True])
def test_saved_columns_survive_a_second_conv_before_backward(n_last):
    """Regression: with one window covering the whole padded image, the strided window view is
    already contiguous; im2col must still copy it, or the columns saved for dL/dw would alias the
    reused padded-image buffer that the second conv2d overwrites."""
    rng = np.random.default_rng(0)
    x1, x2 = t64(rng.standard_normal((3, 1, 2, 2)), True), t64(rng.standard_normal((3, 1, 2, 2)), True)
    w = t64(rng.standard_normal((2, 1, 3, 3)), True)
    with layout(n_last):
        gradcheck(lambda a, b, c: conv2d(a, c, stride=2, padding=1) * conv2d(b, c, stride=2, padding=1),
                  x1, x2, w)


# ==================================================================== gradient checks (float64)
@CHEAP
@given(conv_cases())
@pytest.mark.grades("im2col", "conv2d_backward", "conv2d_weight_grad")
def test_conv2d_gradcheck(case):
    x, w, b = conv_arrays(case)
    inputs = [t64(x, True), t64(w, True)] + ([] if b is None else [t64(b, True)])
    with layout(case["n_last"]):
        gradcheck(lambda *t: conv2d(*t, stride=case["stride"], padding=case["padding"],
                                    dilation=case["dilation"]), *inputs)


@CHEAP
@given(conv_transpose_cases())
@pytest.mark.grades("conv_transpose2d_backward")
def test_conv_transpose2d_gradcheck(case):
    x, w, b = conv_arrays(case, transpose=True)
    inputs = [t64(x, True), t64(w, True)] + ([] if b is None else [t64(b, True)])
    with layout(case["n_last"]):
        gradcheck(lambda *t: conv_transpose2d(*t, stride=case["stride"], padding=case["padding"],
                                              output_padding=case["output_padding"],
                                              dilation=case["dilation"]), *inputs)


@st.composite
def pool_cases(draw):
    k = draw(st.integers(1, 3))
    s = draw(st.one_of(st.none(), st.integers(1, 3)))
    p = draw(st.integers(0, k // 2))
    H, W = draw(st.integers(max(1, k - 2 * p), 7)), draw(st.integers(max(1, k - 2 * p), 7))
    return k, s, p, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W), draw(st.integers(0, 2 ** 16))


@CHEAP
@given(pool_cases())
@pytest.mark.grades("max_pool")
def test_max_pool2d_forward_and_gradcheck(case):
    k, s, p, shape, seed = case
    # distinct values (a permutation), so every window has a unique maximum: no ties, no kinks
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) / 10.0
    out = max_pool2d(t64(x), k, s, p)
    np.testing.assert_array_equal(out.data, pool2d_reference(x, k, s or k, p, np.max))
    gradcheck(lambda t: max_pool2d(t, k, s, p), t64(x, True))


@CHEAP
@given(pool_cases())
def test_avg_pool2d_forward_and_gradcheck(case):
    k, s, p, shape, seed = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = avg_pool2d(t64(x), k, s, p)
    np.testing.assert_allclose(out.data, pool2d_reference(x, k, s or k, p, np.mean), rtol=1e-12)
    gradcheck(lambda t: avg_pool2d(t, k, s, p), t64(x, True))


@pytest.mark.grades("max_pool")
def test_max_pool2d_ties_route_to_the_first_maximum():
    x = t64(np.ones((1, 1, 2, 2)), grad=True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[1, 0], [0, 0]]]])


def test_max_pool2d_ties_in_overlapping_windows():
    x = t64(np.ones((1, 1, 3, 3)), grad=True)
    max_pool2d(x, 2, stride=1).sum().backward()             # each window routes to its top-left
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.grades("max_pool")
def test_max_pool2d_overlapping_windows_add():
    x = t64(np.array([[[[0, 0, 0], [0, 9, 0], [0, 0, 0]]]]), grad=True)
    out = max_pool2d(x, 2, stride=1)                        # the 9 is the max of all four windows
    out.sum().backward()
    assert x.grad[0, 0, 1, 1] == 4 and x.grad.sum() == 4


# ==================================================================== adjoint pair
@CHEAP
@given(conv_cases())
def test_conv_then_transpose_restores_shape_and_adjoint_identity(case):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)>: conv_transpose2d is conv2d's adjoint."""
    x, w, _ = conv_arrays(case)
    s, p, d = case["stride"], case["padding"], case["dilation"]
    # the input size that the transposed conv must pick among those conv2d maps to the same OH
    op = tuple((n + 2 * pi - di * (k - 1) - 1) % si
               for n, pi, di, k, si in zip(x.shape[2:], p, d, w.shape[2:], s))
    with layout(case["n_last"]):
        y_shape = conv2d(t64(x), t64(w), stride=s, padding=p, dilation=d).shape
        y = np.random.default_rng(case["seed"] + 1).standard_normal(y_shape)
        forward = conv2d(t64(x), t64(w), stride=s, padding=p, dilation=d).data
        back = conv_transpose2d(t64(y), t64(w), stride=s, padding=p, output_padding=op, dilation=d).data
    assert back.shape == x.shape
    lhs, rhs = np.sum(forward * y), np.sum(x * back)
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), abs(rhs), 1.0)


# ==================================================================== dtype
@pytest.mark.parametrize("n_last", [False, True])
def test_float32_stays_float32(n_last):
    rng = np.random.default_rng(0)
    f32 = lambda *shape: Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    x, w, b, wt = f32(2, 3, 6, 6), f32(4, 3, 3, 3), f32(4), f32(3, 2, 3, 3)
    with layout(n_last):
        outs = [conv2d(x, w, b, padding=1), conv_transpose2d(x, wt, stride=2, output_padding=1),
                max_pool2d(x, 2), avg_pool2d(x, 3, 1, 1)]
        for out in outs:
            assert out.dtype == np.float32
            out.sum().backward()
    assert all(t.grad.dtype == np.float32 for t in (x, w, b, wt))


# ==================================================================== errors
def test_conv_errors_name_expected_and_actual_shapes():
    x, w = Tensor(np.zeros((2, 3, 5, 5))), Tensor(np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 3, 5, 5\).*\(4, 2, 3, 3\) expects 2"):
        conv2d(x, w)
    with pytest.raises(ValueError, match=r"4-D input.*\(3, 5, 5\)"):
        conv2d(Tensor(np.zeros((3, 5, 5))), w)
    with pytest.raises(ValueError, match=r"kernel \(KH, KW\) = \(8, 8\).*padded input is \(7, 7\).*"
                                         r"\(2, 3, 5, 5\).*would be \(0, 0\)"):
        conv2d(x, Tensor(np.zeros((4, 3, 8, 8))), padding=1)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\).*got \(3,\)"):
        conv2d(x, Tensor(np.zeros((4, 3, 3, 3))), Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv2d(x, Tensor(np.zeros((4, 3, 3, 3))), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        conv2d(x, Tensor(np.zeros((4, 3, 3, 3))), padding=(1, -1))
    with pytest.raises(ValueError, match="3 channels.*expects 4"):
        conv_transpose2d(x, Tensor(np.zeros((4, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than .* \(2, 2\)"):
        conv_transpose2d(x, Tensor(np.zeros((3, 2, 3, 3))), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"output \(OH, OW\) would be \(-1, -1\) for input shape \(1, 3, 1, 1\)"):
        conv_transpose2d(Tensor(np.zeros((1, 3, 1, 1))), Tensor(np.zeros((3, 2, 1, 1))), padding=1)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        conv_transpose2d(x, Tensor(np.zeros((3, 2, 3, 3))), Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"larger than the padded input \(5, 5\)"):
        max_pool2d(x, 6)
    with pytest.raises(TypeError, match="dtype"):
        conv2d(x, Tensor(np.zeros((4, 3, 3, 3), np.float32)))


# ==================================================================== the checker can fail
@pytest.mark.parametrize("helper", ["conv2d_weight_grad", "conv_transpose2d"])
@pytest.mark.grades("central_difference")
def test_gradcheck_rejects_a_broken_conv2d_backward_rule(monkeypatch, helper):
    """A test of the test: scale one of the ops conv2d's rules call by 1.01 and gradcheck must fail."""
    original = getattr(conv, helper)
    monkeypatch.setattr(conv, helper, lambda *args: 1.01 * original(*args))
    rng = np.random.default_rng(0)
    x, w = t64(rng.standard_normal((1, 2, 5, 5)), True), t64(rng.standard_normal((2, 2, 3, 3)), True)
    with use_backend("reference"), pytest.raises(GradcheckError):
        gradcheck(lambda a, b: conv2d(a, b, padding=1), x, w)


@pytest.mark.parametrize("helper", ["conv2d_weight_grad", "conv2d_input_grad"])
def test_gradcheck_rejects_a_broken_fast_conv2d_backward(monkeypatch, helper):
    """The same for the fast backend's im2col path: one of its gradient routines scaled by 1.01."""
    import autodiff.fast.im2col as fast
    original = getattr(fast, helper)
    monkeypatch.setattr(fast, helper, lambda *args: 1.01 * original(*args))
    rng = np.random.default_rng(0)
    x, w = t64(rng.standard_normal((1, 2, 5, 5)), True), t64(rng.standard_normal((2, 2, 3, 3)), True)
    with use_backend("fast"), pytest.raises(GradcheckError):
        gradcheck(lambda a, b: conv2d(a, b, padding=1), x, w)


@pytest.mark.grades("im2col", "col2im_add")
def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> = <x, col2im(c)> with overlapping windows: col2im must ADD, not assign."""
    rng = np.random.default_rng(0)
    N, C, H, W, K, s, p, d = 2, 3, 6, 5, 3, (1, 2), (1, 1), (1, 1)
    x = rng.standard_normal((N, C, H, W))
    cols = conv.im2col(x, (K, K), s, p, d).data
    c = rng.standard_normal(cols.shape)
    back = conv.col2im(c, x.shape, conv._conv_size((H, W), (K, K), s, p, d), (K, K), s, p, d).data
    assert cols.shape == (N, C * K * K, 6 * 3) and back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)
    assert gradcheck(lambda x: conv.im2col(x, (K, K), s, p, d), t64(x, True))


@pytest.mark.parametrize("n_last", [False, True])
def test_fast_col2im_is_the_adjoint_of_its_im2col(n_last):
    import autodiff.fast.im2col as fast
    rng = np.random.default_rng(0)
    N, C, H, W, K, s, p, d = 2, 3, 6, 5, 3, 1, 1, 1
    OH, OW = (H + 2 * p - d * (K - 1) - 1) // s + 1, (W + 2 * p - d * (K - 1) - 1) // s + 1
    with use_backend("fast"), layout(n_last):
        g = fast.Windows(N=N, C=C, IH=H, IW=W, KH=K, KW=K, sh=s, sw=s, ph=p, pw=p, dh=d, dw=d, GH=OH, GW=OW)
        x = rng.standard_normal((N, C, H, W))
        cols = fast.im2col(x, g)
        c = rng.standard_normal(cols.shape)
        back = fast.col2im(c, g)
    assert cols.shape == (C * K * K, N * OH * OW) and back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)
