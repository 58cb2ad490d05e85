r"""Gradient-check every op, loss and layer of the project, and print one table.

    python scripts/gradcheck.py              # everything, seed 0
    python scripts/gradcheck.py --seed 3     # other random inputs
    python scripts/gradcheck.py --only conv  # just the rows whose group or name contains "conv"

What one row means. For a function f and its inputs x (small, random, float64), take a fixed random
array w of f's output shape and the scalar L = sum(w * f(x)). Then compare, element by element,
    analytic  dL/dx  from our backward pass,
    numeric   dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)   (central differences).
The random w matters: with a plain sum, softmax's true gradient is exactly zero and a broken backward
would pass. Every input that requires grad is checked (layers: the input and every parameter).

The column "max rel error" is the largest |analytic - numeric| / (|numeric| + 0.1) over all elements.
A row passes when it is at most 1e-4, which is exactly autodiff.gradcheck's test
|analytic - numeric| <= atol + rtol |numeric| with atol = 1e-5, rtol = 1e-4. Healthy rows show 1e-8
or less (the fast backend's Winograd rows ~1e-6: its float64 forward rounds more); a wrong derivative
shows 1e-2 or more. The rows run on the backend NUMPY_DL_LAB_BACKEND selects (default fast).

The rows live in scripts/gradchecks/ (engine.py, ops.py, layers.py: one module per part of the project).
The exit status is 1 if any row fails, so scripts and CI can use it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from autodiff import Tensor, no_grad                 # noqa: E402
from gradchecks import CHECKS                         # noqa: E402  (the rows: scripts/gradchecks/)

ATOL, RTOL = 1e-5, 1e-4


# ============================================================================ the measurement
@dataclass
class Result:
    error: float            # max over elements of |a - n| / (|n| + ATOL/RTOL)
    worst: str              # where and what, for the details under the table


def gradient_error(fn: Callable, inputs: list, eps: float, seed: int) -> Result:
    """Analytic vs numeric gradient of L = sum(w * fn(*inputs)) for every input that requires grad."""
    outputs = fn(*inputs)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(out.shape) for out in outputs]

    def projected() -> float:
        with no_grad():
            outs = fn(*inputs)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            return sum(float(np.sum(w * out.data)) for w, out in zip(weights, outs))

    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    for x in checked:
        x.grad = None
    loss = sum(((out * Tensor(w)).sum() for out, w in zip(outputs, weights) if out.requires_grad), Tensor(0.0))
    if loss.requires_grad:
        loss.backward()

    worst = Result(0.0, "")
    for number, x in enumerate(checked):
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        numeric = np.zeros_like(x.data)
        for index in np.ndindex(x.shape):
            original = x.data[index]
            x.data[index] = original + eps
            plus = projected()
            x.data[index] = original - eps
            minus = projected()
            x.data[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        errors = np.abs(analytic - numeric) / (np.abs(numeric) + ATOL / RTOL)
        if errors.size and errors.max() >= worst.error:
            i = np.unravel_index(np.argmax(errors), errors.shape)
            worst = Result(float(errors[i]),
                           f"input {number} {tuple(x.shape)} at {tuple(int(k) for k in i)}: "
                           f"analytic {analytic[i]:.8g}, numeric {numeric[i]:.8g}")
    return worst


# ============================================================================ running and printing
def run(checks: list, seed: int, eps: float) -> list:
    rows = []
    for number, c in enumerate(checks):
        rng = np.random.default_rng([seed, number])
        try:
            fn, inputs = c.build(rng)
            result = gradient_error(fn, inputs, eps, seed)
            status = "pass" if result.error <= RTOL else "FAIL"
        except Exception as error:                  # a crash is a failure too, shown with its message
            result, status = Result(float("nan"), f"{type(error).__name__}: {error}"), "ERROR"
        rows.append((c, result, status))
    return rows


def print_table(rows: list, seed: int, eps: float, seconds: float) -> None:
    header = ("group", "check", "configuration", "max rel error", "result")
    lines = [(c.group, c.name, c.config, f"{r.error:.1e}" if np.isfinite(r.error) else "-", status)
             for c, r, status in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    print(f"Gradient check: backward pass vs central differences (eps={eps:g}), float64, seed {seed}.")
    print(f"max rel error = max |analytic - numeric| / (|numeric| + {ATOL / RTOL:g}); pass if <= {RTOL:g}.")
    print()
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    group = None
    for line in lines:
        if group is not None and line[0] != group:
            print()
        group = line[0]
        print(fmt(line))
    failed = [(c, r, s) for c, r, s in rows if s != "pass"]
    print()
    print(f"{len(rows)} checks, {len(rows) - len(failed)} passed, {len(failed)} failed ({seconds:.1f} s)")
    for c, r, status in failed:
        print(f"  {status} {c.group}/{c.name} [{c.config}]: {r.worst}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="random inputs and projections (default 0)")
    parser.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="run only rows whose group or name contains TEXT (e.g. conv, loss, softmax)")
    args = parser.parse_args(argv)
    checks = [c for c in CHECKS if args.only.lower() in f"{c.group} {c.name}".lower()]
    if not checks:
        parser.error(f"no check matches --only {args.only!r}")
    start = time.perf_counter()
    rows = run(checks, args.seed, args.eps)
    print_table(rows, args.seed, args.eps, time.perf_counter() - start)
    return 0 if all(status == "pass" for _, _, status in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
