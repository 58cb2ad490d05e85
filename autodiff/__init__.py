"""A reverse-mode automatic differentiation engine on NumPy.

    from autodiff import Tensor, no_grad, gradcheck
    import autodiff.functional as F

The reference engine imports NumPy and the standard library, nothing else. The fast backend
(autodiff/fast) plugs in beside it: NUMPY_DL_LAB_BACKEND=reference|fast (default fast) or
`autodiff.use_backend(...)` choose (autodiff/backend.py).
"""
from .tensor import Tensor, no_grad, enable_grad, is_grad_enabled, unbroadcast
from .engine import grad
from .gradcheck import gradcheck, GradcheckError
from .graph import graph_str, print_graph, to_dot
from . import functional
from .backend import use_backend, current_backend, backend_from_environment

use_backend(backend_from_environment())

__all__ = ["Tensor", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast", "grad", "gradcheck",
           "GradcheckError", "graph_str", "print_graph", "to_dot", "functional", "use_backend",
           "current_backend"]
