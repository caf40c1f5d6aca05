"""A wanted set that did not change costs nothing, and is never wrong.

``Runtime.set`` returns at once when asked for what is already in effect
(same network objects, multipliers, options, mode; same step where a use is
scheduled) and the touched parameters are as it left them. Every other case
takes the full path: a multiplier, the mode, a file changed on disk (a new
network object), the step of a scheduled use, a model reloaded under the
runtime.
"""

from __future__ import annotations

import os

import pytest
import torch

from lycoris_ext import NetworkApplyError
from lycoris_ext.curves import parse_weight as parse_curve
from lycoris_ext.runtime import BYPASS, MERGE, NetworkCache, Runtime, Use
from support.models import same_as, small_model, snapshot, write_sample


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    parts, tree = small_model("sd15", shrink=32)
    d = tmp_path_factory.mktemp("unchanged")
    paths = {}
    for i, a in enumerate(["lora", "loha", "lokr"]):
        write_sample(d / f"{a}.safetensors", tree, a, rank=2, seed=i)
        paths[a] = str(d / f"{a}.safetensors")
    return parts, tree, paths


@pytest.fixture
def fresh(world):
    parts, tree, paths = world
    snap = snapshot(parts)
    cache = NetworkCache()
    rts = []

    def make(**kw):
        rt = Runtime(tree, **kw)
        rts.append(rt)
        return rt

    yield parts, tree, paths, cache, make, snap
    for rt in rts:
        rt.restore()
    assert same_as(parts, snap) == []


def _no_layer_work(monkeypatch, rt):
    def boom(*a, **k):
        raise AssertionError("the unchanged path looked at layers")

    monkeypatch.setattr(rt, "contributions", boom)
    monkeypatch.setattr(rt, "_sync", boom)


def test_same_request_returns_at_once(fresh, monkeypatch):
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    first = rt.set([Use(cache.get(paths["lora"]), 0.7, 0.9, name="a"), Use(cache.get(paths["lokr"]), 1, 0.5, name="b")], step=0, total_steps=20)
    merged = snapshot(parts)
    rt.step(7, 20)  # the denoiser moved the step: irrelevant without a schedule
    with monkeypatch.context() as m:
        _no_layer_work(m, rt)
        # fresh Use objects with the same meaning, as the glue makes per generation
        again = rt.set([Use(cache.get(paths["lora"]), 0.7, 0.9, name="a"), Use(cache.get(paths["lokr"]), 1.0, 0.5, name="b")],
                       step=0, total_steps=20, mode=MERGE)
    assert again.rebuilt == 0 and [n.name for n in again.networks] == [n.name for n in first.networks]
    assert [n.layers for n in again.networks] == [n.layers for n in first.networks]
    assert same_as(parts, merged) == []


@pytest.mark.parametrize("change", ["multiplier", "order", "dyn", "blocks", "name", "mode", "more"])
def test_any_difference_takes_the_full_path(fresh, change):
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    lora, lokr = cache.get(paths["lora"]), cache.get(paths["lokr"])
    base = [Use(lora, 0.7, 0.9, name="a"), Use(lokr, 1, 0.5, name="b")]
    rt.set(base)
    mode = None
    new = {
        "multiplier": [Use(lora, 0.7, 0.8, name="a"), base[1]],
        "order": [base[1], base[0]],
        "dyn": [Use(lora, 0.7, 0.9, name="a", dyn=1), base[1]],
        "blocks": [Use(lora, 0.7, 0.9, name="a", blocks={"IN01": 0.0}), base[1]],
        "name": [Use(lora, 0.7, 0.9, name="c"), base[1]],
        "mode": base,
        "more": base + [Use(cache.get(paths["loha"]), 1, 1, name="d")],
    }[change]
    if change == "mode":
        mode = BYPASS
    rep = rt.set(new, mode=mode)
    if change == "mode":
        assert rt.layers()["hooked"] > 0 and rep.rebuilt > 0
    elif change == "name":
        assert [n.name for n in rep.networks] == ["c", "b"]
    elif change != "order":  # the order of two networks on different layers may change nothing
        assert rep.rebuilt > 0
    # what a fresh runtime makes of the same request
    got = snapshot(parts)
    rt.restore()
    fresh_rt = make(mode=rt.mode)
    fresh_rt.set(new)
    assert same_as(parts, got) == []
    fresh_rt.restore()


def test_file_changed_on_disk(fresh, tmp_path):
    """The cache hands out a new network object for a rewritten file: applied anew."""
    parts, tree, paths, cache, make, snap = fresh
    path = str(tmp_path / "x.safetensors")
    write_sample(path, tree, "lora", rank=2, seed=5)
    rt = make()
    rt.set([Use(cache.get(path), 1, 1, name="x")])
    write_sample(path, tree, "lora", rank=2, seed=6)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rep = rt.set([Use(cache.get(path), 1, 1, name="x")])
    assert rep.rebuilt > 0
    got = snapshot(parts)
    rt.restore()
    other = make()
    other.set([Use(cache.get(path), 1, 1, name="x")])
    assert same_as(parts, got) == []
    other.restore()


def test_schedules_follow_the_step(fresh, monkeypatch):
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    curve = Use(cache.get(paths["lora"]), 1, parse_curve("0@0,1@1"), name="a")
    rt.set([curve], step=0, total_steps=5)
    at0 = snapshot(parts)
    assert rt.set([curve], step=3, total_steps=5).rebuilt > 0  # another step: the weights move
    # an equal curve (a new object from the same text) at the same step: nothing to do
    with monkeypatch.context() as m:
        _no_layer_work(m, rt)
        rt.set([Use(cache.get(paths["lora"]), 1, parse_curve("0@0,1@1"), name="a")], step=3, total_steps=5)
    rt.set([curve], step=0, total_steps=5)
    assert same_as(parts, at0) == []
    start = Use(cache.get(paths["lokr"]), 1, 1, start=2, name="b")
    rt.set([start], step=0, total_steps=5)
    assert rt.set([start], step=2, total_steps=5).rebuilt > 0


def test_model_reloaded_under_the_runtime(fresh):
    """New weights loaded into the same modules without telling the runtime
    (no forget): the same request applies to the new weights, and restoring
    gives the new weights back, bit for bit."""
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    uses = [Use(cache.get(paths["lora"]), 1, 1, name="a")]
    rt.set(uses)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # as load_state_dict writes: through the parameters
        for m in parts.values():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.02)
    loaded = snapshot(parts)
    rep = rt.set(list(uses))
    assert rep.rebuilt > 0
    got = snapshot(parts)
    rt.restore()
    assert same_as(parts, loaded) == []
    other = make()
    other.set(uses)
    assert same_as(parts, got) == []
    other.restore()
    with torch.no_grad():  # the world as it was, for the other tests
        for p_name, m in parts.items():
            for n, p in m.named_parameters():
                p.copy_(snap[f"{p_name}.{n}"])


def test_after_a_failure_the_last_good_state_still_counts(fresh, monkeypatch):
    """A failed change rolls back; asking again for the state before it
    changes nothing (it looks at the layers once: a failure is rare)."""
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    good = [Use(cache.get(paths["lora"]), 1, 1, name="a")]
    rt.set(good)
    merged = snapshot(parts)
    lokr = cache.get(paths["lokr"])
    adapter_cls = type(next(iter(lokr.modules.values())))

    def explode(*a, **k):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(adapter_cls, "add_into", explode)
        with pytest.raises(NetworkApplyError):
            rt.set(good + [Use(lokr, 1, 1, name="b")])
    assert same_as(parts, merged) == []
    assert rt.set(list(good)).rebuilt == 0
    with monkeypatch.context() as m:
        _no_layer_work(m, rt)
        assert rt.set(list(good)).rebuilt == 0
    assert same_as(parts, merged) == []
    assert rt.set(good + [Use(lokr, 1, 1, name="b")]).rebuilt > 0


def test_forget_and_restore_then_same_request(fresh):
    parts, tree, paths, cache, make, snap = fresh
    rt = make()
    uses = [Use(cache.get(paths["lora"]), 1, 1, name="a")]
    rt.set(uses)
    merged = snapshot(parts)
    rt.restore()
    assert same_as(parts, snap) == []
    assert rt.set(uses).rebuilt > 0
    assert same_as(parts, merged) == []
