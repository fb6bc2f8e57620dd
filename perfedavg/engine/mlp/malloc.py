"""glibc's allocator tuned for the engine's parameter-sized buffers."""

from __future__ import annotations

import ctypes
import ctypes.util


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    r"""Keep freed ``(m, P)`` buffers in glibc's heap instead of returning them to the OS.

    The engine allocates a few parameter-sized buffers per local step; with glibc's
    defaults, freed multi-megabyte blocks go back to the OS and every new one page-faults
    on first touch, step after step.  Raising
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt``) removes them, at the cost of
    keeping up to ``trim_threshold`` bytes of freed memory.  Process-wide; returns False (and
    does nothing) where glibc's ``mallopt`` is unavailable.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
