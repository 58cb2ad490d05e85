r"""Optimizers. Each reads p.grad of its parameters and updates p.data in place.

Notation: p parameter, g its gradient (after weight decay: g <- g + wd * p), t the step number from 1,
lr the learning rate. State arrays (momentum buffers, moment estimates) live in `self.state`, one
dict per parameter, and round-trip through `state_dict()` for exact resuming.
"""
from __future__ import annotations

import math

import numpy as np

from autodiff import Tensor, parallel


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a Tensor that requires grad")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once")
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr
        self.step_count = 0
        self.state = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p, p.grad.astype(p.dtype, copy=False), state)

    def _update(self, p: Tensor, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    def _decayed(self, p: Tensor, g: np.ndarray, weight_decay: float) -> np.ndarray:
        return g + weight_decay * p.data if weight_decay else g

    def _buffer(self, state: dict, name: str, p: Tensor) -> np.ndarray:
        if name not in state:
            state[name] = np.zeros_like(p.data)
        return state[name]

    # ---------------------------------------------------------------- resuming
    def state_dict(self) -> dict:
        """Flat {name: array}: 'step', 'lr' and 'i.name' for buffer `name` of parameter i."""
        state = {"step": np.asarray(self.step_count), "lr": np.asarray(self.lr)}
        for i, buffers in enumerate(self.state):
            for name, value in buffers.items():
                state[f"{i}.{name}"] = np.array(value)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])
        self.state = [{} for _ in self.params]
        for key, value in state.items():
            if key in ("step", "lr"):
                continue
            index, _, name = key.partition(".")
            i = int(index)
            if i >= len(self.params):
                raise ValueError(f"optimizer state has an entry for parameter {i}, but there are only "
                                 f"{len(self.params)} parameters")
            if value.shape != self.params[i].shape and value.ndim:
                raise ValueError(f"optimizer state {key!r} has shape {value.shape}, parameter {i} "
                                 f"has shape {self.params[i].shape}")
            self.state[i][name] = value.astype(self.params[i].dtype) if value.ndim else value


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum (PyTorch's form):
        buf <- momentum * buf + (1 - dampening) * g     (buf = g on the first step)
        step = g + momentum * buf (Nesterov)   or   buf (classical momentum)   or   g (none)
        p <- p - lr * step"""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov, self.weight_decay = momentum, dampening, nesterov, weight_decay

    def _update(self, p, g, state):
        g = self._decayed(p, g, self.weight_decay)
        if self.momentum:
            if "momentum" not in state:
                state["momentum"] = g.copy()
            else:
                buf = state["momentum"]
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            buf = state["momentum"]
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015, Algorithm 1):
        m <- beta1 m + (1 - beta1) g              (first moment: running mean of gradients)
        v <- beta2 v + (1 - beta2) g^2            (second moment: running mean of squared gradients)
        m_hat = m / (1 - beta1^t)                 (bias correction: m and v start at zero)
        v_hat = v / (1 - beta2^t)
        p <- p - lr m_hat / (sqrt(v_hat) + eps)
    weight_decay adds wd * p to g (L2, as torch.optim.Adam). t counts the steps in which this
    parameter had a gradient."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def step(self) -> None:
        """Small models take one flat pass over all parameters (see _step_flat); otherwise per parameter."""
        if self._flat_applies():
            self.step_count += 1
            self._step_flat()
        else:
            super().step()

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        t = int(state.get("step", 0)) + 1      # this parameter's own step count, as in PyTorch
        state["step"] = np.asarray(t)
        m, v = self._buffer(state, "m", p), self._buffer(state, "v", p)
        bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t   # m_hat = m / bias1,  v_hat = v / bias2
        # The same passes for each cache-sized piece (see _pieces); `step` and `decayed` are scratch.
        arrays = (p.data, np.ascontiguousarray(g), m, v)

        def update(*block):
            for p_, g_, m_, v_, step, decayed in _pieces(*block, scratch=2):
                if self.weight_decay:                     # g + wd * p
                    g_ = np.add(g_, np.multiply(p_, self.weight_decay, out=decayed), out=decayed)
                p_ -= self._moments_and_step(g_, m_, v_, step, bias1, bias2)
        if all(a.flags.c_contiguous for a in arrays):    # blocks of the flat arrays, on the engine's threads
            parallel.for_blocks(lambda lo, hi: update(*(a.reshape(-1)[lo:hi] for a in arrays)), p.data.size,
                                min_block=1 << 18)        # a VAE's 313k weights stay one block
        else:
            update(*arrays)

    def _moments_and_step(self, g, m, v, step, bias1: float, bias2: float) -> np.ndarray:
        """The passes of one Adam step on matching arrays: m and v updated in place, and the scratch array
        `step` filled with lr m_hat / (sqrt(v_hat) + eps), which the caller subtracts from p."""
        beta1, beta2 = self.betas
        m *= beta1
        m += np.multiply(g, 1 - beta1, out=step)              # m = beta1 m + (1 - beta1) g
        v *= beta2
        v += np.multiply(np.square(g, out=step), 1 - beta2, out=step)   # v = beta2 v + (1 - beta2) g^2
        np.sqrt(v, out=step)
        step /= math.sqrt(bias2)                    # sqrt(v_hat)
        step += self.eps                            # sqrt(v_hat) + eps
        np.divide(m, step, out=step)                # m / (sqrt(v_hat) + eps)
        step *= self.lr / bias1                     # lr m_hat / (sqrt(v_hat) + eps)
        return step

    # ---------------------------------------------------------------- the same update, all parameters at once
    # For a small network (a DQN's 4.6k weights in 6 arrays) the cost of Adam is NumPy's per-call overhead:
    # 13 calls per parameter. Here m and v of all parameters live in two flat arrays (each state["m"] is a
    # view into one), the gradients are concatenated, and _moments_and_step runs once on them: element by
    # element the very same float operations as _update, so the results are identical (tests compare the two).
    FLAT_MAX = 1 << 16            # total elements up to which the flat pass is used

    def _flat_applies(self) -> bool:
        params = self.params
        if sum(p.size for p in params) > self.FLAT_MAX or any(p.grad is None for p in params):
            return False
        steps = {int(st.get("step", 0)) for st in self.state}
        return len(steps) == 1 and len({p.dtype for p in params}) == 1     # one step count, one dtype

    def _flat_buffers(self):
        """(m, v, bounds, m_views), rebuilt when the state arrays are not (or no longer, after
        load_state_dict) views into the flat buffers."""
        flat = getattr(self, "_flat", None)
        if flat is None or any(st.get("m") is not view for st, view in zip(self.state, flat[3])):
            sizes = [p.size for p in self.params]
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            m, v = (np.zeros(bounds[-1], self.params[0].dtype) for _ in range(2))
            for p, st, start, stop in zip(self.params, self.state, bounds[:-1], bounds[1:]):
                m_view, v_view = m[start:stop].reshape(p.shape), v[start:stop].reshape(p.shape)
                if "m" in st:
                    m_view[...], v_view[...] = st["m"], st["v"]
                st["m"], st["v"] = m_view, v_view
            flat = self._flat = (m, v, bounds, [st["m"] for st in self.state])
        return flat

    def _step_flat(self) -> None:
        beta1, beta2 = self.betas
        m, v, bounds, _ = self._flat_buffers()
        t = int(self.state[0].get("step", 0)) + 1
        for st in self.state:
            st["step"] = np.asarray(t)
        bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
        dtype = m.dtype
        g = np.concatenate([p.grad.astype(dtype, copy=False).reshape(-1) for p in self.params])
        if self.weight_decay:                                        # g + wd * p
            g += np.concatenate([p.data.reshape(-1) for p in self.params]) * dtype.type(self.weight_decay)
        step = self._moments_and_step(g, m, v, np.empty_like(g), bias1, bias2)
        for p, start, stop in zip(self.params, bounds[:-1], bounds[1:]):
            p.data -= step[start:stop].reshape(p.shape)


class RMSProp(Optimizer):
    r"""RMSProp (Hinton's lecture 6e): v <- alpha v + (1 - alpha) g^2;  p <- p - lr g / (sqrt(v) + eps).
    With momentum: buf <- momentum buf + g / (sqrt(v) + eps); p <- p - lr buf."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps, self.weight_decay, self.momentum = alpha, eps, weight_decay, momentum

    def _update(self, p, g, state):
        g = self._decayed(p, g, self.weight_decay)
        v = self._buffer(state, "square_avg", p)
        v *= self.alpha
        v += (1 - self.alpha) * (g * g)
        step = g / (np.sqrt(v) + self.eps)
        if self.momentum:
            buf = self._buffer(state, "momentum", p)
            buf *= self.momentum
            buf += step
            step = buf
        p.data -= self.lr * step


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011): s <- s + g^2;  p <- p - lr g / (sqrt(s) + eps).
    Each coordinate's step shrinks with the total squared gradient it has seen."""

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.eps, self.weight_decay = eps, weight_decay

    def _update(self, p, g, state):
        g = self._decayed(p, g, self.weight_decay)
        s = self._buffer(state, "sum", p)
        s += g * g
        p.data -= self.lr * g / (np.sqrt(s) + self.eps)


def clip_grad_norm_(params, max_norm: float) -> float:
    """Scale all gradients together so that their joint L2 norm is at most max_norm.
    Returns the norm before clipping (as torch.nn.utils.clip_grad_norm_)."""
    params = list(params)                      # a generator would be used up by the first pass
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * scale
    return total


# ==================================================================== elementwise passes in pieces
_PIECE = 1 << 16          # elements per piece: six arrays of 256 KB stay in the CPU's cache


def _pieces(*arrays, scratch: int = 0):
    """Yield the arrays (same shape) cut into matching flat pieces, plus `scratch` temporary arrays of
    the piece's size. An update that runs ten elementwise passes then reads and writes each array
    from memory once instead of ten times, and allocates nothing big. Arrays that are not contiguous
    come whole (a flat view of them would be a copy)."""
    dtype = arrays[0].dtype
    if not all(a.flags.c_contiguous for a in arrays):
        yield (*arrays, *(np.empty(arrays[0].shape, dtype) for _ in range(scratch)))
        return
    flat = [a.reshape(-1) for a in arrays]
    size = flat[0].size
    temps = [np.empty(min(size, _PIECE), dtype) for _ in range(scratch)]
    for start in range(0, size, _PIECE):
        stop = min(start + _PIECE, size)
        yield (*(a[start:stop] for a in flat), *(t[:stop - start] for t in temps))
