r"""The Tensor: a NumPy array that remembers how it was computed.

How reverse-mode autodiff works here, in four sentences.
1. Every operation on Tensors returns a new Tensor that stores its inputs (`_parents`) and a closure
   `_backward(out)` that knows the operation's local derivative.
2. `loss.backward()` sorts the graph topologically (iteratively, with an explicit stack, so a
   5,000-step chain does not hit Python's recursion limit) and calls each node's `_backward` from
   the output towards the inputs.
3. Each `_backward` reads `out.grad` (dL/d out) and *adds* dL/d input = dL/d out * d out/d input into
   its inputs' `.grad` (adding, never overwriting, is what makes `y + y` and fan-out correct).
4. Broadcasting is undone in exactly one place, `unbroadcast` (the adjoint of broadcasting is
   summation), and `_accumulate` asserts that every gradient has its input's shape.

Gradients of leaf tensors accumulate across calls, as in PyTorch: two forward-backward passes (or
`backward(retain_graph=True)` followed by `backward()` on the same graph) add the gradients. Set
`t.grad = None` (or use an optimizer's `zero_grad()`) between steps. Gradients of intermediate
(non-leaf) nodes are recomputed from scratch on every `backward()`. Gradient arrays may be shared
between nodes: treat `.grad` as read-only, or assign a new array. A tensor that receives several
gradients adds them into one array it allocated itself (`_accumulate`), so a later backward() may
update a leaf's `.grad` in place, as in PyTorch.

Memory. A closure gets its output as an argument (`out._backward = lambda out: ...`, called as
`node._backward(node)`) instead of capturing it: capturing would form a reference cycle, which only
Python's slow cycle collector frees, with every array the closure saved (an LSTM's unused final
state kept ~47 MB per step alive). So a graph, and any branch of it that never reaches the loss, is
freed by reference counting as soon as its last tensor goes.
`backward()` also lets go of what the closures saved (replaces each by one that raises if called
again; pass retain_graph=True to keep them), and inside `no_grad()` no closure is stored at all.
"""
from __future__ import annotations

import numpy as np

from .grad_mode import _GradMode, no_grad, is_grad_enabled  # noqa: F401  (re-exported)
from . import parallel


# ==================================================================== broadcasting, in one place
def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`. The adjoint of broadcasting is summation: an input that was
    broadcast (leading axes added, or size-1 axes stretched) received the same value in many output
    positions, so its gradient is the sum of the gradients of all those positions."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:                                   # leading axes that broadcasting added
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:                                   # size-1 axes that broadcasting stretched
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _broadcast_shape(op: str, a: tuple, b: tuple) -> tuple:
    if a == b:                      # the common case, without NumPy's general (slower) routine
        return a
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise ValueError(f"{op}: shapes {a} and {b} cannot be broadcast together "
                         f"(each trailing axis must match or be 1)") from None


# ==================================================================== the Tensor
class Tensor:
    """A NumPy array `data` plus, when `requires_grad`, the graph that produced it.

    Tensor(data, requires_grad=False): `data` is kept with its dtype (float32 for training,
    float64 for gradient checks). Only floating-point tensors can require gradients.
    """
    __array_ufunc__ = None          # `ndarray + Tensor` calls Tensor.__radd__ instead of NumPy's ufunc

    def __init__(self, data, requires_grad: bool = False, _parents: tuple = (), _op: str = ""):
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.asarray(data)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype "
                            f"{self.data.dtype}; convert first, e.g. Tensor(x.astype(np.float32), "
                            f"requires_grad=True)")
        self.requires_grad = bool(requires_grad)
        self.grad = None                 # np.ndarray of data's shape once backward() reached us
        self._parents = _parents         # the Tensors this one was computed from
        self._op = _op                   # name of the operation, for printing graphs
        self._backward_fn = None         # closure(self): adds d(loss)/d(parent) into each parent's grad
        self._grad_buffer = None         # the gradient array this tensor allocated itself (see _accumulate)

    _backward = property(lambda self: self._backward_fn)
    _checked_closures = set()     # code objects of backward closures that passed the setter's checks

    @_backward.setter
    def _backward(self, fn):
        """Ops set `out._backward = closure(out)`; kept only if `out` is part of a graph (see Memory)."""
        if self.requires_grad:
            code = getattr(fn, "__code__", None)
            if code is not None and code not in self._checked_closures:      # once per op (a hot path)
                if code.co_argcount < 1:
                    raise TypeError(f"{self._op}: a backward closure takes its output: `lambda out: ...`")
                if any(_holds(cell, self) for cell in fn.__closure__ or ()):
                    raise TypeError(f"{self._op}: the backward closure captures its own output; use its argument")
                self._checked_closures.add(code)
            self._backward_fn = fn

    # ---------------------------------------------------------------- building the graph
    @staticmethod
    def _make(data, parents: tuple, op: str) -> "Tensor":
        """The result of an op. It joins the graph only if grad mode is on and an input needs grad."""
        needs_grad = _GradMode.enabled and any(p.requires_grad for p in parents)
        return Tensor(data, needs_grad, parents if needs_grad else (), op)

    def _accumulate(self, grad) -> None:
        """self.grad += grad, after undoing broadcasting. Every gradient in the engine passes here.

        The first gradient is stored as it is (no copy; it may be shared with another node). A second
        one is added into a new array that this tensor owns (`_grad_buffer`); later ones are added
        into that array in place, so a tensor used k times costs one allocation, not k - 1."""
        if not self.requires_grad:
            return
        grad = unbroadcast(np.asarray(grad), self.data.shape)
        assert grad.shape == self.data.shape, \
            f"gradient of shape {grad.shape} for a tensor of shape {self.data.shape} ({self._op or 'leaf'})"
        if self.grad is None:
            self.grad = grad if grad.dtype == self.data.dtype else grad.astype(self.data.dtype)
        elif self.grad is self._grad_buffer:
            self.grad += grad
        else:
            self.grad = self._grad_buffer = np.add(self.grad, grad, dtype=self.data.dtype)

    def _accumulate_at(self, index, grad, unique: bool) -> None:
        """self.grad[index] += grad: the adjoint of indexing. `unique` says that no element is
        selected twice (slices); otherwise repeated indices add up (np.add.at)."""
        if not self.requires_grad:
            return
        if self.grad is not self._grad_buffer or self.grad is None:
            buffer = np.zeros_like(self.data) if self.grad is None else self.grad.astype(self.data.dtype)
            self.grad = self._grad_buffer = buffer
        if unique:
            self.grad[index] += grad
        else:
            np.add.at(self.grad, index, grad)

    def _wrap(self, other) -> "Tensor":
        """Python numbers take this tensor's dtype, so float32 * 2.0 stays float32."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float)) and np.issubdtype(self.data.dtype, np.floating):
            return Tensor(np.asarray(other, dtype=self.data.dtype))
        return Tensor(other)

    # ---------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Fill `.grad` of every tensor this one depends on with d(self)/d(tensor), times `grad`.

        `grad` defaults to 1 for a scalar; a non-scalar output needs an explicit `grad` of its shape.
        Leaf gradients accumulate. The graph is freed afterwards unless retain_graph=True (a second
        backward through a freed graph raises, as in PyTorch)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of the "
                               "computation had requires_grad=True (or it ran inside no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without an argument needs a scalar output, got shape "
                                   f"{self.data.shape}; reduce it (e.g. .sum() or .mean()) or pass "
                                   f"grad=<array of shape {self.data.shape}>")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.data.shape:
            raise ValueError(f"backward(grad): grad has shape {grad.shape}, output has shape {self.data.shape}")

        order = self._topological_order()
        for node in order:                 # intermediate grads start from zero on every call
            if node._parents:
                node.grad = None
        self._accumulate(grad)
        for node in reversed(order):       # outputs before inputs
            if node._backward_fn is not None and node.grad is not None:
                node._backward_fn(node)
        if not retain_graph:               # free the arrays the closures saved (see Memory)
            for node in order:
                if node._parents:
                    node._backward_fn = _graph_freed

    def _topological_order(self) -> list:
        """Nodes that need grad, every node after all its parents. Iterative depth-first search."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
        return order

    # ---------------------------------------------------------------- plain properties
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self): return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.data.dtype}{grad})"

    def item(self) -> float: return self.data.item()
    def __float__(self) -> float: return float(self.data)
    def numpy(self) -> np.ndarray: return self.data

    def detach(self) -> "Tensor":
        """Same data, no history: gradients stop here."""
        return Tensor(self.data)

    def astype(self, dtype) -> "Tensor":
        """Cast; the gradient is cast back. Casting to an integer type ends the graph (no gradient)."""
        if not np.issubdtype(np.dtype(dtype), np.floating):
            return Tensor(self.data.astype(dtype))
        out = Tensor._make(self.data.astype(dtype), (self,), "astype")
        out._backward = lambda out: self._accumulate(out.grad.astype(self.data.dtype))
        return out

    # comparisons give plain boolean arrays (no gradient flows through a comparison)
    def __lt__(self, other): return self.data < _data(other)
    def __le__(self, other): return self.data <= _data(other)
    def __gt__(self, other): return self.data > _data(other)
    def __ge__(self, other): return self.data >= _data(other)
    def __eq__(self, other): return self.data == _data(other)
    def __ne__(self, other): return self.data != _data(other)
    __hash__ = object.__hash__      # tensors are graph nodes: hashed by identity

    # ---------------------------------------------------------------- arithmetic
    def __add__(self, other):
        """a + b: d/da = 1, d/db = 1."""
        other = self._wrap(other)
        _broadcast_shape("add", self.shape, other.shape)
        out = Tensor._make(self.data + other.data, (self, other), "add")
        def _backward(out):
            self._accumulate(out.grad)
            other._accumulate(out.grad)
        out._backward = _backward
        return out

    def __sub__(self, other):
        """a - b: d/da = 1, d/db = -1."""
        other = self._wrap(other)
        _broadcast_shape("sub", self.shape, other.shape)
        out = Tensor._make(self.data - other.data, (self, other), "sub")
        def _backward(out):
            self._accumulate(out.grad)
            if other.requires_grad:
                other._accumulate(-out.grad)
        out._backward = _backward
        return out

    def __mul__(self, other):
        """a * b: d/da = b, d/db = a."""
        other = self._wrap(other)
        _broadcast_shape("mul", self.shape, other.shape)
        out = Tensor._make(self.data * other.data, (self, other), "mul")
        def _backward(out):                   # (a product is computed only if its input needs it)
            if self.requires_grad:
                self._accumulate(out.grad * other.data)
            if other.requires_grad:
                other._accumulate(out.grad * self.data)
        out._backward = _backward
        return out

    def __truediv__(self, other):
        """a / b: d/da = 1/b, d/db = -a/b^2 = -out/b."""
        other = self._wrap(other)
        _broadcast_shape("div", self.shape, other.shape)
        out = Tensor._make(self.data / other.data, (self, other), "div")
        def _backward(out):
            if self.requires_grad:
                self._accumulate(out.grad / other.data)
            if other.requires_grad:
                other._accumulate(-out.grad * out.data / other.data)
        out._backward = _backward
        return out

    def __pow__(self, other):
        """a ** b: d/da = b a^(b-1), d/db = a^b log(a) (only computed when b needs grad)."""
        other = self._wrap(other)
        _broadcast_shape("pow", self.shape, other.shape)
        out = Tensor._make(self.data ** other.data, (self, other), "pow")
        def _backward(out):
            if self.requires_grad:
                self._accumulate(out.grad * other.data * self.data ** (other.data - 1))
            if other.requires_grad:
                other._accumulate(out.grad * out.data * np.log(self.data))
        out._backward = _backward
        return out

    def __neg__(self):
        """-a: d/da = -1."""
        out = Tensor._make(-self.data, (self,), "neg")
        out._backward = lambda out: self._accumulate(-out.grad)
        return out

    def __radd__(self, other): return self._wrap(other) + self
    def __rsub__(self, other): return self._wrap(other) - self
    def __rmul__(self, other): return self._wrap(other) * self
    def __rtruediv__(self, other): return self._wrap(other) / self
    def __rpow__(self, other): return self._wrap(other) ** self
    def __rmatmul__(self, other): return self._wrap(other) @ self

    def __matmul__(self, other):
        """A @ B (batched over leading axes): dL/dA = G B^T, dL/dB = A^T G."""
        other = self._wrap(other)
        if self.ndim == 0 or other.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{self.shape} and {other.shape}")
        if self.ndim == 1 and other.ndim == 1:   # vector @ vector: a (1, K) row times a (K, 1) column
            return (self.reshape(1, -1) @ other.reshape(-1, 1)).reshape(())
        if self.ndim == 1:                   # vector @ matrix: as a (1, K) row, then drop the row axis
            result = self.reshape(1, -1) @ other
            return result.reshape(*result.shape[:-2], result.shape[-1])
        if other.ndim == 1:                  # matrix @ vector: as a (K, 1) column, then drop it
            return (self @ other.reshape(-1, 1)).reshape(*self.shape[:-1])
        if self.shape[-1] != other.shape[-2]:
            raise ValueError(f"matmul: shapes {self.shape} and {other.shape} do not align: "
                             f"{self.shape[-1]} (last axis of the left) != {other.shape[-2]} "
                             f"(second-to-last axis of the right)")
        try:
            if self.ndim > 2 or other.ndim > 2:
                np.broadcast_shapes(self.shape[:-2], other.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: shapes {self.shape} and {other.shape}: batch axes {self.shape[:-2]} "
                             f"and {other.shape[:-2]} cannot be broadcast together") from None
        out = Tensor._make(parallel.matmul(self.data, other.data), (self, other), "matmul")
        def _backward(out):
            if self.requires_grad:
                self._accumulate(_product(out.grad, np.swapaxes(other.data, -1, -2), like=self.data))
            if other.requires_grad:
                other._accumulate(_product(np.swapaxes(self.data, -1, -2), out.grad, like=other.data))
        out._backward = _backward
        return out

    # ---------------------------------------------------------------- named methods
    # Each one's forward, backward and math line are in autodiff/tensor_methods.py (the operators
    # +, -, *, /, **, @ are above); `M` is that module.
    def exp(self): return M.exp(self)
    def log(self): return M.log(self)
    def sqrt(self): return M.sqrt(self)
    def abs(self): return M.abs(self)
    def clip(self, min=None, max=None): return M.clip(self, min, max)
    def sum(self, axis=None, keepdims=False): return M.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return M.mean(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return M.var(self, axis, keepdims, ddof)
    def max(self, axis=None, keepdims=False): return M.extremum(self, np.max, "max", axis, keepdims)
    def min(self, axis=None, keepdims=False): return M.extremum(self, np.min, "min", axis, keepdims)
    def __getitem__(self, index): return M.getitem(self, index)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return M.reshape(self, tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return M.transpose(self, tuple(axes) if axes else tuple(reversed(range(self.ndim))))

    T = property(lambda self: self.transpose())


# ==================================================================== helpers
def _holds(cell, value) -> bool:
    try:
        return cell.cell_contents is value
    except ValueError:                     # a cell not yet filled
        return False


def _graph_freed(_out):
    raise RuntimeError("backward() through a graph that an earlier backward() already freed; "
                       "call the first backward(retain_graph=True) to go through it twice, or "
                       "recompute the forward pass")


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _product(a: np.ndarray, b: np.ndarray, like: np.ndarray) -> np.ndarray:
    """a @ b laid out in memory as `like` (the operand whose gradient it is): a matrix stored
    column-major, such as the view W.T of a Linear layer's weight, gets its gradient computed as
    (b^T a^T)^T, so that transposing it back gives W's gradient as a contiguous array (which the
    optimizer's elementwise passes read several times)."""
    if a.ndim == b.ndim == like.ndim == 2 and like.flags.f_contiguous and not like.flags.c_contiguous:
        return parallel.matmul(b.T, a.T).T
    return parallel.matmul(a, b)


from . import tensor_methods as M  # noqa: E402  (it imports Tensor from this module)
