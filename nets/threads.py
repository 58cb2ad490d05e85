"""How many threads training uses, and who runs them.

Who. With the reference backend, the BLAS library (OpenBLAS or MKL, under NumPy's products) runs them,
inside each product. With the fast backend, either the BLAS library does or the engine's own threads do
(autodiff/fast/parallel.py: products cut into blocks, and the passes between them too), never both:
OpenBLAS's threads spin while they wait for the next product and would take the core the engine's use.
The first products decide which (autodiff/fast/parallel.set_threads).

How many (`configure_threads`), in order:
    1. an explicit request wins: the `threads` argument (the --threads flag) or, if it is None, the
       environment variable NUMPY_DL_LAB_THREADS; an integer >= 1, or "auto";
    2. "auto": the cores this process may run on (its CPU affinity), never the machine's load, so the same
       command on the same machine always gets the same count (on a busy machine pass --threads 1: a thread
       on a busy core runs late and the others wait for it).
`import nets` applies this policy once (so a notebook gets what the CLI gets); train.py applies it again
with --threads and records the count in metrics.json and the checkpoint (a resumed run takes it back).
Float results can depend on the thread count (the BLAS library's sums): the count is part of a seed's
contract, so compare runs bit for bit with the same --threads N. Without threadpoolctl the BLAS library
keeps its own threads and the engine uses one.
"""
from __future__ import annotations

import os
import sys

from autodiff.backend import current_backend

ENV_VAR = "NUMPY_DL_LAB_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else all cores)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(requested=None) -> int:
    """The thread count by the policy above. `requested`: None (then NUMPY_DL_LAB_THREADS, then
    "auto"), "auto", or an integer >= 1 (also as a string)."""
    source = "threads"
    if requested is None:
        requested, source = os.environ.get(ENV_VAR, "auto"), ENV_VAR
    if isinstance(requested, str) and requested.strip().lower() == "auto":
        return available_cores()
    try:
        threads = int(requested)
    except (TypeError, ValueError):
        threads = 0
    if threads < 1 or isinstance(requested, bool):
        raise ValueError(f"{source}: expected a number of threads >= 1 or 'auto', got {requested!r}")
    return threads


def configure_threads(requested=None, verbose: bool = False, owner: str = "auto") -> int:
    """Give this process's training the thread count chosen by the policy above (to the BLAS
    library or the engine's own threads, see Who) and return it. Without threadpoolctl installed it
    changes nothing and returns the count it would have set."""
    threads = choose_threads(requested)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return threads
    blas = [library for library in ThreadpoolController().lib_controllers if library.user_api == "blas"]

    def set_blas_threads(n: int) -> None:
        for library in blas:
            library.set_num_threads(n)
    if current_backend() == "fast":
        from autodiff.fast import parallel
        parallel.set_threads(threads, set_blas_threads, owner)      # owner: see that function
    else:
        set_blas_threads(threads)
    if verbose:
        print(f"threads: {threads} ({available_cores()} cores; override with --threads or {ENV_VAR})")
    return threads


def current_threads() -> dict:
    """{'engine': autodiff's threads, library: its thread count for each BLAS library NumPy loaded},
    e.g. {'engine': 2, 'openblas': 1}."""
    fast = sys.modules.get("autodiff.fast.parallel")
    counts = {"engine": fast.get_threads() if fast is not None and current_backend() == "fast" else 1}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return counts
    return counts | {info["internal_api"]: info["num_threads"] for info in threadpool_info()
                     if info["user_api"] == "blas"}
