"""bake: the checkpoint equals what the runtime's merge mode writes into the
loaded model, bit for bit, for every algorithm, sets of networks and dtypes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import lycoris_ext
from lycoris_ext.files import file_sha256
from lycoris_ext.resolve.lbw import parse_block_weights
from lycoris_ext.runtime import Runtime, Use
from lycoris_ext.synthetic import build_tree
from lycoris_ext.tools import bake
from lycoris_ext.tools.bake import META_KEY

from tools_helpers import ALGOS, checkpoint_dict, make_nets, save_checkpoint


def _bits(t):
    return t.reshape(-1).contiguous().view(torch.uint8)


def assert_same_as_runtime(parts, tree, family, uses, baked_path, base_dict):
    rt = Runtime(tree, mode="merge")
    rt.set(uses)
    try:
        merged = checkpoint_dict(parts, family)
    finally:
        rt.restore()
    out = load_file(baked_path)
    assert set(out) == set(merged) == set(base_dict)
    differ = [k for k in merged if out[k].dtype != merged[k].dtype or not torch.equal(_bits(out[k]), _bits(merged[k]))]
    assert differ == []
    return sum(1 for k in merged if not torch.equal(_bits(merged[k]), _bits(base_dict[k])))


@pytest.mark.parametrize("algo", ALGOS + ["norm", "fullbias"])
def test_bake_equals_runtime_merge_bit_for_bit(sd15, tmp_path, algo):
    parts, tree, ck, nets = sd15
    out = tmp_path / "baked.safetensors"
    rep = bake(ck, [f"{nets[algo]}:0.7:0.6"], out)
    net = lycoris_ext.load_network(nets[algo])
    changed = assert_same_as_runtime(parts, tree, "sd1", [Use(net, 0.7, 0.6)], out, load_file(ck))
    assert changed > 0 and rep["layers_changed"] > 0


def test_bake_of_a_set_with_block_weights_and_dyn(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    lbw = "1,0,0.5,1,1,0.3,1,1,0,1,1,1,1,0,0,0.7,1,1,1,1,1,1,1,1,0.2,1"
    specs = [f"{nets['lora']}:0.5:dyn=2", f"{nets['loha']}:1:lbw={lbw}", f"{nets['lokr']}:0.8:0.3",
             f"{nets['oft']}:1", f"{nets['dora']}:0.4:lbw=MIDD"]
    out = tmp_path / "set.safetensors"
    bake(ck, specs, out)
    load = lycoris_ext.load_network
    uses = [Use(load(nets["lora"]), 0.5, 0.5, dyn=2, name="lora"),
            Use(load(nets["loha"]), 1, 1, blocks=parse_block_weights(lbw), name="loha"),
            Use(load(nets["lokr"]), 0.8, 0.3, name="lokr"), Use(load(nets["oft"]), 1, 1, name="oft"),
            Use(load(nets["dora"]), 0.4, 0.4, blocks=parse_block_weights("MIDD"), name="dora")]
    assert_same_as_runtime(parts, tree, "sd1", uses, out, load_file(ck))


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_bake_in_half_precision_equals_merge_on_a_half_model(tmp_path, dtype):
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    parts32, tree32 = build_tree("sd15", shrink=16, seed=3)
    ck = save_checkpoint(tmp_path / "base32.safetensors", parts32, "sd1")
    nets = make_nets(tree32, tmp_path, ["lora", "lokr", "oft", "loha"])
    out = tmp_path / "baked.safetensors"
    bake(ck, [nets["lora"] + ":0.9", nets["lokr"], nets["oft"] + ":0.5", nets["loha"]], out, dtype=dtype)
    parts, tree = build_tree("sd15", shrink=16, seed=3, dtype=torch_dtype)
    for p in parts:  # the same values, loaded as A1111 does (cast once)
        parts[p].load_state_dict({k: v.to(torch_dtype) for k, v in parts32[p].state_dict().items()})
    load = lycoris_ext.load_network
    uses = [Use(load(nets["lora"]), 0.9, 0.9), Use(load(nets["lokr"])), Use(load(nets["oft"]), 0.5, 0.5), Use(load(nets["loha"]))]
    base = {k: (v.to(torch_dtype) if v.is_floating_point() else v) for k, v in load_file(ck).items()}
    assert_same_as_runtime(parts, tree, "sd1", uses, out, base)


def test_bake_sdxl_packed_attention_and_projection(sdxl, tmp_path):
    parts, tree, ck, nets = sdxl
    out = tmp_path / "xl.safetensors"
    rep = bake(ck, [nets["lora"] + ":0.8", nets["oft"], nets["lokr"] + ":0.5"], out)
    load = lycoris_ext.load_network
    uses = [Use(load(nets["lora"]), 0.8, 0.8), Use(load(nets["oft"])), Use(load(nets["lokr"]), 0.5, 0.5)]
    assert_same_as_runtime(parts, tree, "sdxl", uses, out, load_file(ck))
    assert rep["family"] == "sdxl"
    with safe_open(str(out), "pt") as f:
        keys = list(f.keys())
    assert any(k.endswith("attn.in_proj_weight") and k.startswith("conditioner.embedders.1.") for k in keys)


def test_metadata_records_networks_hashes_and_weights(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    out = tmp_path / "m.safetensors"
    bake(ck, [f"{nets['lora']}:0.7:0.6", f"{nets['lokr']}:1:lbw=MIDD"], out)
    with safe_open(str(out), "pt") as f:
        md = f.metadata()
    assert md["note"] == "test"  # the input's metadata is kept
    rec = json.loads(md[META_KEY])
    assert [n["name"] for n in rec["networks"]] == ["lora", "lokr"]
    assert rec["networks"][0]["sha256"] == file_sha256(nets["lora"])
    assert rec["networks"][0]["te"] == 0.7 and rec["networks"][0]["unet"] == 0.6
    assert rec["networks"][1]["lbw"] == "MIDD"


def test_a_pickled_checkpoint_bakes_the_same(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    pt = tmp_path / "base.ckpt"
    torch.save({"state_dict": load_file(ck)}, pt)
    bake(ck, [nets["loha"]], tmp_path / "a.safetensors")
    bake(pt, [nets["loha"]], tmp_path / "b.safetensors")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert all(torch.equal(_bits(a[k]), _bits(b[k])) for k in a)


def test_inpainting_conv_in_changes_only_the_first_channels(tmp_path):
    """A 9-channel conv_in (inpainting) and a LoRA made for 4 channels: the
    first 4 input channels change as the adapter computes, the rest stay."""
    import torch.nn as nn

    from lycoris_ext.samples import sample_network
    from lycoris_ext.tools.checkpoint import LAYOUTS

    parts, tree = build_tree("sd15", shrink=16, seed=4)
    t4 = [t for t in tree.targets if t.path == "input_blocks.0.0"]
    net_path = tmp_path / "conv_in.safetensors"
    from safetensors.torch import save_file

    save_file(sample_network(tree, "lora", rank=2, targets=t4, seed=9), str(net_path))
    blk = parts["unet"].input_blocks._modules["0"]
    blk._modules["0"] = nn.Conv2d(9, blk._modules["0"].out_channels, 3, padding=1)
    ck = save_checkpoint(tmp_path / "inpaint.safetensors", parts, "sd1")
    out = tmp_path / "baked.safetensors"
    rep = bake(ck, [str(net_path) + ":0.7"], out)
    assert rep["layers_changed"] == 1
    key = LAYOUTS["sd1"][1]["unet"] + "input_blocks.0.0.weight"
    before, after = load_file(ck)[key], load_file(out)[key]
    adapter = next(iter(lycoris_ext.load_network(net_path).modules.values()))
    want, _ = adapter.apply(before[:, :4].contiguous(), None, 0.7)
    assert torch.equal(_bits(after[:, :4]), _bits(want))
    assert torch.equal(after[:, 4:], before[:, 4:])


def test_bake_sd2_openclip_text_encoder(tmp_path):
    parts, tree = build_tree("sd2", shrink=16, seed=5)
    ck = save_checkpoint(tmp_path / "sd2.safetensors", parts, "sd2")
    nets = make_nets(tree, tmp_path, ["lora", "oft"])
    out = tmp_path / "baked.safetensors"
    rep = bake(ck, [nets["lora"] + ":0.6", nets["oft"]], out)
    assert rep["family"] == "sd2"
    load = lycoris_ext.load_network
    assert_same_as_runtime(parts, tree, "sd2", [Use(load(nets["lora"]), 0.6, 0.6), Use(load(nets["oft"]))], out, load_file(ck))
