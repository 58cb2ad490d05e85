r"""The engine's own threads: big matrix products and big array passes, cut into blocks.

Why not leave it to the BLAS library. OpenBLAS splits each product over its threads, but every pass
between products (im2col, col2im, layout changes, pooling, activations, the optimizer) runs on one
thread: on two cores a DCGAN step spent about half its time with one core idle. And OpenBLAS's
threads spin while they wait for work, so our own threads cannot use that core between products.

So the thread count goes here (nets/threads.py calls `set_threads(n)` and gives the BLAS library ONE
thread). An op cuts its work into blocks and the threads take blocks one at a time until none is
left, the calling thread too (NumPy and BLAS let go of Python's lock while they compute):
    for_blocks(body, length)  body(lo, hi) for consecutive slices [lo, hi) covering range(length)
    matmul(a, b, out)         a @ b, as blocks of the result's rows or columns, each one BLAS call
Blocks never write to the same memory, and each entry of a product is summed over the full inner
dimension by one call, as in a @ b: results do not depend on the thread count (tests compare them).
`for_blocks` returns only when every block is done, also after an error or Ctrl-C in a block.
With 1 thread (the default) every op runs as one block on the calling thread.

Measured on 2 cores (scripts/bench.py, issue 14): conv_transpose2d 46 -> 37 ms, a DCGAN step
285 -> 230 ms; the small VAE/CVAE/RealNVP steps unchanged within noise.
"""
from __future__ import annotations

import itertools
import os
import threading

import numpy as np

BLOCKS_PER_THREAD = 2          # more blocks than threads: a thread that runs late takes fewer
MIN_BLOCK_ELEMENTS = 1 << 15   # an array pass below this stays on one thread (a hand-off costs ~10 us)
MIN_BLOCK_FLOPS = 1 << 22      # likewise for a block of a matrix product
ALIGN = 16                     # block edges of a product at multiples of 16 rows/columns (BLAS tiles)


class _Helper(threading.Thread):
    """A thread that waits for a job, runs it and reports back; two plain locks make the hand-off
    (a few microseconds, against ~50 us through a ThreadPoolExecutor's queue and futures)."""

    def __init__(self, index: int):
        super().__init__(name=f"autodiff-{index}", daemon=True)
        self.wake, self.done = threading.Lock(), threading.Lock()
        self.wake.acquire()
        self.done.acquire()
        self.job, self.error = None, None
        self.start()

    def run(self):
        while True:
            self.wake.acquire()
            try:
                self.job()
            except BaseException as error:       # handed to the calling thread by finish()
                self.error = error
            self.done.release()

    def begin(self, job) -> None:
        self.job, self.error = job, None
        self.wake.release()

    def finish(self) -> None:
        self.done.acquire()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


_threads = 1
_helpers: list = []


def set_threads(threads: int) -> None:
    """Run the ops of this module on `threads` threads: the calling one and threads - 1 helpers."""
    global _threads
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"set_threads: expected an int >= 1, got {threads!r}")
    _threads = int(threads)
    while len(_helpers) < _threads - 1:
        _helpers.append(_Helper(len(_helpers)))


def get_threads() -> int:
    return _threads


def _forget_helpers_after_fork() -> None:      # a forked child has no helper threads
    global _threads
    _threads = 1
    _helpers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers_after_fork)


# ==================================================================== running blocks
def _block_count(length: int, work: float, min_work: float) -> int:
    """Enough blocks for every thread to take several; none smaller than min_work."""
    if _threads == 1:
        return 1
    return int(max(1, min(length, _threads * BLOCKS_PER_THREAD, work // min_work)))


def _run(slices: list, body) -> None:
    """body(lo, hi) for every (lo, hi) in slices, each thread taking the next one while any is left."""
    next_index = itertools.count()          # next() on it is atomic under Python's lock
    stopped = []

    def take_blocks():
        for i in next_index:
            if i >= len(slices) or stopped:
                return
            body(*slices[i])

    helpers = _helpers[:min(_threads - 1, len(slices) - 1)]
    for helper in helpers:
        helper.begin(take_blocks)
    try:
        take_blocks()
    finally:
        stopped.append(True)                # after an error here the helpers take no new block
        for helper in helpers:
            helper.finish()                 # wait for them; re-raises a helper's error


def for_blocks(body, length: int, work: float = None) -> None:
    """body(lo, hi) over consecutive slices covering range(length), on all threads. `work` (default:
    length) is the op's size in array elements, which decides how many blocks pay."""
    blocks = _block_count(length, length if work is None else work, MIN_BLOCK_ELEMENTS)
    if blocks == 1:
        body(0, length)
        return
    edges = [length * i // blocks for i in range(blocks + 1)]
    _run([(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo], body)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray = None) -> np.ndarray:
    """a (M, K) @ b (K, N) -> (M, N), in blocks of the result's rows (if M >= N) or columns. Batched
    (not 2-D) and small products go to np.matmul whole."""
    if a.ndim != 2 or b.ndim != 2 or _threads == 1:
        return np.matmul(a, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    by_rows = M >= N
    length = M if by_rows else N
    blocks = _block_count(length // ALIGN, 2.0 * M * K * N, MIN_BLOCK_FLOPS)
    if blocks == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((M, N), np.result_type(a, b))
    edges = [ALIGN * round(length * i / blocks / ALIGN) for i in range(blocks)] + [length]

    def product(lo, hi):
        if by_rows:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
    _run([(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo], product)
    return out


# ==================================================================== array helpers
def c_contiguous(a: np.ndarray) -> np.ndarray:
    """a itself if it is C-contiguous, else a C-ordered copy of the same shape (0-d stays 0-d, which
    np.ascontiguousarray does not do): its flat blocks are then views, a.reshape(-1)[lo:hi]."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def copyto(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src (same shape), in blocks along the first axis long enough to split."""
    axis = next((i for i, n in enumerate(dst.shape) if n >= 2 * _threads), 0)
    index = (slice(None),) * axis

    def copy(lo, hi):
        block = index + (slice(lo, hi),)
        np.copyto(dst[block], src[block])
    for_blocks(copy, dst.shape[axis], work=dst.size)
