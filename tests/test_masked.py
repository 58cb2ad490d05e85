"""nets.MaskedLinear and nets.MaskedConv2d: gradients (float64, random projection), masks as buffers,
masked weights receive zero gradient, the causal window of type A and type B convs, bad input."""
import numpy as np
import pytest

import nets
from autodiff import Tensor, gradcheck
from nets.masked import causal_mask


def t64(a, grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def random_mask(shape, rng):
    return (rng.random(shape) < 0.5).astype(np.float64)


# ==================================================================== gradients
def test_masked_linear_gradcheck(rng):
    layer = nets.MaskedLinear(5, 4, mask=random_mask((4, 5), rng), dtype=np.float64, rng=rng)
    x = t64(rng.standard_normal((3, 5)))
    assert gradcheck(lambda x, w, b: layer(x), x, layer.weight, layer.bias)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv2d_gradcheck(rng, mask_type):
    layer = nets.MaskedConv2d(2, 3, 3, mask_type, dtype=np.float64, rng=rng)
    x = t64(rng.standard_normal((2, 2, 4, 5)))
    assert gradcheck(lambda x, w, b: layer(x), x, layer.weight, layer.bias)


def test_masked_weights_get_zero_gradient_and_the_forward_uses_mask_times_weight(rng):
    mask = random_mask((4, 6), rng)
    layer = nets.MaskedLinear(6, 4, mask=mask, dtype=np.float64, rng=rng)
    x = rng.standard_normal((3, 6))
    y = layer(Tensor(x))
    np.testing.assert_allclose(y.data, x @ (mask * layer.weight.data).T + layer.bias.data)
    (y * Tensor(rng.standard_normal(y.shape))).sum().backward()
    assert np.all(layer.weight.grad[mask == 0] == 0)
    assert np.all(layer.weight.grad[mask == 1] != 0)


def test_mask_is_a_buffer_not_a_parameter(rng):
    layer = nets.MaskedConv2d(1, 2, 5, "A", rng=rng)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert "mask" in layer.state_dict()
    other = nets.MaskedConv2d(1, 2, 5, "B", rng=rng)
    assert not np.array_equal(other.mask, layer.mask)
    other.load_state_dict(layer.state_dict())            # the mask travels with the checkpoint
    np.testing.assert_array_equal(other.mask, layer.mask)
    assert layer.double().mask.dtype == np.float64


# ==================================================================== the causal window
def causal_dependence(layer, shape):
    """dep[i, j, a, b] = True where output (i, j) (any channel) has a non-zero gradient wrt input (a, b)."""
    _, _, H, W = shape
    x = t64(np.random.default_rng(0).standard_normal(shape))
    dep = np.zeros((H, W, H, W), bool)
    for i in range(H):
        for j in range(W):
            x.grad = None
            out = layer(x)
            seed = np.zeros(out.shape)
            seed[:, :, i, j] = 1.0
            (out * Tensor(seed)).sum().backward()
            dep[i, j] = np.any(x.grad != 0, axis=(0, 1))
    return dep


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.grades("pixelcnn_masks")
def test_conv_output_depends_exactly_on_its_causal_window(mask_type):
    """Output (i, j) of a 5x5 masked conv sees input (a, b) iff (a, b) is in the kernel's window and comes
    before (i, j) in raster order (type A) or at it or before (type B)."""
    H, W, k = 6, 7, 5
    layer = nets.MaskedConv2d(2, 3, k, mask_type, dtype=np.float64, rng=np.random.default_rng(1))
    dep = causal_dependence(layer, (1, 2, H, W))
    for i in range(H):
        for j in range(W):
            rows, cols = np.indices((H, W))
            in_window = (np.abs(rows - i) <= k // 2) & (np.abs(cols - j) <= k // 2)
            before = (rows < i) | ((rows == i) & (cols < j))
            at = (rows == i) & (cols == j)
            allowed = in_window & (before | (at if mask_type == "B" else False))
            np.testing.assert_array_equal(dep[i, j], allowed, err_msg=f"output ({i}, {j}), type {mask_type}")


@pytest.mark.grades("pixelcnn_masks")
def test_causal_masks_of_a_3x3_kernel():
    np.testing.assert_array_equal(causal_mask((3, 3), "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask((3, 3), "B"), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])


# ==================================================================== bad input
def test_bad_masks_and_arguments_are_refused_clearly(rng):
    with pytest.raises(ValueError, match=r"weight's shape \(4, 6\)"):
        nets.MaskedLinear(6, 4, mask=np.ones((6, 4)))
    with pytest.raises(ValueError, match="only 0s and 1s"):
        nets.MaskedLinear(2, 2, mask=np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="mask_type must be 'A' or 'B'"):
        nets.MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(ValueError, match="odd height and width"):
        nets.MaskedConv2d(1, 1, 4, "A")
    with pytest.raises(ValueError, match="last dimension 6"):
        nets.MaskedLinear(6, 4)(Tensor(np.ones((2, 5), np.float32)))
