r"""Fast Adam step: replaces nets/optim.py's `Adam.step` (Adam._update for every parameter).

Why it computes the same thing. The reference is the paper's five lines per parameter:
    m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2,
    p <- p - lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t).
Here the last line is rearranged as p <- p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
(the same number, rounded differently), and the passes run in place on cache-sized pieces of each
parameter (on the engine's threads), or, for small models whose cost is NumPy's per-call overhead,
once on all parameters concatenated: m and v of every parameter are views into two flat arrays.
"""
from __future__ import annotations

import math

import numpy as np

from autodiff.tensor import value
from . import parallel
from .taken import note

FLAT_MAX = 1 << 16            # total elements up to which all parameters take one flat pass
PIECE = 1 << 16               # elements per piece: six arrays of 256 KB stay in the CPU's cache


def adam_step(optimizer) -> None:
    """Replaces nets.optim.Adam.step (see the module docstring)."""
    params, states = optimizer.params, optimizer.state
    optimizer.step_count += 1
    if _flat_applies(params, states):
        note("adam flat")
        _step_flat(optimizer)
        return
    note("adam pieces")
    for p, state in zip(params, states):
        if p.grad is not None:
            _step_in_pieces(optimizer, p, value(p.grad).astype(p.dtype, copy=False), state)


def _moments_and_step(opt, g, m, v, step, bias1: float, bias2: float) -> np.ndarray:
    """m and v updated in place, and `step` (scratch) filled with lr m_hat / (sqrt(v_hat) + eps)."""
    beta1, beta2 = opt.betas
    m *= beta1
    m += np.multiply(g, 1 - beta1, out=step)              # m = beta1 m + (1 - beta1) g
    v *= beta2
    v += np.multiply(np.square(g, out=step), 1 - beta2, out=step)   # v = beta2 v + (1 - beta2) g^2
    np.sqrt(v, out=step)
    step /= math.sqrt(bias2)                    # sqrt(v_hat)
    step += opt.eps                             # sqrt(v_hat) + eps
    np.divide(m, step, out=step)                # m / (sqrt(v_hat) + eps)
    step *= opt.lr / bias1                      # lr m_hat / (sqrt(v_hat) + eps)
    return step


def _step_in_pieces(opt, p, g: np.ndarray, state: dict) -> None:
    beta1, beta2 = opt.betas
    t = int(state.get("step", 0)) + 1           # this parameter's own step count, as in PyTorch
    state["step"] = np.asarray(t)
    for name in ("m", "v"):
        if name not in state:
            state[name] = np.zeros_like(p.data)
    bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
    arrays = (p.data, np.ascontiguousarray(g), state["m"], state["v"])

    def update(*block):
        for p_, g_, m_, v_, step, decayed in _pieces(*block, scratch=2):
            if opt.weight_decay:                      # g + wd * p
                g_ = np.add(g_, np.multiply(p_, opt.weight_decay, out=decayed), out=decayed)
            p_ -= _moments_and_step(opt, g_, m_, v_, step, bias1, bias2)
    if all(a.flags.c_contiguous for a in arrays):    # blocks of the flat arrays, on the engine's threads
        parallel.for_blocks(lambda lo, hi: update(*(a.reshape(-1)[lo:hi] for a in arrays)), p.data.size,
                            min_block=1 << 18)
    else:
        update(*arrays)


def _pieces(*arrays, scratch: int = 0):
    """The arrays (same shape) cut into matching flat pieces, plus `scratch` temporary arrays of the
    piece's size: ten elementwise passes then read each array from memory once. Arrays that are not
    contiguous come whole (a flat view of them would be a copy)."""
    dtype = arrays[0].dtype
    if not all(a.flags.c_contiguous for a in arrays):
        yield (*arrays, *(np.empty(arrays[0].shape, dtype) for _ in range(scratch)))
        return
    flat = [a.reshape(-1) for a in arrays]
    size = flat[0].size
    temps = [np.empty(min(size, PIECE), dtype) for _ in range(scratch)]
    for start in range(0, size, PIECE):
        stop = min(start + PIECE, size)
        yield (*(a[start:stop] for a in flat), *(t[:stop - start] for t in temps))


# ==================================================================== all parameters at once
def _flat_applies(params, states) -> bool:
    if sum(p.size for p in params) > FLAT_MAX or any(p.grad is None for p in params):
        return False
    steps = {int(st.get("step", 0)) for st in states}
    return len(steps) == 1 and len({p.dtype for p in params}) == 1     # one step count, one dtype


def _flat_buffers(opt):
    """(m, v, bounds): every state["m"], state["v"] a view into m, v (rebuilt when they are not)."""
    flat = getattr(opt, "_flat", None)
    if flat is None or any(st.get("m") is not view for st, view in zip(opt.state, flat[3])):
        bounds = np.concatenate([[0], np.cumsum([p.size for p in opt.params])])
        m, v = (np.zeros(bounds[-1], opt.params[0].dtype) for _ in range(2))
        for p, st, start, stop in zip(opt.params, opt.state, bounds[:-1], bounds[1:]):
            m_view, v_view = m[start:stop].reshape(p.shape), v[start:stop].reshape(p.shape)
            if "m" in st:
                m_view[...], v_view[...] = st["m"], st["v"]
            st["m"], st["v"] = m_view, v_view
        flat = opt._flat = (m, v, bounds, [st["m"] for st in opt.state])
    return flat[:3]


def _step_flat(opt) -> None:
    beta1, beta2 = opt.betas
    m, v, bounds = _flat_buffers(opt)
    t = int(opt.state[0].get("step", 0)) + 1
    for st in opt.state:
        st["step"] = np.asarray(t)
    dtype = m.dtype
    g = np.concatenate([value(p.grad).astype(dtype, copy=False).reshape(-1) for p in opt.params])
    if opt.weight_decay:                                              # g + wd * p
        g += np.concatenate([p.data.reshape(-1) for p in opt.params]) * dtype.type(opt.weight_decay)
    step = _moments_and_step(opt, g, m, v, np.empty_like(g), 1 - beta1 ** t, 1 - beta2 ** t)
    for p, start, stop in zip(opt.params, bounds[:-1], bounds[1:]):
        p.data -= step[start:stop].reshape(p.shape)
