"""Faults injected at every stage of an apply (reading factors, computing a
delta, writing a parameter, installing a hook) leave the model exactly as it
was before that apply."""

from __future__ import annotations

import threading

import pytest
import torch

import lycoris_ext.runtime.runtime as runtime_mod
from lycoris_ext import NetworkApplyError
from lycoris_ext.runtime import BYPASS, MERGE, Runtime, Use
from lycoris_ext.runtime.merge import FactorCache
from support.models import same_as, small_model, snapshot, write_sample


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    parts, tree = small_model("sd15", shrink=32)
    d = tmp_path_factory.mktemp("faults")
    nets = [write_sample(d / f"{a}.safetensors", tree, a, rank=2, seed=i) for i, a in enumerate(["lora", "loha", "oft", "dora"])]
    return parts, tree, nets


class Boom(RuntimeError):
    pass


class Counter:
    """Counts calls from any thread (the runtime rebuilds layers side by side)."""

    def __init__(self):
        self.n = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self.n += 1
            return self.n


def fail_on(monkeypatch, obj, name, fail_at, after=False, message="injected"):
    """Make ``obj.name`` raise on its ``fail_at``-th call (after doing its work when ``after``)."""
    real = getattr(obj, name)
    calls = Counter()

    def wrapper(*a, **k):
        mine = calls.next()
        if mine == fail_at and not after:
            raise Boom(message)
        out = real(*a, **k)
        if mine == fail_at:
            raise Boom(message)
        return out

    monkeypatch.setattr(obj, name, wrapper)
    return calls


class Exploding:
    """A weight view whose copy_ writes garbage and raises on the n-th write."""

    count = Counter()
    fail_at = 0

    def __init__(self, t):
        self.t = t

    def __getattr__(self, k):
        return getattr(self.t, k)

    def copy_(self, src):
        if Exploding.count.next() == Exploding.fail_at:
            self.t.copy_(torch.full_like(self.t, 123.0))  # a half-done write
            raise Boom("writing a parameter")
        return self.t.copy_(src)


STAGES = ["factors", "delta", "combine", "write", "hook"]


def inject(monkeypatch, stage, fail_at, nets):
    if stage == "factors":
        fail_on(monkeypatch, FactorCache, "get", fail_at, message="reading factors")
    elif stage == "delta":
        n = Counter()
        for cls in {type(a) for net in nets for a in net.modules.values()}:
            for name in ("delta", "add_into"):  # merge adds in place; bypass takes the whole change
                real = getattr(cls, name)

                def compute(self, *a, _real=real, **k):
                    if n.next() == fail_at:
                        raise Boom("computing a delta")
                    return _real(self, *a, **k)

                monkeypatch.setattr(cls, name, compute)
    elif stage == "combine":  # fails after combine may have written the weight (addmm out=)
        fail_on(monkeypatch, runtime_mod, "combine", fail_at, after=True, message="after writing a weight")
    elif stage == "write":
        real = runtime_mod.weight_view
        Exploding.count, Exploding.fail_at = Counter(), fail_at
        monkeypatch.setattr(runtime_mod, "weight_view", lambda target: Exploding(real(target)))
    elif stage == "hook":
        fail_on(monkeypatch, runtime_mod.BypassHook, "set", fail_at, message="installing a hook")


def _state(rt):
    return dict(rt._state), rt.kept_bytes, {t: [c.signature for c in cs] for t, cs in rt._applied.items()}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("fail_at", [1, 7, 40, 120])
@pytest.mark.parametrize("mode", [MERGE, BYPASS])
def test_fault_at_every_stage(world, monkeypatch, stage, fail_at, mode):
    parts, tree, nets = world
    rt = Runtime(tree, mode=mode)
    rt.set([Use(nets[0], 0.5, 0.7)])  # a state to go back to
    before, state = snapshot(parts), _state(rt)
    inject(monkeypatch, stage, fail_at, nets)
    try:
        rt.set([Use(nets[1], 1.0, 1.0), Use(nets[2], 0.8, 0.8), Use(nets[3], 1.0, 0.6)], mode=mode)
        raised = False
    except NetworkApplyError as e:
        raised = True
        assert "the model was left as it was" in str(e)
    monkeypatch.undo()
    if raised:
        assert same_as(parts, before) == []
        assert _state(rt) == state
    rt.restore()
    assert rt.kept_bytes == 0 and not rt._hooks


def test_every_write_position(world, monkeypatch):
    """A failing write at each position of a full switch: always back to the state before."""
    parts, tree, nets = world
    rt = Runtime(tree)
    rt.set([Use(nets[0], 1, 1)])
    before = snapshot(parts)
    total = len({m.target.id for net in nets[:2] for m in rt.resolution(net).matches})  # layers the switch rebuilds
    for k in range(1, total + 1, max(1, total // 25)):
        fail_on(monkeypatch, runtime_mod, "combine", k, after=True)
        with pytest.raises(NetworkApplyError):
            rt.set([Use(nets[1], 1, 1)])
        monkeypatch.undo()
        assert same_as(parts, before) == [], k
    rt.restore()


def test_an_interrupt_between_layers_rolls_back(world, monkeypatch):
    """Layers are rebuilt side by side (threads.each); an interrupt arriving
    between two of them still leaves the model as it was."""
    from lycoris_ext.runtime import threads

    parts, tree, nets = world
    rt = Runtime(tree)
    rt.set([Use(nets[0], 1, 1)])
    before, state = snapshot(parts), _state(rt)
    real = threads.each

    def each(jobs, workers=None):
        if len(jobs) < 2:
            return real(jobs, workers)
        real(jobs[: len(jobs) // 2], workers)
        raise KeyboardInterrupt

    monkeypatch.setattr(threads, "each", each)
    with pytest.raises(NetworkApplyError) as info:
        rt.set([Use(nets[1], 1, 1), Use(nets[0], 0.5, 0.5)])
    assert isinstance(info.value.__cause__, KeyboardInterrupt)
    monkeypatch.undo()
    assert same_as(parts, before) == []
    assert _state(rt) == state
    rt.restore()
    assert rt.kept_bytes == 0
