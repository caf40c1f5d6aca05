"""Every key style on every target it belongs to, on A1111- and diffusers-named trees.

For each model (SD1.5, SD2.1, SDXL) and each style a trainer writes, a file is
built by hand from the inventory (resolve_helpers.ref_targets: independent
names, real shapes), loaded with ``lycoris_ext.load_network`` and resolved
against ``model_tree(model, "a1111")`` and ``model_tree(model, "diffusers")``.
Every key must land on the layer it was written for, the verdict must be
"fits", and the matched counts per block must be the inventory's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import pytest

import lycoris_ext
from lycoris_ext.resolve import FITS, resolve
from lycoris_ext.resolve.inventory import model_tree
from lycoris_ext.resolve.styles import STYLES, part_hint, split_prefix
from resolve_helpers import (
    BLOCK_COUNTS,
    FAMILY,
    MODELS,
    NAMINGS,
    RefTarget,
    block_counts,
    module_tensors,
    ref_targets,
    u,
    write,
)

KOHYA_TE = {"te": "lora_te_", "te1": "lora_te1_", "te2": "lora_te2_"}
DIFFUSERS_TE = {"te": "text_encoder.", "te1": "text_encoder.", "te2": "text_encoder_2."}
ONETRAINER_TE = {"te": "lora_te.", "te1": "lora_te1.", "te2": "lora_te2."}
OMI_TE = {"te": "clip_l.", "te1": "clip_l.", "te2": "clip_g."}
OMI_EARLY_TE = {"te": "lora_clip_l.", "te1": "lora_clip_l.", "te2": "lora_clip_g."}

_UNET_ATTN = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_TE_ATTN = re.compile(r"self_attn\.(q|k|v|out)_proj$")


def kohya_unet_body(t: RefTarget) -> str:
    """kohya's trainer: diffusers names on SD1/SD2, sgm names on SDXL."""
    return t.ldm if t.model == "sdxl" else t.diff


def hf_of_trainer(t: RefTarget) -> str:
    """What a trainer on transformers >= 5.6 sees: CLIPTextModel lost text_model,
    CLIPTextModelWithProjection (SDXL te2) kept it."""
    return t.hf if t.part == "te2" else t.hf5


def processor_unet(t: RefTarget) -> str | None:
    m = _UNET_ATTN.search(t.diff)
    if not m:
        return None
    name = "to_out" if m[1] == "to_out.0" else m[1]
    return t.diff[: m.start(1)] + f"processor.{name}"


def processor_te(t: RefTarget) -> str | None:
    m = _TE_ATTN.search(t.hf)
    if not m:
        return None
    return t.hf[: m.start()] + f"self_attn.to_{m[1]}"


@dataclass(frozen=True)
class KeyStyle:
    id: str
    #: module key of a UNet / text-encoder target, None when the style does not address it
    unet: Callable[[RefTarget], str | None] | None = None
    te: Callable[[RefTarget], str | None] | None = None
    flavour: str = "kohya"
    te_flavour: str | None = None
    models: tuple[str, ...] = MODELS
    #: parts of each model the file covers (default: all the style addresses)
    parts: dict = field(default_factory=dict)
    norms: bool = True


STYLE_CASES = [
    KeyStyle("kohya", unet=lambda t: "lora_unet_" + u(kohya_unet_body(t)),
             te=lambda t: KOHYA_TE[t.part] + u(t.hf)),
    KeyStyle("kohya-sgm-body", unet=lambda t: "lora_unet_" + u(t.ldm), te=lambda t: KOHYA_TE[t.part] + u(t.hf)),
    # OneTrainer legacy: kohya-flat keys with diffusers bodies, also for SDXL
    KeyStyle("kohya-diffusers-body", unet=lambda t: "lora_unet_" + u(t.diff), te=lambda t: KOHYA_TE[t.part] + u(t.hf)),
    KeyStyle("kohya-transformers5-te", te=lambda t: KOHYA_TE[t.part] + u(hf_of_trainer(t))),
    # diffusers' convert_state_dict_to_kohya writes lora_te1 for SD1's only encoder
    KeyStyle("diffusers-kohya-export-te1", te=lambda t: "lora_te1_" + u(t.hf), models=("sd15", "sd2")),
    KeyStyle("kohya-oft", unet=lambda t: "oft_unet_" + u(kohya_unet_body(t)), flavour="oft", norms=False),
    KeyStyle("kohya-oft-sgm-body", unet=lambda t: "oft_unet_" + u(t.ldm), flavour="oft", norms=False),
    # LyCORIS wrapper (SimpleTuner): one prefix, diffusers / transformers-5 names
    KeyStyle("lycoris", unet=lambda t: "lycoris_" + u(t.diff), te=lambda t: "lycoris_" + u(hf_of_trainer(t))),
    # the same with transformers < 5.6 names; on SDXL te1 and te2 then share
    # spellings, so each encoder gets its own file (the shapes tell them apart)
    KeyStyle("lycoris-text_model", unet=lambda t: "lycoris_" + u(t.diff), te=lambda t: "lycoris_" + u(t.hf),
             parts={"sdxl": ("unet", "te2")}),
    KeyStyle("lycoris-text_model-te1", te=lambda t: "lycoris_" + u(t.hf), models=("sdxl",), parts={"sdxl": ("te1",)}),
    KeyStyle("peft", unet=lambda t: "unet." + t.diff, te=lambda t: DIFFUSERS_TE[t.part] + t.hf, flavour="peft"),
    KeyStyle("peft-transformers5-te", te=lambda t: DIFFUSERS_TE[t.part] + hf_of_trainer(t), flavour="peft"),
    KeyStyle("diffusers-lora-layers", unet=lambda t: "unet." + t.diff, te=lambda t: DIFFUSERS_TE[t.part] + t.hf,
             flavour="lora.up", te_flavour="lora_linear_layer"),
    KeyStyle("diffusers-attn-processor", unet=lambda t: (k := processor_unet(t)) and "unet." + k,
             te=lambda t: (k := processor_te(t)) and DIFFUSERS_TE[t.part] + k, flavour="processor", norms=False),
    KeyStyle("attn-processor-no-prefix", unet=processor_unet, flavour="processor", norms=False),
    KeyStyle("onetrainer-2025", unet=lambda t: "lora_unet." + t.diff, te=lambda t: ONETRAINER_TE[t.part] + t.hf),
    KeyStyle("omi", unet=lambda t: "unet." + t.ldm, te=lambda t: OMI_TE[t.part] + t.hf, models=("sd15", "sdxl")),
    KeyStyle("omi-early", unet=lambda t: "lora_unet." + t.ldm, te=lambda t: OMI_EARLY_TE[t.part] + t.hf,
             models=("sd15", "sdxl")),
    KeyStyle("a1111-names", unet=lambda t: "diffusion_model_" + u(t.ldm)),
    KeyStyle("comfyui-unet", unet=lambda t: "diffusion_model." + t.ldm),
    KeyStyle("checkpoint-unet", unet=lambda t: "model.diffusion_model." + t.ldm),
]
CASES = [(m, s) for s in STYLE_CASES for m in s.models]


def build_file(model: str, style: KeyStyle) -> tuple[dict, dict[str, RefTarget]]:
    """(tensors, module key -> intended target) of one style's file."""
    parts = style.parts.get(model)
    tensors: dict = {}
    intended: dict[str, RefTarget] = {}
    for t in ref_targets(model):
        if parts is not None and t.part not in parts:
            continue
        if t.kind == "norm" and not style.norms:
            continue
        fn = style.unet if t.part == "unet" else style.te
        key = fn(t) if fn else None
        if not key:
            continue
        assert key not in intended, f"test bug: {key} written twice"
        intended[key] = t
        flavour = style.flavour if (t.part == "unet" or style.te_flavour is None) else style.te_flavour
        tensors.update(module_tensors(key, t, flavour))
    return tensors, intended


@pytest.fixture(scope="module")
def trees():
    return {(m, n): model_tree(m, n) for m in MODELS for n in NAMINGS}


@pytest.fixture(scope="module")
def style_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("styles")
    cache = {}

    def get(model, style):
        if (model, style.id) not in cache:
            tensors, intended = build_file(model, style)
            path = write(d / f"{model}-{style.id}.safetensors", tensors)
            cache[model, style.id] = (lycoris_ext.load_network(path), intended)
        return cache[model, style.id]

    return get


@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("model,style", CASES, ids=[f"{m}-{s.id}" for m, s in CASES])
def test_every_key_lands_on_its_layer(style_files, trees, model, style, naming):
    net, intended = style_files(model, style)
    assert intended, "the style addresses some layers of this model"
    assert set(net.modules) == set(intended)
    res = resolve(net, trees[model, naming])

    assert [m.key for m in res.unmatched] == []
    assert [(m.key, m.reason) for m in res.mismatched] == []
    assert res.unknown == []
    got = {m.key: m.target.id for m in res.matches}
    want = {k: t.tree_id(naming) for k, t in intended.items()}
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert wrong == {}
    # a whole-layer delta: no column slice anywhere
    assert all(m.target.cols is None for m in res.matches)

    assert res.verdict == FITS
    assert res.applicable
    if style.flavour != "oft" and any(re.search(r"attn2[._]to_[kv]$", k) for k in intended):
        # cross-attention input width tells the family (OFT blocks only know output rows)
        assert res.file_family == FAMILY[model]
    else:
        # OFT blocks know only output rows: the UNet layout may narrow it to "SD1 or SD2"
        assert res.file_family in (FAMILY[model], "unknown") + (("sd",) if model != "sdxl" else ())

    # counts per block: what the inventory holds for the layers this style addresses
    want_counts = block_counts(intended.values())
    report = res.report()
    for part in trees[model, naming].parts:
        assert dict(res.matched_blocks(part)) == want_counts.get(part, {}), part
        assert report["parts"][part]["matched"] == want_counts.get(part, {}), part
        assert report["parts"][part]["unmatched"] == [] and report["parts"][part]["mismatched"] == []
    assert report["matched"] == report["modules"] == len(intended)
    # blocks are listed in LBW's order, layers outside the blocks last
    order = ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12)), "OTHER"]
    for part in trees[model, naming].parts:
        listed = list(report["parts"][part]["matched"])
        assert listed == [b for b in order if b in listed]


FULL_COVERAGE = ["kohya", "kohya-sgm-body", "kohya-diffusers-body", "lycoris", "peft", "diffusers-lora-layers",
                 "onetrainer-2025"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("style_id", FULL_COVERAGE)
def test_full_styles_cover_every_layer_of_the_inventory(model, style_id):
    """These styles can name every weight-carrying layer: their files cover
    the inventory's hand-counted per-block totals exactly."""
    style = next(s for s in STYLE_CASES if s.id == style_id)
    _, intended = build_file(model, style)
    assert block_counts(intended.values()) == BLOCK_COUNTS[model]


ATTENTION_COUNTS = {
    # 8 attention Linears per transformer block (attn1/attn2 x q, k, v, out)
    "sd15": {"unet": {b: 8 for b in ("IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
                                     *(f"OUT{i:02d}" for i in range(3, 12)))}, "te": {"BASE": 12 * 4}},
    "sdxl": {"unet": {"IN04": 16, "IN05": 16, "IN07": 80, "IN08": 80, "M00": 80, "OUT00": 80, "OUT01": 80,
                      "OUT02": 80, "OUT03": 16, "OUT04": 16, "OUT05": 16}, "te1": {"BASE": 48}, "te2": {"BASE": 128}},
}
ATTENTION_COUNTS["sd2"] = {"unet": ATTENTION_COUNTS["sd15"]["unet"], "te": {"BASE": 24 * 4}}


@pytest.mark.parametrize("model", MODELS)
def test_attention_processor_files_cover_every_attention_projection(model):
    style = next(s for s in STYLE_CASES if s.id == "diffusers-attn-processor")
    _, intended = build_file(model, style)
    assert block_counts(intended.values()) == ATTENTION_COUNTS[model]
    sample = sorted(intended)[0]
    assert ".processor.to_" in sample or ".self_attn.to_" in sample


# --------------------------------------------------------------- hand examples

EXAMPLES = [
    # (model, naming, file module key, expected target id)
    ("sd15", "a1111", "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
     ("unet", "input_blocks.1.1.transformer_blocks.0.attn1.to_q", "weight", None, None)),
    ("sd15", "a1111", "lora_unet_up_blocks_0_upsamplers_0_conv", ("unet", "output_blocks.2.1.conv", "weight", None, None)),
    ("sd15", "a1111", "lora_unet_down_blocks_1_resnets_0_conv_shortcut",
     ("unet", "input_blocks.4.0.skip_connection", "weight", None, None)),
    ("sd15", "a1111", "lora_unet_mid_block_resnets_1_time_emb_proj", ("unet", "middle_block.2.emb_layers.1", "weight", None, None)),
    ("sd15", "a1111", "lora_unet_conv_in", ("unet", "input_blocks.0.0", "weight", None, None)),
    ("sd15", "a1111", "lora_unet_time_embedding_linear_2", ("unet", "time_embed.2", "weight", None, None)),
    ("sd15", "a1111", "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
     ("te", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, None)),
    ("sd15", "a1111", "lora_te_encoder_layers_11_mlp_fc2",
     ("te", "transformer.text_model.encoder.layers.11.mlp.fc2", "weight", None, None)),
    ("sd15", "a1111", "lora_te1_text_model_encoder_layers_5_self_attn_out_proj",
     ("te", "transformer.text_model.encoder.layers.5.self_attn.out_proj", "weight", None, None)),
    ("sd15", "a1111", "lora_te_text_model_text_model_encoder_layers_0_mlp_fc1",  # doubled text_model seen in the wild
     ("te", "transformer.text_model.encoder.layers.0.mlp.fc1", "weight", None, None)),
    ("sd15", "a1111", "oft_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
     ("unet", "input_blocks.1.1.transformer_blocks.0.attn1.to_q", "weight", None, None)),
    ("sd15", "a1111", "lycoris_encoder_layers_0_self_attn_q_proj",
     ("te", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, None)),
    ("sd15", "diffusers", "lora_unet_input_blocks_4_1_proj_in", ("unet", "down_blocks.1.attentions.0.proj_in", "weight", None, None)),
    ("sd15", "diffusers", "diffusion_model_output_blocks_2_1_conv", ("unet", "up_blocks.0.upsamplers.0.conv", "weight", None, None)),
    ("sd15", "diffusers", "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out",
     ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", "weight", None, None)),
    ("sd15", "diffusers", "text_encoder.text_model.encoder.layers.0.self_attn.to_out",
     ("te", "text_model.encoder.layers.0.self_attn.out_proj", "weight", None, None)),
    ("sd2", "a1111", "lora_te_text_model_encoder_layers_5_self_attn_k_proj",
     ("te", "model.transformer.resblocks.5.attn", "in_proj_weight", (1024, 2048), None)),
    ("sd2", "a1111", "lora_te_text_model_encoder_layers_5_self_attn_out_proj",
     ("te", "model.transformer.resblocks.5.attn.out_proj", "weight", None, None)),
    ("sd2", "a1111", "lora_te_text_model_encoder_layers_5_layer_norm1", ("te", "model.transformer.resblocks.5.ln_1", "weight", None, None)),
    ("sd2", "a1111", "lora_te_text_model_final_layer_norm", ("te", "model.ln_final", "weight", None, None)),
    ("sd2", "a1111", "lora_te_text_projection", ("te", "model", "text_projection", None, None)),
    ("sdxl", "a1111", "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k",
     ("unet", "input_blocks.4.1.transformer_blocks.1.attn2.to_k", "weight", None, None)),
    ("sdxl", "a1111", "lora_unet_up_blocks_0_upsamplers_0_conv", ("unet", "output_blocks.2.2.conv", "weight", None, None)),
    ("sdxl", "a1111", "lora_unet_add_embedding_linear_1", ("unet", "label_emb.0.0", "weight", None, None)),
    ("sdxl", "a1111", "lora_te2_text_model_encoder_layers_31_mlp_fc1", ("te2", "model.transformer.resblocks.31.mlp.c_fc", "weight", None, None)),
    ("sdxl", "a1111", "lora_te2_text_model_encoder_layers_0_self_attn_v_proj",
     ("te2", "model.transformer.resblocks.0.attn", "in_proj_weight", (2560, 3840), None)),
    ("sdxl", "a1111", "lora_te1_encoder_layers_0_self_attn_q_proj",
     ("te1", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, None)),
    ("sdxl", "a1111", "lora_te2_text_projection", ("te2", "model", "text_projection", None, None)),
    ("sdxl", "a1111", "unet.input_blocks.1.0.in_layers.2", ("unet", "input_blocks.1.0.in_layers.2", "weight", None, None)),
    ("sdxl", "a1111", "clip_g.text_model.encoder.layers.0.self_attn.q_proj",
     ("te2", "model.transformer.resblocks.0.attn", "in_proj_weight", (0, 1280), None)),
    ("sdxl", "diffusers", "lora_unet_output_blocks_2_2_conv", ("unet", "up_blocks.0.upsamplers.0.conv", "weight", None, None)),
    ("sdxl", "diffusers", "lora_unet_label_emb_0_2", ("unet", "add_embedding.linear_2", "weight", None, None)),
    ("sdxl", "diffusers", "text_encoder_2.text_model.encoder.layers.3.self_attn.q_proj",
     ("te2", "text_model.encoder.layers.3.self_attn.q_proj", "weight", None, None)),
]


@pytest.mark.parametrize("model,naming,key,tid", EXAMPLES, ids=[f"{m}-{n}-{k}" for m, n, k, _ in EXAMPLES])
def test_hand_picked_keys(trees, model, naming, key, tid):
    tree = trees[model, naming]
    style, body = split_prefix(key)
    dotted = style.dotted if style else "." in key
    parts = style.parts if style else tree.parts
    found = [tree.lookup(p, body, dotted) for p in parts if p in tree.parts]
    assert [t.id for t in found if t is not None][0] == tid


# -------------------------------------------------------------- styles table

PREFIXES = [
    ("lora_unet_down_blocks_0_x", "lora_unet_", "unet"),
    ("lora_te_text_model_x", "lora_te_", "te"),
    ("lora_te1_text_model_x", "lora_te1_", "te1"),
    ("lora_te2_text_model_x", "lora_te2_", "te2"),
    ("oft_unet_input_blocks_4_1_x", "oft_unet_", "unet"),
    ("lycoris_down_blocks_0_x", "lycoris_", "unet"),
    ("lycoris_text_model_encoder_layers_0_x", "lycoris_", "te"),
    ("lycoris_encoder_layers_0_self_attn_q_proj", "lycoris_", "te"),
    ("unet.down_blocks.0.x", "unet.", "unet"),
    ("text_encoder.text_model.x", "text_encoder.", "te"),
    ("text_encoder_2.text_model.x", "text_encoder_2.", "te2"),
    ("lora_unet.down_blocks.0.x", "lora_unet.", "unet"),
    ("lora_te1.text_model.x", "lora_te1.", "te1"),
    ("lora_te2.text_model.x", "lora_te2.", "te2"),
    ("clip_l.text_model.x", "clip_l.", "te1"),
    ("clip_g.text_model.x", "clip_g.", "te2"),
    ("lora_clip_l.text_model.x", "lora_clip_l.", "te1"),
    ("lora_clip_g.text_model.x", "lora_clip_g.", "te2"),
    ("diffusion_model.input_blocks.0.0", "diffusion_model.", "unet"),
    ("model.diffusion_model.input_blocks.0.0", "model.diffusion_model.", "unet"),
    ("diffusion_model_input_blocks_0_0", "diffusion_model_", "unet"),
]


@pytest.mark.parametrize("key,prefix,part", PREFIXES)
def test_split_prefix_and_part_hint(key, prefix, part):
    style, body = split_prefix(key)
    assert style.prefix == prefix
    assert body == key[len(prefix):]
    assert part_hint(key) == part


def test_split_prefix_unknown_and_bare_prefix():
    assert split_prefix("down_blocks.0.attentions.0.proj_in") == (None, "down_blocks.0.attentions.0.proj_in")
    assert split_prefix("lora_unet_") == (None, "lora_unet_")  # a prefix alone names nothing
    assert part_hint("something_else") == "unknown"


def test_longest_prefix_wins():
    # lora_te1_ must not be read as lora_te_ + "1_...", nor text_encoder_2. as text_encoder.
    prefixes = [s.prefix for s in STYLES]
    assert prefixes == sorted(prefixes, key=len, reverse=True)
    assert len(set(prefixes)) == len(prefixes)
    assert split_prefix("text_encoder_2.text_model.x")[0].prefix == "text_encoder_2."
    assert split_prefix("model.diffusion_model.out.2")[0].prefix == "model.diffusion_model."


# ------------------------------------------------------------- ComfyUI text encoders

COMFY_TE = {"te": "text_encoders.clip_l.", "te1": "text_encoders.clip_l.", "te2": "text_encoders.clip_g."}


@pytest.mark.parametrize("model,naming", [
    ("sd15", "a1111"),
    ("sd15", "diffusers"),
    ("sdxl", "a1111"),
    ("sdxl", "diffusers"),
])
def test_comfyui_text_encoder_keys(tmp_path, trees, model, naming):
    # ComfyUI: "text_encoders." + the key of its CLIP model's state dict, whose
    # HF CLIP sits under "transformer." for both clip_l and clip_g.
    tensors, intended = {}, {}
    for t in ref_targets(model):
        if t.part == "unet":
            continue
        key = COMFY_TE[t.part] + "transformer." + t.hf
        intended[key] = t
        tensors.update(module_tensors(key, t))
    net = lycoris_ext.load_network(write(tmp_path / "comfy.safetensors", tensors))
    res = resolve(net, trees[model, naming])
    assert [m.key for m in res.unmatched] == []
    assert {m.key: m.target.id for m in res.matches} == {k: t.tree_id(naming) for k, t in intended.items()}
    assert res.verdict == FITS
