"""The memory of this process, as the server and its workers see it: the
resident size a worker reports after each task (for ``max_memory_per_worker``),
and giving freed heap back to the system when the server goes idle."""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ['resident_bytes', 'trim_heap']

_PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def _glibc_malloc_trim():
    # malloc_trim is glibc's: another C library (musl) may lack it, or have
    # a symbol of that name with another meaning.
    if not sys.platform.startswith('linux'):
        return None
    try:
        if not os.confstr('CS_GNU_LIBC_VERSION'):
            return None
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, ValueError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_malloc_trim = _glibc_malloc_trim()


def resident_bytes(pid: int | None = None) -> int | None:
    """The resident set size in bytes of this process (or of process
    ``pid``), or None where its ``/proc/PID/statm`` cannot be read (a read
    of a few microseconds; a process that has just exited has none)."""
    try:
        with open(f'/proc/{"self" if pid is None else pid}/statm', 'rb') as stream:
            return int(stream.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def trim_heap() -> bool:
    """Ask glibc to return the free memory at the top and in the holes of its
    heap to the system (``malloc_trim(0)``): after a burst, freed blocks stay
    in the process otherwise, and the server would keep its peak size.  A
    no-op returning False where the C library is not glibc."""
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))
