"""Give memory the runtime freed back to the system.

On Linux with glibc, memory freed by ``free`` mostly stays in the process: a
block under the allocator's mmap threshold (which rises to 32 MiB after the
first large block is freed, so most of a model's layers fall under it) goes
back to the heap, and the heap only shrinks from its top. After the runtime
drops the kept originals of many layers (back to no network), ``malloc_trim``
returns those free pages; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Freed bytes below which trimming is not worth its walk over the heap.
THRESHOLD = 32 << 20

_trim = None
_loaded = False


def _malloc_trim():
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _trim = libc.malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
            except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
                _trim = None
    return _trim


def release(freed: int) -> bool:
    """Return free heap pages to the system when ``freed`` bytes were just
    freed (at least :data:`THRESHOLD`); whether it was tried."""
    if freed < THRESHOLD:
        return False
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
