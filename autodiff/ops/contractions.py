r"""Contractions: einsum and tensordot.

einsum's backward is two more einsums (one per operand, for two operands): a lesson in itself.
    out[o] = sum over the other letters of  prod_k X_k[s_k]        (s_k: operand k's subscripts)
    dL/dX_k[s_k] = sum over the letters not in s_k of  g[o] prod_{j != k} X_j[s_j]
that is: the same einsum with g in the place of X_k and s_k as the output, e.g.
    'ij,jk->ik' (A @ B):   dA = einsum('ik,jk->ij', g, B),   dB = einsum('ij,ik->jk', A, g).
Two details make it exact for every form. A letter summed inside X_k alone ('ij->i': j) does not
appear in g or the others, so its gradient is constant along it: a ones vector ('j') brings it into
the output. A letter repeated in s_k ('ii->i', a diagonal) reads only the diagonal, so the gradient is
zero off it: the repeat gets a fresh letter and an identity matrix joins the two ('ii' -> 'ia', with
eye 'ia'). '...' is first written out as letters, and size-1 axes are broadcast to their letter's size
(broadcast_to: the engine sums the gradient back over them).
"""
from __future__ import annotations

import string

import numpy as np

from ..tensor import Tensor, as_tensor
from ..tensor_methods import broadcast_to


def einsum(subscripts: str, *operands) -> Tensor:
    """np.einsum / torch.einsum with a subscripts string: letters a-z A-Z, '...' for broadcast axes,
    implicit output (no '->': '...' then the letters used once, sorted) or explicit ('...' left out of
    the output is summed). A size-1 axis broadcasts against its letter's size, as in PyTorch."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: give the subscripts as a string first, e.g. einsum('ij,jk->ik', a, b); got "
                        f"{type(subscripts).__name__} (the sublist form is not supported)")
    operands = [as_tensor(t) for t in operands]
    terms, output = _parse(subscripts, operands)
    sizes = {}
    for t, term in zip(operands, terms):
        for letter, n in zip(term, t.shape):
            if sizes.get(letter, 1) not in (1, n) and n != 1:
                raise ValueError(f"einsum {subscripts!r}: subscript {letter!r} has size {sizes[letter]} and "
                                 f"{n} (operand shapes {[t.shape for t in operands]})")
            sizes[letter] = max(sizes.get(letter, 1), n)
    for k, (t, term) in enumerate(zip(operands, terms)):                 # size-1 axes broadcast
        full = tuple(sizes[letter] for letter in term)
        operands[k] = t if full == t.shape else broadcast_to(t, full)
    data = np.einsum(",".join(terms) + "->" + output, *(t.data for t in operands), optimize=len(operands) > 2)
    out = Tensor._make(data, tuple(operands), "einsum")
    out._backward = tuple(_operand_rule(k, terms, output, sizes) for k in range(len(terms)))
    return out


def _operand_rule(k: int, terms: list, output: str, sizes: dict):
    """dL/dX_k as one einsum of g, the other operands, identity matrices and ones vectors (module docstring)."""
    others = [term for j, term in enumerate(terms) if j != k]
    present = set(output).union(*others)
    spare = iter(sorted(set(string.ascii_letters) - set("".join(terms))))
    target, extra_terms, extra = "", [], []
    for letter in terms[k]:
        if letter in target:                                    # a repeat: read only the diagonal
            fresh = next(spare)
            target += fresh
            extra_terms.append(letter + fresh)
            extra.append(np.eye(sizes[letter]))
        else:
            target += letter
            if letter not in present:                           # summed in X_k alone: constant along it
                extra_terms.append(letter)
                extra.append(np.ones(sizes[letter]))
    spec = ",".join([output, *others, *extra_terms]) + "->" + target

    def rule(g, *inputs):
        constants = [e.astype(g.dtype) for e in extra]
        return einsum(spec, g, *(x for j, x in enumerate(inputs[:len(terms)]) if j != k), *constants)
    return rule


def _parse(subscripts: str, operands: list) -> tuple:
    """-> (one letter string per operand, the output letters), '...' written out and broadcast."""
    text = subscripts.replace(" ", "")
    inputs, arrow, output = text.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum {subscripts!r}: {len(terms)} operand subscripts for {len(operands)} operands")
    letters = set(text) - set(".,->")
    if not letters <= set(string.ascii_letters) or any("." in t.replace("...", "", 1) for t in terms):
        raise ValueError(f"einsum {subscripts!r}: subscripts are letters a-z, A-Z and '...'")
    for t, term in zip(operands, terms):
        if len(term.replace("...", "")) > t.ndim or ("..." not in term and len(term) != t.ndim):
            raise ValueError(f"einsum {subscripts!r}: subscripts {term!r} for an operand of shape {t.shape}")
    rank = max((t.ndim - len(term) + 3 for t, term in zip(operands, terms) if "..." in term), default=0)
    dots = "".join(sorted(set(string.ascii_letters) - letters)[:rank])        # letters for the '...' axes
    if not arrow:                                               # implicit: '...', then letters used once
        joined = "".join(terms).replace("...", "")
        output = ("..." if rank else "") + "".join(sorted(c for c in set(joined) if joined.count(c) == 1))
    named = output.replace("...", "", 1)
    if "." in named or len(set(named)) != len(named) or not set(named) <= set("".join(terms)):
        raise ValueError(f"einsum {subscripts!r}: output subscripts must be distinct letters of the inputs")
    terms = [term.replace("...", dots[rank - (t.ndim - len(term) + 3):]) for t, term in zip(operands, terms)]
    return terms, output.replace("...", dots)                   # an operand's '...' takes the last letters


def tensordot(a, b, axes=2) -> Tensor:
    """np.tensordot / torch.tensordot: contract the last `axes` axes of a with the first of b, or the listed
    pairs axes = (axes of a, axes of b); the result has a's free axes, then b's. Written as an einsum, so
    its gradients are einsums too."""
    a, b = as_tensor(a), as_tensor(b)
    if isinstance(axes, (int, np.integer)):
        axes = (list(range(a.ndim - axes, a.ndim)), list(range(axes)))
    a_axes, b_axes = ([int(i) % max(t.ndim, 1) for i in ((ax,) if np.isscalar(ax) else ax)]
                      for ax, t in zip(axes, (a, b)))
    if len(a_axes) != len(b_axes) or any(a.shape[i] != b.shape[j] for i, j in zip(a_axes, b_axes)):
        raise ValueError(f"tensordot: axes {axes} of shapes {a.shape} and {b.shape} do not pair up")
    a_letters = list(string.ascii_letters[:a.ndim])
    b_letters = list(string.ascii_letters[a.ndim:a.ndim + b.ndim])
    for i, j in zip(a_axes, b_axes):
        b_letters[j] = a_letters[i]
    free = ([c for i, c in enumerate(a_letters) if i not in a_axes]
            + [c for j, c in enumerate(b_letters) if j not in b_axes])
    return einsum("".join(a_letters) + "," + "".join(b_letters) + "->" + "".join(free), a, b)
