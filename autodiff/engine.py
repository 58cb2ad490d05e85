r"""The engine: backpropagation over the graph of Tensors (`backprop`), and `grad`, the gradients of
outputs with respect to chosen inputs (PyTorch's torch.autograd.grad). Tensor.backward (tensor.py)
runs `backprop` and stores the gradients in `.grad`.

For each node from the outputs towards the inputs, its rules (one per input) turn g = dL/d(node) into
dL/d(input); each input's gradient is brought to its shape (`_fit`: summed where it was broadcast) and
added to what it has. With create_graph=True the rules run on Tensors, so the gradients are part of
the graph; a node built by a fast op (or by reversible_stack) is first rebuilt by its reference ops,
and the gradient flows back through the rebuilt nodes (its own rules work on arrays only). `grad` runs
only the rules on paths from the outputs to the requested inputs.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, _fit, as_tensor, enable_grad, no_grad, value
from .tensor_methods import IndexAdd


def backprop(roots: list, seeds: list, create_graph: bool = False, stop_at: frozenset = frozenset(),
             inputs: list = None):
    """d(sum of roots * seeds)/d(node) for every node the roots depend on -> (nodes in topological order,
    {id(node): gradient}). Arrays, or Tensors in the graph when create_graph. Nodes whose id is in
    `stop_at` get their gradient but pass none on; with `inputs`, only the nodes on paths to them get one
    (no work for gradients nobody asked for)."""
    order = topological_order(roots, stop_at)
    only = None if inputs is None else leading_to(order, inputs)
    grads, owned = {}, set()                         # owned: arrays allocated here (added to in place)
    for root, seed in zip(roots, seeds):
        _add_gradient(grads, owned, root, seed, create_graph)
    with enable_grad() if create_graph else no_grad():
        for node in reversed(order):                 # outputs before inputs
            g = grads.get(id(node))
            if g is not None and node._parents and id(node) not in stop_at:
                for parent, grad in _input_gradients(node, g, create_graph, only):
                    _add_gradient(grads, owned, parent, grad, create_graph)
    return order, grads


def topological_order(roots: list, stop_at: frozenset = frozenset()) -> list:
    """Nodes that need grad, every node after all its parents. Iterative depth-first search."""
    ### BEGIN SOLUTION topological_order
    ### task: every node that needs grad once, after all its parents, with an explicit stack
    ### hint: topological_order's docstring; the module docstring of autodiff/engine.py
    order, visited = [], set()
    stack = [(root, False) for root in reversed(roots) if root.requires_grad]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if id(node) not in stop_at:
            stack.extend((p, False) for p in node._parents if p.requires_grad and id(p) not in visited)
    return order
    ### END SOLUTION


def leading_to(order: list, inputs: list) -> set:
    """The ids of the inputs and of the nodes of `order` (topological) computed from one of them: the
    only nodes whose gradients lead to the inputs' gradients."""
    reach = {id(x) for x in inputs}
    for node in order:
        if any(id(p) in reach for p in node._parents):
            reach.add(id(node))
    return reach


def _input_gradients(node: Tensor, g, create_graph: bool, only: set = None):
    """(parent, dL/d(parent)) pairs from the node's rules: one rule per input (None: no gradient), or
    one rule that returns every input's gradient at once (ops whose gradients share their work).
    Only the parents in `only` (when given) get theirs; a per-input rule for another is not run."""
    if create_graph and node._recompute is not None:     # a fast op: backprop through its reference ops
        rebuilt, stop = node._recompute(), frozenset(id(p) for p in node._parents)
        wanted = [p for p in node._parents if only is None or id(p) in only]
        _, grads = backprop([rebuilt], [g], True, stop, None if only is None else wanted)
        return [(p, grads.get(id(p))) for p in wanted]
    parents, rules = node._parents, node._backward
    if create_graph:
        args = (as_tensor(g), *parents, node)
    else:
        args = (g, *(p.data for p in parents), node.data)
    if not isinstance(rules, tuple):
        grads = rules(*args)
        pairs = zip(parents, grads if isinstance(grads, (tuple, list)) else (grads,))
        return pairs if only is None else [(p, grad) for p, grad in pairs if id(p) in only]
    return [(p, rule(*args)) for p, rule in zip(parents, rules)
            if p.requires_grad and rule is not None and (only is None or id(p) in only)]


def _add_gradient(grads: dict, owned: set, node: Tensor, grad, create_graph: bool) -> None:
    """grads[node] += grad, after bringing grad to the node's shape. The first gradient is stored as it
    is (it may be shared with another node); a second one is added into a new array that later ones
    are added into in place. An IndexAdd (the adjoint of indexing) is added at its index."""
    if grad is None or not node.requires_grad:
        return
    key, current = id(node), grads.get(id(node))
    if isinstance(grad, IndexAdd) and not create_graph:
        if key not in owned:
            grads[key] = np.zeros_like(node.data) if current is None else np.array(current, node.dtype)
            owned.add(key)
        grad.add_into(grads[key])
        return
    if isinstance(grad, IndexAdd):
        grad = grad.as_tensor(node.shape)
    if create_graph:
        grad = _fit(as_tensor(grad), node.shape)
        grad = grad if grad.dtype == node.dtype else grad.astype(node.dtype)
        grads[key] = grad if current is None else current + grad
        return
    grad = _fit(value(grad), node.shape)
    if grad.dtype != node.dtype:
        grad = grad.astype(node.dtype)
    if current is None:
        grads[key] = grad
    elif key in owned:
        current += grad
    else:                                            # out=: a 0-d sum stays an array (np.add gives a scalar)
        grads[key] = np.add(current, grad, out=np.empty(node.shape, node.dtype))
        owned.add(key)


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False, retain_graph: bool = None,
         allow_unused: bool = False) -> tuple:
    """d(outputs)/d(inputs) as a tuple of Tensors, one per input (PyTorch's torch.autograd.grad): the
    vector-Jacobian product with grad_outputs (default 1 for scalar outputs). Leaves' `.grad` is not
    touched. create_graph=True: the gradients are in the graph, so they can be differentiated again."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    seeds = [seed(o, s) for o, s in zip(outputs, grad_outputs)]
    order, grads = backprop(outputs, seeds, create_graph, inputs=inputs)
    result = []
    for i, x in enumerate(inputs):
        g = grads.get(id(x))
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} (shape {x.shape}) was not used to compute the outputs; "
                               f"pass allow_unused=True to get None for it")
        result.append(None if g is None else as_tensor(g))
    if not (create_graph if retain_graph is None else retain_graph):
        free(order)
    return tuple(result)


def seed(output: Tensor, grad):
    """The gradient that starts backward: 1 for a scalar output, else an explicit one of its shape."""
    if not output.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad: no input of the "
                           "computation had requires_grad=True (or it ran inside no_grad())")
    if grad is None:
        if output.data.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape "
                               f"{output.shape}; reduce it (e.g. .sum() or .mean()) or pass "
                               f"grad=<array of shape {output.shape}>")
        return np.ones_like(output.data)
    if isinstance(grad, Tensor):
        grad = grad if grad.requires_grad else grad.data
    if not isinstance(grad, Tensor):
        grad = np.asarray(grad, dtype=output.dtype)
    if grad.shape != output.shape:
        raise ValueError(f"backward(grad): grad has shape {grad.shape}, output has shape {output.shape}")
    return grad


def free(order: list) -> None:
    for node in order:                   # let go of what the rules saved (see Memory)
        if node._parents:
            node._backward, node._recompute = _graph_freed, None


def _graph_freed(*_):
    raise RuntimeError("backward() through a graph that an earlier backward() already freed; "
                       "call the first backward(retain_graph=True) to go through it twice, or "
                       "recompute the forward pass")
