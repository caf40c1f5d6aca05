"""ai-toolkit (ostris) LoRA and DoRA files for SD1.5 and SDXL.

``fixtures/aitoolkit_keys.json.gz`` holds the facts: every module key
ai-toolkit's own ``LoRASpecialNetwork`` makes on real-size SD1.5 / SDXL
diffusers UNets and CLIP text encoders (its pinned transformers 5.5 keeps
``text_model``), with the target's shape and rank. Its SD1.5 keys are
kohya's; on SDXL it keeps diffusers bodies (``lora_unet_down_blocks_...``),
not kohya's sgm ones. How it stores and applies them, restated here:

- LoRA: ``lora_down``/``lora_up`` and ``.alpha`` as kohya (forward
  ``org(x) + up(down(x)) * m * alpha / rank``).
- DoRA (``network_type: dora``, Linear layers only): ``lora_down``/``lora_up``
  and ``<key>.magnitude`` (one per output row), no ``.alpha``; at strength 1
  ``magnitude * W' / ||W'||`` row-wise with ``W' = W + up @ down``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext.resolve import FITS, resolve
from trainer_support import check_lora_forward, fixture, lora_file, tree

FIX = fixture("aitoolkit_keys.json.gz")
TOL = 1e-5
ALPHA, CONV_ALPHA = 2.0, 1.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("aitoolkit")
    cache = {}

    def get(family):
        if family not in cache:
            p = lora_file(d / f"{family}.safetensors", FIX[family], lambda k: CONV_ALPHA if k == 3 else ALPHA)
            cache[family] = lycoris_ext.load_network(p)
        return cache[family]

    return get


def test_fixture_facts():
    kohya = fixture("kohya_keys.json.gz")
    assert len(FIX["sd15"]) == 350 and len(FIX["sdxl"]) == 1052
    # SD1.5: kohya's keys (networks.lora with conv_dim); SDXL: diffusers bodies instead of sgm
    assert set(FIX["sd15"]) == set(kohya["sd15/networks.lora"]) | set(kohya["sd15/networks.lora conv_dim=2"])
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q" in FIX["sdxl"]


@pytest.mark.parametrize("naming", ["a1111", "diffusers"])
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_every_key_resolves(files, family, naming):
    net = files(family)
    assert not net.unknown and len(net.modules) == len(FIX[family])
    res = resolve(net, tree(family, naming))
    assert res.verdict == FITS and not res.unmatched and not res.mismatched
    assert len({m.target for m in res.matches}) == len(net.modules)
    assert net.scale_sources == {"alpha tensor": len(net.modules)}


@pytest.mark.parametrize("m", [1.0, 0.6])
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_lora_change_equals_forward(files, family, m):
    check_lora_forward(files(family), FIX[family], m, TOL)


def test_dora_magnitude(tmp_path):
    g = torch.Generator().manual_seed(5)
    W = torch.randn(32, 16, generator=g)
    down, up = torch.randn(4, 16, generator=g) * 0.2, torch.randn(32, 4, generator=g) * 0.2
    mag = torch.rand(32, generator=g) + 0.5
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.magnitude": mag}, str(tmp_path / "d.safetensors"))
    net = lycoris_ext.load_network(tmp_path / "d.safetensors")
    a = net.modules[key]
    assert not net.unknown and a.features == {"dora"} and a.magnitude_on_out
    wp = W + up @ down
    want = mag.reshape(-1, 1) * wp / wp.norm(dim=1, keepdim=True)
    assert (a.apply(W)[0] - want).abs().max().item() < TOL
