r"""The engine's own threads: big matrix products and big array passes, cut into blocks.

Why not leave it to the BLAS library. OpenBLAS splits each product over its threads, but every pass
between products (im2col, col2im, layout changes, pooling, activations, the optimizer) runs on one
thread: on two cores a DCGAN step spent about half its time with one core idle. And OpenBLAS's
threads spin while they wait for work, so our own threads cannot use that core between products.

Here an op cuts its work into blocks and the threads take blocks one at a time until none is left,
the calling thread too (NumPy and BLAS let go of Python's lock while they compute):
    for_blocks(body, length)  body(lo, hi) for consecutive slices [lo, hi) covering range(length)
    matmul(a, b, out)         a @ b, as blocks of the result's rows or columns, each one BLAS call
Blocks never write to the same memory, and each entry of a product is summed over the full inner
dimension by one call, as in a @ b: results do not depend on the thread count (tests compare them).
`for_blocks` returns only when every block is done, also after an error or Ctrl-C in a block.
With 1 thread (the default) every op runs as one block on the calling thread.

Who runs the threads (`set_threads`). Handing a block to a sleeping thread costs tens of microseconds;
spinning OpenBLAS threads answer at once. So for small products (MLPs) the BLAS library is faster, for big
ones (convolutions) the engine's blocks, which also cover the passes between products: the BLAS library
keeps the threads unless big products (>= BIG_PRODUCT_FLOPS) hold ENGINE_SHARE of the first
DECIDE_AFTER_FLOPS of products (README's performance section: `bench.py --owner blas|engine`).
"""
from __future__ import annotations

import itertools
import os
import queue
import threading

import numpy as np

# Block sizes: a smaller block costs more in hand-offs than it gains in balance.
BLOCKS_PER_THREAD = 2          # more blocks than threads: a thread that runs late takes fewer
MIN_BLOCK_ELEMENTS = 1 << 17   # an array pass: elements per block, at least
MIN_BLOCK_FLOPS = 1 << 22      # a matrix product: FLOPs per block, at least ...
MIN_BLOCK_ROWS = 64            # ... and rows (or columns) per block, at least
ALIGN = 16                     # block edges of a product at multiples of 16 rows/columns (BLAS tiles)
# Who runs the threads (see set_threads): the engine, if products of BIG_PRODUCT_FLOPS or more hold
# ENGINE_SHARE of the first DECIDE_AFTER_FLOPS of products; else the BLAS library.
BIG_PRODUCT_FLOPS = 1 << 28
ENGINE_SHARE = 0.7
DECIDE_AFTER_FLOPS = 2e9


class _Job:
    """The blocks of one op. Any thread calls work() to take blocks until none is left; `finished` is
    set when every block is done. A helper that wakes up late finds nothing left to take, so the
    calling thread never waits for a helper to wake, only for blocks already running."""

    def __init__(self, slices: list, body):
        self.slices, self.body = slices, body
        self.next_index = itertools.count()       # next() on it is atomic under Python's lock
        self.lock, self.unfinished = threading.Lock(), len(slices)
        self.finished, self.error = threading.Event(), None

    def work(self) -> None:
        for i in self.next_index:
            if i >= len(self.slices):
                return
            if self.error is None:                # after an error the remaining blocks are skipped
                try:
                    self.body(*self.slices[i])
                except BaseException as error:
                    self.error = self.error or error
            with self.lock:
                self.unfinished -= 1
                if self.unfinished == 0:
                    self.finished.set()


def _helper_loop(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get().work()


_threads = 1                           # the count asked for
_engine_threads = 1                    # the threads the blocks below run on now
_set_blas_threads = None               # the BLAS library's thread count, if set_threads was given it
_deciding = False                      # watching the products to choose who runs the threads
_product_flops = _big_product_flops = 0.0
_helpers: list = []
_jobs = queue.SimpleQueue()            # the helpers wait here for the next op's blocks


def set_threads(threads: int, set_blas_threads=None, owner: str = "auto") -> None:
    """Run on `threads` threads. Without `set_blas_threads` the engine's blocks use them all.
    With it (a function setting the BLAS library's thread count; nets/threads.py passes one), the
    owner "auto" gives them to the BLAS library first, and the first DECIDE_AFTER_FLOPS of 2-D
    products choose: if at least ENGINE_SHARE of those FLOPs are in products of BIG_PRODUCT_FLOPS or
    more, the engine's blocks take over (the BLAS library then gets one thread). owner "blas" or
    "engine" gives them to one for good (to compare the two)."""
    global _threads, _engine_threads, _set_blas_threads, _deciding, _product_flops, _big_product_flops
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"set_threads: expected an int >= 1, got {threads!r}")
    if owner not in ("auto", "blas", "engine"):
        raise ValueError(f"set_threads: owner must be 'auto', 'blas' or 'engine', got {owner!r}")
    _threads, _set_blas_threads = int(threads), set_blas_threads
    _product_flops = _big_product_flops = 0.0
    engine = set_blas_threads is None or owner == "engine"
    _deciding = _threads > 1 and not engine and owner == "auto"
    _engine_threads = _threads if engine else 1
    if set_blas_threads is not None:
        set_blas_threads(1 if engine else _threads)
    while len(_helpers) < _threads - 1:
        _helpers.append(threading.Thread(target=_helper_loop, args=(_jobs,), daemon=True,
                                         name=f"autodiff-{len(_helpers)}"))
        _helpers[-1].start()


def get_threads() -> int:
    """The threads the engine's own blocks run on now (1 while the BLAS library has them)."""
    return _engine_threads


def deciding() -> bool:
    """Still watching the first products to choose who runs the threads (see set_threads)."""
    return _deciding


def _observe_product(flops: float) -> None:
    global _deciding, _engine_threads, _product_flops, _big_product_flops
    _product_flops += flops
    _big_product_flops += flops if flops >= BIG_PRODUCT_FLOPS else 0.0
    if _product_flops >= DECIDE_AFTER_FLOPS:
        _deciding = False
        if _big_product_flops >= ENGINE_SHARE * _product_flops:
            _set_blas_threads(1)
            _engine_threads = _threads


def _forget_helpers_after_fork() -> None:      # a forked child has no helper threads
    global _threads, _engine_threads, _deciding, _jobs
    _threads, _engine_threads, _deciding, _jobs = 1, 1, False, queue.SimpleQueue()
    _helpers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers_after_fork)


# ==================================================================== running blocks
def _block_count(length: int, work: float, min_work: float) -> int:
    """Enough blocks for every thread to take several; none smaller than min_work."""
    if _engine_threads == 1:
        return 1
    return int(max(1, min(length, _engine_threads * BLOCKS_PER_THREAD, work // min_work)))


def _run(slices: list, body) -> None:
    """body(lo, hi) for every (lo, hi) in slices, each thread taking the next one while any is left;
    returns when all are done, and only then raises the first error (also after Ctrl-C)."""
    job = _Job(slices, body)
    for _ in range(min(_engine_threads - 1, len(slices) - 1)):
        _jobs.put(job)
    try:
        job.work()
    except BaseException as error:                # e.g. Ctrl-C between two blocks
        job.error = job.error or error
        raise
    finally:
        job.work()                                 # take (skip, after an error) what nobody took yet
        job.finished.wait()
    if job.error is not None:
        raise job.error


def for_blocks(body, length: int, work: float = None, min_block: float = MIN_BLOCK_ELEMENTS) -> None:
    """body(lo, hi) over consecutive slices covering range(length), on all threads. `work` (default:
    length) is the op's size in array elements; each block gets at least `min_block` of it."""
    blocks = _block_count(length, length if work is None else work, min_block)
    if blocks == 1:
        body(0, length)
        return
    edges = [length * i // blocks for i in range(blocks + 1)]
    _run([(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo], body)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray = None) -> np.ndarray:
    """a (M, K) @ b (K, N) -> (M, N), in blocks of the result's rows (if M >= N) or columns. Batched
    (not 2-D) and small products go to np.matmul whole."""
    if _deciding and a.ndim == 2 == b.ndim:
        _observe_product(2.0 * a.shape[0] * a.shape[1] * b.shape[1])
    if a.ndim != 2 or b.ndim != 2 or _engine_threads == 1:
        return np.matmul(a, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    by_rows = M >= N
    length = M if by_rows else N
    blocks = _block_count(length // MIN_BLOCK_ROWS, 2.0 * M * K * N, MIN_BLOCK_FLOPS)
    if blocks == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((M, N), np.result_type(a, b))

    def product(lo, hi):
        if by_rows:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
    _aligned_blocks(product, length, blocks)
    return out


def batched_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray = None) -> np.ndarray:
    """a (B, M, K) @ b (B, K, N) -> (B, M, N), in blocks of the B M rows (whole products and at most
    two parts of one at a block's ends), one BLAS call per product or part.
    Counted as one product of all their FLOPs when choosing who runs the threads: its blocks split
    as well as a big product's do."""
    (B, M, K), N = a.shape, b.shape[2]
    flops = 2.0 * B * M * K * N
    if _deciding:
        _observe_product(flops)
    if out is None:
        out = np.empty((B, M, N), np.result_type(a, b))

    def products(lo, hi):                  # rows lo:hi of all B M rows, whole products where they can be
        (first, start), (last, stop) = divmod(lo, M), divmod(hi, M)
        if first == last:
            np.matmul(a[first, start:stop], b[first], out=out[first, start:stop])
            return
        if start:
            np.matmul(a[first, start:], b[first], out=out[first, start:])
            first += 1
        np.matmul(a[first:last], b[first:last], out=out[first:last])
        if stop:
            np.matmul(a[last, :stop], b[last], out=out[last, :stop])
    blocks = _block_count(B * M // MIN_BLOCK_ROWS, flops, MIN_BLOCK_FLOPS)
    if blocks == 1:
        products(0, B * M)
    else:
        _aligned_blocks(products, B * M, blocks)
    return out


def _aligned_blocks(body, length: int, blocks: int) -> None:
    """body(lo, hi) over `blocks` slices of range(length) (rows of a product), edges at multiples of
    ALIGN; each slice is >= MIN_BLOCK_ROWS long (the callers' block counts), so edges stay in range."""
    edges = [ALIGN * round(length * i / blocks / ALIGN) for i in range(blocks)] + [length]
    _run([(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo], body)


# ==================================================================== array helpers
def c_contiguous(a: np.ndarray) -> np.ndarray:
    """a itself if it is C-contiguous, else a C-ordered copy of the same shape (0-d stays 0-d, which
    np.ascontiguousarray does not do): its flat blocks are then views, a.reshape(-1)[lo:hi]."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def copyto(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src (same shape), in blocks along the first axis long enough to split."""
    axis = next((i for i, n in enumerate(dst.shape) if n >= 2 * _engine_threads), 0)
    index = (slice(None),) * axis

    def copy(lo, hi):
        block = index + (slice(lo, hi),)
        np.copyto(dst[block], src[block])
    for_blocks(copy, dst.shape[axis], work=dst.size)
