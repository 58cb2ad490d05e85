r"""The fused LSTM layer: replaces nets/recurrent.py's `lstm_layer` (T steps of `lstm_cell`).

Why it computes the same thing. The reference runs `lstm_cell` T times, about twenty graph nodes per step,
and the engine differentiates each. Here the T steps are ONE node whose backward is the cell's derivative
written out by hand (below), with every array preallocated, and the four gates' nonlinearities as ONE
tanh: sigmoid(a) = (1 + tanh(a/2)) / 2. Results equal the reference's to rounding (tests/test_fast.py).

Notation: T time steps, N batch, H hidden units; gate pre-activations a = (N, 4H) in PyTorch's order
i, f, g, o (input, forget, cell candidate, output).
"""
from __future__ import annotations

import numpy as np

from autodiff import functional as F
from autodiff.backend import run_reference
from autodiff.tensor import Tensor
from . import parallel
from .taken import note


def lstm_layer(gx, h0, c0, weight_hh):
    """Replaces nets.recurrent.lstm_layer: -> (outputs (T, N, H), h_T, c_T), slices of one fused node."""
    note("lstm fused")
    hc = lstm_fused(gx, h0, c0, weight_hh)
    if hc.requires_grad:                 # a create_graph backward differentiates the reference cells
        def rebuild():
            outputs, _, c = run_reference("lstm_layer", gx, h0, c0, weight_hh)
            return F.concatenate([outputs, c.reshape(1, *c.shape)])
        hc._recompute = rebuild
    return hc[:-1], hc[-2], hc[-1]


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
    dtype, quarters = gx.dtype, (slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H), slice(3 * H, 4 * H))
    # sigmoid(a) = (1 + tanh(a/2)) / 2 never overflows, so the four gates are ONE tanh of a scaled a:
    # gates = tanh(a * scale) * scale + shift, (scale, shift) = (1/2, 1/2) on i, f, o and (1, 0) on g
    scale, shift = np.full(4 * H, 0.5, dtype), np.full(4 * H, 0.5, dtype)
    scale[quarters[2]], shift[quarters[2]] = 1, 0
    weight_hh_t = np.ascontiguousarray(weight_hh.data.T)               # (H, 4H)
    gates = np.empty_like(gx.data)                # i, f, g, o after their nonlinearities, every step
    hs, cs = np.empty((T + 1, N, H), dtype), np.empty((T + 1, N, H), dtype)   # h_0..h_T, c_0..c_T
    tanh_cs, scratch = np.empty((T, N, H), dtype), np.empty((N, H), dtype)
    hs[0], cs[0] = h0.data, c0.data
    for t in range(T):                            # every op writes into a preallocated array (out=)
        a = parallel.matmul(hs[t], weight_hh_t, out=gates[t])
        a += gx.data[t]
        a *= scale
        np.tanh(a, out=a)
        a *= scale
        a += shift
        i, f, g, o = (a[:, q] for q in quarters)
        np.multiply(f, cs[t], out=cs[t + 1])                      # c' = f c + i g
        cs[t + 1] += np.multiply(i, g, out=scratch)
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])                 # h' = o tanh(c')
    out = Tensor._make(np.concatenate([hs[1:], cs[T:]]), (gx, h0, c0, weight_hh), "lstm_fused")

    def gradients(grad, *inputs):
        da, slope = np.empty_like(gates), np.empty((N, 4 * H), dtype)
        dh, dc, dtanh = np.zeros((N, H), dtype), grad[T].copy(), np.empty((N, H), dtype)
        for t in reversed(range(T)):
            gate, d = gates[t], da[t]
            i, f, g, o = (gate[:, q] for q in quarters)
            dh += grad[t]
            np.multiply(tanh_cs[t], tanh_cs[t], out=dtanh)          # dc += dh o (1 - tanh(c')^2)
            np.subtract(1, dtanh, out=dtanh)
            dtanh *= o
            dtanh *= dh
            dc += dtanh
            np.multiply(dc, g, out=d[:, quarters[0]])               # d = [dc g, dc c, dc i, dh tanh(c')]
            np.multiply(dc, cs[t], out=d[:, quarters[1]])
            np.multiply(dc, i, out=d[:, quarters[2]])
            np.multiply(dh, tanh_cs[t], out=d[:, quarters[3]])
            np.subtract(1, gate, out=slope)                         # each gate's slope: s (1 - s) ...
            slope *= gate
            np.multiply(g, g, out=slope[:, quarters[2]])            # ... and 1 - g^2 for g
            np.subtract(1, slope[:, quarters[2]], out=slope[:, quarters[2]])
            d *= slope
            parallel.matmul(d, weight_hh.data, out=dh)              # dh <- da W_hh,  dc <- dc f
            dc *= f
        dW = parallel.matmul(da.reshape(T * N, 4 * H).T, hs[:T].reshape(T * N, H)) if weight_hh.requires_grad else None
        return da, dh, dc, dW
    out._backward = gradients
    return out
