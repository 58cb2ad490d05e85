r"""Ops for recurrent networks: cutting a sequence into time steps, and the fused LSTM cell.

Notation: T time steps, N batch, I input features, H hidden units; gate pre-activations a = (N, 4H) in
PyTorch's order i, f, g, o (input, forget, cell candidate, output).

The lesson is in `nets/recurrent.py`: an RNN unrolled over T steps is an ordinary graph, and
backpropagation through time (BPTT) is nothing but backprop on that unrolled graph. The ops here only
make the unrolled graph cheaper to walk:
  * `unstack` cuts (T, ...) into T tensors whose gradients are written into one shared buffer (slicing
    with x[t] would allocate a full (T, ...) zero gradient per step: O(T^2) work);
  * `lstm_fused` runs all T steps of an LSTM layer as ONE node with the derivative of the cell written
    out by hand, instead of about twenty nodes per step of the composed cell
    (`nets.recurrent.lstm_cell_reference`, which it must equal).
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


# ==================================================================== cutting a sequence into steps
def unstack(x: Tensor, axis: int = 0) -> list:
    """unstack: y_t = x[t] along `axis`; the adjoint of unstack is stack: dL/dx[t] = dL/dy_t, each step's
    gradient written into its own row of one buffer that is passed to x once."""
    axis = axis % x.ndim
    moved = np.moveaxis(x.data, axis, 0)
    hub = Tensor._make(x.data, (x,), "unstack")            # collects the steps' gradients
    if not hub.requires_grad:
        return [Tensor(moved[t]) for t in range(len(moved))]
    pieces = []
    for t in range(len(moved)):
        piece = Tensor._make(moved[t], (hub,), "unstack_step")
        def _backward(piece=piece, t=t):
            if hub.grad is None:
                hub.grad = np.zeros_like(x.data)
            np.moveaxis(hub.grad, axis, 0)[t] += piece.grad
        piece._backward = _backward
        pieces.append(piece)
    hub._backward = lambda: x._accumulate(hub.grad)
    return pieces


# ==================================================================== the fused LSTM
def lstm_fused(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor) -> Tensor:
    r"""T LSTM steps as ONE node; returns (T+1, N, H): rows 0..T-1 are h_1..h_T, row T is c_T.

    gx: (T, N, 4H) the input's share of the gates, x W_ih^T + b_ih + b_hh (all steps in one matmul);
    h0, c0: (N, H); weight_hh: (4H, H). Per step the gates take ONE matmul:
        a = gx_t + h W_hh^T,  i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g),  c' = f c + i g,  h' = o tanh(c').
    backward (t = T-1 .. 0), dh = dL/dh_t + dh from step t+1, dc = dc from step t+1 + dh o (1 - tanh(c')^2):
        da_t = [dc g i(1-i), dc c f(1-f), dc i (1-g^2), dh tanh(c') o(1-o)],  dh <- da_t W_hh,  dc <- dc f;
        dgx = da,  dW_hh = sum_t da_t^T h_{t-1} (one matmul over all steps).
    """
    T, N, H = gx.shape[0], h0.shape[0], h0.shape[-1]
    if (h0.ndim != 2 or gx.ndim != 3 or gx.shape[1:] != (N, 4 * H) or c0.shape != (N, H)
            or weight_hh.shape != (4 * H, H)):
        raise ValueError(f"lstm_fused: expected gx (T, {N}, {4 * H}), h0 and c0 ({N}, {H}), weight_hh "
                         f"({4 * H}, {H}); got {gx.shape}, {h0.shape}, {c0.shape}, {weight_hh.shape}")
    gates = np.empty_like(gx.data)                 # i, f, g, o after their nonlinearities
    hs, cs = np.empty((T + 1, N, H), gx.dtype), np.empty((T + 1, N, H), gx.dtype)   # h_0..h_T, c_0..c_T
    tanh_cs = np.empty((T, N, H), gx.dtype)
    hs[0], cs[0] = h0.data, c0.data
    for t in range(T):
        a = gx.data[t] + hs[t] @ weight_hh.data.T
        gates[t] = 0.5 + 0.5 * np.tanh(0.5 * a)    # sigmoid(a) = (1 + tanh(a/2)) / 2, never overflows
        gates[t, :, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])
        i, f, g, o = np.split(gates[t], 4, axis=1)
        cs[t + 1] = f * cs[t] + i * g
        tanh_cs[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tanh_cs[t]
    out = Tensor._make(np.concatenate([hs[1:], cs[T:]]), (gx, h0, c0, weight_hh), "lstm_fused")

    def _backward():
        da = np.empty_like(gates)
        dh, dc = np.zeros((N, H), gx.dtype), out.grad[T].copy()
        for t in reversed(range(T)):
            i, f, g, o = np.split(gates[t], 4, axis=1)
            tanh_c = tanh_cs[t]
            dh += out.grad[t]
            dc += dh * o * (1 - tanh_c ** 2)
            da[t] = np.concatenate([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f),
                                    dc * i * (1 - g ** 2), dh * tanh_c * o * (1 - o)], axis=1)
            dh, dc = da[t] @ weight_hh.data, dc * f
        gx._accumulate(da)
        h0._accumulate(dh)
        c0._accumulate(dc)
        if weight_hh.requires_grad:
            weight_hh._accumulate(da.reshape(T * N, 4 * H).T @ hs[:T].reshape(T * N, H))
    out._backward = _backward
    return out
