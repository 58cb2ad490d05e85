"""nets: Module bookkeeping, state and atomic checkpoints, layers (forward, init, gradients), init
functions and seeding. Conv/BatchNorm/Dropout layers are checked lightly here (their functions are
tested in test_conv.py and test_norm.py)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import autodiff.functional as F
import nets
from autodiff import Tensor, gradcheck
from nets import init
from nets.checkpoint import load_checkpoint, load_npz, save_checkpoint, save_json_atomic, save_npz_atomic


# ============================================================================ small models
class Block(nets.Module):
    def __init__(self):
        super().__init__()
        self.scale = nets.Parameter(np.ones(2))
        self.linear = nets.Linear(2, 3, rng=np.random.default_rng(0))
        self.register_buffer("count", np.zeros(1))

    def forward(self, x):
        return self.linear(x * self.scale)


class Net(nets.Module):
    def __init__(self):
        super().__init__()
        self.first = nets.Parameter(np.zeros(1))     # set first: listed first
        self.block = Block()
        self.blocks = nets.ModuleList([Block(), Block()])
        self.head = nets.Sequential(nets.Linear(3, 4), nets.ReLU(), nets.Linear(4, 1))
        self.last = nets.Parameter(np.zeros(2))
        self.note = "plain attributes are not registered"


NET_PARAMETERS = ["first", "last", "block.scale", "block.linear.weight", "block.linear.bias",
                  "blocks.0.scale", "blocks.0.linear.weight", "blocks.0.linear.bias",
                  "blocks.1.scale", "blocks.1.linear.weight", "blocks.1.linear.bias",
                  "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]


# ============================================================================ Module
def test_parameters_are_named_in_insertion_order():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == NET_PARAMETERS       # a module's own parameters, then each child's, depth first
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, nets.Parameter) and p.requires_grad for p in net.parameters())
    assert net.num_parameters() == sum(p.size for p in net.parameters())
    assert [name for name, _ in net.named_buffers()] == ["block.count", "blocks.0.count", "blocks.1.count"]
    assert net.note == "plain attributes are not registered"


def test_shared_parameter_is_counted_once():
    encoder, decoder = nets.Linear(3, 3), nets.Linear(3, 3)
    decoder.weight = encoder.weight                    # tied weights
    model = nets.Sequential(encoder, decoder)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.bias"]
    assert len(model.parameters()) == 3
    nets.SGD(model.parameters(), lr=0.1)               # an optimizer accepts it (no duplicate)


def test_reassigning_an_attribute_moves_it_between_registries():
    layer = nets.Linear(2, 2)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"] and layer.bias is None
    layer.bias = nets.Parameter(np.zeros(2))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    net = Net()
    net.block = nets.Identity()
    assert not any(n.startswith("block.") for n, _ in net.named_parameters())


def test_buffer_assignment_updates_the_buffer():
    block = Block()
    block.count = np.array([5.0])
    assert block.state_dict()["count"].tolist() == [5.0]


def test_train_and_eval_reach_every_child():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert len(net.modules()) == 12 and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.head[1].training


def test_unknown_attribute_raises_attribute_error():
    net = Net()
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'decoder'"):
        net.decoder
    assert not hasattr(net, "missing") and getattr(net, "missing", 7) == 7


def test_module_without_super_init_is_a_clear_error():
    class Broken(nets.Module):
        def __init__(self):
            self.w = nets.Parameter(np.zeros(1))
    with pytest.raises(RuntimeError, match=r"must call super\(\).__init__\(\)"):
        Broken()


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        nets.Module()(Tensor(np.zeros(1)))


def test_sequential_and_module_list():
    rng = np.random.default_rng(0)
    a, b = nets.Linear(2, 3, rng=rng), nets.Linear(3, 1, rng=rng)
    seq = nets.Sequential(a, nets.Tanh(), b)
    x = Tensor(rng.standard_normal((4, 2)))
    np.testing.assert_allclose(seq(x).data, b(F.tanh(a(x))).data)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is b and list(seq)[1].__class__ is nets.Tanh
    with pytest.raises(TypeError, match="item 1"):
        nets.Sequential(a, lambda x: x)
    modules = nets.ModuleList([a])
    modules.append(b)
    assert len(modules) == 2 and modules[1] is b and list(modules) == [a, b]
    assert [n for n, _ in modules.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(TypeError, match="expected a Module"):
        modules.append(np.zeros(2))
    assert "Linear(2, 3, bias=True)" in repr(seq)


def test_zero_grad_double_and_float():
    net = Net()
    for p in net.parameters():
        p.grad = np.ones_like(p.data)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(b.dtype == np.float64 for _, b in net.named_buffers())
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())


# ============================================================================ state
def test_state_dict_round_trip_reproduces_outputs():
    nets.manual_seed(1)
    source = Net()
    nets.manual_seed(2)
    target = Net()
    x = Tensor(np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32))
    assert not np.allclose(source.head(source.block(x)).data, target.head(target.block(x)).data)
    params_before = target.parameters()
    state = source.state_dict()
    assert list(state) == NET_PARAMETERS + ["block.count", "blocks.0.count", "blocks.1.count"]
    target.load_state_dict(state)
    np.testing.assert_array_equal(source.head(source.block(x)).data, target.head(target.block(x)).data)
    assert all(a is b for a, b in zip(params_before, target.parameters()))   # loaded in place
    state["last"][...] = 99                      # state_dict holds copies
    assert not np.any(source.last.data == 99)


def test_load_state_dict_names_missing_and_unexpected_keys():
    net = Net()
    state = net.state_dict()
    del state["head.0.bias"]
    with pytest.raises(KeyError, match=r"missing keys \['head.0.bias'\]"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["head.9.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"unexpected keys \['head.9.weight'\]"):
        net.load_state_dict(state)
    del state["first"]
    net.load_state_dict(state, strict=False)     # non-strict: loads what matches, ignores the rest


def test_load_state_dict_shape_mismatch_names_the_key():
    net = Net()
    state = net.state_dict()
    state["head.2.weight"] = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"'head.2.weight'.*\(2, 4\).*\(1, 4\)"):
        net.load_state_dict(state)


def test_save_and_load_npz(tmp_path):
    nets.manual_seed(3)
    source, target = Net(), Net()
    path = tmp_path / "model.npz"
    source.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]          # no temporary file left behind
    target.load(path)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    net = Net()
    path = tmp_path / "model.npz"
    net.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    net.last.data[...] = 5.0
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_interrupted_save_leaves_no_file_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", lambda file, **arrays: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        Net().save(tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Net().load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an .npz file"):
        load_npz(bad)


def test_checkpoint_sections_and_meta_round_trip(tmp_path):
    path = tmp_path / "run" / "checkpoint.npz"              # the directory is created
    model = {"w": np.arange(3.0)}
    optimizer = {"step": np.asarray(7), "0.m": np.ones((2, 2), np.float32)}
    save_checkpoint(path, meta={"epoch": 2, "rng": {"state": [1, 2]}, "loss": np.float32(0.5)},
                    model=model, optimizer=optimizer)
    loaded = load_checkpoint(path)
    assert loaded["meta"] == {"epoch": 2, "rng": {"state": [1, 2]}, "loss": 0.5}
    np.testing.assert_array_equal(loaded["model"]["w"], model["w"])
    assert int(loaded["optimizer"]["step"]) == 7 and loaded["optimizer"]["0.m"].dtype == np.float32
    plain = tmp_path / "plain.npz"
    save_npz_atomic(plain, {"a": np.zeros(1)})
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(plain)
    save_json_atomic(tmp_path / "m.json", {"x": np.arange(2), "y": np.int64(3)})
    assert (tmp_path / "m.json").read_text().replace(" ", "").replace("\n", "") == '{"x":[0,1],"y":3}'
    assert sorted(os.listdir(tmp_path)) == ["m.json", "plain.npz", "run"]
    assert os.listdir(tmp_path / "run") == ["checkpoint.npz"]


# ============================================================================ Linear
def test_linear_forward_is_x_w_transpose_plus_b():
    layer = nets.Linear(3, 2, rng=np.random.default_rng(0))
    assert layer.weight.shape == (2, 3) and layer.bias.shape == (2,)
    assert layer.weight.dtype == np.float32
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    x3 = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)   # extra leading axes
    np.testing.assert_allclose(layer(Tensor(x3)).data, x3 @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    no_bias = nets.Linear(3, 2, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match=r"last dimension 3, got shape \(4, 2\)"):
        layer(Tensor(np.zeros((4, 2), np.float32)))


def test_linear_uses_pytorchs_default_init():
    fan_in = 256
    layer = nets.Linear(fan_in, 1024, rng=np.random.default_rng(0))
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight.data, layer.bias.data):
        assert np.all(np.abs(p) <= bound)
    w = layer.weight.data
    assert np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)    # std of U(-a, a) is a / sqrt(3)
    assert abs(w.mean()) < 0.01 * bound


def _double(model):
    return model.double()


def test_linear_gradients():
    rng = np.random.default_rng(0)
    layer = _double(nets.Linear(3, 2, rng=rng))
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    assert gradcheck(lambda x, w, b: layer(x), x, layer.weight, layer.bias)


def test_mlp_gradients_through_every_parameter():
    rng = np.random.default_rng(1)
    model = _double(nets.Sequential(nets.Linear(3, 4, rng=rng), nets.Tanh(), nets.Linear(4, 2, rng=rng),
                                    nets.Sigmoid()))
    x = Tensor(rng.standard_normal((2, 3)))
    assert gradcheck(lambda *ps: model(x), *model.parameters())


@pytest.mark.parametrize("layer", [nets.ReLU(), nets.LeakyReLU(0.2), nets.Tanh(), nets.Sigmoid(), nets.Softplus(),
                                   nets.Identity()], ids=lambda m: type(m).__name__)
def test_activation_layers(layer):
    x = np.random.default_rng(2).uniform(-2, 2, size=(3, 4))
    x[np.abs(x) < 0.1] = 0.5                                        # away from relu's kink
    functions = {"ReLU": F.relu, "LeakyReLU": lambda t: F.leaky_relu(t, 0.2), "Tanh": F.tanh,
                 "Sigmoid": F.sigmoid, "Softplus": F.softplus, "Identity": lambda t: t}
    np.testing.assert_array_equal(layer(Tensor(x)).data, functions[type(layer).__name__](Tensor(x)).data)
    assert gradcheck(layer, Tensor(x, requires_grad=True))
    assert layer.parameters() == []


def test_flatten_and_unflatten():
    x = Tensor(np.random.default_rng(3).standard_normal((2, 3, 2, 2)), requires_grad=True)
    flat = nets.Flatten()(x)
    assert flat.shape == (2, 12)
    np.testing.assert_array_equal(flat.data, x.data.reshape(2, 12))
    back = nets.Unflatten(1, (3, 2, 2))(flat)
    np.testing.assert_array_equal(back.data, x.data)
    assert nets.Flatten(start_dim=2)(x).shape == (2, 3, 4)
    assert nets.Unflatten(-1, (2, 2))(Tensor(np.zeros((5, 4)))).shape == (5, 2, 2)
    assert gradcheck(lambda x: nets.Unflatten(1, (4, 3))(nets.Flatten()(x)), x)
    with pytest.raises(ValueError, match=r"axis 1 of shape \(2, 12\) has 12 elements, cannot become \(5, 2\)"):
        nets.Unflatten(1, (5, 2))(flat)


# ============================================================================ init
def _variance_ok(sample, expected_var, rel=0.03):
    assert sample.var() == pytest.approx(expected_var, rel=rel)
    assert abs(sample.mean()) < 0.02 * math.sqrt(expected_var)


def test_xavier_and_kaiming_variances():
    rng = np.random.default_rng(0)
    shape = (256, 128, 3, 3)                   # a conv weight: fan_in = 128 * 9, fan_out = 256 * 9
    fan_in, fan_out = init.fans(shape)
    assert (fan_in, fan_out) == (1152, 2304)
    _variance_ok(init.xavier_uniform(shape, rng=rng), 2 / (fan_in + fan_out))
    _variance_ok(init.xavier_normal(shape, rng=rng), 2 / (fan_in + fan_out))
    _variance_ok(init.kaiming_normal(shape, rng=rng), 2 / fan_in)
    _variance_ok(init.kaiming_uniform(shape, rng=rng), 2 / fan_in)
    _variance_ok(init.xavier_uniform((500, 300), gain=2.0, rng=rng), 4 * 2 / 800)
    a = math.sqrt(6 / (fan_in + fan_out))
    w = init.xavier_uniform(shape, rng=rng)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.99 * a
    assert init.glorot_uniform is init.xavier_uniform and init.he_normal is init.kaiming_normal


def test_normal_init_and_dtypes():
    w = init.normal((400, 500), rng=np.random.default_rng(1))
    assert w.dtype == np.float32
    assert w.std() == pytest.approx(0.02, rel=0.01) and abs(w.mean()) < 1e-3
    w = init.normal((400, 500), mean=1.0, std=0.5, dtype=np.float64, rng=np.random.default_rng(1))
    assert w.dtype == np.float64 and w.mean() == pytest.approx(1.0, abs=5e-3)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fans((3,))


def test_manual_seed_makes_initialisation_reproducible():
    nets.manual_seed(0)
    a = nets.Linear(4, 3)
    nets.manual_seed(0)
    b = nets.Linear(4, 3)
    c = nets.Linear(4, 3)                      # the generator moved on
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(b.weight.data, c.weight.data)
    assert nets.get_rng() is nets.get_rng(None)
    # a layer given its own rng does not touch the global generator
    nets.manual_seed(5)
    nets.Linear(4, 3, rng=np.random.default_rng(9))
    d = nets.Linear(4, 3)
    nets.manual_seed(5)
    np.testing.assert_array_equal(d.weight.data, nets.Linear(4, 3).weight.data)


# ============================================================================ conv, pooling, batch norm, dropout layers
def test_conv_layers_shapes_and_init():
    pytest.importorskip("autodiff.conv")
    rng = np.random.default_rng(0)
    conv = nets.Conv2d(3, 8, 3, stride=2, padding=1, rng=rng)
    assert conv.weight.shape == (8, 3, 3, 3) and conv.bias.shape == (8,)
    assert np.abs(conv.weight.data).max() <= 1 / math.sqrt(3 * 9)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = conv(x)
    assert y.shape == (2, 8, 4, 4) and y.dtype == np.float32
    convT = nets.ConvTranspose2d(8, 3, 4, stride=2, padding=1, rng=rng)
    assert convT.weight.shape == (8, 3, 4, 4)                       # (C_in, C_out, KH, KW)
    assert np.abs(convT.weight.data).max() <= 1 / math.sqrt(3 * 16)
    assert convT(y).shape == (2, 3, 8, 8)
    assert nets.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    assert nets.AvgPool2d(2, stride=1)(x).shape == (2, 3, 7, 7)


def test_conv_layer_gradients():
    pytest.importorskip("autodiff.conv")
    rng = np.random.default_rng(1)
    model = nets.Sequential(nets.Conv2d(2, 3, 3, padding=1, rng=rng), nets.Tanh(),
                            nets.ConvTranspose2d(3, 2, 2, stride=2, rng=rng)).double()
    x = Tensor(rng.standard_normal((1, 2, 3, 3)), requires_grad=True)
    assert gradcheck(lambda x, *ps: model(x), x, *model.parameters())


@pytest.mark.parametrize("layer, shape", [(nets.BatchNorm1d, (6, 3)), (nets.BatchNorm2d, (4, 3, 2, 2))])
def test_batch_norm_layers_modes_and_state(layer, shape):
    pytest.importorskip("autodiff.norm")
    bn = layer(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32) * 3 + 1
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    y = bn(Tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5)
    assert not np.allclose(bn.running_mean, 0)                      # updated in training
    bn.eval()
    running = bn.running_mean.copy()
    y_eval = bn(Tensor(x[:1])).data                                 # batch of one in eval
    shape_c = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x[:1] - running.reshape(shape_c)) / np.sqrt(bn.running_var.reshape(shape_c) + bn.eps)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.running_mean, running)         # not updated in eval
    with pytest.raises(ValueError, match="channels on axis 1"):
        bn(Tensor(np.zeros((2, 4) + shape[2:], np.float32)))


def test_dropout_layer():
    pytest.importorskip("autodiff.norm")
    drop = nets.Dropout(0.25, rng=np.random.default_rng(0))
    x = Tensor(np.ones((100, 100), np.float32))
    y = drop(x).data
    assert (y == 0).mean() == pytest.approx(0.25, abs=0.02)
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        nets.Dropout(1.0)
