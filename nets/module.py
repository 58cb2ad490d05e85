"""Module: a container of Parameters, buffers and sub-Modules, as in PyTorch.

Parameters and sub-modules are kept in insertion order (plain dicts), so `parameters()`,
`state_dict()` and checkpoints are deterministic. Buffers are NumPy arrays that are part of the state
but are not trained (BatchNorm's running statistics).
"""
from __future__ import annotations

import numpy as np

from autodiff import Tensor
from .checkpoint import save_npz_atomic, load_npz


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad is always True."""

    def __init__(self, data):
        super().__init__(np.asarray(data.data if isinstance(data, Tensor) else data), requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of every layer and model. Subclasses set attributes in __init__ and define forward()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---------------------------------------------------------------- attributes
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               f"before setting attributes (tried to set {name!r})")
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
            object.__setattr__(self, name, value)        # also an ordinary attribute: found without __getattr__
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
            object.__setattr__(self, name, value)
        elif name in self._buffers:
            self._buffers[name] = None if value is None else np.asarray(value)
        else:
            self._forget(name)
            object.__setattr__(self, name, value)

    def _forget(self, name):
        """An attribute is registered in one place only: drop any earlier registration of `name`."""
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries, else a real AttributeError
        for registry in ("_parameters", "_modules", "_buffers"):
            table = self.__dict__.get(registry, {})
            if name in table:
                return table[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """A NumPy array saved in state_dict but not trained (e.g. running_mean)."""
        self._buffers[name] = None if array is None else np.asarray(array)

    # ---------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- walking the tree
    def named_modules(self, prefix: str = ""):
        """(name, module) for this module and every descendant, depth first, in insertion order."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self):
        """(dotted name, Parameter) in insertion order; a parameter shared by two modules appears once."""
        seen = set()
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{prefix}.{name}" if prefix else name), b

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---------------------------------------------------------------- modes and dtypes
    def train(self, mode: bool = True) -> "Module":
        """Training mode (batch statistics in BatchNorm, dropout active) for this module and every child."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode (running statistics in BatchNorm, dropout off) for this module and every child."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def astype(self, dtype) -> "Module":
        """Convert every parameter and floating buffer in place (float64 for gradient checks)."""
        for _, module in self.named_modules():
            for p in module._parameters.values():
                p.data, p.grad = p.data.astype(dtype), None
            for name, b in module._buffers.items():
                if b is not None and np.issubdtype(b.dtype, np.floating):
                    module._buffers[name] = b.astype(dtype)
        return self

    def double(self) -> "Module":
        return self.astype(np.float64)

    def float(self) -> "Module":
        return self.astype(np.float32)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """{dotted name: copy of the array} for every parameter and buffer, in insertion order."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: b.copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the existing parameters and buffers (in place, so optimizers keep working).
        Missing or unexpected keys (strict) and shape mismatches raise KeyError/ValueError naming them."""
        targets = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = list(targets) + list(buffers)
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in targets and k not in buffers]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for name in expected:
            if name not in state:
                continue
            current = targets[name].data if name in targets else buffers[name]
            value = np.asarray(state[name])
            if value.shape != current.shape:
                raise ValueError(f"load_state_dict for {type(self).__name__}: {name!r} has shape "
                                 f"{value.shape} in the state but {current.shape} in the model")
            current[...] = value

    def save(self, path) -> None:
        """Write state_dict() to an .npz file atomically (temp file, then rename)."""
        save_npz_atomic(path, self.state_dict())

    def load(self, path, strict: bool = True) -> None:
        self.load_state_dict(load_npz(path), strict=strict)

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        extra = self.extra_repr()
        if len(lines) == 1:
            return f"{type(self).__name__}({extra})"
        return "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        return ""


class ModuleList(Module):
    """A list of Modules whose parameters belong to the parent (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected a Module, got {type(module).__name__} "
                            f"(item {len(self._modules)})")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(ModuleList):
    """Applies its modules in order: Sequential(a, b, c)(x) = c(b(a(x)))."""

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x
