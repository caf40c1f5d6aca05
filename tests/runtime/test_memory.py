"""Freed originals go back to the system once the runtime is idle, not in the middle of switching."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from lycoris_ext.runtime import Runtime, Use
from lycoris_ext.runtime import memory
from lycoris_ext.runtime.params import weight_view
from support.models import same_as, small_model, snapshot, write_sample

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
    calls, given = Calls(), []
    monkeypatch.setattr(memory, "THRESHOLD", 1)
    monkeypatch.setattr(memory, "give_back", lambda t: given.append(t.nbytes) or t.nbytes)
    rt = Runtime(tree, trim_delay=0.2)
    rt.trimmer._release = calls
    rt.set([Use(net, 1.0)])
    kept = rt.kept_bytes
    rt.set([Use(net, 1.0, 0.0)])  # the UNet's layers back to their originals, the text encoder's stay
    unet = rt.pool.nbytes
    assert 0 < unet < kept and given == [] and rt.trimmer.pending == 0  # not while switching
    assert _wait(lambda: rt.trimmer.trims == 1)
    assert rt.pool.nbytes == 0 and len(rt.pool) == 0
    # networks still active: each buffer gave its own pages back, and the
    # allocator's free pages (the host's temporaries) were left alone
    assert sum(given) == unet and calls.seen == []
    rt.set([])
    assert rt.pool.nbytes == kept - unet  # the freed buffers wait for the next originals
    assert _wait(lambda: rt.trimmer.trims == 2)
    # back to no network: the buffers' pages, then the allocator's free pages too
    assert sum(given) == kept and calls.seen == [kept - unet]


def test_where_pages_cannot_be_given_back_the_allocator_releases_them(tmp_path, monkeypatch):
    parts, tree = small_model("sd15", shrink=8)
    net = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=2)
    calls = Calls()
    monkeypatch.setattr(memory, "THRESHOLD", 1)
    monkeypatch.setattr(memory, "give_back", lambda t: 0)  # not Linux
    rt = Runtime(tree, trim_delay=0)
    rt.trimmer._release = calls
    rt.set([Use(net, 1.0)])
    kept = rt.kept_bytes
    rt.set([])
    assert calls.seen == [kept] and rt.pool.nbytes == 0 and rt.trimmer.pending == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * memory.mmap.PAGESIZE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_give_back_drops_just_the_buffers_pages():
    t = torch.ones(8 << 20)  # 32 MiB
    before = _rss()
    n = memory.give_back(t)
    assert n >= t.nbytes - 2 * memory.mmap.PAGESIZE
    assert before - _rss() >= n * 0.9  # the resident set shrank by that much
    page = memory.mmap.PAGESIZE // 4
    inner = t[page:-page]
    assert torch.count_nonzero(inner) <= 2 * page  # read back as zeros: fresh pages
    assert memory.give_back(torch.ones(10)) == 0  # no whole page of its own


_HOST = """
import ctypes, sys, torch
from lycoris_ext.runtime import memory
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * memory.mmap.PAGESIZE
# the host's temporaries of one call, freed: its allocator keeps their pages for the next call
temps = [torch.ones(16 << 20) for _ in range(4)]
del temps
pool = memory.Pool()
pool.put(torch.ones(32 << 20))  # 128 MiB the runtime freed
before = rss()
memory.Trimmer(0, pool=pool).freed(0)  # networks still active
print(memory._malloc_trim().allocator, before - rss())
pool.put(torch.ones(8 << 20))  # 32 MiB more, then back to no network
before = rss()
memory.Trimmer(0, pool=pool, holds_nothing=lambda: True).freed(0)
print(before - rss())
"""


def test_trimming_under_tcmalloc_leaves_the_hosts_free_pages_until_no_network_is_left():
    import os
    import subprocess

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from bench_host import find_tcmalloc
    lib = find_tcmalloc() if sys.platform.startswith("linux") else None
    if lib is None:
        pytest.skip("tcmalloc is not installed")
    out = subprocess.run([sys.executable, "-c", _HOST], capture_output=True, text=True, check=True,
                         env=dict(os.environ, LD_PRELOAD=lib)).stdout.split()
    assert out[0] == "tcmalloc"
    dropped, at_none = int(out[1]), int(out[2])
    # the pooled 128 MiB went back, not the 256 MiB of the host's freed temporaries
    assert 120 * MB <= dropped <= 160 * MB, dropped
    # back to no network the allocator's free pages went too (the other 128 MiB)
    assert at_none >= 120 * MB, at_none


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


# ---------------------------------------------------------------- where originals live
def _mapped_ranges():
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            out.append((lo, hi))
    return out


def test_mapped_gives_a_whole_tensor_of_the_same_kind_and_frees_its_mapping():
    like = torch.randn(300, 200)
    t = memory.mapped(like)
    assert t.shape == like.shape and t.dtype == like.dtype and t.is_contiguous() and not t.is_inference()
    assert memory.Pool.fits(t)  # its storage's only user, as a clone would be
    t.copy_(like)
    assert torch.equal(t, like)
    with torch.inference_mode():
        inf = torch.zeros(4, 8, dtype=torch.float16)
    u = memory.mapped(inf)
    assert u.is_inference() and u.dtype == torch.float16 and u.shape == inf.shape
    assert memory.mapped(torch.zeros(0)) is None  # nothing to map
    if sys.platform.startswith("linux"):
        big = memory.mapped(torch.zeros(1 << 21))  # 8 MiB
        start = big.data_ptr()
        assert any(lo <= start < hi for lo, hi in _mapped_ranges())
        del big
        assert not any(lo <= start < hi for lo, hi in _mapped_ranges())  # unmapped at once, not kept by an allocator


def test_pool_keeps_only_whole_buffers_and_matches_shape_dtype_and_kind():
    pool = memory.Pool()
    base = torch.zeros(8, 8)
    alias = base.view(64)
    assert not pool.put(base)  # another tensor shares its storage
    del alias
    assert not pool.put(torch.zeros(8, 9)[:, :8])  # a view of a larger buffer
    assert not pool.put(torch.zeros(8, 8).t())  # not contiguous
    assert pool.put(base) and pool.nbytes == 256 and len(pool) == 1
    assert pool.take(torch.zeros(8, 8, dtype=torch.float16)) is None
    assert pool.take(torch.zeros(4, 16)) is None
    with torch.inference_mode():
        assert pool.take(torch.zeros(8, 8)) is None  # an inference tensor is another kind
    got = pool.take(torch.ones(8, 8))
    assert got is base and pool.nbytes == 0 and len(pool) == 0


def test_pool_drops_buffers_unused_for_a_few_changes_and_clear_empties_it():
    pool = memory.Pool()
    pool.put(torch.zeros(16))
    pool.changed()  # the end of the change that freed it
    for _ in range(memory.Pool.KEEP_CHANGES):  # the next ones may take it
        assert len(pool) == 1
        pool.changed()
    assert len(pool) == 0 and pool.nbytes == 0
    pool.put(torch.zeros(16))
    # 64 bytes hold no page of their own: no page went back, both buffers
    # (dropped, then cleared) were left to the allocator
    assert pool.clear() == 0 and len(pool) == 0 and pool.nbytes == 0
    assert pool.take_loose() == 128
    assert pool.take_loose() == 0
    if sys.platform.startswith("linux"):  # a buffer of whole pages gives them back, not to the allocator
        assert pool.put(torch.zeros(1 << 18))
        assert pool.clear() == 1 << 20 and pool.take_loose() == 0


def test_originals_are_mapped_and_back_to_none_then_again_reuses_their_buffers(tmp_path):
    parts, tree = small_model("sd15", shrink=8)
    net = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=2)
    snap = snapshot(parts)
    rt = Runtime(tree, trim_delay=None)
    made = []
    real = memory.mapped
    try:
        memory.mapped = lambda like: made.append(real(like)) or made[-1]
        rt.set([Use(net, 1.0)])
    finally:
        memory.mapped = real
    first = {tid: weight_view(rt.tree.by_id[tid]).clone() for tid in rt._orig_w}
    kept = rt.kept_bytes
    assert made and {t.data_ptr() for t in made} == {t.data_ptr() for t in rt._orig_w.values()}
    rt.set([])
    assert same_as(parts, snap) == []
    assert rt.pool.nbytes == kept and rt.kept_bytes == 0
    freed = {t.data_ptr() for ts in rt.pool._free.values() for _, t in ts}
    rt.set([Use(net, 1.0)])
    assert rt.pool.nbytes == 0
    assert {t.data_ptr() for t in rt._orig_w.values()} == freed  # the same buffers, no new memory
    for tid, w in first.items():
        assert torch.equal(weight_view(rt.tree.by_id[tid]), w)
    rt.set([])
    assert same_as(parts, snap) == []


# ---------------------------------------------------------------- what the allocator reports
def test_allocator_state_reads_tcmalloc_properties_else_glibc_mallinfo2():
    props = {b"generic.heap_size": 1000, b"generic.current_allocated_bytes": 600, b"tcmalloc.pageheap_unmapped_bytes": 100}

    def get(name, out):
        if name not in props:
            return 0
        out._obj.value = props[name]
        return 1

    state = memory._read_allocator(_Lib(MallocExtension_GetNumericProperty=get), _Lib())
    assert state == {"name": "tcmalloc", "heap": 1000, "allocated": 600, "free": 300, "unmapped": 100}
    del props[b"tcmalloc.pageheap_unmapped_bytes"]  # a property this tcmalloc lacks: nothing half-read
    assert memory._read_allocator(_Lib(MallocExtension_GetNumericProperty=get), _Lib()) is None

    info = memory._MallInfo2(arena=500, hblkhd=200, uordblks=300, fordblks=150)
    state = memory._read_allocator(_Lib(), _Lib(mallinfo2=lambda: info))
    assert state == {"name": "glibc", "heap": 700, "allocated": 500, "free": 150, "unmapped": None}
    assert memory._read_allocator(_Lib(), _Lib()) is None  # musl, or glibc before 2.33
    assert memory._read_allocator(None, None) is None


_STATE = """
import lycoris_ext.runtime.memory as m
a = m.allocator_state()
block = bytearray(64 << 20)  # a large block, in use
b = m.allocator_state()
print(a["name"], b["allocated"] - a["allocated"])
"""


def test_allocator_state_counts_a_large_block_in_use_under_each_allocator():
    import os
    import subprocess

    if not sys.platform.startswith("linux"):
        pytest.skip("Linux allocators only")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from bench_host import find_tcmalloc
    runs = [("glibc", dict(os.environ))]
    lib = find_tcmalloc()
    if lib is not None:
        runs.append(("tcmalloc", dict(os.environ, LD_PRELOAD=lib)))
    for name, env in runs:
        out = subprocess.run([sys.executable, "-c", _STATE], capture_output=True, text=True, check=True, env=env).stdout.split()
        assert out[0] == name
        assert 64 * MB <= int(out[1]) <= 66 * MB, (name, out)
