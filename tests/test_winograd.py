"""The Winograd path of conv2d (stride 1, kernel 3..5) and conv_transpose2d (kernel 4, stride 2)
(autodiff/fast/winograd.py): the Toom-Cook matrices, forward against the plain-loop references,
gradients against central differences (float64), float32 accuracy, and which layers take it."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from autodiff import Tensor, gradcheck
from autodiff.conv import (conv2d, conv2d_loops as conv2d_reference, conv_transpose2d,
                           conv_transpose2d_loops as conv_transpose2d_reference)
from autodiff.fast import winograd

pytestmark = pytest.mark.usefixtures("fast_backend")

CHEAP = settings(deadline=None, max_examples=25, derandomize=True)


@contextlib.contextmanager
def winograd_taken():
    """Take the Winograd path even for the tiny channel counts of these tests, and check that the
    code inside the block took it."""
    saved_min, saved_forward = winograd.MIN_CHANNELS, winograd.forward
    calls = []

    def counting_forward(*args):
        calls.append(1)
        return saved_forward(*args)
    winograd.MIN_CHANNELS, winograd.forward = 1, counting_forward
    try:
        yield
    finally:
        winograd.MIN_CHANNELS, winograd.forward = saved_min, saved_forward
    assert calls, "the Winograd path was not taken"


@pytest.mark.parametrize("m, r, points, tol", [
    (2, 2, (0, 1), 1e-12), (4, 2, winograd.POINTS[:4], 1e-12), (2, 3, (0, 1, -1), 1e-12),
    (4, 3, (0, 1, -1, 2, -2), 1e-12), (4, 5, winograd.POINTS[:7], 1e-12),
    (8, 5, winograd.POINTS, 1e-9)])            # the large tile rounds ~1e-10 in float64: float32 layers only
def test_toom_cook_computes_the_correlation(m, r, points, tol):
    AT, G, BT = winograd.toom_cook(m, r, points)
    assert AT.shape == (m, m + r - 1) and G.shape == (m + r - 1, r) and BT.shape == (m + r - 1,) * 2
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        direct = np.array([sum(d[i + j] * g[j] for j in range(r)) for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), direct, rtol=tol, atol=tol)


@st.composite
def k4s2_cases(draw):
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    output_padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    H = draw(st.integers(max(2, padding[0]), 9))            # H + 1 >= one tile; output >= 1
    W = draw(st.integers(max(2, padding[1]), 9))
    C_in, C_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(N=draw(st.integers(1, 2)), C_in=C_in, C_out=C_out, w_shape=(C_in, C_out, 4, 4), H=H, W=W,
                padding=padding, output_padding=output_padding, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 16)))


def _inputs(case, grad=False):
    """x, w and (if the case has one) b, float64, from the case's seed."""
    rng = np.random.default_rng(case["seed"])
    x = Tensor(rng.standard_normal((case["N"], case["C_in"], case["H"], case["W"])), requires_grad=grad)
    w = Tensor(rng.standard_normal(case["w_shape"]), requires_grad=grad)
    b = Tensor(rng.standard_normal(case["C_out"]), requires_grad=grad) if case["bias"] else None
    return x, w, b


@CHEAP
@given(k4s2_cases())
def test_winograd_forward_matches_the_reference(case):
    x, w, b = _inputs(case)
    with winograd_taken():
        out = conv_transpose2d(x, w, b, stride=2, padding=case["padding"], output_padding=case["output_padding"])
    ref = conv_transpose2d_reference(x.data, w.data, None if b is None else b.data, (2, 2), case["padding"],
                                     case["output_padding"])
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.data, ref, rtol=1e-11, atol=1e-11)


@settings(deadline=None, max_examples=12, derandomize=True)
@given(k4s2_cases())
def test_winograd_gradcheck(case):
    x, w, b = _inputs(case, grad=True)
    inputs = (x, w) if b is None else (x, w, b)
    with winograd_taken():
        gradcheck(lambda *t: conv_transpose2d(*t, stride=2, padding=case["padding"],
                                              output_padding=case["output_padding"]), *inputs)


def test_winograd_gradcheck_rows_beyond_the_phases_and_one_input_only():
    """output_padding > padding: the last output row lies past every phase's rows (zero but for the
    bias); and a weight that needs no gradient (dU is skipped) or an input that needs none."""
    rng = np.random.default_rng(3)
    x, w = (Tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 2, 3, 4), (2, 3, 4, 4)))
    with winograd_taken():
        gradcheck(lambda x, w: conv_transpose2d(x, w, stride=2, padding=0, output_padding=1), x, w)
        gradcheck(lambda x: conv_transpose2d(x, Tensor(w.data), stride=2, padding=1), x)
        gradcheck(lambda w: conv_transpose2d(Tensor(x.data), w, stride=2, padding=2), w)


@st.composite
def stride1_cases(draw):
    r = draw(st.sampled_from(sorted(k for k in winograd.TILE if k > 2)))    # 3x3 and 5x5
    padding = (draw(st.integers(0, r - 1)), draw(st.integers(0, r - 1)))
    m = winograd.TILE[r]
    H = draw(st.integers(max(1, r - 1 + m - 2 * padding[0]), r + 2 * m))     # output >= one tile
    W = draw(st.integers(max(1, r - 1 + m - 2 * padding[1]), r + 2 * m))
    C_in, C_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(N=draw(st.integers(1, 2)), C_in=C_in, C_out=C_out, w_shape=(C_out, C_in, r, r), H=H, W=W,
                padding=padding, bias=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


@CHEAP
@given(stride1_cases())
def test_winograd_conv2d_matches_the_reference(case):
    x, w, b = _inputs(case)
    with winograd_taken():
        out = conv2d(x, w, b, padding=case["padding"])
    ref = conv2d_reference(x.data, w.data, None if b is None else b.data, (1, 1), case["padding"])
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=12, derandomize=True)
@given(stride1_cases())
def test_winograd_conv2d_gradcheck(case):
    x, w, b = _inputs(case, grad=True)
    inputs = (x, w) if b is None else (x, w, b)
    with winograd_taken():
        gradcheck(lambda *t: conv2d(*t, padding=case["padding"]), *inputs)


def _float32_errors(op, x, w, g) -> list:
    """Normwise relative error of forward, dL/dx and dL/dw in float32 against float64, same inputs."""
    def run(dtype):
        xt, wt = Tensor(x.astype(dtype), requires_grad=True), Tensor(w.astype(dtype), requires_grad=True)
        out = op(xt, wt)
        out.backward(g.astype(dtype))
        return [a.astype(np.float64) for a in (out.data, xt.grad, wt.grad)]
    exact = run(np.float64)
    return [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(run(np.float32), exact)]


@pytest.mark.parametrize("name, op, x_shape, w_shape", [
    ("conv_transpose2d 64 -> 64, k4 s2, 7x7 -> 14x14", lambda x, w: conv_transpose2d(x, w, stride=2, padding=1),
     (8, 64, 7, 7), (64, 64, 4, 4)),
    ("conv2d 32 -> 32, 5x5", lambda x, w: conv2d(x, w), (8, 32, 12, 12), (32, 32, 5, 5)),
    ("conv2d 32 -> 48, 5x5, padding 1, partial tiles", lambda x, w: conv2d(x, w, padding=1), (4, 32, 15, 19),
     (48, 32, 5, 5)),
    ("conv2d 64 -> 64, 3x3, padding 1", lambda x, w: conv2d(x, w, padding=1), (8, 64, 14, 14), (64, 64, 3, 3)),
])
def test_winograd_float32_gradients_are_within_twice_im2cols_error(name, op, x_shape, w_shape):
    """Against a float64 computation: Winograd's float32 gradients within 2x of im2col's error (the tiles
    of winograd.py's Accuracy; with 4x4 tiles everywhere they were 6-28x)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))
    g = rng.standard_normal(op(Tensor(x), Tensor(w)).shape)
    with winograd_taken():
        winograd_errors = _float32_errors(op, x, w, g)
    saved, winograd.MIN_CHANNELS = winograd.MIN_CHANNELS, 10 ** 9        # im2col's path
    try:
        im2col_errors = _float32_errors(op, x, w, g)
    finally:
        winograd.MIN_CHANNELS = saved
    for what, ours, theirs in zip(("dL/dx", "dL/dw"), winograd_errors[1:], im2col_errors[1:]):
        assert ours <= 2 * theirs, f"{name} {what}: {ours:.2e} against im2col's {theirs:.2e}"
    assert winograd_errors[0] <= 3 * im2col_errors[0]                    # the forward, too


def test_which_layers_take_the_winograd_path():
    def conv(w_shape, stride=(1, 1), dilation=(1, 1), grid=(2, 8, 8), dtype=np.float32):
        return winograd.applies(w_shape, stride, dilation, False, grid, dtype)

    def transposed(w_shape, stride=(2, 2), dilation=(1, 1), grid=(2, 8, 8), dtype=np.float32):
        return winograd.applies(w_shape, stride, dilation, True, grid, dtype)
    assert transposed((128, 64, 4, 4)) and transposed((16, 16, 4, 4), dtype=np.float64)
    assert transposed((128, 64, 4, 4), grid=(2, 3, 3))          # H + 1 = 3 rows: one F(3, 2) tile
    assert not transposed((64, 1, 4, 4))                       # to one channel
    assert not transposed((128, 64, 3, 3))                     # kernel 3
    assert not transposed((128, 64, 4, 4), stride=(1, 2))
    assert not transposed((128, 64, 4, 4), dilation=(2, 1))
    assert not transposed((128, 64, 4, 4), grid=(2, 2, 2))     # a 1x1 input: less than one tile
    assert conv((64, 32, 5, 5)) and conv((64, 32, 3, 3)) and conv((16, 16, 3, 3), dtype=np.float64)
    assert winograd.tile(5, np.float32) == 8 and winograd.tile(5, np.float64) == 4      # F(8, 5) in float64
    assert not conv((64, 32, 5, 5), grid=(2, 7, 7))            # float32 5x5: less than one F(8, 5) tile
    assert conv((64, 32, 5, 5), grid=(2, 4, 4), dtype=np.float64)
    assert not conv((16, 16, 4, 4))                            # 4x4 stride 1: no tile chosen for it
    assert not conv((32, 1, 5, 5))                             # one input channel
    assert not conv((64, 32, 7, 7))                            # kernel > 5: float32 accuracy
    assert not conv((64, 32, 2, 2))                            # 2x2: too few multiplications saved
    assert not conv((64, 32, 1, 1))                            # 1x1: one product anyway
    assert not conv((64, 32, 3, 5))                            # not square
    assert not conv((64, 32, 3, 3), stride=(2, 2))
    assert not conv((64, 32, 3, 3), grid=(2, 1, 28))           # one row (PixelCNN's sampling): half wasted
    assert not conv((64, 32, 3, 3), grid=(0, 8, 8))            # no images
    assert not conv((64, 32, 3, 3), dtype=np.int64) and not conv((64, 32, 3, 3), dtype=np.float16)


def test_integer_inputs_stay_exact():
    """Integers never take the Winograd path (its fractions would be truncated): exact as the reference."""
    x = np.arange(2 * 16 * 6 * 6).reshape(2, 16, 6, 6) % 7
    w = np.arange(16 * 16 * 3 * 3).reshape(16, 16, 3, 3) % 5 - 2
    out = conv2d(Tensor(x), Tensor(w), padding=1).data
    np.testing.assert_array_equal(out, conv2d_reference(x, w, None, (1, 1), (1, 1)))
    wt = np.arange(16 * 16 * 4 * 4).reshape(16, 16, 4, 4) % 5 - 2
    out = conv_transpose2d(Tensor(x), Tensor(wt), stride=2, padding=1).data
    np.testing.assert_array_equal(out, conv_transpose2d_reference(x, wt, None, (2, 2), (1, 1)))
