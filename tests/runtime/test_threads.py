"""threads.serial: small operations in the calling thread only, for that thread alone."""

import sys
import threading
import time

import pytest
import torch

from lycoris_ext.runtime import threads


def test_finds_torchs_openmp_runtime_on_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("the OpenMP runtime is looked up in /proc/self/maps")
    assert threads.openmp() is not None, threads._mapped_openmp_libraries()


def test_picks_the_library_in_torchs_folder():
    torch_dir = "/v/site-packages/torch"
    own = torch_dir + "/lib/libgomp.so.1"
    other = "/v/site-packages/sentencepiece.libs/libgomp-6a29c32d.so.1.0.0"  # as Forge's server maps both
    assert threads._pick([other, own], torch_dir) == own
    assert threads._pick(["/usr/lib/libgomp.so.1"], torch_dir) == "/usr/lib/libgomp.so.1"
    assert threads._pick([other, "/usr/lib/libgomp.so.1"], torch_dir) is None  # which one is torch's: unknown
    assert threads._pick([], torch_dir) is None


def test_reads_openmp_libraries_from_the_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /v/torch/lib/libgomp.so.1\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /v/torch/lib/libgomp.so.1\n"
        "7f02-7f03 r-xp 00000000 08:01 3 /v/x.libs/libgomp-6a29c32d.so.1.0.0\n"
        "7f03-7f04 r-xp 00000000 08:01 4 /opt/intel/libiomp5.so\n"
        "7f04-7f05 r-xp 00000000 08:01 5 /v/torch/lib/libtorch_cpu.so\n"
        "7f05-7f06 rw-p 00000000 00:00 0 \n"
        "7f06-7f07 rw-p 00000000 00:00 0 [heap]\n")
    assert threads._mapped_openmp_libraries(str(maps)) == [
        "/opt/intel/libiomp5.so", "/v/torch/lib/libgomp.so.1", "/v/x.libs/libgomp-6a29c32d.so.1.0.0"]
    assert threads._mapped_openmp_libraries(str(tmp_path / "missing")) == []


@pytest.fixture
def two_threads():
    if threads.openmp() is None:
        pytest.skip("torch's OpenMP runtime not found here")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_serial_sets_the_calling_thread_only(two_threads):
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = torch.get_num_threads()
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with threads.serial():
        seen["inside"] = torch.get_num_threads()
        inside.set()
        done.wait(10)
    t.join()
    assert seen == {"inside": 1, "other": 2}
    assert torch.get_num_threads() == 2


def test_serial_restores_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with threads.serial():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_serial_in_a_new_thread(two_threads):
    """A thread's first torch call sets its count; serial() must come after that."""
    seen = []

    def fresh():
        with threads.serial():
            seen.append(torch.get_num_threads())
            torch.ones(100_000).mul_(2)  # large enough for torch's thread pool
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=fresh)
    t.start()
    t.join()
    assert seen == [1, 1, 2]


def test_serial_leaves_other_devices_alone(two_threads):
    with threads.serial("cuda"):
        assert torch.get_num_threads() == 2
    with threads.serial("cpu"):
        assert torch.get_num_threads() == 1


def test_same_bits_in_one_thread_or_many(two_threads):
    g = torch.Generator().manual_seed(3)
    src = torch.randn(4096, 64, generator=g).half()
    pooled = torch.mul(src, torch.tensor([0.7071]))
    with threads.serial():
        alone = torch.mul(src, torch.tensor([0.7071]))
    assert torch.equal(pooled, alone)


# ---------------------------------------------------------------- each()
def test_each_runs_jobs_side_by_side_each_in_its_thread_alone(two_threads):
    meet = threading.Barrier(2, timeout=10)  # passes only if two jobs run at once
    seen = []

    def job(i):
        def run():
            if i < 2:
                meet.wait()
            seen.append((i, threading.get_ident(), torch.get_num_threads()))
        return run

    outcomes = threads.each([job(i) for i in range(6)])
    assert outcomes == [None] * 6
    assert sorted(i for i, _, _ in seen) == list(range(6))
    assert len({t for _, t, _ in seen}) == 2
    assert {n for _, _, n in seen} == {1}
    assert torch.get_num_threads() == 2


def test_each_carries_the_callers_grad_and_inference_modes(two_threads):
    seen = []

    def job():
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

    with torch.inference_mode():
        threads.each([job] * 4)
    with torch.no_grad():
        threads.each([job] * 4)
    threads.each([job] * 4)
    assert seen == [(True, False)] * 4 + [(False, False)] * 4 + [(False, True)] * 4


def test_each_starts_nothing_after_a_failure(two_threads):
    second = threading.Event()

    def boom():
        second.wait(10)  # both threads hold a job
        raise ValueError("job 0")

    def slow():
        second.set()
        time.sleep(0.2)  # job 0's failure is recorded meanwhile

    outcomes = threads.each([boom, slow] + [lambda: None] * 6)
    assert isinstance(outcomes[0], ValueError) and outcomes[1] is None
    assert all(o is threads.SKIPPED for o in outcomes[2:])


def test_each_one_worker_runs_here_in_order():
    order = []
    outcomes = threads.each([lambda i=i: order.append((i, threading.get_ident())) for i in range(3)], workers=1)
    assert outcomes == [None] * 3
    assert order == [(i, threading.get_ident()) for i in range(3)]
    boom = threads.each([lambda: 1 / 0, lambda: order.append("after")], workers=1)
    assert isinstance(boom[0], ZeroDivisionError) and boom[1] is threads.SKIPPED and order[-1] != "after"


def test_layers_rebuilt_side_by_side_equal_one_by_one(two_threads, tmp_path, monkeypatch):
    """The same wanted set gives the same bits whether the runtime's layers are
    rebuilt in two threads, each alone, or one after the other on torch's
    team (as where the OpenMP runtime is not found)."""
    from lycoris_ext.runtime import Runtime, Use
    from support.models import same_as, small_model, snapshot, write_sample

    results = []
    for n in ("side by side", "on the team"):
        if n == "on the team":
            monkeypatch.setattr(threads, "openmp", lambda: None)
        parts, tree = small_model("sd15", shrink=8)
        nets = [write_sample(tmp_path / f"{a}{len(results)}.safetensors", tree, a, rank=8, seed=i)
                for i, a in enumerate(["lora", "loha", "lokr", "lora"])]
        before = snapshot(parts)
        rt = Runtime(tree)
        rt.set([Use(nets[0], 1, 1), Use(nets[1], 0.5, 0.8)])
        rt.set([Use(nets[0], 0.7, 1), Use(nets[2], 1, 1), Use(nets[3], 1, 0.6)])
        results.append(snapshot(parts))
        rt.restore()
        assert same_as(parts, before) == []
    side, one = results
    assert side.keys() == one.keys()
    assert [k for k in side if not torch.equal(side[k].view(-1).view(torch.uint8), one[k].view(-1).view(torch.uint8))] == []
