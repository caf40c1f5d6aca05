"""convert: the exact change of any algorithm (or a weighted sum with block
weights) as one kohya LoRA/LoCon; full rank reproduces it, lower ranks report
the error they really have, and the files load with every key matched."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open

import lycoris_ext
from lycoris_ext.resolve import resolve
from lycoris_ext.resolve.lbw import parse_block_weights
from lycoris_ext.runtime import Use
from lycoris_ext.tools import convert

from tools_helpers import ALGOS, changes, relative_error

# kohya's trainer names: diffusers paths for the SD1/SD2 UNet, ldm paths for
# SDXL's, transformers' CLIP paths for the text encoders (underscored).
KOHYA_SD1 = re.compile(
    r"^lora_(te_text_model_(encoder_layers_\d+_\w+|final_layer_norm)"
    r"|unet_(conv_in|conv_out|conv_norm_out|time_embedding_linear_[12]"
    r"|((down|up)_blocks_\d+|mid_block)_(attentions_\d+_\w+|resnets_\d+_\w+|(down|up)samplers_0_conv)))$")
KOHYA_SDXL = re.compile(
    r"^lora_(te[12]_text_model_(encoder_layers_\d+_\w+|final_layer_norm)|te2_text_projection"
    r"|unet_(time_embed_[02]|label_emb_0_[02]|out_[02]|(input_blocks_\d+|middle_block|output_blocks_\d+)_\d+(_\w+)?))$")
SUFFIXES = ("lora_up.weight", "lora_down.weight", "alpha", "w_norm", "b_norm")


def converted_changes(tree, path):
    net = lycoris_ext.load_network(path)
    res = resolve(net, tree)
    assert res.unmatched == [] and res.mismatched == [] and net.unknown == [], res.summary()
    return changes(tree, [Use(net)]), net


def check_keys(path, pattern):
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        md = f.metadata()
    for k in keys:
        module, _, suffix = k.partition(".")
        assert suffix in SUFFIXES, k
        assert pattern.match(module), k
    assert md["ss_network_module"] == "networks.lora"
    return keys, md


@pytest.mark.parametrize("algo", ALGOS + ["norm"])
def test_full_rank_reproduces_the_exact_change(sd15, tmp_path, algo):
    parts, tree, ck, nets = sd15
    out = tmp_path / "c.safetensors"
    rep = convert([nets[algo] + ":0.8:0.6"], out, rank=100000, dtype="fp32", base=ck)
    want = changes(tree, [Use(lycoris_ext.load_network(nets[algo]), 0.8, 0.6)])
    got, _ = converted_changes(tree, out)
    err = relative_error(got, want)
    assert err <= 1e-5
    assert rep["relative_error"] <= 1e-5
    assert all(r["rank"] == r["full_rank"] for r in rep["layers"] if r["rank"])
    check_keys(out, KOHYA_SD1)


def test_weighted_sum_with_block_weights_at_full_rank(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    lbw = "0.5,0,1,1,0.3,1,1,1,1,0,1,1,1,0.7,1,1,1"
    out = tmp_path / "sum.safetensors"
    rep = convert([nets["lora"] + ":0.5", f"{nets['lokr']}:1:0.4:lbw={lbw}", nets["oft"] + ":0.7"], out,
                  rank=100000, dtype="fp32", base=ck)
    load = lycoris_ext.load_network
    want = changes(tree, [Use(load(nets["lora"]), 0.5, 0.5), Use(load(nets["lokr"]), 1, 0.4, blocks=parse_block_weights(lbw)),
                          Use(load(nets["oft"]), 0.7, 0.7)])
    got, _ = converted_changes(tree, out)
    assert relative_error(got, want) <= 1e-5
    assert rep["relative_error"] <= 1e-5
    assert [n["name"] for n in rep["networks"]] == ["lora", "lokr", "oft"]


@pytest.mark.parametrize("algo,rank", [("lora", 2), ("loha", 3), ("lokr", 4), ("oft", 5), ("full", 3)])
def test_lower_rank_reports_the_measured_error(sd15, tmp_path, algo, rank):
    parts, tree, ck, nets = sd15
    out = tmp_path / "r.safetensors"
    rep = convert([nets[algo]], out, rank=rank, dtype="fp16", base=ck)
    want = changes(tree, [Use(lycoris_ext.load_network(nets[algo]))])
    got, net = converted_changes(tree, out)
    measured = relative_error(got, want)
    assert measured > 1e-3  # really truncated
    assert rep["relative_error"] == pytest.approx(measured, rel=1e-3)
    tid_of = {m.key: m.target.id for m in resolve(net, tree).matches}
    for row in rep["layers"]:
        tid = tid_of[row["key"]]
        assert row["relative_error"] == pytest.approx(relative_error({0: got[tid]}, {0: want[tid]}), rel=1e-3, abs=1e-6)
        assert row["rank"] == min(rank, row["full_rank"])
    assert all(r["rank"] <= rank for r in rep["layers"])


def test_energy_picks_the_least_rank_per_layer(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    out = tmp_path / "e.safetensors"
    rep = convert([nets["lokr"]], out, energy=0.9, dtype="fp32", base=ck)
    want = changes(tree, [Use(lycoris_ext.load_network(nets["lokr"]))])
    assert len({r["rank"] for r in rep["layers"]}) > 1  # chosen per layer
    for row in rep["layers"]:
        assert row["energy"] >= 0.9 - 1e-9
        tid = next(t for t in want if tree.key_for(tree.by_id[t]) == row["key"])
        s = torch.linalg.svdvals(want[tid].reshape(want[tid].shape[0], -1).double())
        frac = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
        assert row["rank"] == 1 or frac[row["rank"] - 2] < 0.9  # one less would not do
    got, _ = converted_changes(tree, out)
    assert rep["relative_error"] == pytest.approx(relative_error(got, want), rel=1e-3)


def test_rank_above_full_rank_and_conv_rank(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    out = tmp_path / "lc.safetensors"
    rep = convert([nets["lora"]], out, rank=64, conv_rank=1, dtype="fp16", base=ck)
    conv = [r for r in rep["layers"] if len(r["shape"]) == 4 and r["shape"][2] * r["shape"][3] > 1]
    lin = [r for r in rep["layers"] if r not in conv]
    assert conv and all(r["rank"] == 1 for r in conv)
    # above the full rank means the full rank: the file's (4; 2 on its 1x1 convolutions)
    assert all(r["rank"] == r["full_rank"] == (2 if len(r["shape"]) == 4 else 4) for r in lin)
    keys, md = check_keys(out, KOHYA_SD1)
    assert json.loads(md["ss_network_args"])["conv_dim"] == "1"


def test_without_a_base_the_layout_is_the_real_model(tmp_path):
    """A real-size SD1.5 LoRA, no checkpoint: the packaged inventory gives the
    layers (detected from the file, or --model), and the change is exact."""
    from safetensors.torch import save_file

    from lycoris_ext.resolve.inventory import model_tree
    from lycoris_ext.samples import sample_network

    tree = model_tree("sd15")
    src = tmp_path / "real.safetensors"
    save_file(sample_network(tree, "lora", rank=4, seed=5), str(src))
    out = tmp_path / "r.safetensors"
    rep = convert([str(src) + ":0.5"], out, rank=2)
    assert rep["family"] == "sd1" and rep["rank_max"] == 2
    rep = convert([str(src)], out, rank=8, dtype="fp32", model="sd15")
    assert rep["relative_error"] <= 1e-6
    net = lycoris_ext.load_network(out)
    res = resolve(net, tree)
    assert res.unmatched == [] and res.mismatched == [] and len(res.matches) == len(net.modules)
    check_keys(out, KOHYA_SD1)


def test_sdxl_keys_and_packed_attention(sdxl, tmp_path):
    parts, tree, ck, nets = sdxl
    out = tmp_path / "xl.safetensors"
    convert([nets["lora"] + ":0.7"], out, rank=100000, dtype="fp32", base=ck)
    want = changes(tree, [Use(lycoris_ext.load_network(nets["lora"]), 0.7, 0.7)])
    got, _ = converted_changes(tree, out)
    assert relative_error(got, want) <= 1e-5
    keys, md = check_keys(out, KOHYA_SDXL)
    assert any("lora_te2_text_model_encoder_layers_0_self_attn_q_proj" in k for k in keys)
    assert md["ss_base_model_version"].startswith("sdxl")


def test_bias_changes_are_dropped_and_counted(sd15, tmp_path):
    parts, tree, ck, nets = sd15
    out = tmp_path / "fb.safetensors"
    rep = convert([nets["fullbias"]], out, rank=100000, dtype="fp32", base=ck)
    assert rep["bias_changes_dropped"] > 0
    assert all(r.get("bias_dropped") for r in rep["layers"])
    assert all(r["relative_error"] <= 1e-5 for r in rep["layers"])  # the weights are exact
    assert rep["relative_error"] > 1e-3  # the overall error counts the dropped biases
