"""Gradient mode: whether operations record a graph. `with no_grad():` switches it off (inference,
target networks, optimizer updates); `is_grad_enabled()` reads it."""
from __future__ import annotations

import contextlib


class _GradMode:
    enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside `with no_grad():` operations build no graph (inference, target networks, updates)."""
    previous = _GradMode.enabled
    _GradMode.enabled = False
    try:
        yield
    finally:
        _GradMode.enabled = previous


def is_grad_enabled() -> bool:
    return _GradMode.enabled
