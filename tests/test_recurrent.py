"""Recurrent layers: against a naive NumPy loop over time, gradient checks of every cell and of a 2-layer
batch-first LSTM, the fused LSTM against the composed one, truncated BPTT, clipping, Embedding."""
from __future__ import annotations

import math

import numpy as np
import pytest

import autodiff.functional as F
import nets
from autodiff import GradcheckError, Tensor, gradcheck, use_backend
from nets.recurrent import GRU, LSTM, RNN, Embedding, detach_state, gru_cell, lstm_cell, rnn_cell


def t64(rng, *shape, scale=1.0):
    return Tensor(scale * rng.standard_normal(shape), requires_grad=True)


# ============================================================================ a naive NumPy oracle
def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def naive(kind, params, x, h0, c0=None, nonlinearity="tanh"):
    """Per-time-step loop in plain NumPy, one layer after the other. x (T, N, I); h0, c0 (L, N, H).
    params: {name: array} with PyTorch's names. Returns output (T, N, H), h_n, c_n."""
    L = h0.shape[0]
    hs_n, cs_n = [], []
    for k in range(L):
        w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
        b_ih, b_hh = params.get(f"bias_ih_l{k}", 0), params.get(f"bias_hh_l{k}", 0)
        h, c, outputs = h0[k], None if c0 is None else c0[k], []
        for t in range(x.shape[0]):
            gi, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if kind == "rnn":
                h = np.tanh(gi + gh) if nonlinearity == "tanh" else np.maximum(gi + gh, 0)
            elif kind == "lstm":
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                (xr, xz, xn), (hr, hz, hn) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
                r, z = sigmoid(xr + hr), sigmoid(xz + hz)
                h = (1 - z) * np.tanh(xn + r * hn) + z * h
            outputs.append(h)
        x = np.stack(outputs)
        hs_n.append(h)
        cs_n.append(c)
    return x, np.stack(hs_n), (np.stack(cs_n) if c0 is not None else None)


LAYERS = [("rnn", RNN, {}), ("rnn-relu", RNN, {"nonlinearity": "relu"}), ("lstm", LSTM, {}), ("gru", GRU, {})]


@pytest.mark.parametrize("name, cls, extra", LAYERS, ids=[l[0] for l in LAYERS])
@pytest.mark.parametrize("num_layers, batch_first, bias", [(1, False, True), (2, True, True), (2, False, False)])
@pytest.mark.grades("lstm_cell", "gru_cell")
def test_layers_match_a_naive_numpy_loop(name, cls, extra, num_layers, batch_first, bias, rng):
    T, N, I, H = 5, 3, 4, 6
    layer = cls(I, H, num_layers=num_layers, batch_first=batch_first, bias=bias, dtype=np.float64,
                rng=np.random.default_rng(7), **extra)
    x = rng.standard_normal((T, N, I))
    h0, c0 = rng.standard_normal((num_layers, N, H)), rng.standard_normal((num_layers, N, H))
    x_in = Tensor(x.transpose(1, 0, 2) if batch_first else x)
    kind = name.split("-")[0]
    if kind == "lstm":
        out, (h_n, c_n) = layer(x_in, (Tensor(h0), Tensor(c0)))
    else:
        out, h_n = layer(x_in, Tensor(h0))
    want_out, want_h, want_c = naive(kind, layer.state_dict(), x, h0, c0 if kind == "lstm" else None,
                                     extra.get("nonlinearity", "tanh"))
    got = out.data.transpose(1, 0, 2) if batch_first else out.data
    np.testing.assert_allclose(got, want_out, atol=1e-12)
    np.testing.assert_allclose(h_n.data, want_h, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(c_n.data, want_c, atol=1e-12)


@pytest.mark.parametrize("cls, gates", [(RNN, 1), (LSTM, 4), (GRU, 3)])
def test_pytorch_names_shapes_and_init(cls, gates):
    layer = cls(10, 16, num_layers=2, rng=np.random.default_rng(0))
    shapes = {name: p.shape for name, p in layer.named_parameters()}
    assert list(shapes) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert shapes["weight_ih_l0"] == (gates * 16, 10) and shapes["weight_ih_l1"] == (gates * 16, 16)
    assert shapes["weight_hh_l1"] == (gates * 16, 16) and shapes["bias_hh_l1"] == (gates * 16,)
    values = np.concatenate([p.data.ravel() for p in layer.parameters()])
    bound = 1 / math.sqrt(16)                                     # U(-1/sqrt(H), 1/sqrt(H))
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound and abs(values.mean()) < 0.02


def test_unbatched_input_and_default_zero_state(rng):
    lstm = LSTM(3, 5, dtype=np.float64, rng=np.random.default_rng(1))
    x = rng.standard_normal((4, 3))
    out, (h, c) = lstm(Tensor(x))
    assert out.shape == (4, 5) and h.shape == (1, 5) and c.shape == (1, 5)
    batched, (hb, _) = lstm(Tensor(x[:, None]), (Tensor(np.zeros((1, 1, 5))), Tensor(np.zeros((1, 1, 5)))))
    np.testing.assert_allclose(out.data, batched.data[:, 0], atol=1e-14)
    np.testing.assert_allclose(h.data, hb.data[:, 0], atol=1e-14)


# ============================================================================ gradient checks
def test_gradcheck_rnn_cell(rng):
    args = t64(rng, 3, 4), t64(rng, 3, 4), t64(rng, 4, 4, scale=0.5)
    assert gradcheck(lambda gx, h, w: rnn_cell(gx, h, w), *args)


@pytest.mark.grades("gru_cell")
def test_gradcheck_gru_cell(rng):
    args = t64(rng, 3, 12), t64(rng, 3, 4), t64(rng, 12, 4, scale=0.5), t64(rng, 12)
    assert gradcheck(gru_cell, *args)


@pytest.mark.grades("lstm_cell")
def test_gradcheck_lstm_cell(rng):
    args = t64(rng, 3, 16), t64(rng, 3, 4), t64(rng, 3, 4), t64(rng, 16, 4, scale=0.5)
    assert gradcheck(lambda gx, h, c, w: lstm_cell(gx, h, c, w), *args)


def test_gradcheck_fused_lstm(rng, fast_backend):
    from autodiff.fast.lstm import lstm_fused
    args = t64(rng, 4, 3, 16), t64(rng, 3, 4), t64(rng, 3, 4), t64(rng, 16, 4, scale=0.5)
    assert gradcheck(lstm_fused, *args)


def test_gradcheck_two_layer_batch_first_lstm_over_several_steps(rng):
    lstm = LSTM(3, 4, num_layers=2, batch_first=True, dtype=np.float64, rng=np.random.default_rng(2))
    x, h0, c0 = t64(rng, 2, 5, 3), t64(rng, 2, 2, 4), t64(rng, 2, 2, 4)

    def fn(x, h0, c0, *params):              # params are the layer's own Parameters, perturbed in place
        out, (h, c) = lstm(x, (h0, c0))
        return out, h, c
    assert gradcheck(fn, x, h0, c0, *lstm.parameters())


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_gradcheck_two_layer_rnn_and_gru(cls, rng):
    layer = cls(3, 4, num_layers=2, dtype=np.float64, rng=np.random.default_rng(3))
    x, h0 = t64(rng, 4, 2, 3), t64(rng, 2, 2, 4)
    assert gradcheck(lambda x, h0, *params: layer(x, h0), x, h0, *layer.parameters())


def test_gradcheck_catches_a_wrong_cell_derivative(rng):
    """The check can fail: an LSTM cell whose forget gate's derivative is dropped (c' = stop(f) c + i g)."""
    def broken(gx, h, c, w):
        a = gx + h @ w.T
        a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
        c_new = Tensor(F.sigmoid(a_f).data) * c + F.sigmoid(a_i) * F.tanh(a_g)
        return F.sigmoid(a_o) * F.tanh(c_new)
    args = t64(rng, 3, 16), t64(rng, 3, 4), t64(rng, 3, 4), t64(rng, 16, 4, scale=0.5)
    with pytest.raises(GradcheckError):
        gradcheck(broken, *args)


def test_cutting_a_sequence_into_steps_adds_every_step_gradient_into_one_array(rng):
    x = t64(rng, 4, 2, 3)
    assert gradcheck(lambda x: tuple(x[t] for t in range(4)), x)
    (x[1] * 2 + x[3]).sum().backward()
    np.testing.assert_array_equal(x.grad, np.array([0, 2, 0, 1])[:, None, None] * np.ones((4, 2, 3)))


def test_unroll_keeps_each_step_and_equals_forward(rng):
    """unroll's h_t are nodes of the graph: after backward() each has dL/dh_t, through every later step."""
    lstm = LSTM(3, 4, dtype=np.float64, rng=np.random.default_rng(2))
    x = t64(rng, 5, 2, 3)
    hs, (h, c) = lstm.unroll(x)
    out, (h2, _) = lstm(x)
    np.testing.assert_allclose(np.stack([t.data for t in hs]), out.data, atol=1e-13)
    (hs[-1] * hs[-1]).sum().backward()
    assert all(t.grad is not None for t in hs) and np.abs(hs[0].grad).sum() > 0


# ============================================================================ fast == reference
def test_fused_lstm_equals_the_reference_cells(rng):
    from autodiff.fast import taken
    outputs, grads = [], []
    x = rng.standard_normal((6, 4, 5))
    for backend in ("fast", "reference"):
        lstm = LSTM(5, 8, num_layers=2, dtype=np.float64, rng=np.random.default_rng(4))
        xt = Tensor(x, requires_grad=True)
        with use_backend(backend), taken() as seen:
            out, (h, c) = lstm(xt)
            w = np.random.default_rng(0).standard_normal(out.shape)
            ((out * Tensor(w)).sum() + (c * c).sum() + h.sum()).backward()
        assert (seen["lstm fused"] == 2) == (backend == "fast")
        outputs.append(out.data)
        grads.append([xt.grad] + [p.grad for p in lstm.parameters()])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-13)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-12)


# ============================================================================ truncated BPTT, clipping
def test_truncated_bptt_stops_at_the_chunk_boundary(rng):
    lstm = LSTM(3, 4, dtype=np.float64, rng=np.random.default_rng(5))
    first, second = Tensor(rng.standard_normal((5, 2, 3)), requires_grad=True), rng.standard_normal((5, 2, 3))
    _, state = lstm(first)
    carried = detach_state(state)
    out, _ = lstm(Tensor(second), carried)
    out.sum().backward()
    assert first.grad is None and all(s.grad is None for s in state)    # nothing flowed into chunk 1
    with_carry = [p.grad.copy() for p in lstm.parameters()]
    lstm.zero_grad()                                                     # same chunk from the same constant state
    out, _ = lstm(Tensor(second), tuple(Tensor(s.data) for s in state))
    out.sum().backward()
    for a, b in zip(with_carry, lstm.parameters()):
        np.testing.assert_allclose(a, b.grad, atol=1e-13)


def test_without_detaching_the_gradient_does_flow_into_the_previous_chunk(rng):
    lstm = LSTM(3, 4, dtype=np.float64, rng=np.random.default_rng(5))
    first = Tensor(rng.standard_normal((5, 2, 3)), requires_grad=True)
    _, state = lstm(first)
    out, _ = lstm(Tensor(rng.standard_normal((5, 2, 3))), state)
    out.sum().backward()
    assert first.grad is not None and np.abs(first.grad).max() > 0


def test_clipping_rescales_to_the_requested_global_norm(rng):
    params = [nets.Parameter(np.zeros(s)) for s in ((3, 4), (5,))]
    for p in params:
        p.grad = rng.standard_normal(p.shape) * 10
    before = [p.grad.copy() for p in params]
    norm = nets.recurrent.clip_grad_norm_(params, 2.0)
    assert norm == pytest.approx(math.sqrt(sum((g ** 2).sum() for g in before)))
    assert math.sqrt(sum((p.grad ** 2).sum() for p in params)) == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(params[0].grad / before[0], params[1].grad[0] / before[1][0], rtol=1e-12)
    small = [p.grad.copy() for p in params]
    nets.recurrent.clip_grad_norm_(params, 100.0)                         # below the limit: unchanged
    for p, g in zip(params, small):
        np.testing.assert_array_equal(p.grad, g)


# ============================================================================ Embedding, bad input
def test_embedding_looks_up_rows_and_adds_repeated_gradients():
    emb = Embedding(5, 3, dtype=np.float64, rng=np.random.default_rng(0))
    out = emb(np.array([[1, 3], [1, 1]]))
    np.testing.assert_array_equal(out.data[1, 0], emb.weight.data[1])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [0, 3, 0, 1, 0])


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\)"):
        Embedding(5, 3)(np.array([0, 5]))
    with pytest.raises(TypeError, match="integer indices"):
        Embedding(5, 3)(np.array([0.5]))
    with pytest.raises(ValueError, match="expected input .* with I = 3, got shape"):
        LSTM(3, 4)(Tensor(np.zeros((5, 2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"initial state must have shape \(1, 2, 4\)"):
        GRU(3, 4)(Tensor(np.zeros((5, 2, 3), np.float32)), Tensor(np.zeros((1, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="pair"):
        LSTM(3, 4)(Tensor(np.zeros((5, 2, 3), np.float32)), Tensor(np.zeros((1, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        LSTM(3, 0)
