r"""Recurrent layers with PyTorch's constructor arguments, parameter names, shapes, gate order and init.

Notation: T time steps, N batch, I input features, H hidden units, L layers.
Input (T, N, I), or (N, T, I) with batch_first=True, or (T, I) unbatched; output (T, N, H) likewise.

Backpropagation through time (BPTT) is just backprop on the unrolled graph: `forward` below runs a
Python loop over t, each step adds a few nodes to the graph (the cells `rnn_cell`, `lstm_cell`,
`gru_cell`, written with engine ops), and `loss.backward()` walks them back from t = T-1 to 0 with
nothing recurrent-specific in the engine. `unroll` returns each step's hidden state, so that its
gradient dL/dh_t can be read after backward(). The input's share of the gates, x_t W_ih^T + b_ih, is
computed for all T steps in one matmul before the loop (it does not depend on h), as cuDNN does.
The fast backend replaces an LSTM layer's loop (`lstm_layer`) by one fused node (autodiff/fast/lstm.py).

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
from autodiff.backend import replaceable
from . import init
from .module import Module, Parameter
from .optim import clip_grad_norm_  # noqa: F401  (re-exported: clipping belongs to every BPTT loop)


# ==================================================================== the cells, composed from engine ops
def rnn_cell(gx: Tensor, h: Tensor, weight_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman RNN step: h' = tanh(gx + h W_hh^T) with gx = x W_ih^T + b_ih + b_hh (or relu)."""
    a = gx + h @ weight_hh.T
    return F.tanh(a) if nonlinearity == "tanh" else F.relu(a)


def lstm_cell(gx: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor) -> tuple:
    """LSTM step, gx = x W_ih^T + b_ih + b_hh: a = gx + h W_hh^T, i, f, o = sigmoid(a_i, a_f, a_o),
    g = tanh(a_g), c' = f c + i g (the forget gate f scales the path c -> c' that the gradient takes),
    h' = o tanh(c')."""
    a = gx + h @ weight_hh.T
    a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
    ### BEGIN SOLUTION lstm_cell
    ### task: the gates i, f, g, o, the new cell c' and the new hidden state h'
    ### hint: lstm_cell's docstring: c' = f c + i g, h' = o tanh(c')
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.tanh(a_g), F.sigmoid(a_o)
    c = f * c + i * g
    return o * F.tanh(c), c
    ### END SOLUTION


def gru_cell(gx: Tensor, h: Tensor, weight_hh: Tensor, bias_hh) -> Tensor:
    """GRU step (PyTorch's form: b_hn stays inside the reset gate): gh = h W_hh^T + b_hh,
    r, z = sigmoid(gx_r + gh_r, gx_z + gh_z), n = tanh(gx_n + r gh_n), h' = (1 - z) n + z h."""
    gh = h @ weight_hh.T
    gh = gh + bias_hh if bias_hh is not None else gh
    x_r, x_z, x_n = F.split(gx, 3, axis=-1)
    h_r, h_z, h_n = F.split(gh, 3, axis=-1)
    ### BEGIN SOLUTION gru_cell
    ### task: the reset and update gates, the candidate n and the new hidden state
    ### hint: gru_cell's docstring: n = tanh(gx_n + r gh_n), h' = (1 - z) n + z h
    r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h
    ### END SOLUTION


@replaceable("lstm_layer")
def lstm_layer(gx: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor) -> tuple:
    """One LSTM layer over T steps: gx (T, N, 4H) the input's share of the gates, h and c (N, H)
    -> (outputs (T, N, H), h_T, c_T)."""
    outputs = []
    for t in range(gx.shape[0]):
        h, c = lstm_cell(gx[t], h, c, weight_hh)
        outputs.append(h)
    return F.stack(outputs), h, c


# ==================================================================== the layers
class _RNNBase(Module):
    """Shared constructor, input checks and the loops over layers and steps; subclasses define `_cell`
    (one step of layer k) and how the input gates fold in the biases."""
    gates = 1
    bias_hh_in_gates = True            # b_hh joins x W_ih^T + b_ih before the loop (not in the GRU)

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

    def weights(self, k: int) -> tuple:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k; biases None when bias=False."""
        get = lambda name: getattr(self, f"{name}_l{k}") if self.bias or name.startswith("weight") else None
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    # ---------------------------------------------------------------- running the layers
    def forward(self, x: Tensor, state=None) -> tuple:
        """-> (output of the last layer, final state of every layer), in the caller's layout."""
        x, unbatched, states = self._prepare(x, state)
        finals = []
        for k in range(self.num_layers):
            x, final = self._layer(k, x, states[k])
            finals.append(final)
        return self._finish(x, unbatched), self._final(finals, unbatched)

    def unroll(self, x: Tensor, state=None) -> tuple:
        """forward's computation with the cells, step by step in every backend -> (the last layer's
        hidden states as a list of T tensors (N, H), the final states). Each h_t is a node of the graph:
        after backward() its .grad is dL/dh_t (through every later step)."""
        x, unbatched, states = self._prepare(x, state)
        finals = []
        for k in range(self.num_layers):
            hs, final = self._steps(k, x, states[k])
            x = F.stack(hs)
            finals.append(final)
        return hs, self._final(finals, unbatched)

    def _layer(self, k: int, x: Tensor, state) -> tuple:
        """Layer k over all T steps: ((T, N, H) outputs, final state)."""
        hs, final = self._steps(k, x, state)
        return F.stack(hs), final

    def _steps(self, k: int, x: Tensor, state) -> tuple:
        gx = self._input_gates(x, k)
        hs = []
        for t in range(x.shape[0]):
            h, state = self._cell(k, gx[t], state)
            hs.append(h)
        return hs, state

    def _input_gates(self, x: Tensor, k: int) -> Tensor:
        """x W_ih^T + b_ih (+ b_hh) for all T steps in one matmul: (T, N, gates*H)."""
        weight_ih, _, bias_ih, bias_hh = self.weights(k)
        T, N, _ = x.shape
        bias = None if bias_ih is None else bias_ih + bias_hh if self.bias_hh_in_gates else bias_ih
        gx = F.linear(x.reshape(T * N, x.shape[2]), weight_ih, bias)
        return gx.reshape(T, N, gx.shape[-1])

    # ---------------------------------------------------------------- layouts and states
    def _prepare(self, x: Tensor, state) -> tuple:
        """-> (x as (T, N, I), whether the input was unbatched, the initial state of each layer)."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        name = type(self).__name__
        layout = "(N, T, I)" if self.batch_first else "(T, N, I)"
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}(input_size={self.input_size}): expected input {layout} or (T, I) with "
                             f"I = {self.input_size}, got shape {x.shape}")
        unbatched = x.ndim == 2
        x = x.reshape(x.shape[0], 1, x.shape[1]) if unbatched else x
        x = x.transpose(1, 0, 2) if self.batch_first and not unbatched else x
        parts = self._state_parts(state)
        expected = (self.num_layers, *(() if unbatched else (x.shape[1],)), self.hidden_size)
        for part in parts:
            if part is not None and tuple(part.shape) != expected:
                raise ValueError(f"{name}: initial state must have shape {expected} (num_layers, "
                                 f"{'' if unbatched else 'N, '}hidden_size), got {part.shape}")
        zeros = Tensor(np.zeros((x.shape[1], self.hidden_size), x.dtype))
        per_layer = [[zeros if p is None else p.reshape(self.num_layers, -1, self.hidden_size)[k]
                      for p in parts] for k in range(self.num_layers)]
        return x, unbatched, [s if len(s) > 1 else s[0] for s in per_layer]

    def _state_parts(self, state) -> list:
        return [state]                       # h_0 (RNN, GRU); the LSTM has (h_0, c_0)

    def _finish(self, out: Tensor, unbatched: bool) -> Tensor:
        """The last layer's (T, N, H) in the caller's layout."""
        if unbatched:
            return out.reshape(out.shape[0], self.hidden_size)
        return out.transpose(1, 0, 2) if self.batch_first else out

    def _final(self, finals: list, unbatched: bool) -> Tensor:
        s = F.stack(finals, axis=0)                                   # (L, N, H)
        return s.reshape(self.num_layers, self.hidden_size) if unbatched else s

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

    def _cell(self, k: int, gx: Tensor, h: Tensor) -> tuple:
        h = rnn_cell(gx, h, self.weights(k)[1], self.nonlinearity)
        return h, h


class LSTM(_RNNBase):
    """LSTM (gates i, f, g, o). Call: output, (h_n, c_n) = lstm(x, (h_0, c_0))."""
    gates = 4

    def _cell(self, k: int, gx: Tensor, state: tuple) -> tuple:
        h, c = lstm_cell(gx, *state, self.weights(k)[1])
        return h, (h, c)

    def _layer(self, k: int, x: Tensor, state: tuple) -> tuple:
        outputs, h, c = lstm_layer(self._input_gates(x, k), *state, self.weights(k)[1])
        return outputs, (h, c)

    def _state_parts(self, state) -> list:
        if state is None:
            return [None, None]
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"LSTM: the initial state must be a pair (h_0, c_0), got {type(state).__name__}")
        return list(state)

    def _final(self, finals: list, unbatched: bool) -> tuple:
        return (super()._final([h for h, _ in finals], unbatched), super()._final([c for _, c in finals], unbatched))


class GRU(_RNNBase):
    """GRU (gates r, z, n). Call: output, h_n = gru(x, h_0)."""
    gates = 3
    bias_hh_in_gates = False           # b_hn stays inside the reset gate

    def _cell(self, k: int, gx: Tensor, h: Tensor) -> tuple:
        _, weight_hh, _, bias_hh = self.weights(k)
        h = gru_cell(gx, h, weight_hh, bias_hh)
        return h, h


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
