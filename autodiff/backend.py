r"""One switch between the reference engine and the fast backend.

    NUMPY_DL_LAB_BACKEND=reference|fast      read when autodiff is imported (unset: fast)
    autodiff.use_backend("reference")        a function, and a context manager: `with use_backend(...):`
    python scripts/train.py MODEL --backend reference

The reference engine is this package: every op plain NumPy, written to be read. The fast backend is the
package autodiff/fast beside it (threads, memory layouts, Winograd, fused kernels). A core op that has a
faster version is marked `@replaceable("name")`; when the fast package is loaded it fills `FAST_OPS`
(op name -> a function with the op's signature). With the fast backend selected, a replaceable op calls
its fast version, which may decline a case by returning NotImplemented (then the reference runs); with
the reference backend, no line of autodiff/fast runs.

The dependency points one way: the core never imports the fast package; `use_backend("fast")` loads it
by name, here and nowhere else. A node built by a fast op remembers how to rebuild itself with the
reference op (`_recompute`), so that a backward with create_graph=True can use the reference rules.
"""
from __future__ import annotations

import functools
import importlib
import os

ENV_VAR = "NUMPY_DL_LAB_BACKEND"
BACKENDS = ("reference", "fast")
FAST_OPS: dict = {}                    # op name -> fast function, filled by autodiff/fast when loaded
REFERENCE_OPS: dict = {}               # op name -> the reference function, filled by @replaceable
_selected = ["reference"]              # the backend in use (a list: changed in place)
DEFAULT_BACKEND = "fast"


def current_backend() -> str:
    return _selected[0]


class use_backend:
    """Select the backend: `use_backend("reference")` from now on, or `with use_backend("reference"):`
    for a block (the previous backend comes back at its end)."""

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
        if name == "fast":
            importlib.import_module("autodiff.fast")          # registers its ops in FAST_OPS
        self.previous, _selected[0] = _selected[0], name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _selected[0] = self.previous


def backend_from_environment() -> str:
    """The backend named by NUMPY_DL_LAB_BACKEND (unset or empty: DEFAULT_BACKEND, which a student copy of
    scripts/exercise.py sets to reference); a bad value is a clear error."""
    name = os.environ.get(ENV_VAR, "").strip() or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"{ENV_VAR}: expected one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def replaceable(name: str):
    """Mark a core op that the fast backend may replace (by `name` in FAST_OPS)."""
    def decorate(reference):
        @functools.wraps(reference)
        def op(*args, **kwargs):
            fast = FAST_OPS.get(name) if _selected[0] == "fast" else None
            if fast is not None:
                out = fast(*args, **kwargs)
                if out is not NotImplemented:
                    if getattr(out, "requires_grad", False) and out._recompute is None:
                        out._recompute = functools.partial(run_reference, name, *args, **kwargs)
                    return out
            return reference(*args, **kwargs)
        op.reference = REFERENCE_OPS[name] = reference
        return op
    return decorate


def run_reference(name: str, *args, **kwargs):
    """The reference op `name` on these inputs, whatever the backend (rebuilds a fast op's node with the
    reference rules, for a create_graph backward)."""
    with use_backend("reference"):
        return REFERENCE_OPS[name](*args, **kwargs)
