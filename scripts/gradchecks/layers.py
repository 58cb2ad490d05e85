"""Rows: the losses (nets/losses.py) and the layers of nets, each checked for its input and every parameter
(in float64 via .double())."""
from typing import Callable

import numpy as np

import nets
from autodiff import Tensor
from nets import losses as L
from . import away_from_zero, check, constant, distinct, probabilities, real, simple


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


class _FirstOutput(nets.Module):
    """A flow step's y and its log-determinant (forward -> (y, log_det)), summed into one output."""
    def __init__(self, step):
        super().__init__()
        self.step = step

    def forward(self, x):
        y, log_det = self.step(x)
        return y * 1.0 + log_det.reshape(-1, 1)


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
layer_check("Conv2d", "4->4 groups 2 k3", lambda r: nets.Conv2d(4, 4, 3, groups=2, rng=r),
            lambda r: real(r, 1, 4, 4, 4))
layer_check("Conv1d", "2->3 k3 stride 2", lambda r: nets.Conv1d(2, 3, 3, stride=2, rng=r), lambda r: real(r, 2, 2, 7))
layer_check("MaxPool2d", "k2, no ties", lambda r: nets.MaxPool2d(2), lambda r: distinct(r, 1, 2, 4, 4))
layer_check("MaxPool1d", "k3 s2 ceil_mode", lambda r: nets.MaxPool1d(3, 2, ceil_mode=True),
            lambda r: distinct(r, 1, 2, 8))
layer_check("AvgPool1d", "k2", lambda r: nets.AvgPool1d(2), lambda r: real(r, 1, 2, 6))
layer_check("Invertible1x1Conv", "(N, 16) as 4x4 images", lambda r: _FirstOutput(nets.Invertible1x1Conv((4, 4), rng=r)),
            lambda r: real(r, 2, 16))
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
