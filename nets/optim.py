r"""Optimizers. Each reads p.grad of its parameters and updates p.data in place.

Notation: p parameter, g its gradient (after weight decay: g <- g + wd * p), t the step number from 1,
lr the learning rate. State arrays (momentum buffers, moment estimates) live in `self.state`, one
dict per parameter, and round-trip through `state_dict()` for exact resuming.
"""
from __future__ import annotations

import math

import numpy as np

from autodiff import Tensor
from autodiff.tensor import value
from autodiff.backend import replaceable


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
                self._update(p, value(p.grad).astype(p.dtype, copy=False), state)

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
            ### BEGIN SOLUTION sgd_momentum
            ### task: update the momentum buffer in place (a copy of g on the first step)
            ### hint: SGD's docstring, line 1: buf <- momentum * buf + (1 - dampening) * g
            if "momentum" not in state:
                state["momentum"] = g.copy()
            else:
                buf = state["momentum"]
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            ### END SOLUTION
            buf = state["momentum"]
            ### BEGIN SOLUTION sgd_nesterov
            ### task: the step: g + momentum * buf with Nesterov, else buf
            ### hint: SGD's docstring, line 2
            g = g + self.momentum * buf if self.nesterov else buf
            ### END SOLUTION
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

    @replaceable("Adam.step")
    def step(self) -> None:
        """_update for every parameter that has a gradient (the fast backend: all at once)."""
        super().step()

    def _update(self, p, g, state):
        """Algorithm 1 of the paper, line by line, for one parameter."""
        beta1, beta2 = self.betas
        g = self._decayed(p, g, self.weight_decay)
        t = state["step"] = int(state.get("step", 0)) + 1
        ### BEGIN SOLUTION adam_moments
        ### task: update the running means of g and of g^2 (stored in state)
        ### hint: Adam's docstring, the lines m <- ... and v <- ...
        m = state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
        v = state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * g * g
        ### END SOLUTION
        ### BEGIN SOLUTION adam_bias_correction
        ### task: divide the moments m and v by their bias (1 - beta^t)
        ### hint: Adam's docstring, the lines m_hat = ... and v_hat = ...
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        ### END SOLUTION
        p.data -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


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
    ### BEGIN SOLUTION clip_grad_norm
    ### task: the joint L2 norm of all gradients; above max_norm, scale every gradient by one factor
    ### hint: clip_grad_norm_'s docstring
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * scale
    ### END SOLUTION
    return total
