"""Where the runtime keeps originals, and when freed memory goes back.

Kept originals on the CPU live in anonymous mappings of their own
(:func:`mapped`), not in the host's heap, which the host needs for its own
temporaries. Going back to an original frees a buffer of the same size (the
merged weight, or the copy written back); a :class:`Pool` keeps those for
the next originals, so switching networks neither allocates nor faults in
pages, and the host's temporaries never land in them.

Once the runtime has been idle for a while, a :class:`Trimmer` empties the
pool. A buffer leaving the pool gives its own pages back first
(:func:`give_back`: ``madvise(MADV_DONTNEED)`` on Linux), then goes to the
allocator: while networks stay active exactly the memory the runtime freed
goes back, and the host's allocator keeps the free pages of its own
temporaries, which its next UNet call would otherwise fault in again
(tcmalloc's ``MallocExtension_ReleaseFreeMemory`` gives back every free page
it holds). What the runtime freed another way (a buffer the pool cannot
take, originals kept on another device than the weights), and, once the
runtime holds no originals at all (back to no network), whatever the host's
heap grew by meanwhile, goes back through the
allocator that runs: tcmalloc's release when tcmalloc is the process's
allocator (the WebUIs' webui.sh preloads it on Linux when it is installed),
else glibc's ``malloc_trim``, which returns free heap pages (a block under
glibc's mmap threshold, which rises to 32 MiB after the first large block is
freed, goes back to the heap, and the heap only shrinks from its top).
Elsewhere this does nothing.

Trimming at once costs twice: the trim itself, and the next network's
originals (and the host's own temporaries) then land on fresh pages the
kernel faults in again. In Forge on a CPU a first apply after going back to
no network took 2.2 s with an immediate trim and 0.57 s without. So the
:class:`Trimmer` waits until no change came for ``delay`` seconds: while
someone is switching networks the freed buffers are reused, and an idle
process gives them back.

:func:`allocator_state` reads what the process's allocator holds (for the
memory route and the host benchmark): the free pages it keeps are the
host's, and it gives them back and takes them again on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
import threading

import torch

from ..mapping import anonymous
from .params import nbytes, sole_owner

#: Freed bytes below which trimming is not worth its walk over the heap.
THRESHOLD = 32 << 20
#: Seconds without a change before freed memory goes back to the system.
IDLE_DELAY = 10.0

#: ``madvise``'s advice to drop a private mapping's pages (Linux): the next
#: touch of the range reads zeros from a fresh page.
MADV_DONTNEED = 4


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


@functools.lru_cache(maxsize=None)
def _libc():
    """The C library on Linux (looked up once), else None."""
    if not sys.platform.startswith("linux"):
        return None
    return _open(ctypes.util.find_library("c") or "libc.so.6")


@functools.lru_cache(maxsize=None)
def _process():
    """The process's global symbols on Linux (tcmalloc's, when it was
    preloaded), looked up once, else None."""
    return _open(None) if sys.platform.startswith("linux") else None


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    return _find_release(_process(), _libc())


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


#: tcmalloc's numeric properties behind :func:`allocator_state`'s fields.
_TCMALLOC = {"heap": "generic.heap_size", "allocated": "generic.current_allocated_bytes",
             "unmapped": "tcmalloc.pageheap_unmapped_bytes"}


def _read_allocator(process, libc) -> dict | None:
    get = getattr(process, "MallocExtension_GetNumericProperty", None) if process is not None else None
    if get is not None:
        get.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        get.restype = ctypes.c_int
        got = {}
        for field, prop in _TCMALLOC.items():
            v = ctypes.c_size_t(0)
            if not get(prop.encode(), ctypes.byref(v)):
                return None
            got[field] = int(v.value)
        # free: mapped and not in use (the page heap's free spans and the caches)
        free = max(0, got["heap"] - got["unmapped"] - got["allocated"])
        return {"name": "tcmalloc", "heap": got["heap"], "allocated": got["allocated"], "free": free,
                "unmapped": got["unmapped"]}
    info = getattr(libc, "mallinfo2", None) if libc is not None else None
    if info is None:  # not glibc, or older than 2.33
        return None
    info.argtypes = []
    info.restype = _MallInfo2
    m = info()
    # large blocks (hblkhd) are mappings of their own, in use until freed;
    # glibc does not count the pages malloc_trim gave back apart: free includes them
    return {"name": "glibc", "heap": m.arena + m.hblkhd, "allocated": m.uordblks + m.hblkhd,
            "free": m.fordblks, "unmapped": None}


def allocator_state() -> dict | None:
    """What the process's allocator reports, in bytes: ``heap`` (what it has
    taken from the system, given back pages included), ``allocated`` (in use
    by the program), ``free`` (taken and not in use: what it keeps for the
    next allocations, the host's temporaries included) and ``unmapped``
    (given back, still counted in ``heap``; None for glibc, which counts
    those in ``free``), with its ``name``; None when the allocator says
    nothing (not Linux, not tcmalloc or glibc 2.33+).

    The process's resident memory minus ``free`` is what it uses: the
    allocator gives free pages back and takes them again on its own, from
    one generation to the next, which moves the resident size by as much
    with or without networks."""
    return _read_allocator(_process(), _libc())


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


@functools.lru_cache(maxsize=None)
def _madvise():
    libc = _libc()
    fn = getattr(libc, "madvise", None) if libc is not None else None
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
    return fn


def give_back(t: torch.Tensor) -> int:
    """Give the system the whole pages of ``t``'s memory now, before ``t`` is
    freed; the bytes given back (0 where that is not possible: not on Linux,
    not a CPU tensor, locked pages).

    For a buffer nothing else uses and nobody reads again: its pages read as
    zeros afterwards. The pages at either end that it may share with other
    allocations are left alone, and the allocator it came from keeps its
    accounting (a later block there faults fresh pages in as it is written),
    so this frees just this buffer's memory, whichever allocator runs."""
    if t.device.type != "cpu":
        return 0
    advise = _madvise()
    if advise is None:
        return 0
    try:
        storage = t.untyped_storage()
        lo, n = storage.data_ptr(), storage.nbytes()
    except Exception:  # a tensor subclass without plain storage
        return 0
    page = mmap.PAGESIZE
    start = -(-lo // page) * page
    end = (lo + n) // page * page
    if end <= start or advise(start, end - start, MADV_DONTNEED) != 0:
        return 0
    return end - start


def mapped(like: torch.Tensor) -> torch.Tensor | None:
    """A new contiguous tensor shaped as ``like``, of its dtype and kind
    (inference tensor or not), in an anonymous mapping of its own
    (:func:`lycoris_ext.mapping.anonymous`); None unless ``like`` is a CPU
    tensor with data and the system gives the mapping.

    Kept originals live for as long as networks are active, while the host
    allocates and frees large temporaries around them on every generation.
    Taken from the host's allocator, they (and the small temporaries of each
    change) split the free space the host keeps for those: in A1111's server
    on a CPU its heap then grew inside the UNet call by that call's largest
    temporary (118 MB, a convolution's reordered weights) at two or three of
    the first calls with networks, and kept those pages. In mappings of their
    own the host's heap stayed as it was before any network."""
    n = nbytes(like)
    buf = anonymous(n) if like.device.type == "cpu" else None
    if buf is None:
        return None
    with torch.inference_mode(like.is_inference()):
        storage = torch.frombuffer(buf, dtype=torch.uint8).untyped_storage()
        # set_, not a view: the tensor is its storage's only user, as a clone is
        return torch.empty(0, dtype=like.dtype).set_(storage, 0, like.shape)


def _layout(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), t.dtype, t.device, t.is_inference())


class Pool:
    """Whole CPU buffers the runtime freed, kept for its next originals of the
    same shape, dtype and kind.

    Going back to no network frees a kept original's worth of memory per
    layer (the original handed back as the parameter's tensor frees the
    merged one), and the next network needs as much again: kept here, the
    buffers are reused as they are, without the allocator or fresh pages, and
    the host's temporaries never land in them. A buffer none of the
    :data:`KEEP_CHANGES` changes after the one that freed it took is freed
    (a layout nobody asked for again), and
    :meth:`clear` empties the pool (the runtime's :class:`Trimmer` does once
    the runtime is idle). A buffer leaving the pool gives its pages back
    first (:func:`give_back`); :attr:`loose` counts the bytes that went to
    the allocator without (not on Linux), for the allocator's own release.
    Thread-safe: the trimmer runs in its own thread.
    """

    #: Changes after the one that freed a buffer that may still take it.
    KEEP_CHANGES = 2

    def __init__(self):
        self._free: dict[tuple, list[tuple[int, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._changes = 0
        self.nbytes = 0
        self.loose = 0

    def _let_go(self, t: torch.Tensor) -> int:
        """Free ``t`` (the caller drops the last reference), its pages given
        back first; its bytes. Under the lock."""
        n = nbytes(t)
        if not give_back(t):
            self.loose += n
        return n

    @staticmethod
    def fits(t: torch.Tensor) -> bool:
        """Whether ``t`` is a whole CPU buffer: a plain contiguous tensor that
        is its storage's only user (nothing else would see it written)."""
        return (type(t) is torch.Tensor and t.device.type == "cpu" and t.is_contiguous() and t.storage_offset() == 0
                and sole_owner(t))

    def put(self, t: torch.Tensor) -> bool:
        """Keep ``t`` for reuse when it is a whole buffer; whether it was kept."""
        if not self.fits(t):
            return False
        with self._lock:
            self._free.setdefault(_layout(t), []).append((self._changes, t))
            self.nbytes += nbytes(t)
        return True

    def take(self, like: torch.Tensor) -> torch.Tensor | None:
        """A kept buffer with ``like``'s shape, dtype and kind, or None."""
        key = _layout(like)
        with self._lock:
            stack = self._free.get(key)
            if not stack:
                return None
            _, t = stack.pop()
            if not stack:
                del self._free[key]
            self.nbytes -= nbytes(t)
            return t

    def changed(self) -> None:
        """Count a change (at its end); buffers no change took for
        :data:`KEEP_CHANGES` changes after their own are freed."""
        with self._lock:
            self._changes += 1
            oldest = self._changes - self.KEEP_CHANGES
            for key in list(self._free):
                kept = [(n, t) for n, t in self._free[key] if n >= oldest]
                self.nbytes -= sum(self._let_go(t) for n, t in self._free[key] if n < oldest)
                if kept:
                    self._free[key] = kept
                else:
                    del self._free[key]

    def clear(self) -> int:
        """Free every kept buffer, its pages given back first; the bytes whose
        pages went back (the others are counted in :attr:`loose`)."""
        with self._lock:
            loose = self.loose
            n = sum(self._let_go(t) for stack in self._free.values() for _, t in stack)
            self.nbytes = 0
            self._free.clear()
            return n - (self.loose - loose)

    def take_loose(self) -> int:
        """The bytes freed to the allocator without giving their pages back,
        since the last call."""
        with self._lock:
            n, self.loose = self.loose, 0
        return n

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._free.values())


class Trimmer:
    """Gives freed memory back once the runtime has been idle.

    ``freed(n)`` after every change, with the bytes the runtime freed to the
    allocator itself (``n`` may be 0: a change postpones a pending trim);
    when at least :data:`THRESHOLD` bytes wait there or in the ``pool``, a
    timer trims ``delay`` seconds after the last change: the pool is emptied
    (its buffers give their own pages back) and, when at least
    :data:`THRESHOLD` bytes went to the allocator, ``release`` gives the
    allocator's free pages back. ``delay=0`` trims at once, ``delay=None``
    never. ``flush()`` trims now if anything waits.

    ``holds_nothing`` (optional) says the runtime keeps no originals any
    more (back to no network): then ``release`` runs too, whatever went to
    the allocator, so the host's heap also gives back what it grew by while
    networks were in use (in A1111's and Forge's servers here 0.12-0.20 GiB
    of free pages at that point; the runtime's own temporaries split its free
    space). While networks stay active the host's free pages are left alone:
    its next UNet call would fault them in again (76k faults in A1111's).
    """

    def __init__(self, delay: float | None = IDLE_DELAY, release=release, pool: Pool | None = None,
                 holds_nothing=None):
        self.delay = delay
        self._release = release
        #: buffers kept for reuse are freed first, then the allocator's pages go back
        self.pool = pool
        self._holds_nothing = holds_nothing
        self._pending = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.trims = 0

    @property
    def pending(self) -> int:
        """Bytes freed to the allocator that wait for its release."""
        return self._pending + (self.pool.loose if self.pool is not None else 0)

    def _waiting(self) -> int:
        return self.pending + (self.pool.nbytes if self.pool is not None else 0)

    def freed(self, nbytes: int) -> None:
        with self._lock:
            self._pending += nbytes
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.delay is None or self._waiting() < THRESHOLD:
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
            if self._waiting() >= THRESHOLD:
                self._trim_locked()

    def _trim_locked(self) -> None:
        given = 0
        loose, self._pending = self._pending, 0
        if self.pool is not None:
            given = self.pool.clear()
            loose += self.pool.take_loose()  # what clear and earlier changes left to the allocator
        if given and self._holds_nothing is not None and self._holds_nothing():
            loose += given
        released = loose >= THRESHOLD and self._release(loose)
        if released or given:
            self.trims += 1

    def cancel(self) -> None:
        """Forget what waits (the process is going away, or the model was dropped)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
