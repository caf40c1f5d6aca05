"""diffusers/PEFT files at their trained strength (issue 13, point 2).

Files are written by diffusers' own ``save_lora_weights`` with the adapter
metadata diffusers-based trainers store (``lora_alpha = 2r``, rsLoRA,
``rank_pattern``/``alpha_pattern``, DoRA), on tiny SD1.5- and SDXL-shaped
models built from configs. The change this project merges must equal what
diffusers' own loader (``load_lora_weights`` + ``fuse_lora``) makes, and what
the PEFT model that wrote the file computes, within 1e-5 in float32.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext import NetworkFileError
from lycoris_ext.peft_metadata import METADATA_KEY, SOURCE_DEFAULT, SOURCE_METADATA, SOURCE_TENSOR, pattern_key
from lycoris_ext.resolve import FITS, resolve
from lycoris_ext.summary import format_summary, summarize
from peft_support import (
    FAMILY,
    PARTS,
    TE_TARGETS,
    UNET_ATTN,
    ModelTree,
    build_models,
    compare,
    diffusers_weights,
    original_weights,
    our_weights,
    trained_weights,
    write_diffusers_file,
)

TOL = 1e-5
UNET_CONV = ["conv1", "conv2", "conv_shortcut", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "time_emb_proj"]

CASES = {
    # the diffusers training scripts: `.lora.down/up` keys (convert_state_dict_to_diffusers), alpha = 2r
    "sd15-alpha2r": ("sd15", {"unet": dict(r=4, lora_alpha=8, target_modules=UNET_ATTN),
                              "text_encoder": dict(r=4, lora_alpha=8, target_modules=TE_TARGETS)}, True),
    # rsLoRA, PEFT's own lora_A/lora_B keys, convs too
    "sd15-rslora": ("sd15", {"unet": dict(r=8, lora_alpha=4, use_rslora=True, target_modules=UNET_ATTN + UNET_CONV),
                             "text_encoder": dict(r=4, lora_alpha=2, use_rslora=True, target_modules=TE_TARGETS)}, False),
    # rank_pattern / alpha_pattern: plain names, dotted suffixes, a regular expression and an anchored full name
    "sd15-patterns": ("sd15", {"unet": dict(r=4, lora_alpha=8, target_modules=UNET_ATTN + ["conv1", "proj_in"],
                                            rank_pattern={"to_k": 2, r"up_blocks\.1.*attn2\.to_q": 6, "conv1": 3},
                                            alpha_pattern={"attn1.to_v": 3, "^mid_block.attentions.0.proj_in": 1.5, "conv1": 12}),
                               "text_encoder": dict(r=4, lora_alpha=4, target_modules=TE_TARGETS,
                                                    rank_pattern={"layers.1.self_attn.q_proj": 2}, alpha_pattern={"v_proj": 16})}, False),
    # SDXL: three parts, three configs (attention only: with convs too, diffusers' loader reads
    # no `.lora.down` key of a converted file whose first key is a conv's `lora_A`)
    "sdxl-three-parts": ("sdxl", {"unet": dict(r=4, lora_alpha=8, target_modules=UNET_ATTN, rank_pattern={"to_k": 2},
                                               alpha_pattern={"attn2.to_v": 1}),
                                  "text_encoder": dict(r=4, lora_alpha=1, target_modules=TE_TARGETS),
                                  "text_encoder_2": dict(r=2, lora_alpha=6, use_rslora=True, target_modules=TE_TARGETS)}, True),
    # SimpleTuner (save_hooks): the UNet's PEFT state dict as it is, the text encoders' converted
    # (`lora_linear_layer`), `_collate_lora_metadata` for every part
    "sdxl-simpletuner": ("sdxl", {"unet": dict(r=8, lora_alpha=16, target_modules=UNET_ATTN + ["conv1", "conv2", "proj_in", "proj_out"]),
                                  "text_encoder": dict(r=8, lora_alpha=8, target_modules=TE_TARGETS),
                                  "text_encoder_2": dict(r=8, lora_alpha=4, target_modules=TE_TARGETS)}, ("text_encoder", "text_encoder_2")),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("peft")
    cache = {}

    def get(case):
        if case not in cache:
            model, configs, convert = CASES[case]
            sub = d / case
            sub.mkdir()
            cache[case] = write_diffusers_file(sub, model, configs, convert=convert)
        return cache[case]

    return get


def expected_scale(configs, part, name):
    """alpha / r (alpha / sqrt r with rsLoRA), patterns by PEFT's rule, computed here from the configs."""
    cfg = configs[part]
    r = next((v for k, v in cfg.get("rank_pattern", {}).items() if pattern_key({k: v}, name)), cfg["r"])
    a = next((v for k, v in cfg.get("alpha_pattern", {}).items() if pattern_key({k: v}, name)), cfg["lora_alpha"])
    return a / math.sqrt(r) if cfg.get("use_rslora") else a / r


@pytest.mark.parametrize("case", list(CASES))
def test_scale_from_adapter_metadata(written, case):
    model, configs, _ = CASES[case]
    net = lycoris_ext.load_network(written(case).path)
    assert net.scale_sources == {SOURCE_METADATA: len(net.modules)}
    assert net.warnings == []
    assert set(net.adapter_metadata) == set(configs)
    scales = set()
    for key, a in net.modules.items():
        part, name = key.split(".", 1)
        want = expected_scale(configs, part, name)
        assert a.scale == pytest.approx(want, rel=1e-12), key
        scales.add(round(a.scale, 6))
    assert scales != {1.0}
    tree = ModelTree({PARTS[model][c]: m for c, m in build_models(model).items()}, "diffusers", family=FAMILY[model])
    res = resolve(net, tree)
    assert res.verdict == FITS and not res.unmatched and not res.mismatched


@pytest.mark.parametrize("multiplier", [1.0, 0.5])
@pytest.mark.parametrize("case", list(CASES))
def test_change_equals_diffusers_loader(written, case, multiplier):
    model = CASES[case][0]
    w = written(case)
    net = lycoris_ext.load_network(w.path)
    orig = original_weights(model)
    err, changed = compare(our_weights(net, model, multiplier), diffusers_weights(w.path, model, multiplier), orig)
    assert changed == len(net.modules)
    assert err < TOL, f"{case} at {multiplier}: max |ours - diffusers| = {err:.3g}"
    if multiplier == 1.0:
        err_t, _ = compare(our_weights(net, model, 1.0), w.trained, orig)
        assert err_t < TOL, f"{case}: max |ours - PEFT's trained model| = {err_t:.3g}"


def test_bypass_equals_merge_for_metadata_scale(written):
    """The scale is the adapter's, so the forward hooks use it too."""
    w = written("sd15-rslora")
    net = lycoris_ext.load_network(w.path)
    models = build_models("sd15")
    parts = {PARTS["sd15"][c]: m for c, m in models.items()}
    from lycoris_ext.runtime import Runtime, Use

    rt = Runtime(ModelTree(parts, "diffusers", family="sd1"), mode="bypass")
    rt.set([Use(net)])
    x = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
    attn = models["unet"].down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    hooked = attn(x)
    merged = our_weights(net, "sd15")["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"]
    assert (hooked - x @ merged.T).abs().max().item() < TOL


def _rewrite(src, dst, tensors=None, metadata=None):
    with safe_open(str(src), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        md = dict(f.metadata() or {})
    sd.update(tensors or {})
    if metadata is not None:
        md = metadata(md)
    save_file(sd, str(dst), metadata=md)
    return dst


def test_alpha_tensor_wins_over_metadata(written, tmp_path):
    w = written("sd15-alpha2r")
    net0 = lycoris_ext.load_network(w.path)
    key = next(k for k in net0.modules if k.startswith("unet."))
    path = _rewrite(w.path, tmp_path / "both.safetensors", {f"{key}.alpha": torch.tensor(2.0)})
    net = lycoris_ext.load_network(path)
    a = net.modules[key]
    assert (a.scale_source, a.alpha, a.scale) == (SOURCE_TENSOR, 2.0, 0.5)
    others = {k: m.scale_source for k, m in net.modules.items() if k != key}
    assert set(others.values()) == {SOURCE_METADATA}
    assert net.scale_sources == {SOURCE_TENSOR: 1, SOURCE_METADATA: len(net.modules) - 1}


def test_without_metadata_scale_one_as_diffusers_and_a_warning(written, tmp_path):
    w = written("sd15-alpha2r")
    path = _rewrite(w.path, tmp_path / "bare.safetensors", metadata=lambda md: {"format": "pt"})
    net = lycoris_ext.load_network(path)
    assert net.scale_sources == {SOURCE_DEFAULT: len(net.modules)}
    assert {a.scale for a in net.modules.values()} == {1.0}
    assert len(net.warnings) == 1 and METADATA_KEY in net.warnings[0]
    # diffusers' loader without metadata: lora_alpha = r, the same scale 1
    orig = original_weights("sd15")
    err, _ = compare(our_weights(net, "sd15"), diffusers_weights(path, "sd15"), orig)
    assert err < TOL
    # and that is half of the trained strength: what the metadata is for
    err_trained, _ = compare(our_weights(net, "sd15"), w.trained, orig)
    assert err_trained > 100 * TOL
    s = summarize(net)
    assert s["scale_sources"] == {SOURCE_DEFAULT: len(net.modules)}
    assert METADATA_KEY in format_summary(s)


def test_kohya_style_file_without_alpha_gives_no_warning(tmp_path):
    g = torch.Generator().manual_seed(0)
    save_file({"lora_unet_x.lora_up.weight": torch.randn(8, 2, generator=g), "lora_unet_x.lora_down.weight": torch.randn(2, 8, generator=g)},
              str(tmp_path / "k.safetensors"))
    net = lycoris_ext.load_network(tmp_path / "k.safetensors")
    assert net.scale_sources == {SOURCE_DEFAULT: 1} and net.warnings == []


def test_inspect_reports_sources_and_metadata(written):
    net = lycoris_ext.load_network(written("sdxl-three-parts").path)
    s = summarize(net)
    assert s["scale_sources"] == {SOURCE_METADATA: len(net.modules)}
    assert s["adapter_metadata"]["text_encoder_2"] == {"r": 2, "lora_alpha": 6.0, "use_rslora": True}
    assert s["adapter_metadata"]["unet"]["rank_pattern"] == {"to_k": 2}
    json.dumps(s)
    text = format_summary(s)
    assert "scale from:  adapter metadata (" in text
    assert "text_encoder_2: r 2, lora_alpha 6, rsLoRA" in text


# ------------------------------------------------------------ PEFT's matching


NAMES = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k_extra",
    "mid_block.attentions.0.proj_in",
    "up_blocks.1.attentions.0.proj_in",
    "encoder.layers.1.self_attn.q_proj",
    "text_model.encoder.layers.11.self_attn.q_proj",
    "xto_k",
]
PATTERNS = [
    {"to_k": 2},
    {"attn1.to_k": 2, "to_k": 3},
    {"to_k": 3, "attn1.to_k": 2},
    {"^mid_block.attentions.0.proj_in": 5},
    {r"up_blocks\.\d+\.attentions\.0\.proj_in": 1},
    {"layers.1.self_attn.q_proj": 4},
    {r"layers\.(1|11)\.self_attn\..*": 7},
    {"proj": 9},
    {"k": 1},
]


@pytest.mark.parametrize("patterns", PATTERNS, ids=[",".join(p) for p in PATTERNS])
def test_pattern_matching_is_peft_s(patterns):
    from peft.utils.other import get_pattern_key

    for name in NAMES:
        theirs = get_pattern_key(list(patterns), name)
        ours = pattern_key(patterns, name)
        assert (ours if ours is not None else name) == theirs, (patterns, name)


# ----------------------------------------------------------------- bad input


def _bad(tmp_path, written, meta_fn, name="bad.safetensors"):
    path = _rewrite(written("sd15-patterns").path, tmp_path / name, metadata=meta_fn)
    with pytest.raises(NetworkFileError) as e:
        lycoris_ext.load_network(path)
    assert str(path) in str(e.value)
    return e.value


def _edit(field, value):
    def f(md):
        data = json.loads(md[METADATA_KEY])
        data[field] = value
        return {**md, METADATA_KEY: json.dumps(data)}
    return f


@pytest.mark.parametrize("field,value,words", [
    ("unet.lora_alpha", "eight", "not a number"),
    ("unet.r", 2.5, "not a positive whole number"),
    ("unet.r", 0, "not a positive whole number"),
    ("text_encoder.use_rslora", "yes", "not true or false"),
    ("unet.rank_pattern", ["to_k"], "not an object"),
    ("unet.alpha_pattern", {"to_k": "x"}, "not a number"),
    ("unet.rank_pattern", {"to_k(": 2}, "not a valid regular expression"),
    ("unet.alpha_pattern", {"(a+)+b": 2}, "repeats a repeated group"),
    ("unet.alpha_pattern", {"x" * 501: 2}, "longer than 500"),
])
def test_bad_metadata_values_name_file_and_field(tmp_path, written, field, value, words):
    err = _bad(tmp_path, written, _edit(field, value))
    assert field in err.key and words in err.reason


def test_metadata_not_json(tmp_path, written):
    err = _bad(tmp_path, written, lambda md: {**md, METADATA_KEY: "{not json"})
    assert err.key == f"__metadata__.{METADATA_KEY}" and "JSON" in err.reason


def test_rank_disagreeing_with_tensors_is_refused(tmp_path, written):
    err = _bad(tmp_path, written, _edit("unet.rank_pattern", {"to_k": 3}))
    assert err.key.endswith("to_k.lora_A.weight") and "unet.rank_pattern" in err.reason and "rank 3" in err.reason


def test_model_level_save_lora_adapter(tmp_path):
    """``UNet2DConditionModel.save_lora_adapter``: keys and metadata without a
    part prefix. (diffusers 0.42.1's model-level ``load_lora_adapter(path)``
    does not read that metadata and applies scale 1; the reference here is the
    PEFT model that wrote the file.)"""
    from peft import LoraConfig

    models = build_models("sd15")
    unet = models["unet"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=12, use_rslora=True, init_lora_weights=False, target_modules=UNET_ATTN + ["conv1"]))
    unet.save_lora_adapter(str(tmp_path))
    net = lycoris_ext.load_network(next(tmp_path.glob("*.safetensors")))
    assert set(net.adapter_metadata) == {None} and net.scale_sources == {SOURCE_METADATA: len(net.modules)}
    assert all(a.scale == pytest.approx(12 / 2) for a in net.modules.values())
    err, changed = compare(our_weights(net, "sd15"), trained_weights(models), original_weights("sd15"))
    assert changed == len(net.modules) and err < TOL
