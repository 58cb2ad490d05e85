"""Freed memory stays in the process, so the next training step reuses it without page faults.

Every op returns fresh arrays (outputs, gradients, temporaries), freed a step later. glibc's malloc
gives freed blocks back to the operating system: blocks past its mmap threshold at once, and the
heap's top once more than its trim threshold of it is free. Both thresholds start low (128 KiB and
256 KiB) and grow only with the biggest block freed so far, so steps that free a few big arrays
keep giving memory back, and the next step writes it again one 4 KiB page fault at a time.
README's performance section gives what it saves (scripts/bench.py, faults and times per step).

`keep_freed_memory()` (run when the fast backend is loaded) sets both thresholds for the process:
blocks up to MMAP_THRESHOLD come from the heap and are reused, and free memory at the heap's top
goes back only beyond TRIM_THRESHOLD. The cost: the process keeps up to that much freed memory.
Only with glibc (Linux); elsewhere, or with NUMPY_DL_LAB_KEEP_MEMORY=0, it changes nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "NUMPY_DL_LAB_KEEP_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # mallopt's parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20                      # 32 MiB, the largest glibc accepts on 64-bit
TRIM_THRESHOLD = 256 << 20                     # 256 MiB
kept = False                                   # whether this process keeps freed memory (set below)


def keep_freed_memory() -> bool:
    """Set glibc malloc's thresholds (above); True if they were set, False where there is no glibc
    or NUMPY_DL_LAB_KEEP_MEMORY is 0."""
    setting = os.environ.get(ENV_VAR, "").strip() or "1"           # unset or empty: the default
    if setting not in ("0", "1"):
        raise ValueError(f"{ENV_VAR}: expected 0 (leave malloc as it is) or 1 (keep freed memory), "
                         f"got {setting!r}")
    if setting == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        process = ctypes.CDLL(None)                 # the symbols already loaded, libc's among them
        process.gnu_get_libc_version                # glibc (musl's mallopt does nothing)
        mallopt = process.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    global kept
    kept = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return kept

