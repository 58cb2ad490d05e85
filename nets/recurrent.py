r"""Recurrent layers with PyTorch's constructor arguments, parameter names, shapes, gate order and init.

Notation: T time steps, N batch, I input features, H hidden units, L layers.
Input (T, N, I), or (N, T, I) with batch_first=True, or (T, I) unbatched; output (T, N, H) likewise.

Backpropagation through time (BPTT) is just backprop on the unrolled graph: `forward` below runs a
Python loop over t, each step adds a few nodes to the graph, and `loss.backward()` walks them back from
t = T-1 to 0 with nothing recurrent-specific in the engine. The per-step cells `*_cell_reference` are
that lesson written with engine ops; the LSTM also has a fast path (`fused=True`, the default):
`autodiff.recurrent.lstm_fused`, a layer's T steps as one node whose backward is the cell's derivative
written out by hand; it must equal the loop over `lstm_cell_reference` (tests/test_recurrent.py).
The input's share of the gates, x_t W_ih^T + b_ih, is computed for all T steps in one matmul before
the loop (it does not depend on h), as cuDNN does.

Truncated BPTT: carry the state from one chunk of the sequence into the next, but `detach_state` it
first, so the next backward() stops at the chunk boundary. Clip the gradient with
`nets.optim.clip_grad_norm_` (one global norm over all parameters) before the optimizer step.

Parameters of layer k (PyTorch's names; `gates` = 1 for RNN, 3 for GRU, 4 for LSTM):
    weight_ih_l{k}: (gates*H, I if k == 0 else H),  weight_hh_l{k}: (gates*H, H),
    bias_ih_l{k}, bias_hh_l{k}: (gates*H,);  all initialised U(-1/sqrt(H), 1/sqrt(H)).
Gate blocks along the first axis: LSTM i, f, g, o;  GRU r, z, n.
"""
from __future__ import annotations

import math

import numpy as np

import autodiff.functional as F
from autodiff import Tensor
from autodiff.recurrent import lstm_fused, unstack
from . import init
from .module import Module, Parameter
from .optim import clip_grad_norm_  # noqa: F401  (re-exported: clipping belongs to every BPTT loop)


# ==================================================================== the cells, composed from engine ops
def rnn_cell_reference(gx: Tensor, h: Tensor, weight_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman RNN step: h' = tanh(gx + h W_hh^T) with gx = x W_ih^T + b_ih + b_hh (or relu)."""
    a = gx + h @ weight_hh.T
    return F.tanh(a) if nonlinearity == "tanh" else F.relu(a)


def lstm_cell_reference(gx: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor) -> tuple:
    """LSTM step, gx = x W_ih^T + b_ih + b_hh: a = gx + h W_hh^T, i, f, o = sigmoid(a_i, a_f, a_o),
    g = tanh(a_g), c' = f c + i g (the forget gate f scales the path c -> c' that the gradient takes),
    h' = o tanh(c')."""
    a = gx + h @ weight_hh.T
    a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.tanh(a_g), F.sigmoid(a_o)
    c = f * c + i * g
    return o * F.tanh(c), c


def gru_cell_reference(gx: Tensor, h: Tensor, weight_hh: Tensor, bias_hh) -> Tensor:
    """GRU step (PyTorch's form: b_hn stays inside the reset gate): gh = h W_hh^T + b_hh,
    r, z = sigmoid(gx_r + gh_r, gx_z + gh_z), n = tanh(gx_n + r gh_n), h' = (1 - z) n + z h."""
    gh = h @ weight_hh.T
    gh = gh + bias_hh if bias_hh is not None else gh
    x_r, x_z, x_n = F.split(gx, 3, axis=-1)
    h_r, h_z, h_n = F.split(gh, 3, axis=-1)
    r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


# ==================================================================== the layers
class _RNNBase(Module):
    """Shared constructor, input checks and the loop over layers; subclasses define `_layer`."""
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype=np.float32, rng=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {value!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        bound, rows = 1.0 / math.sqrt(hidden_size), self.gates * hidden_size
        for k in range(num_layers):                       # PyTorch's registration order
            columns = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(init.uniform((rows, columns), bound, dtype, rng)))
            setattr(self, f"weight_hh_l{k}", Parameter(init.uniform((rows, hidden_size), bound, dtype, rng)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(init.uniform((rows,), bound, dtype, rng)))
                setattr(self, f"bias_hh_l{k}", Parameter(init.uniform((rows,), bound, dtype, rng)))

    def _weights(self, k: int) -> tuple:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k; biases None when bias=False."""
        get = lambda name: getattr(self, f"{name}_l{k}") if self.bias or name.startswith("weight") else None
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _check(self, x: Tensor, state_shapes: list) -> tuple:
        """-> (x as (T, N, I), whether the input was unbatched)."""
        name = type(self).__name__
        layout = "(N, T, I)" if self.batch_first else "(T, N, I)"
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}(input_size={self.input_size}): expected input {layout} or (T, I) with "
                             f"I = {self.input_size}, got shape {x.shape}")
        unbatched = x.ndim == 2
        x = x.reshape(x.shape[0], 1, x.shape[1]) if unbatched else x
        x = x.transpose(1, 0, 2) if self.batch_first and not unbatched else x
        expected = (self.num_layers, *(() if unbatched else (x.shape[1],)), self.hidden_size)
        for state in state_shapes:
            if tuple(state.shape) != expected:
                raise ValueError(f"{name}: initial state must have shape {expected} (num_layers, "
                                 f"{'' if unbatched else 'N, '}hidden_size), got {state.shape}")
        return x, unbatched

    def _initial(self, state, x: Tensor, unbatched: bool) -> list:
        """The state as a list of L tensors (N, H); zeros when not given."""
        if state is None:
            return [Tensor(np.zeros((x.shape[1], self.hidden_size), x.dtype))] * self.num_layers
        state = state.reshape(self.num_layers, 1, self.hidden_size) if unbatched else state
        return unstack(state) if self.num_layers > 1 else [state.reshape(state.shape[1:])]

    def _finish(self, out: Tensor, unbatched: bool) -> Tensor:
        """The last layer's (T, N, H) in the caller's layout."""
        if unbatched:
            return out.reshape(out.shape[0], self.hidden_size)
        return out.transpose(1, 0, 2) if self.batch_first else out

    def _final(self, states: list, unbatched: bool) -> Tensor:
        s = F.stack(states, axis=0)                                   # (L, N, H)
        return s.reshape(self.num_layers, self.hidden_size) if unbatched else s

    def _input_gates(self, x: Tensor, k: int, with_bias_hh: bool, steps: bool = True):
        """x W_ih^T + b_ih (+ b_hh) for all T steps in one matmul: (T, N, gates*H), or cut into a list of T
        tensors (N, gates*H) when `steps`."""
        weight_ih, _, bias_ih, bias_hh = self._weights(k)
        T, N, _ = x.shape
        gx = x.reshape(T * N, x.shape[2]) @ weight_ih.T
        if bias_ih is not None:
            gx = gx + (bias_ih + bias_hh if with_bias_hh else bias_ih)
        gx = gx.reshape(T, N, gx.shape[-1])
        return unstack(gx) if steps else gx

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}")


class RNN(_RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh). Call: output, h_n = rnn(x, h_0)."""
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dtype=np.float32, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dtype, rng)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h_0: Tensor | None = None) -> tuple:
        x, unbatched = self._check(x, [] if h_0 is None else [h_0])
        finals = []
        for k, h in enumerate(self._initial(h_0, x, unbatched)):
            outputs = []
            for gx in self._input_gates(x, k, with_bias_hh=True):
                h = rnn_cell_reference(gx, h, self._weights(k)[1], self.nonlinearity)
                outputs.append(h)
            finals.append(h)
            x = F.stack(outputs, axis=0)
        return self._finish(x, unbatched), self._final(finals, unbatched)


class LSTM(_RNNBase):
    """LSTM (gates i, f, g, o). Call: output, (h_n, c_n) = lstm(x, (h_0, c_0)).
    fused=True (not a PyTorch argument): each layer's T steps are one hand-differentiated node
    (autodiff.recurrent.lstm_fused); fused=False: the composed reference cell, step by step."""
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype=np.float32, rng=None, fused: bool = True):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dtype, rng)
        self.fused = fused

    def forward(self, x: Tensor, state: tuple | None = None) -> tuple:
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError(f"LSTM: the initial state must be a pair (h_0, c_0), got {type(state).__name__}")
        x, unbatched = self._check(x, [] if state is None else list(state))
        hs = self._initial(None if state is None else state[0], x, unbatched)
        cs = self._initial(None if state is None else state[1], x, unbatched)
        final_h, final_c = [], []
        for k in range(self.num_layers):
            h, c = hs[k], cs[k]
            weight_hh = self._weights(k)[1]
            if self.fused:            # all T steps in one node; its last row is c_T
                gx = self._input_gates(x, k, with_bias_hh=True, steps=False)
                hc = lstm_fused(gx, h, c, weight_hh)
                x, h, c = hc[:-1], hc[-2], hc[-1]
            else:
                outputs = []
                for gx in self._input_gates(x, k, with_bias_hh=True):
                    h, c = lstm_cell_reference(gx, h, c, weight_hh)
                    outputs.append(h)
                x = F.stack(outputs, axis=0)
            final_h.append(h)
            final_c.append(c)
        return self._finish(x, unbatched), (self._final(final_h, unbatched), self._final(final_c, unbatched))

    def extra_repr(self):
        return super().extra_repr() + f", fused={self.fused}"


class GRU(_RNNBase):
    """GRU (gates r, z, n). Call: output, h_n = gru(x, h_0)."""
    gates = 3

    def forward(self, x: Tensor, h_0: Tensor | None = None) -> tuple:
        x, unbatched = self._check(x, [] if h_0 is None else [h_0])
        finals = []
        for k, h in enumerate(self._initial(h_0, x, unbatched)):
            _, weight_hh, _, bias_hh = self._weights(k)
            outputs = []
            for gx in self._input_gates(x, k, with_bias_hh=False):
                h = gru_cell_reference(gx, h, weight_hh, bias_hh)
                outputs.append(h)
            finals.append(h)
            x = F.stack(outputs, axis=0)
        return self._finish(x, unbatched), self._final(finals, unbatched)


class Embedding(Module):
    """A lookup table: y = weight[indices]. weight: (num_embeddings, embedding_dim), init N(0, 1) as PyTorch.
    The gradient of a row is the sum of the gradients of every position that looked it up."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32, rng=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(init.get_rng(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, indices) -> Tensor:
        indices = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"Embedding: expected integer indices, got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_embeddings):
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): indices must be in "
                             f"[0, {self.num_embeddings}), got values in [{indices.min()}, {indices.max()}]")
        return self.weight[indices]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


# ==================================================================== truncated BPTT
def detach_state(state):
    """The carried state with its history cut (a Tensor, or a tuple such as LSTM's (h, c)), so that the
    next chunk's backward() stops here: truncated BPTT."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(detach_state(s) for s in state)
    return state.detach()
