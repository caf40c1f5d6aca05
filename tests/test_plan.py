"""The planner with plain values: a job (tokens, prompts, options), real network files in a folder,
a small real-named model; no WebUI."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lycoris_ext.library import NetworkLibrary
from lycoris_ext.plan import Job, Planner, add_words
from lycoris_ext.resolve.tree import A1111, ModelTree
from lycoris_ext.runtime import NetworkCache, Runtime
from lycoris_ext.runtime.uses import RowWeights
from lycoris_ext.samples import sample_network
from lycoris_ext.synthetic import build_model


@pytest.fixture(scope="module")
def models():
    return {fam: build_model(key, shrink=16) for fam, key in (("sd1", "sd15"), ("sdxl", "sdxl"))}


@pytest.fixture(scope="module")
def trees(models):
    return {fam: ModelTree(parts, A1111, fam) for fam, parts in models.items()}


@pytest.fixture
def planner(tmp_path, trees):
    root = tmp_path / "Lora"
    root.mkdir()
    for name, fam, algo, seed in (("a", "sd1", "lora", 1), ("b", "sd1", "loha", 2), ("xl", "sdxl", "lora", 3)):
        save_file(sample_network(trees[fam], algo, rank=4, seed=seed), str(root / f"{name}.safetensors"),
                  {"ss_tag_frequency": '{"x": {"red hair": 3, "smile": 1}}'} if name == "a" else {})
    (root / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    lib = NetworkLibrary([str(root)])
    cache = NetworkCache(8, 1 << 30)
    presets = {"MINE": ",".join(["1"] + ["0"] * 16)}
    return Planner(lib, lambda e: cache.get(e.path), lambda: presets)


def items(token: str) -> tuple:
    return tuple(token.split(":"))


def test_ordinary_job(planner):
    job = Job(tokens=(items("a:0.5"), items("b:te=0.2:unet=0.7:lbw=MINE"), items("missing:1"), items("a:x=abc"),
                      items("broken:1"), items("b:1:lbw=NOPRESET")), steps=20)
    act = planner.plan(job)
    assert not act.per_image
    assert [(u.label, u.te, u.unet) for u in act.uses] == [("a", 0.5, 0.5), ("b", 0.2, 0.7)]
    assert act.uses[1].blocks["BASE"] == 1.0 and act.uses[1].blocks["IN01"] == 0.0
    r = act.result
    assert r.missing == ["missing"]
    assert any("x='abc'" in e for e in r.errors) and any(e.startswith("broken:") for e in r.errors)
    assert any(e.startswith("b:") and "NOPRESET" in e for e in r.errors)
    lines = r.messages()
    assert lines[0] == "Lora not found: missing" and lines[1].startswith("Networks with errors: ")


def test_apply_and_conclude(planner, trees):
    rt = Runtime(trees["sd1"])
    job = Job(tokens=(items("a:1"), items("xl:1")), prompts=("p <lora:a:1> <lora:xl:1>",) * 2, first_index=4)
    act = planner.plan(job)
    uses = planner.apply(rt, act, "merge")
    assert [u.label for u in uses] == ["a", "xl"] and [u.label for u in rt.uses] == ["a", "xl"]
    assert act.result.applied == ["a"] and act.result.other_model == ["xl (made for SDXL)"]
    planner.conclude(act)
    short = planner.library.find("a").shorthash
    assert act.hashes == {"a": short}
    assert act.hashes_per_image == {4: {"a": short}, 5: {"a": short}}
    assert "Networks for another base model, not applied: xl (made for SDXL)" in act.result.messages()
    planner.set_uses(rt, [], 0, "merge")
    assert rt.kept_bytes == 0


def test_per_image_batch(planner):
    job = Job(tokens=(items("a:1"),), prompts=("cat <lora:a:1>", "dog <lora:b:0.5>", "cow <lora:a:1>"),
              negative_prompts=("ugly <lora:b:0.3>", "", ""), steps=10, first_index=0)
    act = planner.plan(job)
    assert act.per_image and act.batch.has_negative and act.batch.mixed
    assert act.batch.prompts == ["cat ", "dog ", "cow "] and act.batch.negative_prompts == ["ugly ", "", ""]
    rows = {(u.label, u.unet.cond, u.unet.uncond) for u in act.uses}
    assert all(isinstance(u.unet, RowWeights) and u.te == 0.0 for u in act.uses)
    assert rows == {("a", (1.0, 0.0, 1.0), (1.0, 0.0, 1.0)), ("b", (0.0, 1.0, 0.0), (0.0, 1.0, 0.0)),
                    ("b", (0.0, 0.0, 0.0), (1.0, 0.0, 0.0))}
    assert act.names_for_image(0) == ["a", "b"] and act.names_for_image(0, negative=False) == ["a"]
    # the text encoder per group: image 0's negative side has both networks
    te = planner.te_uses(act, act.batch.te_key(0, True))
    assert [(u.label, u.te, u.unet) for u in te] == [("a", 1.0, 0.0), ("b", 0.3, 0.0)]
    assert planner.te_uses(act, act.batch.te_key(1, False))[0].te == 0.5


def test_same_networks_in_every_image_is_the_ordinary_path(planner):
    job = Job(tokens=(items("a:1"),), prompts=("cat <lora:a:1>", "dog <lora:a:1>"), negative_prompts=("", ""))
    act = planner.plan(job)
    assert not act.per_image and [u.label for u in act.uses] == ["a"]


def test_hires_multipliers(planner):
    act = planner.plan(Job(tokens=(items("a:1:hr=0.25"),), hires=True))
    assert (act.uses[0].te, act.uses[0].unet) == (0.25, 0.25)
    act = planner.plan(Job(tokens=(items("a:1:hr=0.25"),)))
    assert (act.uses[0].te, act.uses[0].unet) == (1.0, 1.0)


def test_trigger_words(planner, trees):
    rt = Runtime(trees["sd1"])
    act = planner.plan(Job(tokens=(items("a:1"),), prompts=("red hair girl <lora:a:1>", "x <lora:a:1>")))
    planner.apply(rt, act, "merge")
    from lycoris_ext.summary import top_tags

    words = planner.trigger_words(act, lambda e: [t for t, _ in top_tags(e.metadata, 5)])
    assert words == [["red hair", "smile"], ["red hair", "smile"]]
    assert add_words("red hair girl", words[0]) == "red hair girl, smile"
    assert add_words("", ["a", "a", "b"]) == "a, b"
    planner.set_uses(rt, [], 0, "merge")


def test_a_network_that_fails_to_apply_is_left_out(planner, trees, models, monkeypatch):
    from lycoris_ext.errors import NetworkApplyError

    rt = Runtime(trees["sd1"])
    before = {n: p.detach().clone() for n, p in models["sd1"]["unet"].named_parameters()}
    act = planner.plan(Job(tokens=(items("a:1"), items("b:1"))))
    b_net = act.uses[1].network
    real = Runtime.set

    def failing_set(self, uses, **kw):
        if any(u.network is b_net for u in uses):
            raise NetworkApplyError("b", "some.module", "out of memory")
        return real(self, uses, **kw)

    monkeypatch.setattr(Runtime, "set", failing_set)
    uses = planner.apply(rt, act, "merge")
    assert [u.label for u in uses] == ["a"] and act.result.applied == ["a"]
    assert any(e.startswith("b") for e in act.result.errors)
    monkeypatch.setattr(Runtime, "set", real)
    planner.set_uses(rt, [], 0, "merge")
    assert all(torch.equal(p, before[n]) for n, p in models["sd1"]["unet"].named_parameters())
