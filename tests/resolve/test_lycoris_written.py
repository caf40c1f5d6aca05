"""Files written by lycoris-lora 4.1.3 itself, for diffusers/transformers models.

Tiny ``UNet2DConditionModel``s with SD1's and SDXL's block layouts (real
module names, small widths) and tiny transformers CLIP text models are wrapped
with ``lycoris.create_lycoris`` (keys ``lycoris_*``) and with
``lycoris.kohya.LycorisNetworkKohya`` (keys ``lora_unet_*`` / ``lora_te*_*``),
saved with the library's own ``save_weights`` and resolved: every key must land
on exactly the module the library wrapped. The kohya-style files must also
resolve, block for block, on the A1111-named twin of the same architecture.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter

import pytest
import torch

warnings.filterwarnings("ignore")
logging.getLogger("lycoris").setLevel(logging.ERROR)

from diffusers import UNet2DConditionModel  # noqa: E402
from lycoris import create_lycoris  # noqa: E402
from lycoris.kohya import LycorisNetworkKohya  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

try:
    from transformers.utils import logging as hf_logging  # noqa: E402

    hf_logging.set_verbosity_error()
except Exception:  # pragma: no cover
    pass

import lycoris_ext  # noqa: E402
from lycoris_ext.resolve import FITS, ModelTree, resolve  # noqa: E402
from lycoris_ext.resolve.inventory import model_tree  # noqa: E402
from resolve_helpers import (  # noqa: E402
    BLOCK_COUNTS,
    FAMILY,
    MODELS,
    block_counts,
    ref_block,
    ref_diffusers_to_ldm,
    ref_targets,
    u,
    write,
)

# SD1's and SDXL's exact block layouts (so the per-block counts are the real
# models'), with every width small (powers of two, as BOFT needs).
SD_UNET = dict(sample_size=8, block_out_channels=(16, 32, 64, 64), layers_per_block=2, cross_attention_dim=24,
               attention_head_dim=4, norm_num_groups=8)
XL_UNET = dict(sample_size=8, block_out_channels=(16, 32, 64), layers_per_block=2, cross_attention_dim=24,
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
               transformer_layers_per_block=(1, 2, 10), attention_head_dim=4, norm_num_groups=8,
               use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
               projection_class_embeddings_input_dim=8 * 6 + 16)
_CLIP = dict(vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, num_attention_heads=4)


def clip_l():
    return CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, **_CLIP))


def clip_g():
    # SDXL's te2 (and the width differs from te1's, as 768 vs 1280 do)
    return CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                      projection_dim=16, **_CLIP))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    sd = {"unet": UNet2DConditionModel(**SD_UNET), "te": clip_l()}
    xl = {"unet": UNet2DConditionModel(**XL_UNET), "te1": clip_l(), "te2": clip_g()}
    return {"sd15": sd, "sdxl": xl}


@pytest.fixture(scope="module")
def diffusers_trees(models):
    return {m: ModelTree(parts, "diffusers", family=FAMILY[m]) for m, parts in models.items()}


def randomize(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


# ------------------------------------------------------------ LyCORIS wrapper

ALGOS = [
    ("lora", {}), ("loha", {}), ("lokr", {}), ("ia3", {}), ("full", {}), ("diag-oft", {}), ("boft", {}),
    ("glora", {}), ("dora", {"algo": "lora", "dora_wd": True}), ("norm", {"algo": "lora", "train_norm": True}),
]


def wrapper_file(parts: dict, algo: str, kwargs: dict, path) -> dict[str, tuple[str, str, torch.nn.Module]]:
    """One file with a create_lycoris network per part; returns key -> (part, path, module wrapped)."""
    sd, wrapped = {}, {}
    for part, root in parts.items():
        net = create_lycoris(root, 1.0, linear_dim=4, linear_alpha=2, preset="full", **{"algo": algo, **kwargs})
        net.apply_to()
        randomize(net)
        names = {m: n for n, m in root.named_modules()}
        for lora in net.loras:
            mod = lora.org_module[0]
            assert lora.lora_name not in wrapped
            wrapped[lora.lora_name] = (part, names[mod], mod)
        net.save_weights(str(path), torch.float32, {})
        sd.update(load_file(str(path)))
        net.restore()
    write(path, sd)
    return wrapped


@pytest.fixture(scope="module")
def wrapper_files(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("lycoris")
    cache = {}

    def get(model, algo, kwargs):
        if (model, algo) not in cache:
            path = d / f"{model}-{algo}.safetensors"
            wrapped = wrapper_file(models[model], algo, kwargs, path)
            cache[model, algo] = (lycoris_ext.load_network(path), wrapped)
        return cache[model, algo]

    return get


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
@pytest.mark.parametrize("algo,kwargs", ALGOS, ids=[a for a, _ in ALGOS])
def test_wrapper_keys_land_on_the_wrapped_modules(wrapper_files, diffusers_trees, model, algo, kwargs):
    net, wrapped = wrapper_files(model, algo, kwargs)
    # the library's own naming: "lycoris_" + the module path with '_'
    assert all(k == "lycoris_" + u(p) for k, (_, p, _) in wrapped.items())
    assert set(net.modules) == set(wrapped)
    tree = diffusers_trees[model]
    res = resolve(net, tree)
    assert [m.key for m in res.unmatched] == []
    assert [(m.key, m.reason) for m in res.mismatched] == []
    assert res.unknown == []
    assert res.verdict == FITS
    wrong = [(m.key, m.target.label) for m in res.matches
             if (m.target.part, m.target.path) != wrapped[m.key][:2] or m.target.module is not wrapped[m.key][2]]
    assert wrong == []
    assert len(res.matches) == len(wrapped)

    # per block: every Linear/Conv (and, with train_norm, every norm) of each part
    kinds = {"linear", "conv", "norm"} if algo == "norm" else {"linear", "conv"}
    want = block_counts(t for t in tree.targets if t.kind in kinds)
    assert {p: dict(res.matched_blocks(p)) for p in tree.parts} == want
    # which, for the UNet, are the real model's counts (the tiny UNets have its layout)
    inventory = block_counts(t for t in ref_targets(model) if t.kind in kinds and t.part == "unet")["unet"]
    assert want["unet"] == inventory


def test_tiny_unets_have_the_real_block_layout(diffusers_trees):
    for model in ("sd15", "sdxl"):
        tree = diffusers_trees[model]
        assert block_counts(t for t in tree.targets if t.part == "unet")["unet"] == BLOCK_COUNTS[model]["unet"]
        # and every UNet target's block is the one its ldm name gives
        for t in tree.targets:
            if t.part == "unet":
                assert t.block == ref_block(ref_diffusers_to_ldm(t.path, FAMILY[model])), t.path


def test_wrapper_text_encoder_keys_use_transformers5_names(wrapper_files):
    net, wrapped = wrapper_files("sdxl", "lora", {})
    te1 = {k for k, (p, _, _) in wrapped.items() if p == "te1"}
    te2 = {k for k, (p, _, _) in wrapped.items() if p == "te2"}
    # CLIPTextModel lost its text_model level in transformers 5.6; the projection model kept it
    assert "lycoris_encoder_layers_0_self_attn_q_proj" in te1
    assert "lycoris_text_model_encoder_layers_0_self_attn_q_proj" in te2
    assert "lycoris_text_projection" in te2


# ---------------------------------------------------- inpainting (real conv_in)



@pytest.mark.parametrize("algo", ["lora", "full", "loha"])
def test_lycoris_conv_in_on_an_inpainting_unet(wrapper_files, algo):
    net, wrapped = wrapper_files("sd15", algo, {})
    unet9 = UNet2DConditionModel(**{**SD_UNET, "in_channels": 9})
    tree = ModelTree({"unet": unet9, "te": clip_l()}, "diffusers", family="sd1")
    res = resolve(net, tree)
    [m] = [m for m in res.matches if m.key == "lycoris_conv_in"]
    assert m.target.module is unet9.conv_in
    assert m.target.cols == (0, 4)
    assert m.target.shape == (16, 4, 3, 3)


# -------------------------------------------------------- kohya (LycorisNetworkKohya)

@pytest.fixture
def kohya_class_state():
    """LycorisNetworkKohya keeps its targets in class attributes; leave them as found."""
    names = ("UNET_TARGET_REPLACE_MODULE", "UNET_TARGET_REPLACE_NAME", "TEXT_ENCODER_TARGET_REPLACE_MODULE",
             "TEXT_ENCODER_TARGET_REPLACE_NAME", "ENABLE_CONV")
    saved = {n: getattr(LycorisNetworkKohya, n) for n in names}
    # lycoris 4.1.3 targets time_embedding both through its class (TimestepEmbedding)
    # and by name, then asserts on the duplicate name; keep the class route only.
    LycorisNetworkKohya.UNET_TARGET_REPLACE_NAME = ["conv_in", "conv_out"]
    yield
    for n, v in saved.items():
        setattr(LycorisNetworkKohya, n, v)


def kohya_file(parts: dict, algo: str, path) -> dict[str, tuple[str, str, torch.nn.Module]]:
    tes = [parts[p] for p in ("te", "te1", "te2") if p in parts]
    te_parts = [p for p in ("te", "te1", "te2") if p in parts]
    net = LycorisNetworkKohya(tes if len(tes) > 1 else tes[0], parts["unet"], 1.0, lora_dim=4, conv_lora_dim=4,
                              alpha=2, conv_alpha=2, network_module=algo)
    net.apply_to(tes if len(tes) > 1 else tes[0], parts["unet"], True, True)
    randomize(net)
    wrapped = {}
    owners = {}
    for part in ("unet", *te_parts):
        owners.update({m: (part, n) for n, m in parts[part].named_modules()})
    for lora in net.loras:
        mod = lora.org_module[0]
        wrapped[lora.lora_name] = (*owners[mod], mod)
    net.save_weights(str(path), torch.float32, {})
    for lora in net.loras:
        lora.restore()
    return wrapped


def _a1111_twin_rows(parts: dict, family: str) -> dict:
    """The same architecture as A1111 names it: ldm UNet paths, HF CLIP-L under
    'transformer.', and SDXL's te2 as OpenCLIP with a packed in_proj_weight."""
    rows = {}
    unet = []
    for path, mod in parts["unet"].named_modules():
        params = {n: tuple(p.shape) for n, p in mod._parameters.items() if p is not None}
        if "weight" in params:
            ldm = ref_diffusers_to_ldm(path, family)
            assert ldm is not None, path
            unet.append((ldm, type(mod).__name__, params, None))
    rows["unet"] = unet
    for part in ("te", "te1"):
        if part in parts:
            rows[part] = [("transformer." + (p if p.startswith("text_model.") else "text_model." + p) if p else "transformer",
                           type(m).__name__, {n: tuple(x.shape) for n, x in m._parameters.items() if x is not None}, None)
                          for p, m in parts[part].named_modules()]
    if "te2" in parts:
        te2 = parts["te2"]
        te = []
        hidden = te2.config.hidden_size
        for i in range(te2.config.num_hidden_layers):
            r = f"model.transformer.resblocks.{i}"
            te.append((f"{r}.attn", "MultiheadAttention", {"in_proj_weight": (3 * hidden, hidden), "in_proj_bias": (3 * hidden,)}, None))
            te.append((f"{r}.attn.out_proj", "NonDynamicallyQuantizableLinear", {"weight": (hidden, hidden), "bias": (hidden,)}, None))
            te.append((f"{r}.ln_1", "LayerNorm", {"weight": (hidden,), "bias": (hidden,)}, None))
            te.append((f"{r}.ln_2", "LayerNorm", {"weight": (hidden,), "bias": (hidden,)}, None))
            inter = te2.config.intermediate_size
            te.append((f"{r}.mlp.c_fc", "Linear", {"weight": (inter, hidden), "bias": (inter,)}, None))
            te.append((f"{r}.mlp.c_proj", "Linear", {"weight": (hidden, inter), "bias": (hidden,)}, None))
        te.append(("model.ln_final", "LayerNorm", {"weight": (hidden,), "bias": (hidden,)}, None))
        te.append(("model", "CLIP", {"text_projection": (hidden, te2.config.projection_dim)}, None))
        rows["te2"] = te
    return rows


KOHYA_ALGOS = ["lora", "loha", "lokr"]


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
@pytest.mark.parametrize("algo", KOHYA_ALGOS)
def test_kohya_written_files_resolve_on_diffusers_and_a1111_names(models, diffusers_trees, kohya_class_state,
                                                                  tmp_path, model, algo):
    parts = models[model]
    path = tmp_path / "kohya.safetensors"
    wrapped = kohya_file(parts, algo, path)
    net = lycoris_ext.load_network(path)
    assert set(net.modules) == set(wrapped)
    prefixes = Counter(re.match(r"(lora_unet|lora_te\d?)_", k)[1] for k in wrapped)
    assert set(prefixes) == ({"lora_unet", "lora_te"} if model == "sd15" else {"lora_unet", "lora_te1", "lora_te2"})
    # kohya names from diffusers/transformers-5 paths (what A1111 itself cannot read for the text encoders)
    expect = {"lora_unet_conv_in", "lora_unet_time_embedding_linear_1", "lora_unet_up_blocks_0_upsamplers_0_conv"}
    if model == "sd15":
        expect |= {"lora_te_encoder_layers_0_self_attn_q_proj", "lora_unet_down_blocks_0_attentions_0_proj_in"}
    else:
        expect |= {"lora_te1_encoder_layers_0_self_attn_q_proj", "lora_te2_text_model_encoder_layers_2_mlp_fc2",
                   "lora_unet_add_embedding_linear_1", "lora_unet_down_blocks_2_attentions_1_transformer_blocks_9_ff_net_2"}
    assert expect <= set(wrapped)

    # on the diffusers-named model: exactly the wrapped modules
    res = resolve(net, diffusers_trees[model])
    assert res.unmatched == [] and res.mismatched == [] and res.verdict == FITS
    wrong = [m.key for m in res.matches if m.target.module is not wrapped[m.key][2]]
    assert wrong == [] and len(res.matches) == len(wrapped)

    # on the A1111-named twin: the same part and block for every key
    twin = ModelTree.from_rows(_a1111_twin_rows(parts, FAMILY[model]), "a1111", family=FAMILY[model])
    assert twin.ambiguous == {}
    res_a = resolve(net, twin)
    assert res_a.unmatched == [] and res_a.mismatched == [] and res_a.verdict == FITS
    by_key = {m.key: m.target for m in res.matches}
    by_key_a = {m.key: m.target for m in res_a.matches}
    assert set(by_key_a) == set(by_key)
    assert {k: (t.part, t.block) for k, t in by_key_a.items()} == {k: (t.part, t.block) for k, t in by_key.items()}
    for k, t in by_key.items():
        ta = by_key_a[k]
        if t.part == "unet":
            assert ta.path == ref_diffusers_to_ldm(t.path, FAMILY[model]), k
        elif t.part == "te2" and re.search(r"self_attn\.[qkv]_proj$", t.path):
            i = "qkv".index(t.path[-6])
            d = t.shape[0]
            assert (ta.param, ta.rows) == ("in_proj_weight", (i * d, (i + 1) * d)), k
    assert res.matched_blocks() == res_a.matched_blocks()


@pytest.mark.parametrize("model", MODELS)
def test_kohya_file_for_every_inventory_layer_resolves_the_same_on_both_namings(tmp_path, model):
    a1111, diffusers = model_tree(model, "a1111"), model_tree(model, "diffusers")
    ref = {r.tree_id("a1111"): r for r in ref_targets(model)}
    sd, want_a, want_d = {}, {}, {}
    g = torch.Generator().manual_seed(0)
    for t in a1111.targets:
        key = a1111.key_for(t)
        want_a[key] = t.id
        want_d[key] = ref[t.id].tree_id("diffusers")
        if t.kind == "norm":
            sd[f"{key}.w_norm"] = torch.randn(t.shape, generator=g) * 0.01
        else:
            sd[f"{key}.lora_up.weight"] = torch.randn(t.shape[0], 1, *([1, 1] if t.kind == "conv" else []), generator=g)
            sd[f"{key}.lora_down.weight"] = torch.randn(1, *t.shape[1:], generator=g)
    assert len(want_a) == len(a1111.targets)  # one key per layer, none shared
    net = lycoris_ext.load_network(write(tmp_path / "all.safetensors", sd))
    ra, rd = resolve(net, a1111), resolve(net, diffusers)
    for r in (ra, rd):
        assert r.unmatched == [] and r.mismatched == [] and r.verdict == FITS
    assert {m.key: m.target.id for m in ra.matches} == want_a
    assert {m.key: m.target.id for m in rd.matches} == want_d
    assert {m.key: (m.target.part, m.target.block) for m in ra.matches} == \
        {m.key: (m.target.part, m.target.block) for m in rd.matches}
    assert {p: dict(ra.matched_blocks(p)) for p in a1111.parts} == BLOCK_COUNTS[model]
