r"""The Tensor: a NumPy array that remembers how it was computed.

How reverse-mode autodiff works here, in four sentences.
1. Every operation on Tensors returns a new Tensor that stores its inputs (`_parents`) and its backward
   rules (`_backward`): for each input, dL/d(input) as a function of g = dL/d(output), the inputs and
   the output, e.g. for a * b: (g * b, g * a).
2. `loss.backward()` sorts the graph topologically (iteratively, with an explicit stack, so a
   5,000-step chain does not hit Python's recursion limit) and applies each node's rules from the
   output towards the inputs (autodiff/engine.py).
3. The gradient an input receives is *added* to what it already has (adding, never overwriting, is what
   makes `y + y` and fan-out correct).
4. Broadcasting is undone in exactly one place, `unbroadcast` (the adjoint of broadcasting is
   summation), and every gradient is checked to have its input's shape.

Rules are written with operators and the engine's own ops, so the same rule runs on NumPy arrays (an
ordinary backward: fast, no graph) or on Tensors (`backward(create_graph=True)`: the gradients are
Tensors in the graph and can be differentiated again). Quantities that are constant almost everywhere
(masks, signs, the position of a maximum) are taken with `value(...)`, as arrays.

Gradients of leaf tensors accumulate across calls, as in PyTorch: set `t.grad = None` (or use an
optimizer's `zero_grad()`) between steps. Gradients of intermediate nodes are recomputed on every
backward(). `.grad` is a NumPy array; after backward(create_graph=True) it is a Tensor.

Memory. A rule gets the output as an argument instead of capturing it: capturing would form a reference
cycle, which only Python's slow cycle collector frees. After backward() the rules are dropped (a second
backward through the same graph raises) unless retain_graph=True.

dtypes (PyTorch's categories; checked once, in `Tensor._make`):
- Only floating-point tensors carry gradients. Integer and boolean tensors flow, as constants, through
  the ops whose result is integer too (+ - * % **, indexing, shapes, sum, max, sort, relu, ...) and
  through comparisons (plain boolean arrays).
- An op whose inputs are all integer/boolean but whose result would be floating-point (exp, sin, /,
  mean, var, inv, ...) raises TypeError: no silent promotion to float64; cast first (`x.astype(np.float32)`).
- Next to a floating tensor, an integer/boolean one takes the floating one's dtype (float32 + int64 is
  float32, as PyTorch; NumPy would give float64).
- A Python or NumPy scalar is weak: it takes the tensor's dtype (float32 * 2.0 and F.maximum(x, 0.5) stay
  float32); only where that dtype cannot hold it does it promote (int64 tensor * 2.5 is float64).
"""
from __future__ import annotations

import numpy as np

from .backend import replaceable
from .grad_mode import _GradMode, enable_grad, no_grad, is_grad_enabled  # noqa: F401  (re-exported)


# ==================================================================== broadcasting, in one place
def unbroadcast(grad, shape: tuple):
    """Sum `grad` (array or Tensor) down to `shape`. The adjoint of broadcasting is summation: an input
    that was broadcast received the same value in many output positions, so its gradient is the sum of
    the gradients of all those positions."""
    if grad.shape == shape:
        return grad
    ### BEGIN SOLUTION unbroadcast
    ### task: sum away the leading axes broadcasting added, then the size-1 axes it stretched
    ### hint: unbroadcast's docstring: the adjoint of broadcasting is summation
    extra = grad.ndim - len(shape)
    if extra > 0:                                   # leading axes that broadcasting added
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:                                   # size-1 axes that broadcasting stretched
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad
    ### END SOLUTION


def _fit(grad, shape: tuple):
    """A rule's gradient brought to its input's shape: summed where the input was broadcast, broadcast
    where the rule gave one value for many positions (a reduction's gradient)."""
    if grad.shape != shape and grad.ndim <= len(shape) and _broadcasts_to(grad.shape, shape):
        return np.broadcast_to(grad, shape) if isinstance(grad, np.ndarray) else M.broadcast_to(grad, shape)
    grad = unbroadcast(grad, shape)
    if grad.shape != shape:
        raise ValueError(f"a backward rule gave a gradient of shape {grad.shape} for an input of shape {shape}")
    return grad


def _broadcasts_to(small: tuple, shape: tuple) -> bool:
    return all(s in (1, n) for s, n in zip(small[::-1], shape[::-1]))


def broadcast_shape(op: str, a: tuple, b: tuple) -> tuple:
    if a == b:
        return a
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise ValueError(f"{op}: shapes {a} and {b} cannot be broadcast together "
                         f"(each trailing axis must match or be 1)") from None


def value(x):
    """The numbers of a Tensor or array, as an array: for masks and signs inside backward rules."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def as_tensor(x, like=None) -> "Tensor":
    """x as a Tensor; a Python or NumPy scalar is weak: it takes the dtype of `like` (a Tensor or array)
    where that holds it (float32 * 2.0 stays float32, as NumPy does for Python numbers)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, np.integer, np.floating)):
        x = x.item() if isinstance(x, np.generic) else x
        return Tensor(np.asarray(x, dtype=np.result_type(like.dtype, x)))
    return Tensor(x)


# ==================================================================== the Tensor
class Tensor:
    """A NumPy array `data` plus, when `requires_grad`, the graph that produced it.

    Tensor(data, requires_grad=False): `data` keeps its dtype (float32 for training, float64 for
    gradient checks). Only floating-point tensors can require gradients.
    """
    __array_ufunc__ = None          # `ndarray + Tensor` calls Tensor.__radd__ instead of NumPy's ufunc
    _recompute = None               # a node whose rules take arrays only (a fast op): rebuilds it with Tensor rules

    def __init__(self, data, requires_grad: bool = False, _parents: tuple = (), _op: str = ""):
        self.data = data.data if isinstance(data, Tensor) else np.asarray(data)
        if requires_grad and self.data.dtype.kind != "f":            # float16/32/64 only
            raise TypeError(f"only floating-point tensors can require gradients, got dtype "
                            f"{self.data.dtype}; convert first, e.g. Tensor(x.astype(np.float32), "
                            f"requires_grad=True)")
        self.requires_grad = bool(requires_grad)
        self.grad = None                 # dL/d(this), of data's shape, once backward() reached us
        self._parents = _parents         # the Tensors this one was computed from
        self._op = _op                   # name of the operation, for printing graphs
        self._backward = None            # rule(s): (g, *inputs, out) -> dL/d(input), see the docstring
        self._grad_buffer = None         # a gradient array this leaf allocated itself (may add in place)

    @staticmethod
    def _make(data, parents: tuple, op: str) -> "Tensor":
        """The result of an op. It joins the graph only if grad mode is on and an input needs grad."""
        needs_grad = _GradMode.enabled and any(p.requires_grad for p in parents)
        out = Tensor(data, needs_grad, parents if needs_grad else (), op)
        if out.data.dtype.kind == "f" and any(p.data.dtype.kind != "f" for p in parents):
            out.data = _from_integers(out.data, parents, op)
        return out

    # ---------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph: bool = None, create_graph: bool = False) -> None:
        """Add d(self)/d(leaf) * grad into `.grad` of every leaf this tensor depends on (and set `.grad`
        of every intermediate node). `grad` defaults to 1 for a scalar. create_graph=True computes the
        gradients as Tensors in the graph (differentiate them again); the graph is freed afterwards
        unless retain_graph (default: create_graph) is true."""
        order, grads = engine.backprop([self], [engine.seed(self, grad)], create_graph)
        for node in order:
            g = grads.get(id(node))
            if node._parents:
                node.grad = g
            elif g is not None:
                node._add_to_leaf(g)
        if not (create_graph if retain_graph is None else retain_graph):
            engine.free(order)

    def _add_to_leaf(self, g) -> None:
        """leaf.grad += g, allocating a new array the first time two gradients meet (an array received
        from backprop may be shared with another tensor)."""
        if self.grad is None:
            self.grad = g
        elif isinstance(self.grad, Tensor) or isinstance(g, Tensor):
            self.grad = as_tensor(self.grad) + g
        elif self.grad is self._grad_buffer:
            self.grad += g
        else:
            self.grad = self._grad_buffer = np.add(self.grad, g, out=np.empty(self.shape, self.dtype))

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

    # comparisons give plain boolean arrays (no gradient flows through a comparison)
    def __lt__(self, other): return self.data < value(other)
    def __le__(self, other): return self.data <= value(other)
    def __gt__(self, other): return self.data > value(other)
    def __ge__(self, other): return self.data >= value(other)
    def __eq__(self, other): return self.data == value(other)
    def __ne__(self, other): return self.data != value(other)
    __hash__ = object.__hash__      # tensors are graph nodes: hashed by identity

    # ---------------------------------------------------------------- arithmetic
    def __add__(self, other):
        """a + b: d/da = 1, d/db = 1."""
        other = as_tensor(other, self)
        broadcast_shape("add", self.shape, other.shape)
        out = Tensor._make(self.data + other.data, (self, other), "add")
        out._backward = (lambda g, a, b, out: g,
                         lambda g, a, b, out: g)
        return out

    def __sub__(self, other):
        """a - b: d/da = 1, d/db = -1."""
        other = as_tensor(other, self)
        broadcast_shape("sub", self.shape, other.shape)
        out = Tensor._make(self.data - other.data, (self, other), "sub")
        out._backward = (lambda g, a, b, out: g,
                         lambda g, a, b, out: -g)
        return out

    def __mul__(self, other):
        """a * b: d/da = b, d/db = a."""
        other = as_tensor(other, self)
        broadcast_shape("mul", self.shape, other.shape)
        out = Tensor._make(self.data * other.data, (self, other), "mul")
        ### BEGIN SOLUTION mul_backward
        ### task: the two rules of a * b (the engine unbroadcasts them)
        ### hint: __mul__'s docstring: d/da = b, d/db = a
        out._backward = (lambda g, a, b, out: g * b,
                         lambda g, a, b, out: g * a)
        ### END SOLUTION
        return out

    def __truediv__(self, other):
        """a / b: d/da = 1/b, d/db = -a/b^2 = -out/b."""
        other = as_tensor(other, self)
        broadcast_shape("div", self.shape, other.shape)
        out = Tensor._make(self.data / other.data, (self, other), "div")
        ### BEGIN SOLUTION div_backward
        ### task: the two rules of a / b, the second reusing the output
        ### hint: __truediv__'s docstring
        out._backward = (lambda g, a, b, out: g / b,
                         lambda g, a, b, out: -g * out / b)
        ### END SOLUTION
        return out

    def __pow__(self, other):
        """a ** b: d/da = b a^(b-1), d/db = a^b log(a). At a = 0 the limits, as PyTorch: d/da = 0 where
        b = 0 (a^0 = 1), d/db = 0 where b >= 0 (a^b log a -> 0); a is read as 1 there (no 0 * inf)."""
        other = as_tensor(other, self)
        broadcast_shape("pow", self.shape, other.shape)
        out = Tensor._make(self.data ** other.data, (self, other), "pow")
        out._backward = (lambda g, a, b, out: g * b * F.where(value(b) == 0, 1, a) ** (b - 1),
                         lambda g, a, b, out: g * out * M.log(F.where((value(a) == 0) & (value(b) >= 0), 1, a)))
        return out

    def __mod__(self, other): return F.mod(self, other)
    def __rmod__(self, other): return F.mod(as_tensor(other, self), self)

    def __neg__(self):
        """-a: d/da = -1."""
        out = Tensor._make(-self.data, (self,), "neg")
        out._backward = lambda g, a, out: -g
        return out

    def __matmul__(self, other): return matmul(self, other)
    def __radd__(self, other): return as_tensor(other, self) + self
    def __rsub__(self, other): return as_tensor(other, self) - self
    def __rmul__(self, other): return as_tensor(other, self) * self
    def __rtruediv__(self, other): return as_tensor(other, self) / self
    def __rpow__(self, other): return as_tensor(other, self) ** self
    def __rmatmul__(self, other): return matmul(as_tensor(other, self), self)

    # ---------------------------------------------------------------- named methods
    # Each one's forward, backward and math line are in autodiff/tensor_methods.py (`M`).
    def exp(self): return M.exp(self)
    def log(self): return M.log(self)
    def sqrt(self): return M.sqrt(self)
    def abs(self): return M.abs(self)
    def clip(self, min=None, max=None): return M.clip(self, min, max)
    def sin(self): return F.sin(self)
    def cos(self): return F.cos(self)
    def tan(self): return F.tan(self)
    def sinh(self): return F.sinh(self)
    def cosh(self): return F.cosh(self)
    def tanh(self): return F.tanh(self)
    def arcsin(self): return F.arcsin(self)
    def arccos(self): return F.arccos(self)
    def arctan(self): return F.arctan(self)
    def arctan2(self, other): return F.arctan2(self, other)
    def sign(self): return F.sign(self)
    def floor(self): return F.floor(self)
    def ceil(self): return F.ceil(self)
    def round(self, decimals=0): return F.round(self, decimals)
    def logaddexp(self, other): return F.logaddexp(self, other)
    def hypot(self, other): return F.hypot(self, other)
    def astype(self, dtype): return M.astype(self, dtype)
    def sum(self, axis=None, keepdims=False): return M.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return M.mean(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return M.var(self, axis, keepdims, ddof)
    def max(self, axis=None, keepdims=False): return M.extremum(self, np.max, "max", axis, keepdims)
    def min(self, axis=None, keepdims=False): return M.extremum(self, np.min, "min", axis, keepdims)
    def std(self, axis=None, keepdims=False, ddof=0): return F.std(self, axis, keepdims, ddof)
    def prod(self, axis=None, keepdims=False): return F.prod(self, axis, keepdims)
    def cumsum(self, axis=None): return F.cumsum(self, axis)
    def logsumexp(self, axis=None, keepdims=False): return F.logsumexp(self, axis, keepdims)
    def squeeze(self, axis=None): return F.squeeze(self, axis)
    def unsqueeze(self, axis): return F.unsqueeze(self, axis)
    def flatten(self, start_dim=0, end_dim=-1): return F.flatten(self, start_dim, end_dim)
    def flip(self, axis): return F.flip(self, axis)
    def roll(self, shifts, axis=None): return F.roll(self, shifts, axis)
    def repeat(self, *sizes): return F.repeat(self, *sizes)
    def tile(self, reps): return F.tile(self, reps)
    def tril(self, k=0): return F.tril(self, k)
    def triu(self, k=0): return F.triu(self, k)
    def diag(self, k=0): return F.diag(self, k)
    def diagonal(self, offset=0, axis1=0, axis2=1): return F.diagonal(self, offset, axis1, axis2)
    def trace(self, offset=0, axis1=0, axis2=1): return F.trace(self, offset, axis1, axis2)
    def sort(self, axis=-1, descending=False): return F.sort(self, axis, descending)
    def argsort(self, axis=-1, descending=False): return F.argsort(self, axis, descending)
    def chunk(self, chunks, axis=0): return F.chunk(self, chunks, axis)
    def inverse(self): return F.inv(self)
    def det(self): return F.det(self)
    def slogdet(self): return F.slogdet(self)
    def __getitem__(self, index): return M.getitem(self, index)
    def swapaxes(self, a, b): return M.swapaxes(self, a, b)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return M.reshape(self, tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return M.transpose(self, tuple(axes) if axes else tuple(reversed(range(self.ndim))))

    T = property(lambda self: self.transpose())


# ==================================================================== matrix product
@replaceable("matmul")
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """A @ B (batched over leading axes): dL/dA = G B^T, dL/dB = A^T G. A vector operand is a (1, K) row
    or a (K, 1) column whose extra axis is dropped afterwards, as in NumPy."""
    a, b = as_tensor(a), as_tensor(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1 and b.ndim == 1:                        # vector @ vector: row times column
        return matmul(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:                                        # vector @ matrix
        result = matmul(a.reshape(1, -1), b)
        return result.reshape(*result.shape[:-2], result.shape[-1])
    if b.ndim == 1:                                        # matrix @ vector
        return matmul(a, b.reshape(-1, 1)).reshape(*a.shape[:-1])
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align: {a.shape[-1]} (last axis "
                         f"of the left) != {b.shape[-2]} (second-to-last axis of the right)")
    broadcast_shape(f"matmul: shapes {a.shape} and {b.shape}: batch axes", a.shape[:-2], b.shape[:-2])
    out = Tensor._make(a.data @ b.data, (a, b), "matmul")
    ### BEGIN SOLUTION matmul_backward
    ### task: the two rules of A @ B, batched over leading axes
    ### hint: matmul's docstring: dL/dA = G B^T, dL/dB = A^T G
    out._backward = (lambda g, a, b, out: g @ b.swapaxes(-1, -2),
                     lambda g, a, b, out: a.swapaxes(-1, -2) @ g)
    ### END SOLUTION
    return out


def _from_integers(data: np.ndarray, parents: tuple, op: str) -> np.ndarray:
    """The dtype rule for integer inputs (module docstring): cast to the floating inputs' dtype, or raise."""
    floating = [p.data.dtype for p in parents if p.data.dtype.kind == "f"]
    if not floating:
        found = ", ".join(str(p.data.dtype) for p in parents)
        raise TypeError(f"{op}: integer/boolean input ({found}) would give a floating-point result; cast it "
                        f"first, e.g. x.astype(np.float32) (integer tensors carry no gradient)")
    return data.astype(np.result_type(*floating), copy=False)


from . import engine, functional as F, tensor_methods as M  # noqa: E402  (they import Tensor from this module)
