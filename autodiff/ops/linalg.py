r"""Linear algebra with gradients, for (n, n) matrices or batches (..., n, n) as PyTorch: inv, det, slogdet,
solve, cholesky. Notation: A^-T = (A^-1)^T, G = dL/d(output), tr the trace, <X, Y> = tr(X^T Y).

The one identity behind them all: d(A^-1) = -A^-1 dA A^-1 (differentiate A A^-1 = I).
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_tensor
from .shape import tril


def _square(op: str, a) -> Tensor:
    a = as_tensor(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{op}: expected a square matrix or a batch of them (..., n, n), got shape {a.shape}")
    return a


def _mT(x):
    """The transpose of each matrix (the last two axes), for arrays and Tensors."""
    return x.swapaxes(-1, -2)


def _lapack(op: str, function, *arrays):
    try:
        return function(*arrays)
    except np.linalg.LinAlgError as error:
        raise ValueError(f"{op}: {error} (shapes {[a.shape for a in arrays]})") from None


def inv(a) -> Tensor:
    r"""inv: Y = A^-1. From d(A^-1) = -Y dA Y:  dL = <G, -Y dA Y> = <-Y^T G Y^T, dA>,  so dL/dA = -Y^T G Y^T."""
    a = _square("inv", a)
    out = Tensor._make(_lapack("inv", np.linalg.inv, a.data), (a,), "inv")
    out._backward = lambda g, a, out: -(_mT(out) @ g @ _mT(out))
    return out


def det(a) -> Tensor:
    r"""det: d det(A) = det(A) tr(A^-1 dA) (Jacobi's formula), so dL/dA = g det(A) A^-T. At a singular A this
    needs A^-1, which does not exist: the rule raises (the true gradient there is the cofactor matrix)."""
    a = _square("det", a)
    out = Tensor._make(np.linalg.det(a.data), (a,), "det")
    out._backward = lambda g, a, out: (g * out)[..., None, None] * _mT(inv(a))
    return out


def slogdet(a) -> tuple:
    r"""slogdet -> (sign, log|det A|), as torch.linalg.slogdet. The log-determinant's gradient is the inverse
    transpose: d log|det A| = d det(A) / det(A) = tr(A^-1 dA) = <A^-T, dA>, so dL/dA = g A^-T.
    (Flows use it: a learned linear map W adds log|det W| to the log-likelihood.) sign gets no gradient
    (it is constant where det != 0)."""
    a = _square("slogdet", a)
    sign, log_abs = np.linalg.slogdet(a.data)
    out = Tensor._make(log_abs, (a,), "slogdet")
    out._backward = lambda g, a, out: g[..., None, None] * _mT(inv(a))
    return Tensor(sign), out


def solve(a, b) -> Tensor:
    r"""solve: X = A^-1 B for A (..., n, n) and B (..., n, k), or B (..., n) a batch of vectors when
    B.shape == A.shape[:-1] (PyTorch's rule). From A X = B: dX = A^-1 (dB - dA X), so
    dL/dB = A^-T G = solve(A^T, G) and dL/dA = -dL/dB X^T."""
    a, b = _square("solve", a), as_tensor(b)
    vector = b.ndim == 1 or b.shape == a.shape[:-1]
    if vector:
        return solve(a, b.reshape(*b.shape, 1)).reshape(b.shape if b.ndim > 1 else np.broadcast_shapes(
            a.shape[:-1], b.shape))
    if b.ndim < 2 or b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve: B must be (..., {a.shape[-1]}, k) or (..., {a.shape[-1]}) for A of shape "
                         f"{a.shape}, got {b.shape}")
    out = Tensor._make(_lapack("solve", np.linalg.solve, a.data, b.data), (a, b), "solve")

    def rule(g, a, b, out):
        grad_b = solve(_mT(a), g)
        return -grad_b @ _mT(out), grad_b
    out._backward = rule
    return out


def cholesky(a) -> Tensor:
    r"""cholesky: the lower-triangular L with A = L L^T, for symmetric positive-definite A (only A's lower
    triangle is read). Backward (as PyTorch; Murray 2016): P = tril(L^T G), S = (P + tril(P, -1)^T) / 2
    (P made symmetric, its diagonal halved), dL/dA = L^-T S L^-1. The gradient is symmetric: check it
    through a symmetric input, e.g. A = (X + X^T) / 2."""
    a = _square("cholesky", a)
    out = Tensor._make(_lapack("cholesky", np.linalg.cholesky, a.data), (a,), "cholesky")

    def rule(g, a, out):
        p = tril(_mT(out) @ g)
        s = (p + _mT(tril(p, -1))) * 0.5                      # symmetric; diagonal = P's diagonal / 2
        l_inv = inv(out)
        return _mT(l_inv) @ s @ l_inv
    out._backward = rule
    return out
