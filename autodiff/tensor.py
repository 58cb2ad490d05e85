r"""The Tensor: a NumPy array that remembers how it was computed.

How reverse-mode autodiff works here, in four sentences.
1. Every operation on Tensors returns a new Tensor that stores its inputs (`_parents`) and a closure
   `_backward` that knows the operation's local derivative.
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
between nodes: treat `.grad` as read-only, or assign a new array.

Memory. Each `_backward` closure refers to its own output, a reference cycle that only Python's slow
cycle collector would free. So `backward()` frees the graph it walked (replaces each closure by one
that raises if called again; pass retain_graph=True to keep it), and inside `no_grad()` no closure is
stored at all. Then a step's graph is freed by reference counting as soon as the loss goes away.
"""
from __future__ import annotations

import contextlib

import numpy as np


# ==================================================================== gradient mode
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
        self._backward_fn = None         # closure: adds d(loss)/d(parent) into each parent's grad

    @property
    def _backward(self):
        return self._backward_fn

    @_backward.setter
    def _backward(self, fn):
        """Ops set `out._backward = closure`; kept only if `out` is part of a graph (see Memory)."""
        if self.requires_grad:
            self._backward_fn = fn

    # ---------------------------------------------------------------- building the graph
    @staticmethod
    def _make(data, parents: tuple, op: str) -> "Tensor":
        """The result of an op. It joins the graph only if grad mode is on and an input needs grad."""
        needs_grad = _GradMode.enabled and any(p.requires_grad for p in parents)
        return Tensor(data, needs_grad, parents if needs_grad else (), op)

    def _accumulate(self, grad) -> None:
        """self.grad += grad, after undoing broadcasting. Every gradient in the engine passes here."""
        if not self.requires_grad:
            return
        grad = unbroadcast(np.asarray(grad), self.data.shape)
        assert grad.shape == self.data.shape, \
            f"gradient of shape {grad.shape} for a tensor of shape {self.data.shape} ({self._op or 'leaf'})"
        if grad.dtype != self.data.dtype:
            grad = grad.astype(self.data.dtype)
        self.grad = grad if self.grad is None else self.grad + grad

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
                node._backward_fn()
        if not retain_graph:               # break the closure -> output cycles (see Memory)
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

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.data.dtype}{grad})"

    def item(self) -> float:
        return self.data.item()

    def __float__(self) -> float:
        return float(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> "Tensor":
        """Same data, no history: gradients stop here."""
        return Tensor(self.data)

    def astype(self, dtype) -> "Tensor":
        """Cast; the gradient is cast back. Casting to an integer type ends the graph (no gradient)."""
        if not np.issubdtype(np.dtype(dtype), np.floating):
            return Tensor(self.data.astype(dtype))
        out = Tensor._make(self.data.astype(dtype), (self,), "astype")
        out._backward = lambda: self._accumulate(out.grad.astype(self.data.dtype))
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
        def _backward():
            self._accumulate(out.grad)
            other._accumulate(out.grad)
        out._backward = _backward
        return out

    def __sub__(self, other):
        """a - b: d/da = 1, d/db = -1."""
        other = self._wrap(other)
        _broadcast_shape("sub", self.shape, other.shape)
        out = Tensor._make(self.data - other.data, (self, other), "sub")
        def _backward():
            self._accumulate(out.grad)
            other._accumulate(-out.grad)
        out._backward = _backward
        return out

    def __mul__(self, other):
        """a * b: d/da = b, d/db = a."""
        other = self._wrap(other)
        _broadcast_shape("mul", self.shape, other.shape)
        out = Tensor._make(self.data * other.data, (self, other), "mul")
        def _backward():
            self._accumulate(out.grad * other.data)
            other._accumulate(out.grad * self.data)
        out._backward = _backward
        return out

    def __truediv__(self, other):
        """a / b: d/da = 1/b, d/db = -a/b^2 = -out/b."""
        other = self._wrap(other)
        _broadcast_shape("div", self.shape, other.shape)
        out = Tensor._make(self.data / other.data, (self, other), "div")
        def _backward():
            self._accumulate(out.grad / other.data)
            other._accumulate(-out.grad * out.data / other.data)
        out._backward = _backward
        return out

    def __pow__(self, other):
        """a ** b: d/da = b a^(b-1), d/db = a^b log(a) (only computed when b needs grad)."""
        other = self._wrap(other)
        _broadcast_shape("pow", self.shape, other.shape)
        out = Tensor._make(self.data ** other.data, (self, other), "pow")
        def _backward():
            self._accumulate(out.grad * other.data * self.data ** (other.data - 1))
            if other.requires_grad:
                other._accumulate(out.grad * out.data * np.log(self.data))
        out._backward = _backward
        return out

    def __neg__(self):
        """-a: d/da = -1."""
        out = Tensor._make(-self.data, (self,), "neg")
        out._backward = lambda: self._accumulate(-out.grad)
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
            np.broadcast_shapes(self.shape[:-2], other.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: shapes {self.shape} and {other.shape}: batch axes {self.shape[:-2]} "
                             f"and {other.shape[:-2]} cannot be broadcast together") from None
        out = Tensor._make(self.data @ other.data, (self, other), "matmul")
        def _backward():
            if self.requires_grad:
                self._accumulate(out.grad @ np.swapaxes(other.data, -1, -2))
            if other.requires_grad:
                other._accumulate(np.swapaxes(self.data, -1, -2) @ out.grad)
        out._backward = _backward
        return out

    # ---------------------------------------------------------------- elementwise functions
    def exp(self):
        """exp: f(x) = e^x, f'(x) = e^x (reuse the output)."""
        out = Tensor._make(np.exp(self.data), (self,), "exp")
        out._backward = lambda: self._accumulate(out.grad * out.data)
        return out

    def log(self):
        """log: f(x) = ln x, f'(x) = 1/x."""
        out = Tensor._make(np.log(self.data), (self,), "log")
        out._backward = lambda: self._accumulate(out.grad / self.data)
        return out

    def sqrt(self):
        """sqrt: f(x) = x^(1/2), f'(x) = 1 / (2 sqrt(x)) (reuse the output)."""
        out = Tensor._make(np.sqrt(self.data), (self,), "sqrt")
        out._backward = lambda: self._accumulate(out.grad / (2 * out.data))
        return out

    def abs(self):
        """abs: f(x) = |x|, f'(x) = sign(x) (0 at the kink x = 0)."""
        out = Tensor._make(np.abs(self.data), (self,), "abs")
        out._backward = lambda: self._accumulate(out.grad * np.sign(self.data))
        return out

    def clip(self, min=None, max=None):
        """clip: f(x) = min(max(x, lo), hi), f'(x) = 1 inside [lo, hi], 0 outside."""
        out = Tensor._make(np.clip(self.data, min, max), (self,), "clip")
        def _backward():
            inside = np.ones(self.shape, dtype=bool)
            if min is not None:
                inside &= self.data >= min
            if max is not None:
                inside &= self.data <= max
            self._accumulate(out.grad * inside)
        out._backward = _backward
        return out

    # ---------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims=False):
        """sum: every input element gets the output's gradient (broadcast back)."""
        out = Tensor._make(self.data.sum(axis=axis, keepdims=keepdims), (self,), "sum")
        out._backward = lambda: self._accumulate(_expand(out.grad, self.shape, axis, keepdims))
        return out

    def mean(self, axis=None, keepdims=False):
        """mean = sum / n: every input element gets the output's gradient divided by n."""
        data = self.data.mean(axis=axis, keepdims=keepdims)
        count = self.data.size // max(np.size(data), 1)
        out = Tensor._make(data, (self,), "mean")
        out._backward = lambda: self._accumulate(_expand(out.grad, self.shape, axis, keepdims) / count)
        return out

    def var(self, axis=None, keepdims=False, ddof=0):
        """var = sum((x - mean)^2) / (n - ddof): d/dx_i = 2 (x_i - mean) / (n - ddof)."""
        mean = self.data.mean(axis=axis, keepdims=True)
        count = self.data.size // mean.size
        out = Tensor._make(self.data.var(axis=axis, keepdims=keepdims, ddof=ddof), (self,), "var")
        def _backward():
            g = _expand(out.grad, self.shape, axis, keepdims)
            self._accumulate(g * 2 * (self.data - mean) / (count - ddof))
        out._backward = _backward
        return out

    def max(self, axis=None, keepdims=False):
        """max: the gradient goes to the maximal element (split evenly between ties)."""
        return self._extremum(np.max, "max", axis, keepdims)

    def min(self, axis=None, keepdims=False):
        """min: the gradient goes to the minimal element (split evenly between ties)."""
        return self._extremum(np.min, "min", axis, keepdims)

    def _extremum(self, reduce, name, axis, keepdims):
        out = Tensor._make(reduce(self.data, axis=axis, keepdims=keepdims), (self,), name)
        def _backward():
            picked = self.data == _expand(out.data, self.shape, axis, keepdims)
            ties = picked.sum(axis=axis, keepdims=True)
            self._accumulate(_expand(out.grad, self.shape, axis, keepdims) * picked / ties)
        out._backward = _backward
        return out

    # ---------------------------------------------------------------- shape operations
    def reshape(self, *shape):
        """reshape: the gradient is reshaped back."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} "
                             f"({self.data.size} elements) into shape {tuple(shape)}") from None
        out = Tensor._make(data, (self,), "reshape")
        out._backward = lambda: self._accumulate(out.grad.reshape(self.shape))
        return out

    def transpose(self, *axes):
        """transpose: the gradient is transposed by the inverse permutation."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) if axes else tuple(reversed(range(self.ndim)))
        out = Tensor._make(self.data.transpose(axes), (self,), "transpose")
        out._backward = lambda: self._accumulate(out.grad.transpose(np.argsort(axes)))
        return out

    T = property(lambda self: self.transpose())

    def __getitem__(self, index):
        """x[index] (slices, or integer arrays as in q[np.arange(N), actions]): the gradient is
        scattered back into a zero array; repeated indices add up (np.add.at)."""
        index = _data(index) if isinstance(index, Tensor) else index
        if isinstance(index, tuple):
            index = tuple(_data(i) if isinstance(i, Tensor) else i for i in index)
        out = Tensor._make(self.data[index], (self,), "getitem")
        def _backward():
            grad = np.zeros_like(self.data)
            if _is_basic_index(index):      # slices and ints never repeat an element
                grad[index] = out.grad
            else:
                np.add.at(grad, index, out.grad)
            self._accumulate(grad)
        out._backward = _backward
        return out


# ==================================================================== helpers
def _graph_freed():
    raise RuntimeError("backward() through a graph that an earlier backward() already freed; "
                       "call the first backward(retain_graph=True) to go through it twice, or "
                       "recompute the forward pass")


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def _expand(grad: np.ndarray, shape: tuple, axis, keepdims: bool) -> np.ndarray:
    """Broadcast the gradient of a reduction over `axis` back to the input's `shape`."""
    if axis is not None and not keepdims:
        axes = (axis,) if np.isscalar(axis) else axis
        grad = np.expand_dims(grad, tuple(a % len(shape) for a in axes))
    return np.broadcast_to(grad, shape)
