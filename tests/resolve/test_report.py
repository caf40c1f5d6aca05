"""The resolution report: other base models, packed q/k/v slices, unmatched,
mismatched and unknown keys, duplicates, inpainting conv_in, and the CLI."""

from __future__ import annotations

import json
import re

import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lycoris_ext
from lycoris_ext.cli import main as cli_main
from lycoris_ext.resolve import FITS, NO_FIT, OTHER_MODEL, PARTLY, ModelTree, detect_family, resolve
from lycoris_ext.resolve.inventory import a1111_rows, diffusers_rows, model_tree
from lycoris_ext.resolve.styles import part_hint
from resolve_helpers import FAMILY, MODELS, lora_factors, module_tensors, ref_targets, u, write

KOHYA_TE = {"te": "lora_te_", "te1": "lora_te1_", "te2": "lora_te2_"}
ATTN = re.compile(r"(attn[12]\.to_(q|k|v|out\.0)|self_attn\.(q|k|v|out)_proj)$")


def kohya_key(t) -> str:
    if t.part == "unet":
        return "lora_unet_" + u(t.ldm if t.model == "sdxl" else t.diff)
    return KOHYA_TE[t.part] + u(t.hf)


def kohya_attention_file(model: str, tmp_path, name="net", metadata=None, parts=None):
    """A kohya-style LoRA on every attention projection of ``model`` (what kohya trains most)."""
    tensors, intended = {}, {}
    for t in ref_targets(model):
        path = t.diff if t.part == "unet" else t.hf
        if (parts and t.part not in parts) or not ATTN.search(path):
            continue
        k = kohya_key(t)
        intended[k] = t
        tensors.update(module_tensors(k, t))
    return lycoris_ext.load_network(write(tmp_path / f"{name}.safetensors", tensors, metadata)), intended


def lora(key: str, shape, rank=1):
    up, down = lora_factors(tuple(shape), rank)
    return {f"{key}.lora_up.weight": up, f"{key}.lora_down.weight": down, f"{key}.alpha": torch.tensor(float(rank))}


@pytest.fixture(scope="module")
def trees():
    return {(m, n): model_tree(m, n) for m in MODELS for n in ("a1111", "diffusers")}


# ----------------------------------------------------------- other base models

OTHER = [
    # (file made for, model, expected file_family, reason fragment)
    ("sd15", "sdxl", "sd1", "768-wide"),
    ("sd15", "sd2", "sd1", "768-wide"),
    ("sd2", "sd15", "sd2", "1024-wide"),
    ("sd2", "sdxl", "sd2", "1024-wide"),
    ("sdxl", "sd15", "sdxl", "2048-wide"),
    ("sdxl", "sd2", "sdxl", "2048-wide"),
]
NAMES = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}


@pytest.mark.parametrize("naming", ["a1111", "diffusers"])
@pytest.mark.parametrize("made_for,model,family,why", OTHER)
def test_file_for_another_base_model_is_reported_as_such(tmp_path, trees, made_for, model, family, why, naming):
    net, _ = kohya_attention_file(made_for, tmp_path)
    res = resolve(net, trees[model, naming])
    assert res.verdict == OTHER_MODEL
    assert not res.applicable
    assert (res.file_family, res.model_family) == (family, FAMILY[model])
    assert why in res.family_reason
    rep = res.report()
    assert rep["verdict"] == OTHER_MODEL
    assert rep["file_family"] == family and rep["model_family"] == FAMILY[model]
    assert f"made for {NAMES[family]}" in rep["summary"] and f"the model is {NAMES[FAMILY[model]]}" in rep["summary"]


def test_sd1_file_on_sdxl_partly_matches_names_but_is_not_applicable(tmp_path, trees):
    # SD1's down_blocks.1 attention layers exist in SDXL too (same 640 width):
    # names alone would "fit" some of them, the family check must stop it.
    net, _ = kohya_attention_file("sd15", tmp_path, parts=("unet",))
    res = resolve(net, trees["sdxl", "a1111"])
    assert len(res.matches) > 0
    assert res.verdict == OTHER_MODEL and not res.applicable


@pytest.mark.parametrize("model", MODELS)
def test_own_family_fits(tmp_path, trees, model):
    net, intended = kohya_attention_file(model, tmp_path)
    res = resolve(net, trees[model, "a1111"])
    assert res.verdict == FITS and res.file_family == FAMILY[model]
    assert len(res.matches) == len(intended)


def _sd1_oft_attention_file(tmp_path, metadata=None):
    sd = {}
    for t in ref_targets("sd15"):
        if t.part == "unet" and re.search(r"attn[12]\.to_", t.diff):
            sd.update(module_tensors("oft_unet_" + u(t.diff), t, "oft"))
    return lycoris_ext.load_network(write(tmp_path / "oft.safetensors", sd, metadata))


def test_sd1_oft_file_with_metadata_on_sdxl_is_reported(tmp_path, trees):
    net = _sd1_oft_attention_file(tmp_path, {"ss_base_model_version": "sd_v1"})
    res = resolve(net, trees["sdxl", "a1111"])
    assert res.verdict == OTHER_MODEL and not res.applicable


def test_sd1_oft_file_without_metadata_on_sdxl_is_reported(tmp_path, trees):
    net = _sd1_oft_attention_file(tmp_path)
    res = resolve(net, trees["sdxl", "a1111"])
    assert res.verdict == OTHER_MODEL and not res.applicable


TE_ONLY = [
    ("sd15", ("te",), "sd1", "768 wide"),
    ("sd2", ("te",), "sd2", "OpenCLIP ViT-H"),
    ("sdxl", ("te2",), "sdxl", "second text encoder"),
]


@pytest.mark.parametrize("model,parts,family,why", TE_ONLY)
def test_family_of_text_encoder_only_files(tmp_path, model, parts, family, why):
    net, _ = kohya_attention_file(model, tmp_path, parts=parts)
    fam, reason = detect_family(net)
    assert fam == family and why in reason


@pytest.mark.parametrize("metadata,family", [
    ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
    ({"ss_base_model_version": "sd_v1"}, "sd1"),
    ({"ss_v2": "True"}, "sd2"),
    ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, "sdxl"),
    ({"modelspec.architecture": "stable-diffusion-v2-768-v/lora"}, "sd2"),
    ({}, "unknown"),
])
def test_family_from_metadata_when_shapes_do_not_tell(tmp_path, trees, metadata, family):
    # a conv-only UNet file: no cross-attention or text-encoder layer to measure
    t = trees["sd15", "a1111"].by_id[("unet", "input_blocks.1.0.in_layers.2", "weight", None, None)]
    net = lycoris_ext.load_network(write(tmp_path / "conv.safetensors", lora("lora_unet_down_blocks_0_resnets_0_conv1", t.shape), metadata))
    assert detect_family(net)[0] == family
    res = resolve(net, trees["sd15", "a1111"])
    assert res.verdict == (FITS if family in ("sd1", "unknown") else OTHER_MODEL)


# ------------------------------------------------------------ packed q / k / v

QKV_SUBSETS = [("q",), ("k",), ("v",), ("q", "k"), ("q", "v"), ("k", "v"), ("q", "k", "v")]
PACKED = [("sd2", "te", "lora_te_", 1024, 24), ("sdxl", "te2", "lora_te2_", 1280, 32)]


@pytest.mark.parametrize("subset", QKV_SUBSETS, ids="".join)
@pytest.mark.parametrize("model,part,prefix,width,layers", PACKED, ids=["sd2-te", "sdxl-te2"])
def test_partial_qkv_lands_on_its_rows(tmp_path, trees, model, part, prefix, width, layers, subset):
    row = {"q": 0, "k": 1, "v": 2}
    sd, want = {}, {}
    for layer in (0, layers // 2, layers - 1):
        for x in subset:
            # three spellings trainers use for the same q/k/v projection
            key = [f"{prefix}text_model_encoder_layers_{layer}_self_attn_{x}_proj",
                   f"{prefix}encoder_layers_{layer}_self_attn_{x}_proj",
                   f"lycoris_text_model_encoder_layers_{layer}_self_attn_{x}_proj"][row[x]]
            sd.update(lora(key, (width, width)))
            want[key] = (part, f"model.transformer.resblocks.{layer}.attn", "in_proj_weight",
                         (row[x] * width, (row[x] + 1) * width), None)
    net = lycoris_ext.load_network(write(tmp_path / "qkv.safetensors", sd))
    res = resolve(net, trees[model, "a1111"])
    assert {m.key: m.target.id for m in res.matches} == want
    assert all(m.target.shape == (width, width) and m.target.block == "BASE" for m in res.matches)
    assert res.unmatched == [] and res.mismatched == []
    assert res.report()["parts"][part]["matched"] == {"BASE": len(want)}
    # on the diffusers-named model the same keys are separate Linears
    res = resolve(net, trees[model, "diffusers"])
    assert {m.key: m.target.path for m in res.matches} == {
        k: f"text_model.encoder.layers.{v[1].split('.')[3]}.self_attn.{'qkv'[v[3][0] // width]}_proj" for k, v in want.items()}


_TREES: dict = {}


def _tree(model, naming="a1111"):
    if (model, naming) not in _TREES:
        _TREES[model, naming] = model_tree(model, naming)
    return _TREES[model, naming]


def _qkv_key(style: str, model: str, layer: int, x: str) -> tuple[str, tuple[str, str]]:
    """(module key, (up suffix, down suffix)) of projection x (q/k/v/out) of a layer, in a trainer's style."""
    part = "te" if model == "sd2" else "te2"
    proj = f"{x}_proj"
    kohya = (".lora_up.weight", ".lora_down.weight")
    if style == "kohya":
        return f"{KOHYA_TE[part]}text_model_encoder_layers_{layer}_self_attn_{proj}", kohya
    if style == "kohya-transformers5":
        return f"{KOHYA_TE[part]}encoder_layers_{layer}_self_attn_{proj}", kohya
    if style == "peft":
        pre = "text_encoder." if part == "te" else "text_encoder_2."
        return f"{pre}text_model.encoder.layers.{layer}.self_attn.{proj}", (".lora_B.weight", ".lora_A.weight")
    if style == "diffusers-processor":
        pre = "text_encoder." if part == "te" else "text_encoder_2."
        return f"{pre}text_model.encoder.layers.{layer}.self_attn.to_{x}", ("_lora.up.weight", "_lora.down.weight")
    if style == "onetrainer":
        pre = "lora_te." if part == "te" else "lora_te2."
        return f"{pre}text_model.encoder.layers.{layer}.self_attn.{proj}", kohya
    if style == "omi":
        pre = "clip_l." if part == "te" else "clip_g."  # SD2 has no OMI name of its own; clip_l. falls back to te
        return f"{pre}text_model.encoder.layers.{layer}.self_attn.{proj}", kohya
    assert style == "lycoris"
    return f"lycoris_text_model_encoder_layers_{layer}_self_attn_{proj}", kohya


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["sd2", "sdxl"]),
       style=st.sampled_from(["kohya", "kohya-transformers5", "peft", "diffusers-processor", "onetrainer", "omi", "lycoris"]),
       picks=st.sets(st.tuples(st.integers(0, 23), st.sampled_from(["q", "k", "v", "out"])), min_size=1, max_size=10))
def test_any_subset_of_packed_projections_lands_on_its_rows(model, style, picks):
    part, width = ("te", 1024) if model == "sd2" else ("te2", 1280)
    sd, want = {}, {}
    for layer, x in sorted(picks):
        key, (up_s, down_s) = _qkv_key(style, model, layer, x)
        up, down = lora_factors((width, width))
        sd[key + up_s], sd[key + down_s] = up, down
        attn = f"model.transformer.resblocks.{layer}.attn"
        if x == "out":
            want[key] = (part, attn + ".out_proj", "weight", None, None)
        else:
            i = "qkv".index(x)
            want[key] = (part, attn, "in_proj_weight", (i * width, (i + 1) * width), None)
    with tempfile.TemporaryDirectory() as d:
        net = lycoris_ext.load_network(write(f"{d}/p.safetensors", sd))
    res = resolve(net, _tree(model))
    assert {m.key: m.target.id for m in res.matches} == want
    assert res.unmatched == [] and res.mismatched == []


@pytest.mark.parametrize("model,part,prefix,width,layers", PACKED, ids=["sd2-te", "sdxl-te2"])
def test_qkv_of_another_width_does_not_fit_the_slice(tmp_path, trees, model, part, prefix, width, layers):
    # a slice is (width, width): a LoRA sized for the whole packed weight does not fit it
    key = f"{prefix}text_model_encoder_layers_0_self_attn_q_proj"
    net = lycoris_ext.load_network(write(tmp_path / "q.safetensors", lora(key, (3 * width, width))))
    res = resolve(net, trees[model, "a1111"])
    assert res.matches == []
    [miss] = res.mismatched
    assert miss.key == key and miss.part == part
    assert f"{part}:model.transformer.resblocks.0.attn.in_proj_weight[0:{width}]" in miss.reason


def test_packed_slices_on_a_real_multihead_attention(tmp_path):
    """On real modules, the slice target is the MHA itself with q/k/v row ranges."""
    from lycoris_ext.synthetic import build_tree

    parts, tree = build_tree("sd2", shrink=16)
    mods = dict(parts["te"].named_modules())
    mha = mods["model.transformer.resblocks.3.attn"]
    assert isinstance(mha, torch.nn.MultiheadAttention)
    d = mha.embed_dim
    sd = {}
    for x in ("q", "v"):
        sd.update(lora(f"lora_te_text_model_encoder_layers_3_self_attn_{x}_proj", (d, d)))
    sd.update(lora("lora_te_text_model_encoder_layers_3_self_attn_out_proj", (d, d)))
    res = resolve(lycoris_ext.load_network(write(tmp_path / "mha.safetensors", sd)), tree)
    got = {m.key.rsplit("_", 2)[-2]: m.target for m in res.matches}
    assert got["q"].module is mha and got["q"].rows == (0, d) and got["q"].param == "in_proj_weight"
    assert got["v"].module is mha and got["v"].rows == (2 * d, 3 * d)
    assert got["out"].module is mha.out_proj and got["out"].rows is None
    assert tuple(mha.in_proj_weight.shape) == (3 * d, d)


# ------------------------------------------------- unmatched / mismatched / unknown

def test_unmatched_mismatched_and_unknown_keys_are_all_reported(tmp_path, trees):
    tree = trees["sd15", "a1111"]
    proj_in = tree.by_id[("unet", "input_blocks.1.1.proj_in", "weight", None, None)]
    fc1 = tree.by_id[("te", "transformer.text_model.encoder.layers.0.mlp.fc1", "weight", None, None)]
    sd = {}
    sd.update(lora("lora_unet_down_blocks_0_attentions_0_proj_in", proj_in.shape))            # matches
    sd.update(lora("lora_te_text_model_encoder_layers_0_mlp_fc1", fc1.shape))                 # matches
    sd.update(lora("lora_unet_down_blocks_0_attentions_5_proj_in", proj_in.shape))            # no such layer
    sd.update(lora("lora_te_text_model_encoder_layers_12_mlp_fc1", fc1.shape))                # SD1 has 12 layers
    sd.update(lora("lora_unet_down_blocks_1_attentions_0_proj_in", proj_in.shape))            # 640-wide layer
    sd["lora_unet_down_blocks_0_attentions_1_proj_out.hada_w9"] = torch.ones(3)              # unknown suffix
    sd["lora_unet_down_blocks_0_attentions_1_proj_in.alpha"] = torch.tensor(1.0)             # alpha alone
    net = lycoris_ext.load_network(write(tmp_path / "mixed.safetensors", sd))
    res = resolve(net, tree)

    assert res.verdict == PARTLY and res.applicable
    rep = res.report()
    assert rep["matched"] == 2 and rep["modules"] == 5
    assert rep["parts"]["unet"]["matched"] == {"IN01": 1}
    assert rep["parts"]["te"]["matched"] == {"BASE": 1}
    assert rep["parts"]["unet"]["unmatched"] == ["lora_unet_down_blocks_0_attentions_5_proj_in"]
    assert rep["parts"]["te"]["unmatched"] == ["lora_te_text_model_encoder_layers_12_mlp_fc1"]
    [mis] = rep["parts"]["unet"]["mismatched"]
    assert mis["key"] == "lora_unet_down_blocks_1_attentions_0_proj_in"
    assert "does not fit" in mis["reason"] and "(640, 640, 1, 1)" in mis["reason"]
    assert "unet:input_blocks.4.1.proj_in" in mis["reason"]
    assert rep["parts"]["te"]["mismatched"] == []
    unknown = {k["key"]: k["reason"] for k in rep["unknown_keys"]}
    assert unknown == {
        "lora_unet_down_blocks_0_attentions_1_proj_out.hada_w9": "unknown suffix 'hada_w9'",
        "lora_unet_down_blocks_0_attentions_1_proj_in.alpha": "no algorithm uses this module's keys",
    }
    assert "2/5 layers matched, 2 unmatched, 1 do not fit, 2 unknown keys" == rep["summary"]
    json.dumps(rep)  # JSON-ready


def test_keys_for_parts_the_model_lacks_are_listed_under_that_part(tmp_path, trees):
    te2 = trees["sdxl", "a1111"].by_id[("te2", "model.transformer.resblocks.0.mlp.c_fc", "weight", None, None)]
    net, _ = kohya_attention_file("sd15", tmp_path, parts=("unet",))
    sd = {}
    sd.update(lora("lora_te2_text_model_encoder_layers_0_mlp_fc1", te2.shape))
    extra = lycoris_ext.load_network(write(tmp_path / "te2.safetensors", sd))
    res = resolve(extra, trees["sd15", "a1111"])
    assert res.report()["parts"]["te2"]["unmatched"] == ["lora_te2_text_model_encoder_layers_0_mlp_fc1"]
    assert list(res.report()["parts"]) == ["unet", "te", "te2"]


@pytest.mark.parametrize("verdict,keys", [
    (FITS, ["lora_unet_down_blocks_0_attentions_0_proj_in"]),
    (PARTLY, ["lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_down_blocks_0_attentions_0_nothing"]),
    (NO_FIT, ["lora_unet_down_blocks_0_attentions_0_nothing"]),
])
def test_verdicts(tmp_path, trees, verdict, keys):
    shape = (320, 320, 1, 1)
    sd = {}
    for k in keys:
        sd.update(lora(k, shape))
    res = resolve(lycoris_ext.load_network(write(tmp_path / "v.safetensors", sd)), trees["sd15", "a1111"])
    assert res.verdict == verdict
    assert res.applicable == (verdict != NO_FIT)


def test_unknown_keys_alone_make_a_partial_fit(tmp_path, trees):
    sd = lora("lora_unet_down_blocks_0_attentions_0_proj_in", (320, 320, 1, 1))
    sd["lora_unet_down_blocks_0_attentions_0_proj_in.lora_mystery"] = torch.ones(2)
    res = resolve(lycoris_ext.load_network(write(tmp_path / "u.safetensors", sd)), trees["sd15", "a1111"])
    assert len(res.matches) == 1
    assert res.verdict == PARTLY
    assert [k["key"] for k in res.report()["unknown_keys"]] == ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_mystery"]




@pytest.mark.parametrize("key,part", [
    ("lycoris_text_model_encoder_layers_40_mlp_fc1", "te"),
    ("lycoris_encoder_layers_40_mlp_fc1", "te"),
    ("some_unknown_trainer_layer", "unknown"),
])
def test_unmatched_key_is_listed_under_the_part_it_names(tmp_path, trees, key, part):
    assert part_hint(key) == part
    res = resolve(lycoris_ext.load_network(write(tmp_path / "x.safetensors", lora(key, (3072, 768)))), trees["sd15", "a1111"])
    assert res.report()["parts"][part]["unmatched"] == [key]


# ------------------------------------------------------------------ duplicates

DUPLICATES = [
    ("sd15", "lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_input_blocks_1_1_proj_in",
     ("unet", "input_blocks.1.1.proj_in", "weight", None, None)),
    ("sd15", "lora_te_text_model_encoder_layers_0_self_attn_q_proj", "lora_te_encoder_layers_0_self_attn_q_proj",
     ("te", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, None)),
    ("sdxl", "lora_unet_output_blocks_2_2_conv", "lora_unet_up_blocks_0_upsamplers_0_conv",
     ("unet", "output_blocks.2.2.conv", "weight", None, None)),
    ("sd2", "lora_te_text_model_encoder_layers_3_self_attn_v_proj", "lycoris_encoder_layers_3_self_attn_v_proj",
     ("te", "model.transformer.resblocks.3.attn", "in_proj_weight", (2048, 3072), None)),
]


@pytest.mark.parametrize("model,a,b,tid", DUPLICATES, ids=[d[0] + "-" + d[1] for d in DUPLICATES])
def test_two_spellings_of_one_layer_are_reported_not_applied_twice(tmp_path, trees, model, a, b, tid):
    tree = trees[model, "a1111"]
    shape = tree.by_id[tid].shape
    sd = {**lora(a, shape), **lora(b, shape)}
    res = resolve(lycoris_ext.load_network(write(tmp_path / "dup.safetensors", sd)), tree)
    [match] = res.matches
    assert match.target.id == tid
    [dup] = res.mismatched
    assert {match.key, dup.key} == {a, b}
    assert f"targets the same layer as '{match.key}'" in dup.reason
    assert tree.by_id[tid].label in dup.reason
    assert res.verdict == PARTLY
    rep = res.report()
    assert rep["parts"][tid[0]]["mismatched"] == [{"key": dup.key, "reason": dup.reason}]


def test_q_and_k_of_one_attention_are_not_duplicates(tmp_path, trees):
    sd = {**lora("lora_te_text_model_encoder_layers_3_self_attn_q_proj", (1024, 1024)),
          **lora("lora_te_text_model_encoder_layers_3_self_attn_k_proj", (1024, 1024))}
    res = resolve(lycoris_ext.load_network(write(tmp_path / "qk.safetensors", sd)), trees["sd2", "a1111"])
    assert len(res.matches) == 2 and res.mismatched == [] and res.verdict == FITS


# ------------------------------------------------------------------ inpainting

def _inpaint_tree(naming: str, channels: int) -> ModelTree:
    rows = a1111_rows("sd15") if naming == "a1111" else diffusers_rows("sd15")
    conv_in = "input_blocks.0.0" if naming == "a1111" else "conv_in"
    unet = []
    for path, cls, params, mod in rows["unet"]:
        if path == conv_in:
            params = {**params, "weight": (320, channels, 3, 3)}
        unet.append((path, cls, params, mod))
    return ModelTree.from_rows({**rows, "unet": unet}, naming)


@pytest.mark.parametrize("naming", ["a1111", "diffusers"])
@pytest.mark.parametrize("channels", [9, 8])  # inpainting, instruct-pix2pix
@pytest.mark.parametrize("key", ["lora_unet_conv_in", "diffusion_model_input_blocks_0_0", "unet.conv_in"])
def test_4_channel_conv_in_lands_on_the_first_input_columns(tmp_path, naming, channels, key):
    tree = _inpaint_tree(naming, channels)
    assert tree.family == "sd1"
    path = "input_blocks.0.0" if naming == "a1111" else "conv_in"
    full = tree.by_id[("unet", path, "weight", None, None)]
    assert full.shape == (320, channels, 3, 3)
    sd = {**lora(key, (320, 4, 3, 3)), **lora("lora_unet_down_blocks_0_attentions_0_proj_in", (320, 320, 1, 1))}
    res = resolve(lycoris_ext.load_network(write(tmp_path / "inpaint.safetensors", sd)), tree)
    assert res.verdict == FITS
    [m] = [m for m in res.matches if m.key == key]
    assert m.target.cols == (0, 4)
    assert m.target.shape == (320, 4, 3, 3)
    assert (m.target.part, m.target.path, m.target.param, m.target.rows, m.target.block) == ("unet", path, "weight", None, "IN00")
    assert m.target.label.endswith("[:, 0:4]")




@pytest.mark.parametrize("tensors", ["full", "loha",
                                     "lokr"])
def test_inpainting_slice_for_other_algorithms(tmp_path, tensors):
    from lycoris_ext.samples import module_tensors as sample_tensors

    tree = _inpaint_tree("a1111", 9)
    g = torch.Generator().manual_seed(0)
    sd = {f"lora_unet_conv_in.{s}": v for s, v in sample_tensors(tensors, (320, 4, 3, 3), 2, g).items()}
    res = resolve(lycoris_ext.load_network(write(tmp_path / "inpaint.safetensors", sd)), tree)
    [m] = res.matches
    assert m.target.cols == (0, 4)


def test_9_channel_conv_in_takes_the_whole_inpainting_layer(tmp_path):
    tree = _inpaint_tree("a1111", 9)
    res = resolve(lycoris_ext.load_network(write(tmp_path / "i9.safetensors", lora("lora_unet_conv_in", (320, 9, 3, 3)))), tree)
    [m] = res.matches
    assert m.target.cols is None and m.target.shape == (320, 9, 3, 3)


def test_9_channel_conv_in_does_not_fit_a_4_channel_model(tmp_path, trees):
    res = resolve(lycoris_ext.load_network(write(tmp_path / "i9.safetensors", lora("lora_unet_conv_in", (320, 9, 3, 3)))),
                  trees["sd15", "a1111"])
    assert res.matches == []
    [miss] = res.mismatched
    assert "unet:input_blocks.0.0" in miss.reason


def test_only_conv_in_is_sliced(tmp_path):
    # a narrower LoRA on any other conv is a mismatch, not a partial slice
    tree = _inpaint_tree("a1111", 9)
    res = resolve(lycoris_ext.load_network(write(tmp_path / "c.safetensors",
                                                 lora("lora_unet_down_blocks_0_resnets_0_conv1", (320, 4, 3, 3)))), tree)
    assert res.matches == [] and len(res.mismatched) == 1


# --------------------------------------------------------------------------- CLI

def test_cli_inspect_json(tmp_path, capsys):
    tree = model_tree("sd15")
    sd = {}
    for tid in [("unet", "input_blocks.1.1.proj_in", "weight", None, None),
                ("unet", "input_blocks.4.1.transformer_blocks.0.attn2.to_k", "weight", None, None),
                ("unet", "output_blocks.11.1.proj_out", "weight", None, None),
                ("te", "transformer.text_model.encoder.layers.2.mlp.fc2", "weight", None, None)]:
        t = tree.by_id[tid]
        sd.update(lora(tree.key_for(t), t.shape))
    sd.update(lora("lora_unet_down_blocks_7_attentions_0_proj_in", (320, 320, 1, 1)))
    sd.update(lora("lora_te_text_model_encoder_layers_0_mlp_fc2", (320, 320)))
    path = write(tmp_path / "cli.safetensors", sd)

    assert cli_main(["inspect", path, "--model", "sd15", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["resolution"]
    assert r["verdict"] == PARTLY
    assert r["parts"]["unet"] == {"matched": {"IN01": 1, "IN04": 1, "OUT11": 1},
                                  "unmatched": ["lora_unet_down_blocks_7_attentions_0_proj_in"], "mismatched": []}
    assert r["parts"]["te"]["matched"] == {"BASE": 1}
    assert r["parts"]["te"]["unmatched"] == []
    [mis] = r["parts"]["te"]["mismatched"]
    assert mis["key"] == "lora_te_text_model_encoder_layers_0_mlp_fc2" and "does not fit" in mis["reason"]
    assert out["modules"] == 6 and out["base_model"] == "sd1"

    # the same file against the diffusers-named model gives the same per-block counts
    assert cli_main(["inspect", path, "--model", "sd15", "--naming", "diffusers", "--json"]) == 0
    r2 = json.loads(capsys.readouterr().out)["resolution"]
    for part in ("unet", "te"):
        assert r2["parts"][part]["matched"] == r["parts"][part]["matched"]
        assert r2["parts"][part]["unmatched"] == r["parts"][part]["unmatched"]
        assert [m["key"] for m in r2["parts"][part]["mismatched"]] == [m["key"] for m in r["parts"][part]["mismatched"]]
    assert "(te:text_model.encoder.layers.0.mlp.fc2)" in r2["parts"]["te"]["mismatched"][0]["reason"]

    # and against SDXL it is a file for another model
    assert cli_main(["inspect", path, "--model", "sdxl", "--json"]) == 0
    r3 = json.loads(capsys.readouterr().out)["resolution"]
    assert r3["verdict"] == OTHER_MODEL and r3["file_family"] == "sd1"


def test_cli_inspect_text_and_errors(tmp_path, capsys):
    path = write(tmp_path / "t.safetensors", lora("lora_unet_down_blocks_0_attentions_0_proj_in", (320, 320, 1, 1)))
    assert cli_main(["inspect", path, "--model", "sd15"]) == 0
    text = capsys.readouterr().out
    assert "on SD1: fits (1/1 layers matched)" in text
    assert "per block: IN01:1" in text
    assert cli_main(["inspect", str(tmp_path / "missing.safetensors"), "--model", "sd15"]) == 2
    assert "error:" in capsys.readouterr().err
