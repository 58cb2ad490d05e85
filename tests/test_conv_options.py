"""Grouped and depthwise convolution, the pooling options (dilation, ceil_mode, return_indices,
count_include_pad), max_unpool2d, the 1-D ops and their layers, on the selected backend (the fast one
declines the new options, so the reference runs: checked here too)."""
import numpy as np
import pytest

import autodiff.functional as F
import nets
from autodiff import Tensor, gradcheck, use_backend
from autodiff.ops.pooling import pool2d_loops


def t64(rng, *shape, grad=True):
    return Tensor(rng.standard_normal(shape), requires_grad=grad)


def distinct(rng, *shape):
    n = int(np.prod(shape))
    return Tensor((rng.permutation(n) * 0.1 - n * 0.05).reshape(shape), requires_grad=True)


# ============================================================================ groups
def check_one_op_per_group(op, x, w, b, groups, w_rows, **kw):
    """op(groups=G) equals op on each group's channels, concatenated; and its gradients pass gradcheck.
    w_rows: how many rows of w (its first axis) each group owns."""
    out = op(x, w, b, groups=groups, **kw)
    i, o = x.shape[1] // groups, b.shape[0] // groups
    parts = [op(x[:, g * i:(g + 1) * i], w[g * w_rows:(g + 1) * w_rows], b[g * o:(g + 1) * o], **kw).data
             for g in range(groups)]
    np.testing.assert_allclose(out.data, np.concatenate(parts, axis=1), atol=1e-12)
    assert gradcheck(lambda x, w, b: op(x, w, b, groups=groups, **kw), x, w, b)
    return out


@pytest.mark.parametrize("groups, c_in, c_out", [(2, 4, 6), (3, 3, 3), (4, 4, 8)])   # (3, 3, 3): depthwise
@pytest.mark.grades("conv2d_forward", "conv2d_weight_grad")
def test_grouped_conv2d_is_one_convolution_per_group(groups, c_in, c_out):
    rng = np.random.default_rng(groups)
    x, w, b = t64(rng, 2, c_in, 5, 6), t64(rng, c_out, c_in // groups, 3, 2), t64(rng, c_out)
    check_one_op_per_group(F.conv2d, x, w, b, groups, c_out // groups, stride=(2, 1), padding=1, dilation=(1, 2))


@pytest.mark.parametrize("groups, c_in, c_out", [(2, 4, 6), (4, 4, 4)])
def test_grouped_conv_transpose2d_is_conv2d_adjoint_per_group(groups, c_in, c_out):
    rng = np.random.default_rng(groups)
    x, w, b = t64(rng, 2, c_in, 3, 4), t64(rng, c_in, c_out // groups, 3, 3), t64(rng, c_out)
    out = check_one_op_per_group(F.conv_transpose2d, x, w, b, groups, c_in // groups, stride=2, padding=1,
                                 output_padding=1)
    # <conv2d(y, w), x> = <y, conv_transpose2d(x, w)>: the adjoint pair, grouped
    y = rng.standard_normal(out.shape)
    lhs = np.sum(F.conv2d(Tensor(y), w, stride=2, padding=1, groups=groups).data * x.data)
    np.testing.assert_allclose(lhs, np.sum(y * F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1,
                                                                   groups=groups).data))


def test_grouped_conv_second_derivative_and_the_fast_backend_declines_it():
    rng = np.random.default_rng(0)
    x, w = t64(rng, 1, 4, 4, 4), t64(rng, 4, 2, 3, 3)
    import autodiff

    def first(x, w):
        with autodiff.enable_grad():                     # gradcheck evaluates under no_grad
            return autodiff.grad((F.conv2d(x, w, groups=2) ** 2).sum(), [x, w], create_graph=True)
    assert gradcheck(first, x, w)
    reference = F.conv2d(x, w, groups=2, padding=1).data
    with use_backend("fast"):
        np.testing.assert_allclose(F.conv2d(x, w, groups=2, padding=1).data, reference)
        assert F.conv2d(x, w, groups=2, padding=1)._recompute is None          # the reference op built it


def test_groups_errors():
    x = Tensor(np.ones((1, 4, 5, 5)))
    with pytest.raises(ValueError, match="groups must be a positive int dividing C_in = 4 and C_out = 3, got 2"):
        F.conv2d(x, Tensor(np.ones((3, 2, 3, 3))), groups=2)
    with pytest.raises(ValueError, match=r"input has 6 channels .* expects 9 \(groups=3\)"):
        F.conv2d(Tensor(np.ones((1, 6, 5, 5))), Tensor(np.ones((3, 3, 3, 3))), groups=3)


# ============================================================================ pooling options
POOLS = [dict(kernel_size=3, stride=2, padding=1, dilation=2), dict(kernel_size=2, stride=2, ceil_mode=True),
         dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=2, stride=1, padding=1, dilation=3)]


@pytest.mark.parametrize("cfg", POOLS)
def test_max_pool2d_options_against_the_loops_and_gradcheck(cfg):
    rng = np.random.default_rng(0)
    x = distinct(rng, 2, 2, 7, 6)
    np.testing.assert_array_equal(F.max_pool2d(x, **cfg).data, pool2d_loops(x.data, reduce=np.max, **cfg))
    assert gradcheck(lambda t: F.max_pool2d(t, **cfg), x)
    out, indices = F.max_pool2d(x, return_indices=True, **cfg)
    np.testing.assert_array_equal(np.take_along_axis(x.data.reshape(2, 2, -1), indices.data.reshape(2, 2, -1), 2),
                                  out.data.reshape(2, 2, -1))


AVG_POOLS = [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=2, ceil_mode=True),
             dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]


@pytest.mark.parametrize("cfg", AVG_POOLS)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool2d_counts_against_the_loops_and_gradcheck(cfg, include):
    rng = np.random.default_rng(1)
    x = t64(rng, 1, 2, 7, 6)
    np.testing.assert_allclose(F.avg_pool2d(x, count_include_pad=include, **cfg).data,
                               pool2d_loops(x.data, reduce=np.mean, count_include_pad=include, **cfg), atol=1e-14)
    assert gradcheck(lambda t: F.avg_pool2d(t, count_include_pad=include, **cfg), x)


def test_max_unpool2d_puts_each_maximum_back_and_its_gradient_is_a_gather():
    rng = np.random.default_rng(2)
    x = distinct(rng, 2, 3, 4, 6)
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    restored = F.max_unpool2d(pooled, indices, 2)
    assert restored.shape == x.shape
    kept = restored.data != 0
    np.testing.assert_array_equal(restored.data[kept], x.data[kept])
    assert kept.sum() == pooled.size
    unpool = lambda p: F.max_unpool2d(p, indices, 2, output_size=(4, 6))               # noqa: E731
    assert gradcheck(unpool, Tensor(pooled.data, requires_grad=True))
    with pytest.raises(ValueError, match="max_unpool2d: expected x .* indices of the same shape in"):
        F.max_unpool2d(pooled, indices.data + 100, 2)


def test_fast_pools_decline_the_new_options_so_the_reference_runs():
    rng = np.random.default_rng(3)
    x = distinct(rng, 1, 2, 7, 7)
    with use_backend("reference"):
        expected = [F.max_pool2d(x, 3, 2, ceil_mode=True).data, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False).data]
    with use_backend("fast"):
        got = [F.max_pool2d(x, 3, 2, ceil_mode=True).data, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False).data]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


# ============================================================================ 1-D ops and layers
def test_1d_ops_are_the_2d_ops_on_a_height_1_image():
    rng = np.random.default_rng(4)
    x, w = t64(rng, 2, 4, 9), t64(rng, 6, 2, 3)
    out = F.conv1d(x, w, stride=2, padding=1, dilation=2, groups=2)
    np.testing.assert_array_equal(out.data, F.conv2d(x[:, :, None], w[:, :, None], stride=(1, 2), padding=(0, 1),
                                                     dilation=(1, 2), groups=2).data[:, :, 0])
    assert gradcheck(lambda x, w: F.conv1d(x, w, stride=2, padding=1, dilation=2, groups=2), x, w)
    wt = t64(rng, 4, 3, 3)
    assert F.conv_transpose1d(x, wt, stride=2, output_padding=1).shape == (2, 3, 20)
    assert gradcheck(lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1), x, wt)
    d = distinct(rng, 2, 3, 9)
    np.testing.assert_array_equal(F.max_pool1d(d, 3, 2, 1, ceil_mode=True).data,
                                  pool2d_loops(d.data[:, :, None].repeat(3, 2), 3, 2, 1, ceil_mode=True)[:, :, 1])
    assert gradcheck(lambda t: F.max_pool1d(t, 2), d)
    assert gradcheck(lambda t: F.avg_pool1d(t, 3, 2, 1, count_include_pad=False), d)
    values, positions = F.max_pool1d(d, 3, return_indices=True)
    np.testing.assert_array_equal(np.take_along_axis(d.data, positions.data, 2), values.data)
    with pytest.raises(ValueError, match=r"conv1d: expected a 3-D input \(N, C, L\), got shape \(2, 4\)"):
        F.conv1d(Tensor(np.ones((2, 4))), w)


def test_layers_take_groups_with_pytorchs_weight_layout_and_init():
    conv = nets.Conv2d(4, 6, 3, groups=2, rng=np.random.default_rng(0))
    assert conv.weight.shape == (6, 2, 3, 3) and np.abs(conv.weight.data).max() <= 1 / np.sqrt(2 * 9)
    depthwise = nets.Conv2d(4, 4, 3, groups=4, padding=1)
    assert depthwise.weight.shape == (4, 1, 3, 3)
    assert depthwise(Tensor(np.ones((1, 4, 5, 5), np.float32))).shape == (1, 4, 5, 5)
    up = nets.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2)
    assert up.weight.shape == (4, 3, 4, 4) and np.abs(up.weight.data).max() <= 1 / np.sqrt(3 * 16)
    assert up(Tensor(np.ones((1, 4, 3, 3), np.float32))).shape == (1, 6, 6, 6)
    with pytest.raises(ValueError, match="Conv2d: in_channels 4 and out_channels 6 must be divisible by groups=4"):
        nets.Conv2d(4, 6, 3, groups=4)
    conv1 = nets.Conv1d(4, 6, 3, stride=2, groups=2)
    assert conv1.weight.shape == (6, 2, 3) and conv1(Tensor(np.ones((2, 4, 9), np.float32))).shape == (2, 6, 4)
    x = Tensor(np.arange(18.0).reshape(1, 2, 9))
    assert nets.MaxPool1d(3, ceil_mode=True)(x).shape == (1, 2, 3) and nets.AvgPool1d(2)(x).shape == (1, 2, 4)
    pooled, indices = nets.MaxPool2d(2, return_indices=True)(x.reshape(1, 2, 3, 3))
    assert pooled.shape == (1, 2, 1, 1) and indices.data.ravel().tolist() == [4, 4]
    assert nets.AvgPool2d(2, ceil_mode=True, count_include_pad=False)(x.reshape(1, 2, 3, 3)).shape == (1, 2, 2, 2)


def test_second_derivatives_through_the_new_options():
    """The options are built from differentiable ops (pad, im2col, indexing, sums), so create_graph works."""
    from test_ops import second_derivative_check
    rng = np.random.default_rng(5)
    x = distinct(rng, 1, 2, 6, 7)
    second_derivative_check(lambda t: F.max_pool2d(t, 3, 2, 1, dilation=2, ceil_mode=True) ** 2, x)
    second_derivative_check(lambda t: F.avg_pool2d(t ** 2, 3, 2, 1, ceil_mode=True, count_include_pad=False), x)
    second_derivative_check(lambda t: F.max_unpool2d(t ** 2, np.arange(4).reshape(1, 1, 2, 2) * 3, 2), t64(rng, 1, 1, 2, 2))
    second_derivative_check(lambda t, w: F.conv1d(t, w, stride=2, groups=2) ** 2, t64(rng, 1, 2, 7), t64(rng, 4, 1, 3))
