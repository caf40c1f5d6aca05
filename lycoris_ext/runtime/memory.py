"""Give memory the runtime freed back to the system, once it is idle.

On Linux with glibc, memory freed by ``free`` mostly stays in the process: a
block under the allocator's mmap threshold (which rises to 32 MiB after the
first large block is freed, so most of a model's layers fall under it) goes
back to the heap, and the heap only shrinks from its top. After the runtime
drops the kept originals of many layers (back to no network), ``malloc_trim``
returns those free pages. When tcmalloc is the process's allocator (the
WebUIs' webui.sh preloads it on Linux when it is installed), glibc's
``malloc_trim`` would find nothing to trim: tcmalloc's own
``MallocExtension_ReleaseFreeMemory`` is called instead. Elsewhere this does
nothing.

Trimming at once costs twice: ``malloc_trim`` itself, and the next network's
originals (and the host's own temporaries) then land on fresh pages the
kernel faults in again. In Forge on a CPU a first apply after going back to
no network took 2.2 s with an immediate trim and 0.57 s without. So a
:class:`Trimmer` waits until no change came for ``delay`` seconds: while
someone is switching networks the freed pages are reused, and an idle
process gives them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

#: Freed bytes below which trimming is not worth its walk over the heap.
THRESHOLD = 32 << 20
#: Seconds without a change before freed memory goes back to the system.
IDLE_DELAY = 10.0

_trim = None
_loaded = False


def _find_release(process, libc):
    """The function that gives the allocator's free pages back: tcmalloc's
    when the process runs tcmalloc (its symbols are in the process's global
    scope), else glibc's ``malloc_trim(0)``; None when neither exists."""
    tc = getattr(process, "MallocExtension_ReleaseFreeMemory", None) if process is not None else None
    if tc is not None:
        tc.argtypes = []
        tc.restype = None
        release = lambda: tc()  # noqa: E731
        release.allocator = "tcmalloc"
        return release
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    release = lambda: trim(0)  # noqa: E731
    release.allocator = "glibc"
    return release


def _open(name):
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _malloc_trim():
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        if sys.platform.startswith("linux"):
            _trim = _find_release(_open(None), _open(ctypes.util.find_library("c") or "libc.so.6"))
    return _trim


def release(freed: int) -> bool:
    """Return free heap pages to the system when ``freed`` bytes were just
    freed (at least :data:`THRESHOLD`); whether it was tried."""
    if freed < THRESHOLD:
        return False
    trim = _malloc_trim()
    if trim is None:
        return False
    trim()
    return True


class Trimmer:
    """Counts bytes the runtime freed and trims once it has been idle.

    ``freed(n)`` after every change (``n`` may be 0: a change postpones a
    pending trim); when at least :data:`THRESHOLD` bytes are waiting, a timer
    trims ``delay`` seconds after the last change. ``delay=0`` trims at once,
    ``delay=None`` never. ``flush()`` trims now if anything waits.
    """

    def __init__(self, delay: float | None = IDLE_DELAY, release=release):
        self.delay = delay
        self._release = release
        self._pending = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.trims = 0

    @property
    def pending(self) -> int:
        return self._pending

    def freed(self, nbytes: int) -> None:
        with self._lock:
            self._pending += nbytes
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.delay is None or self._pending < THRESHOLD:
                return
            if self.delay <= 0:
                self._trim_locked()
                return
            self._timer = threading.Timer(self.delay, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pending >= THRESHOLD:
                self._trim_locked()

    def _trim_locked(self) -> None:
        freed, self._pending = self._pending, 0
        if self._release(freed):
            self.trims += 1

    def cancel(self) -> None:
        """Forget what waits (the process is going away, or the model was dropped)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
