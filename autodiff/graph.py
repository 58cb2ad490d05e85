"""Look at a computation graph: as an indented text tree, or as Graphviz dot text.

    >>> print(graph_str(loss))          # op, shape, dtype of every node, output first
    >>> open("g.dot", "w").write(to_dot(loss))   # then: dot -Tpng g.dot -o g.png (if you have graphviz)
"""
from __future__ import annotations

from .tensor import Tensor


def _label(t: Tensor) -> str:
    kind = t._op or ("param" if t.requires_grad else "const")
    return f"{kind} {tuple(t.shape)} {t.dtype}"


def graph_str(root: Tensor, max_depth: int = 50) -> str:
    """The graph below `root` as an indented tree. A node reached a second time is printed once more
    with "(seen)" and not expanded again. Iterative, so deep graphs print too."""
    lines, seen = [], set()
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        repeated = id(node) in seen
        lines.append("  " * depth + _label(node) + ("  (seen)" if repeated else ""))
        seen.add(id(node))
        if repeated or depth >= max_depth:
            continue
        for parent in reversed(node._parents):
            stack.append((parent, depth + 1))
    return "\n".join(lines)


def print_graph(root: Tensor, max_depth: int = 50) -> None:
    print(graph_str(root, max_depth))


def to_dot(root: Tensor) -> str:
    """Graphviz dot text of the graph below `root` (edges point from inputs to outputs)."""
    lines = ["digraph G {", "  node [shape=box, fontname=monospace];"]
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        lines.append(f'  n{id(node)} [label="{_label(node)}"];')
        for parent in node._parents:
            lines.append(f"  n{id(parent)} -> n{id(node)};")
            stack.append(parent)
    lines.append("}")
    return "\n".join(lines)
