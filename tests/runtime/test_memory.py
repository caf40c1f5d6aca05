"""Freed originals go back to the system once the runtime is idle, not in the middle of switching."""

from __future__ import annotations

import time

from lycoris_ext.runtime import Runtime, Use
from lycoris_ext.runtime import memory
from support.models import small_model, write_sample

MB = 1 << 20


class Calls:
    def __init__(self):
        self.seen = []

    def __call__(self, freed):
        self.seen.append(freed)
        return True


def _wait(pred, seconds=5.0):
    end = time.monotonic() + seconds
    while not pred() and time.monotonic() < end:
        time.sleep(0.01)
    return pred()


def test_trims_once_after_the_delay_and_changes_postpone_it():
    calls = Calls()
    t = memory.Trimmer(0.3, release=calls)
    t.freed(40 * MB)
    time.sleep(0.15)
    assert calls.seen == []
    t.freed(0)  # a change: the clock starts again
    time.sleep(0.2)
    assert calls.seen == []
    assert _wait(lambda: calls.seen == [40 * MB])
    assert t.pending == 0 and t.trims == 1


def test_small_amounts_wait_and_zero_or_none_delay():
    calls = Calls()
    t = memory.Trimmer(0.05, release=calls)
    t.freed(memory.THRESHOLD - 1)
    time.sleep(0.15)
    assert calls.seen == [] and t.pending == memory.THRESHOLD - 1
    now = memory.Trimmer(0, release=calls)
    now.freed(memory.THRESHOLD)
    assert calls.seen == [memory.THRESHOLD]
    never = memory.Trimmer(None, release=calls)
    never.freed(1 << 40)
    never.flush()  # an explicit flush still trims
    assert calls.seen == [memory.THRESHOLD, 1 << 40]


def test_runtime_hands_freed_originals_to_its_trimmer(tmp_path, monkeypatch):
    parts, tree = small_model("sd15", shrink=8)
    net = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=2)
    calls = Calls()
    monkeypatch.setattr(memory, "THRESHOLD", 1)
    rt = Runtime(tree, trim_delay=0.2)
    rt.trimmer._release = calls
    rt.set([Use(net, 1.0)])
    kept = rt.kept_bytes
    assert kept > 0
    rt.set([])
    assert calls.seen == [] and rt.trimmer.pending == kept  # not while switching
    assert _wait(lambda: calls.seen == [kept])


class _Lib:
    """A stand-in for a loaded C library: only the symbols given exist."""

    def __init__(self, **symbols):
        for name, fn in symbols.items():
            setattr(self, name, _Sym(fn))


class _Sym:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


def test_release_uses_tcmalloc_when_it_is_the_allocator_else_malloc_trim():
    seen = []
    tc = _Lib(MallocExtension_ReleaseFreeMemory=lambda: seen.append("tcmalloc"))
    libc = _Lib(malloc_trim=lambda pad: seen.append(("malloc_trim", pad)))
    release = memory._find_release(tc, libc)
    release()
    assert seen == ["tcmalloc"] and release.allocator == "tcmalloc"  # glibc's heap is not where tcmalloc keeps its free pages
    memory._find_release(_Lib(), libc)()
    assert seen == ["tcmalloc", ("malloc_trim", 0)]
    assert memory._find_release(_Lib(), _Lib()) is None  # musl: nothing to call
    assert memory._find_release(None, None) is None


def test_a_process_running_tcmalloc_releases_through_it():
    import os
    import subprocess
    import sys

    import pytest
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from bench_host import find_tcmalloc
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux allocators only")
    code = "import lycoris_ext.runtime.memory as m; f = m._malloc_trim(); print(f is not None and f.allocator)"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert plain == "glibc"
    lib = find_tcmalloc()  # the library webui.sh (and bench_host.py) would preload
    if lib is None:
        pytest.skip("tcmalloc is not installed")
    env = dict(os.environ, LD_PRELOAD=lib)
    preloaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert preloaded == "tcmalloc"
