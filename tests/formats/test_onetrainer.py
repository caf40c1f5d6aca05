"""OneTrainer's LoRA output formats for SD1.5 and SDXL.

``fixtures/onetrainer_keys.json.gz`` holds the facts: OneTrainer's own savers
(``LoRASaverMixin._save``) applied to the canonical module list (every Linear
and Conv2d of the UNet, the text encoders' layers) give each module's key in
each output format. How OneTrainer stores and applies a LoRA, restated here:

- ``DIFFUSERS_LORA``: ``unet.``/``text_encoder.``/``text_encoder_2.`` + diffusers /
  transformers-4 paths, ``lora_A``/``lora_B``, alpha folded into ``lora_B``
  (``B * alpha / rank``) and no ``.alpha``; DoRA: per-output magnitudes as
  PEFT's ``lora_magnitude_vector.weight``, per-input ones (OneTrainer's
  default) kept as ``dora_scale``.
- ``KOHYA_LORA``: kohya's keys (SD1: diffusers bodies; SDXL: sgm bodies),
  ``lora_down``/``lora_up`` and ``.alpha``.
- ``LEGACY_LORA``: SD1 as KOHYA; SDXL ``lora_unet_`` + flattened diffusers bodies.
- ``COMFY_LORA``: ``diffusion_model.`` + sgm dotted bodies and
  ``text_encoders.clip_l.transformer.``/``clip_g.transformer.``; ``lora_A``/``lora_B``, ``.alpha``.
- ``ORIGINAL_LORA``: the UNet only, bare sgm dotted bodies; ``lora_A``/``lora_B``, ``.alpha``.
- forward: ``W + alpha / rank * up @ down``; DoRA ``m * W' / (||W'|| + eps)``
  with ``W' = W + alpha / rank * up @ down``, the norm per input column
  (default) or per output row.

The same trained factors written in every format must resolve completely and
give the same change, equal to the restated forward within 1e-5.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext.resolve import FITS, resolve
from lycoris_ext.resolve.inventory import model_tree

FIX = json.load(gzip.open(Path(__file__).parent / "fixtures" / "onetrainer_keys.json.gz"))
FORMATS = ("DIFFUSERS_LORA", "KOHYA_LORA", "LEGACY_LORA", "COMFY_LORA", "ORIGINAL_LORA")
PART = {"sd15": {"unet": "unet", "text_encoder": "te"}, "sdxl": {"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}}
RANK, ALPHA, TOL = 2, 1.0, 1e-5
HEADER = {"ot_branch": "master", "ot_revision": "0" * 40}
TREES: dict = {}


def tree(family, naming="a1111"):
    if (family, naming) not in TREES:
        TREES[family, naming] = model_tree(family, naming)
    return TREES[family, naming]


def shapes(family):
    t = tree(family, "diffusers")
    out = {}
    for c in FIX[f"{family}/canonical"]:
        part, path = c.split(".", 1)
        p = PART[family][part]
        target = t.by_id.get((p, path, "weight", None, None)) or t.by_id.get((p, path.removeprefix("text_model."), "weight", None, None))
        out[c] = tuple(target.shape)
    return out


def factors(family):
    """The trained factors: (down, up) per canonical module, float32."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for c, s in shapes(family).items():
        k = s[2:]
        out[c] = (torch.randn(RANK, s[1], *k, generator=g) * 0.1, torch.randn(s[0], RANK, *([1] * len(k)), generator=g) * 0.1)
    return out


def write(path, family, fmt, facs):
    f = FIX[f"{family}/{fmt}"]
    ab = "lora_A.weight" in f["suffixes"]
    sd = {}
    for c, m in zip(FIX[f"{family}/canonical"], f["modules"]):
        if m is None:
            continue
        down, up = facs[c]
        if fmt == "DIFFUSERS_LORA":
            up = up * (ALPHA / RANK)  # lora_fold_alpha
        sd[f"{m}.{'lora_A' if ab else 'lora_down'}.weight"] = down
        sd[f"{m}.{'lora_B' if ab else 'lora_up'}.weight"] = up
        if "alpha" in f["suffixes"]:
            sd[f"{m}.alpha"] = torch.tensor(ALPHA)
    save_file(sd, str(path), HEADER)
    return lycoris_ext.load_network(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onetrainer")
    cache, facs = {}, {}

    def get(family, fmt):
        if family not in facs:
            facs[family] = factors(family)
        if (family, fmt) not in cache:
            cache[family, fmt] = write(d / f"{family}-{fmt}.safetensors", family, fmt, facs[family])
        return cache[family, fmt], facs[family]

    return get


def test_fixture_counts():
    n = {f"{fam}/{fmt}": sum(m is not None for m in FIX[f"{fam}/{fmt}"]["modules"]) for fam in ("sd15", "sdxl") for fmt in FORMATS}
    assert n == {**{f"sd15/{f}": 354 for f in FORMATS}, "sd15/ORIGINAL_LORA": 282,
                 **{f"sdxl/{f}": 1058 for f in FORMATS}, "sdxl/ORIGINAL_LORA": 794}


CASES = [(fam, fmt, "a1111") for fam in ("sd15", "sdxl") for fmt in FORMATS] + [("sd15", fmt, "diffusers") for fmt in FORMATS]


@pytest.mark.parametrize("family,fmt,naming", CASES, ids=["-".join(c) for c in CASES])
def test_every_module_resolves_with_the_same_change(files, family, fmt, naming):
    net, facs = files(family, fmt)
    assert not net.unknown
    res = resolve(net, tree(family, naming))
    assert res.verdict == FITS and not res.unmatched and not res.mismatched
    assert len({m.target for m in res.matches}) == len(net.modules)
    mods = dict(zip(FIX[f"{family}/{fmt}"]["modules"], FIX[f"{family}/canonical"]))
    for key, a in net.modules.items():
        down, up = facs[mods[key]]
        f_up, f_down = a.lowrank()
        want_up = (up * (ALPHA / RANK)).reshape(up.shape[0], -1)
        assert (f_up - want_up).abs().max().item() < 1e-7 and (f_down - down.reshape(RANK, -1)).abs().max().item() == 0, key
    # alpha folded into lora_B (OneTrainer's header says so): no warning about a missing scale
    want = "default" if fmt == "DIFFUSERS_LORA" else "alpha tensor"
    assert net.scale_sources == {want: len(net.modules)} and net.warnings == []


def _dora_reference(W, down, up, mag, on_output):
    wp = W + ALPHA / RANK * (up.flatten(1) @ down.flatten(1)).reshape(W.shape)
    eps = torch.finfo(torch.float32).eps
    if on_output:
        norm = wp.reshape(wp.shape[0], -1).norm(dim=1).reshape(wp.shape[0], *[1] * (wp.dim() - 1)) + eps
    else:
        norm = wp.transpose(0, 1).reshape(wp.shape[1], -1).norm(dim=1, keepdim=True).reshape(wp.shape[1], *[1] * (wp.dim() - 1)).transpose(0, 1) + eps
    return mag * (wp / norm)


@pytest.mark.parametrize("shape", [(32, 16), (32, 16, 3, 3)], ids=["linear", "conv"])
@pytest.mark.parametrize("on_output", [False, True], ids=["per-input", "per-output"])
@pytest.mark.parametrize("fmt", ["KOHYA_LORA", "DIFFUSERS_LORA"])
def test_dora_equals_onetrainer_forward(tmp_path, shape, on_output, fmt):
    g = torch.Generator().manual_seed(4)
    W = torch.randn(shape, generator=g)
    k = shape[2:]
    down = torch.randn(RANK, shape[1], *k, generator=g) * 0.3
    up = torch.randn(shape[0], RANK, *([1] * len(k)), generator=g) * 0.3
    if on_output:  # OneTrainer's dora_scale layouts: (out, 1[, 1, 1]) or (1, in[, 1, 1])
        mag = torch.rand(shape[0], *[1] * (len(shape) - 1), generator=g) + 0.5
    else:
        mag = torch.rand(1, shape[1], *[1] * (len(shape) - 2), generator=g) + 0.5
    key = "lora_unet_x" if fmt == "KOHYA_LORA" else "unet.x"
    if fmt == "KOHYA_LORA":
        sd = {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(ALPHA), f"{key}.dora_scale": mag}
    else:
        sd = {f"{key}.lora_A.weight": down, f"{key}.lora_B.weight": up * (ALPHA / RANK)}
        if on_output:  # dora_scale_to_peft_magnitude: (out,) for a Linear, (1, out, 1, 1) for a conv
            sd[f"{key}.lora_magnitude_vector.weight"] = mag.reshape(shape[0]) if len(shape) == 2 else mag.reshape(1, shape[0], 1, 1)
        else:  # per-input magnitudes stay dora_scale
            sd[f"{key}.dora_scale"] = mag
    save_file(sd, str(tmp_path / "d.safetensors"), HEADER)
    a = lycoris_ext.load_network(tmp_path / "d.safetensors").modules[key]
    got = a.apply(W)[0]
    assert (got - _dora_reference(W, down, up, mag, on_output)).abs().max().item() < TOL
