"""extract: a LoRA/LoCon from two checkpoints; from a checkpoint baked with a
known LoRA it recovers that LoRA's change at its rank."""

from __future__ import annotations

import pytest
from safetensors import safe_open

import lycoris_ext
from lycoris_ext.resolve import resolve
from lycoris_ext.runtime import Use
from lycoris_ext.tools import bake, extract

from tools_helpers import changes, relative_error


@pytest.fixture(scope="module")
def baked(sd15, tmp_path_factory):
    parts, tree, ck, nets = sd15
    out = tmp_path_factory.mktemp("baked") / "tuned.safetensors"
    bake(ck, [nets["lora"] + ":0.9"], out, dtype="fp32")
    return str(out)


def _extracted(tree, path):
    net = lycoris_ext.load_network(path)
    res = resolve(net, tree)
    assert res.unmatched == [] and res.mismatched == [] and net.unknown == []
    return changes(tree, [Use(net)])


def test_extract_recovers_the_lora_at_its_rank(sd15, baked, tmp_path):
    parts, tree, ck, nets = sd15
    out = tmp_path / "x.safetensors"
    rep = extract(ck, baked, out, rank=4, dtype="fp32")
    want = changes(tree, [Use(lycoris_ext.load_network(nets["lora"]), 0.9, 0.9)])
    got = _extracted(tree, out)
    assert set(got) == set(want)  # exactly the LoRA's layers: text encoder and UNet
    assert relative_error(got, want) <= 1e-5
    assert rep["relative_error"] <= 1e-5
    assert rep["layers_unchanged"] > 0
    with safe_open(str(out), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("lora_te_") for k in keys) and any(k.startswith("lora_unet_") for k in keys)


def test_extract_by_energy_and_lower_rank(sd15, baked, tmp_path):
    parts, tree, ck, nets = sd15
    want = changes(tree, [Use(lycoris_ext.load_network(nets["lora"]), 0.9, 0.9)])
    out = tmp_path / "e.safetensors"
    rep = extract(ck, baked, out, energy=0.9999, dtype="fp32")
    assert all(r["rank"] <= 4 for r in rep["layers"])
    assert relative_error(_extracted(tree, out), want) <= 1e-2
    rep = extract(ck, baked, out, rank=1, conv_rank=1, dtype="fp16")
    measured = relative_error(_extracted(tree, out), want)
    assert measured > 0.1
    assert rep["relative_error"] == pytest.approx(measured, rel=1e-3)
