"""Which fast kernels ran: a test that means to compare a fast path with its reference asserts that the
path was taken (`with taken() as seen: ...; assert seen["conv2d winograd"]`)."""
from __future__ import annotations

import collections
import contextlib

counts: collections.Counter = collections.Counter()


def note(kernel: str) -> None:
    counts[kernel] += 1


@contextlib.contextmanager
def taken():
    """The kernels that ran inside the block, with how often: a Counter filled when the block ends."""
    before, seen = counts.copy(), collections.Counter()
    try:
        yield seen
    finally:
        seen.update(counts - before)
