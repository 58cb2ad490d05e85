"""Gradient mode: whether operations record a graph. `with no_grad():` switches it off (inference,
target networks, optimizer updates), `with enable_grad():` on again; `is_grad_enabled()` reads it."""
from __future__ import annotations

import contextlib


class _GradMode:
    enabled = True


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous, _GradMode.enabled = _GradMode.enabled, enabled
    try:
        yield
    finally:
        _GradMode.enabled = previous


def no_grad():
    """Inside `with no_grad():` operations build no graph (inference, target networks, updates)."""
    return _grad_mode(False)


def enable_grad():
    """Inside `with enable_grad():` operations build a graph again (e.g. a gradient penalty in no_grad)."""
    return _grad_mode(True)


def is_grad_enabled() -> bool:
    return _GradMode.enabled
