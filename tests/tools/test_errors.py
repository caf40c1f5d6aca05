"""Bad input: one clear error naming the file, and no output (or the old one untouched)."""

from __future__ import annotations

import importlib
import os

import pytest
import torch
from safetensors.torch import save_file

from lycoris_ext import NetworkFileError
from lycoris_ext.tools import bake, convert, extract

bake_module = importlib.import_module("lycoris_ext.tools.bake")  # the module, not the function
OLD = b"the previous output, which must stay as it was"


@pytest.fixture
def out(tmp_path):
    p = tmp_path / "out" / "result.safetensors"
    p.parent.mkdir()
    return p


def assert_no_output(out, old: bytes | None = None):
    left = os.listdir(out.parent)
    if old is None:
        assert left == [], left
    else:
        assert left == [out.name], left  # no temporary files either
        assert out.read_bytes() == old


@pytest.fixture(params=["new", "old"])
def target(request, out):
    """The output path, and what it held before (None: nothing)."""
    if request.param == "old":
        out.write_bytes(OLD)
        return out, OLD
    return out, None


def test_unreadable_network(sd15, tmp_path, target):
    parts, tree, ck, nets = sd15
    out, old = target
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for call in (lambda: bake(ck, [nets["lora"], str(bad)], out),
                 lambda: convert([str(bad)], out, rank=4, base=ck)):
        with pytest.raises(NetworkFileError, match="broken.safetensors"):
            call()
        assert_no_output(out, old)
    with pytest.raises(NetworkFileError, match="missing.safetensors: no such file"):
        bake(ck, [str(tmp_path / "missing.safetensors") + ":0.5"], out)
    assert_no_output(out, old)


def test_network_for_another_base_model(sd15, sdxl, target):
    parts, tree, ck, nets = sd15
    xl_net = sdxl[3]["lora"]
    out, old = target
    with pytest.raises(NetworkFileError, match=r"lora\.safetensors: made for SDXL .* is SD1"):
        bake(ck, [nets["lokr"], xl_net], out)
    assert_no_output(out, old)
    with pytest.raises(NetworkFileError, match="made for SDXL"):
        convert([xl_net], out, rank=4, base=ck)
    assert_no_output(out, old)


@pytest.mark.parametrize("kw,msg", [({"rank": 0}, "--rank must be"), ({"rank": -3}, "--rank must be"),
                                    ({"energy": 0.0}, "--energy must be"), ({"energy": 1.5}, "--energy must be"),
                                    ({"rank": 4, "conv_rank": 0}, "--conv-rank must be"),
                                    ({"rank": 4, "energy": 0.9}, "give exactly one of"), ({}, "give exactly one of")])
def test_rank_out_of_range(sd15, target, kw, msg):
    parts, tree, ck, nets = sd15
    out, old = target
    with pytest.raises(NetworkFileError, match=f"result.safetensors: {msg}"):
        convert([nets["lora"]], out, base=ck, **kw)
    assert_no_output(out, old)
    with pytest.raises(NetworkFileError, match=f"result.safetensors: {msg}"):
        extract(ck, ck, out, **kw)
    assert_no_output(out, old)


def test_unknown_checkpoint_layout(sd15, tmp_path, target):
    parts, tree, ck, nets = sd15
    out, old = target
    unet_only = tmp_path / "unet_only.safetensors"
    save_file({"down_blocks.0.resnets.0.conv1.weight": torch.zeros(4, 4, 3, 3)}, str(unet_only))
    no_te = tmp_path / "no_te.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(no_te))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = [(unet_only, "unknown checkpoint layout.*diffusers or UNet-only"), (no_te, "unknown checkpoint layout"),
             (nets["lora"], "unknown checkpoint layout.*network file"), (empty, "the file is empty"),
             (text, "unsupported file type")]
    for path, msg in cases:
        with pytest.raises(NetworkFileError, match=f"{os.path.basename(str(path))}: {msg}"):
            bake(path, [nets["lora"]], out)
        assert_no_output(out, old)
        with pytest.raises(NetworkFileError, match=os.path.basename(str(path))):
            extract(ck, path, out, rank=2)
        assert_no_output(out, old)


def test_extract_needs_the_same_base_model(sd15, sdxl, target):
    out, old = target
    with pytest.raises(NetworkFileError, match="same base model"):
        extract(sd15[2], sdxl[2], out, rank=2)
    assert_no_output(out, old)


def test_extract_of_equal_checkpoints_writes_nothing(sd15, target):
    out, old = target
    with pytest.raises(NetworkFileError, match="no layer differs"):
        extract(sd15[2], sd15[2], out, rank=2)
    assert_no_output(out, old)


def test_a_failure_midway_leaves_no_partial_file(sd15, target, monkeypatch):
    parts, tree, ck, nets = sd15
    out, old = target
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 50:
            raise MemoryError("simulated")
        return real(*a, **k)

    real = bake_module.merge_target
    monkeypatch.setattr(bake_module, "merge_target", failing)
    with pytest.raises(NetworkFileError, match=r"lora\.safetensors.*MemoryError: simulated"):
        bake(ck, [nets["lora"]], out)
    assert_no_output(out, old)


def test_output_must_be_safetensors_in_an_existing_folder(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    with pytest.raises(NetworkFileError, match="out.ckpt: the output must be a .safetensors file"):
        bake(ck, [nets["lora"]], tmp_path / "out.ckpt")
    with pytest.raises(NetworkFileError, match="does not exist"):
        convert([nets["lora"]], tmp_path / "nowhere" / "x.safetensors", rank=2, base=ck)
