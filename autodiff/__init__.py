"""A reverse-mode automatic differentiation engine on NumPy.

    from autodiff import Tensor, no_grad, gradcheck
    import autodiff.functional as F

Imports NumPy and the standard library, nothing else. Importing it sets glibc's malloc to keep freed
memory for the next step (autodiff/memory.py; NUMPY_DL_LAB_KEEP_MEMORY=0 opts out).
"""
from .tensor import Tensor, no_grad, is_grad_enabled, unbroadcast
from .gradcheck import gradcheck, GradcheckError
from .graph import graph_str, print_graph, to_dot
from . import functional
from .memory import keep_freed_memory

keep_freed_memory()      # freed arrays stay for the next step, no page faults (autodiff/memory.py)

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "unbroadcast", "gradcheck", "GradcheckError",
           "graph_str", "print_graph", "to_dot", "functional"]
