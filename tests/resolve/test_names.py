"""Block IDs and name translations for every module of the three A1111 inventories.

The expectations come from resolve_helpers (hand-counted tables and a
table-driven re-statement of keys.md section 8), never from the code under
test.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from lycoris_ext.resolve.inventory import a1111_rows, diffusers_rows, model_tree
from lycoris_ext.resolve.names import (
    BASE,
    OTHER,
    diffusers_to_ldm,
    hf_forms,
    ldm_block,
    ldm_to_diffusers,
    openclip_to_hf,
)
from lycoris_ext.resolve.tree import SD_BLOCKS, SDXL_BLOCKS, ModelTree
from resolve_helpers import (
    BLOCK_COUNTS,
    FAMILY,
    MODELS,
    NAMINGS,
    block_counts,
    ref_block,
    ref_diffusers_to_ldm,
    ref_ldm_to_diffusers,
    ref_openclip_to_hf,
    ref_targets,
    up_blocks_with_attention,
)

# The inventories were packaged from the WebUI module dumps kept beside the project; tests read
# nothing outside the repository unless pointed there: LYCORIS_SHARED_FIXTURES=<folder>.
FIXTURES = os.environ.get("LYCORIS_SHARED_FIXTURES", "")
FIXTURE_FILE = {"sd15": "a1111_sd15_modules.json", "sd2": "a1111_sd21_modules.json", "sdxl": "a1111_sdxl_modules.json"}


@pytest.fixture(scope="module")
def trees():
    return {(m, n): model_tree(m, n) for m in MODELS for n in NAMINGS}


# ----------------------------------------------------------------- inventories

@pytest.mark.parametrize("model", MODELS)
def test_packaged_inventory_is_the_shared_fixture(model):
    path = os.path.join(FIXTURES, FIXTURE_FILE[model])
    if not FIXTURES or not os.path.exists(path):
        pytest.skip("LYCORIS_SHARED_FIXTURES not set")
    with open(path) as f:
        fixture = json.load(f)
    packaged = a1111_rows(model)
    assert list(packaged) == list(fixture)
    for part, rows in fixture.items():
        want = [(r["path"], r["class"], {k: tuple(v) for k, v in r["params"].items()}) for r in rows]
        got = [(p, c, dict(params)) for p, c, params, _ in packaged[part]]
        assert got == want, part
        # The WebUI's own layer name is the path with '_' (plus its part prefix).
        prefix = {"unet": "diffusion_model_", "te": "", "te1": "0_", "te2": "1_"}[part]
        assert all(r["name"] == prefix + r["path"].replace(".", "_") for r in rows)


@pytest.mark.parametrize("model", MODELS)
def test_inventory_target_counts_per_block_match_hand_counts(model):
    # The independent enumeration of the inventory agrees with the hand counts...
    assert block_counts(ref_targets(model)) == BLOCK_COUNTS[model]


@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("model", MODELS)
def test_tree_counts_per_block(trees, model, naming):
    # ...and so does the package's tree, in both namings.
    tree = trees[model, naming]
    assert block_counts(tree.targets) == BLOCK_COUNTS[model]
    assert tree.family == FAMILY[model]
    assert tree.parts == (("unet", "te1", "te2") if model == "sdxl" else ("unet", "te"))
    assert tree.blocks == (SDXL_BLOCKS if model == "sdxl" else SD_BLOCKS)
    # Every UNet block LBW names for the family has layers (BASE is the text encoders).
    unet_blocks = set(BLOCK_COUNTS[model]["unet"]) - {"OTHER"}
    assert unet_blocks == set(tree.blocks) - {"BASE"}


@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("model", MODELS)
def test_every_target_has_its_reference_id_block_and_shape(trees, model, naming):
    tree = trees[model, naming]
    want = {r.tree_id(naming): r for r in ref_targets(model)}
    got = {t.id: t for t in tree.targets}
    assert set(got) == set(want)
    wrong = [(t.label, t.block, want[i].block) for i, t in got.items() if t.block != want[i].block]
    assert wrong == []
    wrong = [(t.label, t.shape, want[i].shape) for i, t in got.items() if tuple(t.shape) != want[i].shape]
    assert wrong == []
    wrong = [(t.label, t.kind, want[i].kind) for i, t in got.items() if t.kind != want[i].kind]
    assert wrong == []


@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("model", MODELS)
def test_no_ambiguous_aliases(trees, model, naming):
    tree = trees[model, naming]
    assert tree.ambiguous == {}
    # and every target is found again under each of its own spellings
    for t in tree.targets:
        for form in tree.forms[t.id]:
            assert tree.lookup(t.part, form, dotted=True) is t, (t.label, form)
            assert tree.lookup(t.part, form.replace(".", "_"), dotted=False) is t, (t.label, form)


# ------------------------------------------------------------------ block IDs

BLOCK_EXAMPLES = [
    # (model, part, A1111 path, param, rows, block)
    ("sd15", "unet", "input_blocks.0.0", "weight", None, "IN00"),
    ("sd15", "unet", "input_blocks.1.0.in_layers.2", "weight", None, "IN01"),
    ("sd15", "unet", "input_blocks.2.1.transformer_blocks.0.attn1.to_q", "weight", None, "IN02"),
    ("sd15", "unet", "input_blocks.3.0.op", "weight", None, "IN03"),
    ("sd15", "unet", "input_blocks.4.1.proj_in", "weight", None, "IN04"),
    ("sd15", "unet", "input_blocks.4.1.transformer_blocks.0.attn2.to_k", "weight", None, "IN04"),
    ("sd15", "unet", "input_blocks.4.0.skip_connection", "weight", None, "IN04"),
    ("sd15", "unet", "input_blocks.9.0.op", "weight", None, "IN09"),
    ("sd15", "unet", "input_blocks.11.0.out_layers.3", "weight", None, "IN11"),
    ("sd15", "unet", "middle_block.0.emb_layers.1", "weight", None, "M00"),
    ("sd15", "unet", "middle_block.1.transformer_blocks.0.ff.net.0.proj", "weight", None, "M00"),
    ("sd15", "unet", "middle_block.2.out_layers.0", "weight", None, "M00"),
    ("sd15", "unet", "output_blocks.0.0.skip_connection", "weight", None, "OUT00"),
    ("sd15", "unet", "output_blocks.2.1.conv", "weight", None, "OUT02"),
    ("sd15", "unet", "output_blocks.5.2.conv", "weight", None, "OUT05"),
    ("sd15", "unet", "output_blocks.8.2.conv", "weight", None, "OUT08"),
    ("sd15", "unet", "output_blocks.11.1.proj_out", "weight", None, "OUT11"),
    ("sd15", "unet", "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0", "weight", None, "OUT11"),
    ("sd15", "unet", "time_embed.0", "weight", None, OTHER),
    ("sd15", "unet", "time_embed.2", "weight", None, OTHER),
    ("sd15", "unet", "out.0", "weight", None, OTHER),
    ("sd15", "unet", "out.2", "weight", None, OTHER),
    ("sd15", "te", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, BASE),
    ("sd15", "te", "transformer.text_model.encoder.layers.11.mlp.fc2", "weight", None, BASE),
    ("sd15", "te", "transformer.text_model.final_layer_norm", "weight", None, BASE),
    ("sd2", "unet", "input_blocks.1.1.proj_in", "weight", None, "IN01"),
    ("sd2", "unet", "input_blocks.7.1.transformer_blocks.0.attn2.to_v", "weight", None, "IN07"),
    ("sd2", "unet", "output_blocks.9.1.proj_out", "weight", None, "OUT09"),
    ("sd2", "te", "model.transformer.resblocks.0.attn", "in_proj_weight", (0, 1024), BASE),
    ("sd2", "te", "model.transformer.resblocks.23.attn", "in_proj_weight", (2048, 3072), BASE),
    ("sd2", "te", "model.transformer.resblocks.5.ln_2", "weight", None, BASE),
    ("sd2", "te", "model", "text_projection", None, BASE),
    ("sd2", "te", "model.ln_final", "weight", None, BASE),
    ("sdxl", "unet", "input_blocks.0.0", "weight", None, "IN00"),
    ("sdxl", "unet", "input_blocks.2.0.emb_layers.1", "weight", None, "IN02"),
    ("sdxl", "unet", "input_blocks.3.0.op", "weight", None, "IN03"),
    ("sdxl", "unet", "input_blocks.4.1.transformer_blocks.1.attn2.to_k", "weight", None, "IN04"),
    ("sdxl", "unet", "input_blocks.6.0.op", "weight", None, "IN06"),
    ("sdxl", "unet", "input_blocks.7.1.transformer_blocks.9.ff.net.2", "weight", None, "IN07"),
    ("sdxl", "unet", "input_blocks.8.1.proj_out", "weight", None, "IN08"),
    ("sdxl", "unet", "middle_block.1.transformer_blocks.9.attn2.to_v", "weight", None, "M00"),
    ("sdxl", "unet", "output_blocks.0.1.transformer_blocks.0.attn1.to_out.0", "weight", None, "OUT00"),
    ("sdxl", "unet", "output_blocks.2.2.conv", "weight", None, "OUT02"),
    ("sdxl", "unet", "output_blocks.5.1.proj_out", "weight", None, "OUT05"),
    ("sdxl", "unet", "output_blocks.5.2.conv", "weight", None, "OUT05"),
    ("sdxl", "unet", "output_blocks.8.0.in_layers.2", "weight", None, "OUT08"),
    ("sdxl", "unet", "output_blocks.8.0.skip_connection", "weight", None, "OUT08"),
    ("sdxl", "unet", "output_blocks.8.0.out_layers.3", "weight", None, "OUT08"),
    ("sdxl", "unet", "label_emb.0.0", "weight", None, OTHER),
    ("sdxl", "unet", "label_emb.0.2", "weight", None, OTHER),
    ("sdxl", "unet", "time_embed.2", "weight", None, OTHER),
    ("sdxl", "unet", "out.2", "weight", None, OTHER),
    ("sdxl", "te1", "transformer.text_model.encoder.layers.11.self_attn.out_proj", "weight", None, BASE),
    ("sdxl", "te2", "model.transformer.resblocks.31.mlp.c_fc", "weight", None, BASE),
    ("sdxl", "te2", "model.transformer.resblocks.31.attn", "in_proj_weight", (1280, 2560), BASE),
    ("sdxl", "te2", "model", "text_projection", None, BASE),
]


@pytest.mark.parametrize("model,part,path,param,rows,block", BLOCK_EXAMPLES,
                         ids=[f"{m}-{pt}-{p}-{r}" for m, pt, p, _, r, _ in BLOCK_EXAMPLES])
def test_block_examples(trees, model, part, path, param, rows, block):
    tree = trees[model, "a1111"]
    assert tree.by_id[(part, path, param, rows, None)].block == block
    if part == "unet":
        assert ldm_block(path) == block
        # The same layer in the diffusers-named tree is in the same block.
        diff = ref_ldm_to_diffusers(path, FAMILY[model])
        assert trees[model, "diffusers"].by_id[("unet", diff, "weight", None, None)].block == block


DIFFUSERS_BLOCK_EXAMPLES = [
    ("sd15", "conv_in", "IN00"),
    ("sd15", "down_blocks.0.resnets.1.conv2", "IN02"),
    ("sd15", "down_blocks.0.downsamplers.0.conv", "IN03"),
    ("sd15", "down_blocks.1.attentions.0.proj_in", "IN04"),
    ("sd15", "down_blocks.3.resnets.1.time_emb_proj", "IN11"),
    ("sd15", "mid_block.resnets.0.conv1", "M00"),
    ("sd15", "mid_block.attentions.0.transformer_blocks.0.attn1.to_q", "M00"),
    ("sd15", "mid_block.resnets.1.norm2", "M00"),
    ("sd15", "up_blocks.0.resnets.2.conv_shortcut", "OUT02"),
    ("sd15", "up_blocks.0.upsamplers.0.conv", "OUT02"),
    ("sd15", "up_blocks.2.upsamplers.0.conv", "OUT08"),
    ("sd15", "up_blocks.3.attentions.2.proj_out", "OUT11"),
    ("sd15", "time_embedding.linear_1", OTHER),
    ("sd15", "conv_norm_out", OTHER),
    ("sd15", "conv_out", OTHER),
    ("sdxl", "down_blocks.1.attentions.1.transformer_blocks.1.ff.net.2", "IN05"),
    ("sdxl", "down_blocks.1.downsamplers.0.conv", "IN06"),
    ("sdxl", "up_blocks.0.upsamplers.0.conv", "OUT02"),
    ("sdxl", "up_blocks.1.upsamplers.0.conv", "OUT05"),
    ("sdxl", "up_blocks.2.resnets.2.conv2", "OUT08"),
    ("sdxl", "add_embedding.linear_1", OTHER),
    ("sdxl", "add_embedding.linear_2", OTHER),
]


@pytest.mark.parametrize("model,path,block", DIFFUSERS_BLOCK_EXAMPLES)
def test_block_examples_diffusers_names(trees, model, path, block):
    assert trees[model, "diffusers"].by_id[("unet", path, "weight", None, None)].block == block


@pytest.mark.parametrize("model", MODELS)
def test_ldm_block_of_every_unet_module_path(model):
    # Containers included: a layer anywhere under input_blocks.N is in INnn.
    rows = a1111_rows(model)["unet"]
    wrong = [(p, ldm_block(p), ref_block(p)) for p, *_ in rows if ldm_block(p) != ref_block(p)]
    assert wrong == []
    assert ldm_block(None) == OTHER and ldm_block("") == OTHER


@pytest.mark.parametrize("model", MODELS)
def test_text_encoder_layers_are_all_base(trees, model):
    for naming in NAMINGS:
        te = [t for t in trees[model, naming].targets if t.part != "unet"]
        assert te and {t.block for t in te} == {BASE}


# ---------------------------------------------------------- ldm <-> diffusers

@pytest.mark.parametrize("model", MODELS)
def test_ldm_diffusers_round_trip_every_weight_module(model):
    fam = FAMILY[model]
    up_attn = up_blocks_with_attention(fam)
    checked = 0
    for path, cls, params, _ in a1111_rows(model)["unet"]:
        if "weight" not in params:
            continue
        diff = ref_ldm_to_diffusers(path, fam)
        assert diff is not None, path
        assert ldm_to_diffusers(path) == diff, path
        assert diffusers_to_ldm(diff, lambda i: i in up_attn) == path, diff
        assert ref_diffusers_to_ldm(diff, fam) == path  # the reference is consistent too
        checked += 1
    assert checked == {"sd15": 391, "sd2": 391, "sdxl": 1050}[model]


@pytest.mark.parametrize("model", MODELS)
def test_diffusers_rows_are_the_mapped_a1111_rows(model):
    fam = FAMILY[model]
    want = {ref_ldm_to_diffusers(p, fam): tuple(params["weight"])
            for p, c, params, _ in a1111_rows(model)["unet"] if "weight" in params}
    got = {p: tuple(params["weight"]) for p, c, params, _ in diffusers_rows(model)["unet"] if "weight" in params}
    assert got == want


UPSAMPLERS = [
    # (family, ldm, diffusers)
    ("sd1", "output_blocks.2.1.conv", "up_blocks.0.upsamplers.0.conv"),
    ("sd1", "output_blocks.5.2.conv", "up_blocks.1.upsamplers.0.conv"),
    ("sd1", "output_blocks.8.2.conv", "up_blocks.2.upsamplers.0.conv"),
    ("sdxl", "output_blocks.2.2.conv", "up_blocks.0.upsamplers.0.conv"),
    ("sdxl", "output_blocks.5.2.conv", "up_blocks.1.upsamplers.0.conv"),
]


@pytest.mark.parametrize("family,ldm,diff", UPSAMPLERS)
def test_upsampler_index_depends_on_attention(family, ldm, diff):
    up_attn = up_blocks_with_attention(family)
    assert ldm_to_diffusers(ldm) == diff
    assert diffusers_to_ldm(diff, lambda i: i in up_attn) == ldm


def test_upsampler_of_sdxl_up_block_0_is_output_blocks_2_2(trees):
    # The one index where SDXL differs from the SD1 pattern (A1111 gets it wrong).
    xl = trees["sdxl", "a1111"]
    assert ("unet", "output_blocks.2.2.conv", "weight", None, None) in xl.by_id
    assert ("unet", "output_blocks.2.1.conv", "weight", None, None) not in xl.by_id
    assert xl.lookup("unet", "up_blocks_0_upsamplers_0_conv", dotted=False).path == "output_blocks.2.2.conv"
    sd = trees["sd15", "a1111"]
    assert sd.lookup("unet", "up_blocks_0_upsamplers_0_conv", dotted=False).path == "output_blocks.2.1.conv"
    assert trees["sdxl", "diffusers"].lookup("unet", "output_blocks_2_2_conv", dotted=False).path == "up_blocks.0.upsamplers.0.conv"


MAPPING_EXAMPLES = [
    ("input_blocks.0.0", "conv_in"),
    ("input_blocks.1.0.in_layers.0", "down_blocks.0.resnets.0.norm1"),
    ("input_blocks.1.0.in_layers.2", "down_blocks.0.resnets.0.conv1"),
    ("input_blocks.1.0.emb_layers.1", "down_blocks.0.resnets.0.time_emb_proj"),
    ("input_blocks.1.0.out_layers.0", "down_blocks.0.resnets.0.norm2"),
    ("input_blocks.1.0.out_layers.3", "down_blocks.0.resnets.0.conv2"),
    ("input_blocks.4.0.skip_connection", "down_blocks.1.resnets.0.conv_shortcut"),
    ("input_blocks.4.1.proj_in", "down_blocks.1.attentions.0.proj_in"),
    ("input_blocks.5.1.transformer_blocks.0.attn1.to_out.0", "down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0"),
    ("input_blocks.3.0.op", "down_blocks.0.downsamplers.0.conv"),
    ("input_blocks.9.0.op", "down_blocks.2.downsamplers.0.conv"),
    ("input_blocks.11.0.in_layers.2", "down_blocks.3.resnets.1.conv1"),
    ("middle_block.0.in_layers.2", "mid_block.resnets.0.conv1"),
    ("middle_block.1.proj_out", "mid_block.attentions.0.proj_out"),
    ("middle_block.2.out_layers.3", "mid_block.resnets.1.conv2"),
    ("output_blocks.0.0.skip_connection", "up_blocks.0.resnets.0.conv_shortcut"),
    ("output_blocks.4.1.norm", "up_blocks.1.attentions.1.norm"),
    ("output_blocks.11.1.transformer_blocks.0.norm3", "up_blocks.3.attentions.2.transformer_blocks.0.norm3"),
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("label_emb.0.0", "add_embedding.linear_1"),
    ("label_emb.0.2", "add_embedding.linear_2"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
]


@pytest.mark.parametrize("ldm,diff", MAPPING_EXAMPLES)
def test_mapping_examples(ldm, diff):
    assert ldm_to_diffusers(ldm) == diff
    assert diffusers_to_ldm(diff, lambda i: i in (1, 2, 3)) == ldm


@pytest.mark.parametrize("path", ["", "foo.bar", "input_blocks", "middle_block.7.x", "output_blocks.x.1"])
def test_unknown_paths_map_to_none(path):
    assert ldm_to_diffusers(path) is None


@pytest.mark.parametrize("path", ["", "foo.bar", "down_blocks", "mid_block.norms.0", "text_model.encoder"])
def test_unknown_diffusers_paths_map_to_none(path):
    assert diffusers_to_ldm(path, lambda i: True) is None


# ------------------------------------------------------------- OpenCLIP -> HF

OPENCLIP_EXAMPLES = [
    ("transformer.resblocks.0.attn.out_proj", "text_model.encoder.layers.0.self_attn.out_proj"),
    ("transformer.resblocks.3.ln_1", "text_model.encoder.layers.3.layer_norm1"),
    ("transformer.resblocks.3.ln_2", "text_model.encoder.layers.3.layer_norm2"),
    ("transformer.resblocks.22.mlp.c_fc", "text_model.encoder.layers.22.mlp.fc1"),
    ("transformer.resblocks.31.mlp.c_proj", "text_model.encoder.layers.31.mlp.fc2"),
    ("transformer.resblocks.7.attn", "text_model.encoder.layers.7.self_attn"),
    ("ln_final", "text_model.final_layer_norm"),
    ("token_embedding", "text_model.embeddings.token_embedding"),
    ("transformer.resblocks.7.mlp", None),
    ("transformer", None),
    ("positional_embedding", None),
]


@pytest.mark.parametrize("openclip,hf", OPENCLIP_EXAMPLES)
def test_openclip_to_hf_examples(openclip, hf):
    assert openclip_to_hf(openclip) == hf


@pytest.mark.parametrize("model,part", [("sd2", "te"), ("sdxl", "te2")])
def test_openclip_to_hf_every_weight_module(model, part):
    n = 0
    for path, cls, params, _ in a1111_rows(model)[part]:
        inner = path[len("model."):] if path.startswith("model.") else path
        if "weight" in params and "Embedding" not in cls:
            assert openclip_to_hf(inner) == ref_openclip_to_hf(inner), path
            n += 1
    layers = 24 if model == "sd2" else 32
    assert n == layers * 5 + 1  # out_proj, ln_1, ln_2, c_fc, c_proj per layer + ln_final


def test_hf_forms_both_spellings():
    assert hf_forms("text_model.encoder.layers.0.self_attn.q_proj") == [
        "text_model.encoder.layers.0.self_attn.q_proj", "encoder.layers.0.self_attn.q_proj"]
    assert hf_forms("encoder.layers.0.mlp.fc1") == ["encoder.layers.0.mlp.fc1", "text_model.encoder.layers.0.mlp.fc1"]


# ------------------------------------------------------------------- key_for

KEY_FOR = [
    # kohya writes diffusers bodies for SD1/SD2 UNets, sgm bodies for SDXL
    ("sd15", "a1111", ("unet", "input_blocks.4.1.proj_in", "weight", None, None), "lora_unet_down_blocks_1_attentions_0_proj_in"),
    ("sd15", "diffusers", ("unet", "up_blocks.0.upsamplers.0.conv", "weight", None, None), "lora_unet_up_blocks_0_upsamplers_0_conv"),
    ("sd2", "a1111", ("unet", "middle_block.1.transformer_blocks.0.attn2.to_k", "weight", None, None),
     "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"),
    ("sdxl", "a1111", ("unet", "input_blocks.4.1.proj_in", "weight", None, None), "lora_unet_input_blocks_4_1_proj_in"),
    ("sdxl", "diffusers", ("unet", "up_blocks.0.upsamplers.0.conv", "weight", None, None), "lora_unet_output_blocks_2_2_conv"),
    ("sd15", "a1111", ("te", "transformer.text_model.encoder.layers.3.mlp.fc1", "weight", None, None),
     "lora_te_text_model_encoder_layers_3_mlp_fc1"),
    ("sd2", "a1111", ("te", "model.transformer.resblocks.3.attn", "in_proj_weight", (1024, 2048), None),
     "lora_te_text_model_encoder_layers_3_self_attn_k_proj"),
    ("sd2", "a1111", ("te", "model.transformer.resblocks.3.mlp.c_proj", "weight", None, None),
     "lora_te_text_model_encoder_layers_3_mlp_fc2"),
    ("sdxl", "a1111", ("te1", "transformer.text_model.encoder.layers.0.self_attn.q_proj", "weight", None, None),
     "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"),
    ("sdxl", "a1111", ("te2", "model.transformer.resblocks.31.attn", "in_proj_weight", (2560, 3840), None),
     "lora_te2_text_model_encoder_layers_31_self_attn_v_proj"),
    ("sdxl", "a1111", ("te2", "model", "text_projection", None, None), "lora_te2_text_projection"),
]


@pytest.mark.parametrize("model,naming,tid,key", KEY_FOR)
def test_key_for(trees, model, naming, tid, key):
    assert trees[model, naming].key_for(trees[model, naming].by_id[tid]) == key


# ------------------------------------------- against real diffusers/transformers

def _real_diffusers_parts(model):
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet_cfg = {
        "sd15": dict(cross_attention_dim=768, attention_head_dim=8),
        "sd2": dict(cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True),
        "sdxl": dict(cross_attention_dim=2048, attention_head_dim=(5, 10, 20), use_linear_projection=True,
                     block_out_channels=(320, 640, 1280),
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                     transformer_layers_per_block=(1, 2, 10), addition_embed_type="text_time",
                     addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
    }[model]
    clip_l = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    with torch.device("meta"):
        parts = {"unet": UNet2DConditionModel(**unet_cfg)}
        if model == "sd15":
            parts["te"] = CLIPTextModel(CLIPTextConfig(**clip_l))
        elif model == "sd2":
            parts["te"] = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                       num_attention_heads=16, hidden_act="gelu"))
        else:
            parts["te1"] = CLIPTextModel(CLIPTextConfig(**clip_l))
            parts["te2"] = CLIPTextModelWithProjection(CLIPTextConfig(
                hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                hidden_act="gelu", projection_dim=1280))
    return parts


@pytest.mark.parametrize("model", MODELS)
def test_diffusers_inventory_equals_real_diffusers_and_transformers_models(model):
    """The derived diffusers-named inventory is what UNet2DConditionModel and
    transformers' CLIP text models really hold (built on the meta device)."""
    real = ModelTree(_real_diffusers_parts(model), "diffusers")
    inv = model_tree(model, "diffusers")
    assert real.family == FAMILY[model]

    def norm(t):
        # transformers >= 5.6 CLIPTextModel has no text_model. level
        path = t.path[len("text_model."):] if t.path.startswith("text_model.") else t.path
        return (t.part, path, tuple(t.shape), t.block, t.kind)

    want = Counter(map(norm, inv.targets))
    if model == "sd2":
        # A1111's OpenCLIP tower has a text projection; diffusers' SD2 CLIPTextModel has none.
        assert want.pop(("te", "text_projection", (1024, 1024), BASE, "linear")) == 1
    assert Counter(map(norm, real.targets)) == want
