"""The fast backend against the reference engine: every fast kernel, forward and backward, on shapes that
take it (asserted with autodiff.fast.taken), in float64; second derivatives through fast nodes; and the
switch itself (the core never imports the fast package; with the reference backend no fast line runs)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import autodiff
import autodiff.functional as F
import nets
from autodiff import Tensor, use_backend
from conftest import ROOT


def close(a, b, rtol=1e-10):
    """Norm-wise relative agreement: max |a - b| <= rtol max |b| (elementwise ratios blow up near 0)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert np.abs(a - b).max(initial=0) <= rtol * max(np.abs(b).max(initial=0), 1e-300), np.abs(a - b).max()


def both_backends(make, kernel: str, seed=0):
    """Run make(rng) -> (output, inputs) and a backward with a random projection under each backend;
    assert the fast run took `kernel`; return [(output, grads)] for fast, then reference."""
    from autodiff.fast import taken
    results = []
    for backend in ("fast", "reference"):
        with use_backend(backend), taken() as seen:
            out, inputs = make(np.random.default_rng(seed))
            out.backward(np.random.default_rng(seed + 1).standard_normal(out.shape).astype(out.dtype))
        assert (seen[kernel] > 0) == (backend == "fast"), (kernel, dict(seen))
        results.append((out.data, [t.grad for t in inputs]))
    return results


def t(rng, *shape, scale=1.0):
    return Tensor(scale * rng.standard_normal(shape), requires_grad=True)


CASES = {   # kernel -> make(rng) -> (output, inputs that require grad)
    "conv2d winograd": lambda rng: (lambda x, w, b: (F.conv2d(x, w, b, padding=1), (x, w, b)))(
        t(rng, 3, 16, 9, 9), t(rng, 16, 16, 3, 3, scale=0.1), t(rng, 16)),
    "conv_transpose2d winograd": lambda rng: (lambda x, w, b: (F.conv_transpose2d(x, w, b, 2, 1), (x, w, b)))(
        t(rng, 3, 16, 7, 7), t(rng, 16, 24, 4, 4, scale=0.1), t(rng, 24)),
    "conv2d im2col": lambda rng: (lambda x, w, b: (F.conv2d(x, w, b, (2, 1), 1, (1, 2)), (x, w, b)))(
        t(rng, 3, 2, 9, 8), t(rng, 4, 2, 3, 3), t(rng, 4)),
    "conv_transpose2d im2col": lambda rng: (lambda x, w: (F.conv_transpose2d(x, w, None, 2, 1, 1), (x, w)))(
        t(rng, 3, 2, 5, 4), t(rng, 2, 3, 3, 3)),
    "max_pool2d": lambda rng: (lambda x: (F.max_pool2d(x, 3, 2, 1), (x,)))(
        Tensor(np.repeat(rng.standard_normal((2, 3, 4, 8)), 2, axis=2), requires_grad=True)),   # ties
    "avg_pool2d": lambda rng: (lambda x: (F.avg_pool2d(x, 3, 2, 1), (x,)))(t(rng, 2, 3, 8, 7)),
    "batch_norm": lambda rng: (lambda x, g, b: (F.batch_norm(x, g, b, np.zeros(3), np.ones(3), True), (x, g, b)))(
        t(rng, 4, 3, 5, 5), t(rng, 3), t(rng, 3)),
    "lstm fused": lambda rng: (lambda lstm, x: (lstm(x)[0], (x, *lstm.parameters())))(
        nets.LSTM(3, 5, 2, dtype=np.float64, rng=rng), t(rng, 4, 2, 3)),
}


@pytest.mark.parametrize("kernel", list(CASES))
def test_fast_kernel_equals_its_reference_forward_and_backward(kernel):
    (fast_out, fast_grads), (ref_out, ref_grads) = both_backends(CASES[kernel], kernel)
    close(fast_out, ref_out)
    for a, b in zip(fast_grads, ref_grads):
        close(a, b)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2)])
def test_fast_max_pool_routes_ties_to_the_first_maximum(kernel, stride):
    """Every pattern of ties in a window (each nonempty set of offsets holding the maximum, one channel
    each): the gradient goes to the first offset in row-major order, in the fast version as in the reference."""
    patterns = [[i for i in range(kernel * kernel) if mask >> i & 1] for mask in range(1, 2 ** (kernel * kernel))]
    x = np.zeros((1, len(patterns), kernel, kernel))
    for channel, offsets in enumerate(patterns):
        x[0, channel].reshape(-1)[offsets] = 1.0
    x = np.tile(x, (2, 1, 2, 2))                      # two images, 2 x 2 windows (overlapping ones for 3/2)
    grads = []
    for backend in ("fast", "reference"):
        with use_backend(backend):
            xt = Tensor(x, requires_grad=True)
            F.max_pool2d(xt, kernel, stride).backward(np.random.default_rng(0).standard_normal(
                F.max_pool2d(Tensor(x), kernel, stride).shape))
        grads.append(xt.grad)
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("op", ["matmul", "linear", "linear without bias", "sigmoid", "tanh", "leaky_relu"])
def test_fast_elementwise_ops_equal_the_reference(op):
    make = {"matmul": lambda rng: (lambda a, b: (a @ b.T, (a, b)))(t(rng, 5, 7), t(rng, 3, 7)),
            "linear": lambda rng: (lambda x, w, b: (F.linear(x, w, b), (x, w, b)))(t(rng, 5, 7), t(rng, 3, 7), t(rng, 3)),
            "linear without bias": lambda rng: (lambda x, w: (F.linear(x, w), (x, w)))(t(rng, 1, 7), t(rng, 3, 7)),
            "sigmoid": lambda rng: (lambda x: (F.sigmoid(x), (x,)))(t(rng, 4, 6, scale=3)),
            "tanh": lambda rng: (lambda x: (F.tanh(x), (x,)))(t(rng, 4, 6)),
            "leaky_relu": lambda rng: (lambda x: (F.leaky_relu(x, 0.2), (x,)))(t(rng, 4, 6))}[op]
    results = []
    for backend in ("fast", "reference"):
        with use_backend(backend):
            out, inputs = make(np.random.default_rng(0))
            assert (out._recompute is not None) == (backend == "fast")       # built by the fast version
            out.backward(np.random.default_rng(1).standard_normal(out.shape))
        results.append((out.data, [x.grad for x in inputs]))
    close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        close(a, b)


def test_an_acting_agents_forward_is_the_references_bit_for_bit():
    """rl.common.forward_no_grad: the fast version (no Tensor per op) on every agent's kind of network, one
    observation and a batch; a network with another layer is left to the reference."""
    from autodiff.fast import taken
    from rl.common import forward_no_grad
    from rl.dqn import QNetwork
    rng = np.random.default_rng(0)
    networks = [nets.Sequential(nets.Linear(4, 32, rng=rng), nets.Tanh(), nets.Linear(32, 2, rng=rng)),
                nets.mlp((4, 16, 16, 3), rng=rng), QNetwork(4, 2, (8, 8), rng=rng)]
    for net in networks:
        for obs in (rng.standard_normal(4), rng.standard_normal((5, 4)).astype(np.float32)):
            with use_backend("fast"), taken() as seen:
                fast = forward_no_grad(net, obs)
            with use_backend("reference"):
                reference = forward_no_grad(net, obs)
            assert seen["forward_no_grad"] == 1
            assert fast.dtype == reference.dtype == np.float32 and fast.shape == reference.shape
            np.testing.assert_array_equal(fast, reference)
    other = nets.Sequential(nets.Linear(4, 3, rng=rng), nets.Sigmoid())
    with use_backend("fast"), taken() as seen:
        forward_no_grad(other, np.ones(4))
    assert seen["forward_no_grad"] == 0


def test_batch_norm_eval_and_running_statistics_equal_the_reference():
    stats = {}
    for backend in ("fast", "reference"):
        rng = np.random.default_rng(0)
        mean, var = np.zeros(3), np.ones(3)
        x, g, b = t(rng, 6, 3), t(rng, 3), t(rng, 3)
        with use_backend(backend):
            F.batch_norm(x, g, b, mean, var, True).sum()                     # updates the running statistics
            out = F.batch_norm(x, g, b, mean, var, False)
            out.backward(np.ones(out.shape))
        stats[backend] = (mean, var, out.data, x.grad, g.grad, b.grad)
    for a, b in zip(stats["fast"], stats["reference"]):
        close(a, b)


# ==================================================================== Adam
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("path, sizes", [("adam flat", [(8, 4), (8,), (3, 8), (3,)]),
                                         ("adam pieces", [(300, 400), (300,), (7, 300), (7,)])])
def test_fast_adam_equals_the_papers_update(path, sizes, weight_decay):
    """Both fast paths against the reference (the paper's lines), float64, across a checkpoint round trip
    and a step in which one parameter has no gradient (its own step count then lags)."""
    from autodiff.fast import taken
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s) for s in sizes]
    grads = [[rng.standard_normal(s) for s in sizes] for _ in range(6)]
    results = {}
    for backend in ("fast", "reference"):
        params = [nets.Parameter(x.copy()) for x in start]
        opt = nets.Adam(params, lr=0.01, weight_decay=weight_decay)
        with use_backend(backend), taken() as seen:
            for k, step_grads in enumerate(grads):
                for p, g in zip(params, step_grads):
                    p.grad = None if (k == 4 and p is params[1]) else g
                opt.step()
                if k == 2:                                  # resume from a checkpoint mid-way
                    state = opt.state_dict()
                    opt = nets.Adam(params, lr=0.01, weight_decay=weight_decay)
                    opt.load_state_dict(state)
        assert (seen[path] > 0) == (backend == "fast")
        results[backend] = [p.data for p in params], opt.state_dict()
    for a, b in zip(results["fast"][0], results["reference"][0]):
        close(a, b)
    for key, value in results["reference"][1].items():
        close(np.asarray(results["fast"][1][key], value.dtype), value)


# ==================================================================== second derivatives through fast nodes
def test_create_graph_through_fast_ops_uses_the_reference_rules():
    """A Hessian-vector product of a conv net with batch norm and a fused LSTM: the same with both backends."""
    def hvp(backend):
        rng = np.random.default_rng(0)
        conv = nets.Conv2d(16, 16, 3, padding=1, dtype=np.float64, rng=rng)
        lstm = nets.LSTM(16, 4, dtype=np.float64, rng=rng)
        bn = nets.BatchNorm2d(16, dtype=np.float64)
        x = Tensor(rng.standard_normal((2, 16, 4, 4)))
        params = conv.parameters() + lstm.parameters() + bn.parameters()
        v = [rng.standard_normal(p.shape) for p in params]
        with use_backend(backend):
            h = F.tanh(bn(conv(x)))                                     # (2, 16, 4, 4)
            seq = h.reshape(2, 16, 16).transpose(2, 0, 1)              # (T = 16, N = 2, 16)
            loss = (lstm(seq)[0] ** 2).sum()
            grads = autodiff.grad(loss, params, create_graph=True)
            dot = sum((g * Tensor(vi)).sum() for g, vi in zip(grads, v))
            return [g.data for g in autodiff.grad(dot, params)]
    flat = lambda arrays: np.concatenate([a.ravel() for a in arrays])
    close(flat(hvp("fast")), flat(hvp("reference")), rtol=1e-10)


# ==================================================================== the switch
CORE = [os.path.join(folder, name) for folder in ("", "ops")
        for name in os.listdir(os.path.join(ROOT, "autodiff", folder)) if name.endswith(".py")]


@pytest.mark.parametrize("name", CORE)
def test_the_core_never_imports_the_fast_package(name):
    """The dependency points one way: no import of autodiff.fast in the reference engine's files (the
    backend switch loads it by name, backend.py's importlib call)."""
    tree = ast.parse(open(os.path.join(ROOT, "autodiff", name)).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            names = [module] + [f"{module}.{a.name}" for a in node.names]
            assert not any(n.lstrip(".").startswith("fast") or "autodiff.fast" in n for n in names), (name, names)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("autodiff.fast") for a in node.names), name


def test_with_the_reference_backend_the_fast_package_is_never_imported():
    code = ("import sys, numpy as np, autodiff, nets, autodiff.functional as F\n"
            "from autodiff import Tensor\n"
            "conv, lstm = nets.Conv2d(16, 16, 3), nets.LSTM(4, 8)\n"
            "opt = nets.Adam(conv.parameters() + lstm.parameters())\n"
            "x = Tensor(np.ones((2, 16, 6, 6), np.float32))\n"
            "loss = F.max_pool2d(F.leaky_relu(conv(x)), 2).sum() + lstm(Tensor(np.ones((3, 2, 4), np.float32)))[0].sum()\n"
            "loss.backward(); opt.step()\n"
            "print(sorted(m for m in sys.modules if m.startswith('autodiff.fast')))\n")
    env = dict(os.environ, NUMPY_DL_LAB_BACKEND="reference", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_with_the_reference_backend_no_line_of_the_fast_package_runs():
    """Count calls into autodiff/fast while a conv net, an LSTM and Adam train under use_backend("reference")
    (the fast package is loaded in this process): none."""
    import autodiff.fast  # noqa: F401  (loaded, registered, and still not called)
    fast_dir = os.path.join(ROOT, "autodiff", "fast")
    calls = []

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(fast_dir):
            calls.append(frame.f_code.co_name)
    rng = np.random.default_rng(0)
    with use_backend("reference"):
        conv, bn, lstm = nets.Conv2d(16, 16, 3, rng=rng), nets.BatchNorm2d(16), nets.LSTM(4, 8, rng=rng)
        opt = nets.Adam(conv.parameters() + bn.parameters() + lstm.parameters())
        sys.setprofile(profiler)
        try:
            x = Tensor(rng.standard_normal((2, 16, 6, 6)).astype(np.float32))
            h = F.avg_pool2d(F.max_pool2d(F.leaky_relu(bn(conv(x))), 2), 1)
            loss = F.sigmoid(h).sum() + F.tanh(lstm(Tensor(np.ones((3, 2, 4), np.float32)))[0]).sum()
            loss.backward()
            opt.step()
        finally:
            sys.setprofile(None)
    assert calls == []


def test_use_backend_is_a_function_and_a_context_manager():
    before = autodiff.current_backend()
    with use_backend("reference"):
        assert autodiff.current_backend() == "reference"
        with use_backend("fast"):
            assert autodiff.current_backend() == "fast"
        assert autodiff.current_backend() == "reference"
    assert autodiff.current_backend() == before
    with pytest.raises(ValueError, match=r"backend must be one of \('reference', 'fast'\), got 'quick'"):
        use_backend("quick")


def test_a_bad_backend_in_the_environment_is_one_clear_error():
    env = dict(os.environ, NUMPY_DL_LAB_BACKEND="turbo", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", "import autodiff"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "NUMPY_DL_LAB_BACKEND: expected one of reference, fast, got 'turbo'" in result.stderr
