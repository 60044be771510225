"""Keep freed activation memory in the process instead of handing it back to the OS every step.

glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh mmap'ed pages and
returns them when freed, so each training step page-faults and zero-fills its activations again.
On the default model (2 cores) that is 15 % of training images/s, dense and gated (bench/bench_core.py).

A thread other than the main one (the dashboard's trainer) allocates from its own arena, made of
64 MiB heaps, and glibc unmaps a heap as soon as it is entirely free: whatever the thresholds,
every step faulted its activations in again (2-3 million page faults and 3-5 s of system time in a
15 s quick demo, training 5-20 % slower than on the main thread). glibc keeps a free heap when
the top pad exceeds the free room it would gain, which is always under two heaps: a pad of two
heaps keeps them all (60-80 thousand faults, the same speed as the main thread). The pad only
reserves address space; pages are touched when used.

The price is that the process keeps its peak memory until it exits. Set BAR_TUNE_MALLOC=0 to leave
malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit
_HEAP_MAX = 2 * _MMAP_THRESHOLD_MAX      # the size of a thread arena's heap on 64-bit
_done = False


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds and its top pad (once per process). True when applied."""
    global _done
    if _done:
        return True
    if os.environ.get("BAR_TUNE_MALLOC", "1") == "0" or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
        ok = libc.mallopt(_M_TOP_PAD, 2 * _HEAP_MAX) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
