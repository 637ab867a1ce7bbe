"""Reuse of freed memory while a model trains or scores on CPU.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above its
mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it when it is freed, so each
step's large activations and gradients ((2048, 4096) floats are 32 MiB) arrive as untouched pages
and fault in one page at a time: measured here, about 10 ms for each 32 MiB tensor, and a quarter
of an MMoE training step. ``reusing_freed_memory`` tells glibc (``mallopt``) to serve every block
from its heap and to keep what is freed, so the next step's tensors land on pages already mapped
(from the second step on: the first one grows the heap, and glibc sometimes places that growth
afresh); on leaving, the defaults come back and ``malloc_trim`` returns what it can of the kept
memory to the system.

This is the C library's documented tuning (``mallopt(3)``): what ``GLIBC_TUNABLES`` or an
allocator such as jemalloc would do for the whole process, limited to the loop that benefits. On
other C libraries (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters and glibc's defaults for them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
DEFAULT_TRIM_THRESHOLD = DEFAULT_MMAP_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536
KEEP_UP_TO = 2**31 - 1  # bytes free at the heap's top before glibc gives them back (mallopt takes an int)

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # glibc only
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def supported() -> bool:
    """Whether this process's C library can be told to keep freed memory (glibc)."""
    return _glibc() is not None


@contextmanager
def reusing_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Inside, freed blocks stay in the process for the next allocation; yields whether it applies.

    Nested uses (evaluation inside training) keep it on until the outermost one leaves.
    """
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)  # every block from the heap...
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO)  # ...which keeps what is freed
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
