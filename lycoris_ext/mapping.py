"""Anonymous memory mappings for large buffers that live long.

Network files' data and the runtime's kept originals stay in memory for as
long as networks are in use, while the host allocates and frees large
temporaries around them on every generation. A mapping of its own leaves
the host's heap to the host and goes back to the system as soon as it is
freed.
"""

from __future__ import annotations

import mmap
import sys


def anonymous(nbytes: int):
    """A writable anonymous mapping of ``nbytes`` (pages populated up front
    where the system can: one pass in the kernel, not a fault per page), or
    None when ``nbytes`` is 0 or the system refuses."""
    if nbytes <= 0:
        return None
    try:
        if sys.platform.startswith("win"):
            return mmap.mmap(-1, nbytes)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(-1, nbytes, flags=flags)
    except (OSError, ValueError, OverflowError):
        return None
