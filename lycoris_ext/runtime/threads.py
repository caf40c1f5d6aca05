"""Tensor work kept off torch's OpenMP team: small operations in the
calling thread only, and whole layers side by side in threads of their own.

torch runs every elementwise operation on more than 32768 elements on its
OpenMP team. Between operations the team's workers spin for a while, then
sleep; libgomp spins only briefly once the process has more OpenMP threads
than cores, and a WebUI always has: the thread that loaded the model and each
API worker thread that generates own a team. Each such operation then pays
for waking a sleeping worker, about 60 microseconds on a 2-core machine
(measured: a copy of 40k elements took 3 us in one thread, 66 us beside a
second team), whatever its size. Building a layer's factors is a few
operations on at most a few hundred kB per network and layer, thousands per
change: in Forge's server that step took 2.5 times as long as in a process
with one team.

:func:`serial` runs such work with the calling thread's OpenMP thread count
set to 1. That count is an OpenMP setting of the calling thread alone
(``omp_set_num_threads``), unlike ``torch.set_num_threads``, which also sets
process-wide state other threads read. The library is the OpenMP runtime
torch itself calls, found among the process's mapped libraries and checked
by reading the count back through torch; where it is not found (not Linux,
torch built without OpenMP) :func:`serial` changes nothing. Results are the
same bits either way: elementwise operations do not depend on the split
into threads.

:func:`each` runs independent jobs (whole layers: the copy, the factors and
the product) side by side in as many threads as torch would use, each
thread's operations in that thread alone: the cores stay busy without any
OpenMP team, so no operation wakes a sleeping worker (a rebuild of SD1.5's
264 layers, copy and rank-128 product each, took 0.45 s this way and 0.51 s
on the team beside a second one, with the same bits). A job's results do not
depend on how many ran beside it: it runs the same single-thread operations
either way.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from contextlib import contextmanager
from typing import Callable, Sequence

import torch

_OPENMP_NAME = re.compile(r"^lib(gomp|omp|iomp5)([-.][\w.-]*)?\.so(\.[\d.]+)?$")
_lock = threading.Lock()
_found: list = []  # [library or None], once looked up


def _mapped_openmp_libraries(maps: str = "/proc/self/maps") -> list[str]:
    try:
        with open(maps) as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return []
    # address, permissions, offset, device, inode, path (absent for anonymous memory)
    paths = {row[5].strip() for row in fields if len(row) == 6}
    return sorted(p for p in paths if _OPENMP_NAME.match(os.path.basename(p)))


def _pick(paths: list[str], torch_dir: str) -> str | None:
    """torch's own OpenMP runtime: the one in torch's folder, else the only one."""
    own = [p for p in paths if p.startswith(torch_dir + os.sep)]
    if len(own) == 1:
        return own[0]
    return paths[0] if len(paths) == 1 else None


def _checked(path: str):
    """The library at ``path`` if setting its count shows in ``torch.get_num_threads()``."""
    try:
        lib = ctypes.CDLL(path)
        set_n, get_n = lib.omp_set_num_threads, lib.omp_get_max_threads
    except (OSError, AttributeError):
        return None
    set_n.argtypes, set_n.restype = [ctypes.c_int], None
    get_n.argtypes, get_n.restype = [], ctypes.c_int
    before = torch.get_num_threads()  # torch sets up this thread's count first
    if get_n() != before:
        return None
    probe = 2 if before == 1 else 1
    try:
        set_n(probe)
        ok = torch.get_num_threads() == probe
    finally:
        set_n(before)
    return lib if ok and torch.get_num_threads() == before else None


def openmp():
    """torch's OpenMP runtime as a ctypes library, or None."""
    with _lock:
        if not _found:
            path = _pick(_mapped_openmp_libraries(), os.path.dirname(os.path.abspath(torch.__file__)))
            _found.append(_checked(path) if path else None)
        return _found[0]


@contextmanager
def serial(device=None):
    """torch's CPU operations inside run in the calling thread alone.

    Nothing changes for a CUDA ``device``, on a single thread, or where
    torch's OpenMP runtime was not found."""
    lib = None if device is not None and torch.device(device).type != "cpu" else openmp()
    # torch.get_num_threads() first: torch sets a new thread's count on its first use
    n = torch.get_num_threads() if lib is not None else 1
    if n < 2:
        yield
        return
    lib.omp_set_num_threads(1)
    try:
        yield
    finally:
        lib.omp_set_num_threads(n)


#: :func:`each`'s outcome for a job that was not started (an earlier job failed).
SKIPPED = object()


def each(jobs: Sequence[Callable[[], object]], workers: int | None = None) -> list:
    """Run ``jobs`` side by side, each job's torch operations in its thread alone.

    Up to ``workers`` threads (default ``torch.get_num_threads()``; the
    calling thread is one of them) take the jobs in order, each running in
    :func:`serial` under the caller's grad and inference modes (both are
    per-thread in torch). Once a job raises, no further job starts. Returns
    one outcome per job: None when it ran, the exception it raised, or
    :data:`SKIPPED`. With one worker the jobs run here, still each in this
    thread alone, so a job's results never depend on how many ran beside it.
    Where torch's OpenMP runtime was not found (no thread can be kept to
    itself) they run here one after the other on torch's own threads.
    """
    outcomes: list = [SKIPPED] * len(jobs)
    workers = torch.get_num_threads() if workers is None else workers
    helpers = max(0, min(workers, len(jobs)) - 1) if openmp() is not None else 0
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    order = iter(range(len(jobs)))
    lock = threading.Lock()
    failed = threading.Event()

    def work():
        with torch.inference_mode(inference), torch.set_grad_enabled(grad), serial():
            while not failed.is_set():
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    jobs[i]()
                    outcomes[i] = None
                except BaseException as e:  # reported to the caller with the job
                    outcomes[i] = e
                    failed.set()

    threads = [threading.Thread(target=work, name=f"lycoris-each-{n}", daemon=True) for n in range(helpers)]
    for t in threads:
        t.start()
    try:
        work()
    finally:
        for t in threads:
            t.join()
    return outcomes
