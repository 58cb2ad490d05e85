r"""Finite-difference gradient checking: the test that proves a backward pass.

For a function f and a fixed random array w of f's output shape, the scalar
    L(x) = sum(w * f(x))
has the analytic gradient dL/dx = (backward of f applied to w). Its numerical gradient, one element
at a time, is the central difference
    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)         (error O(eps^2)).
The projection on a *random* w matters: with a plain sum (w = 1) a softmax's or batch norm's
gradient is identically zero, so a broken backward would pass.
"""
from __future__ import annotations

import numpy as np

from .engine import grad
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and the numerical gradient disagree (the message says where and by how much)."""


def _outputs(result) -> list:
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if not all(isinstance(r, Tensor) for r in results):
        raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors, got {type(result).__name__}")
    return results


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4,
              seed: int = 0, raise_exception: bool = True) -> bool:
    """Compare fn's backward pass with central differences, for every element of every input
    that requires grad. Inputs must be float64 Tensors (float32 finite differences are noise).

    Passes when |analytic - numeric| <= atol + rtol * |numeric| everywhere. Otherwise raises
    GradcheckError naming the input, the worst index, both values and the relative error
    (or returns False when raise_exception=False)."""
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 "
                            f"(Tensor(x.astype(np.float64), requires_grad=True))")

    outputs = _outputs(fn(*inputs))
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(out.shape) for out in outputs]

    def projected(*args) -> float:
        with no_grad():
            return sum(float(np.sum(w * out.data)) for w, out in zip(weights, _outputs(fn(*args))))

    # analytic: the backward pass of L = sum(w * f(x)) (autodiff.grad: the inputs' .grad is not touched)
    loss = sum(((out * Tensor(w)).sum() for out, w in zip(outputs, weights) if out.requires_grad), Tensor(0.0))
    grads = grad(loss, [inputs[i] for i in checked], allow_unused=True) if loss.requires_grad else [None] * len(checked)
    analytic = {i: np.zeros_like(inputs[i].data) if g is None else g.data for i, g in zip(checked, grads)}

    # numeric: central differences, one element at a time
    for i in checked:
        x = inputs[i].data
        numeric = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            ### BEGIN SOLUTION central_difference
            ### task: nudge x[index] by +eps and -eps, evaluate L each time, restore x, store the slope
            ### hint: the module docstring: (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
            original = x[index]
            x[index] = original + eps
            plus = projected(*inputs)
            x[index] = original - eps
            minus = projected(*inputs)
            x[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
            ### END SOLUTION

        error = np.abs(analytic[i] - numeric)
        bad = error > atol + rtol * np.abs(numeric)
        if bad.any():
            relative = error / np.maximum(np.maximum(np.abs(analytic[i]), np.abs(numeric)), 1e-12)
            worst = np.unravel_index(np.argmax(np.where(bad, relative, -1)), x.shape)
            message = (f"gradcheck failed for input {i} (shape {x.shape}): {int(bad.sum())} of {x.size} "
                       f"elements disagree; worst at index {tuple(int(k) for k in worst)}: "
                       f"analytic {analytic[i][worst]:.8g} vs numeric {numeric[worst]:.8g} "
                       f"(relative error {relative[worst]:.3g})")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True
