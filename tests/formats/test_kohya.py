"""kohya sd-scripts files: ``networks.lora`` (with and without ``conv_dim``),
``networks.dylora`` and ``networks.oft``, on the real SD1.5 and SDXL layouts.

``fixtures/kohya_keys.json.gz`` holds the facts: every module key kohya's own
``create_network`` makes for real-size SD1.5 / SDXL UNets and CLIP text
encoders (transformers-4 names, as its pinned transformers 4.54 has), with the
target's shape and the rank (OFT: block count). DyLoRA's keys are
``networks.lora``'s with ``conv_dim`` (its file is a plain LoRA file, read by
kohya with ``networks.lora``'s inference module). How kohya stores and applies
them, restated here (no code of theirs):

- LoRA: ``<key>.lora_down.weight`` (rank, in[, k, k]), ``<key>.lora_up.weight``
  (out, rank[, 1, 1]), ``<key>.alpha`` a 0-d tensor in the save dtype;
  forward ``org(x) + up(down(x)) * multiplier * alpha / rank`` (down is a conv
  with the layer's kernel, stride and padding; alpha 0 is saved as the rank).
- OFT: ``<key>.oft_blocks`` (blocks, n, n), ``<key>.alpha`` the constraint
  per output row; ``Q = B - B^T`` clamped to norm ``alpha * out``,
  ``R = (I + Q)(I - Q)^-1``, ``R_m = m (R - I) + I``, each block of rows of
  the weight becomes ``R_m^T W``.

Each file resolves completely on the project's real A1111 inventories (and
diffusers-named ones), and the change of every kind of layer equals the
restated forward within 1e-5.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext.resolve import FITS, resolve
from lycoris_ext.summary import summarize
from trainer_support import check_lora_forward, fixture, lora_file, pick, tree

FIX = fixture("kohya_keys.json.gz")
TOL = 1e-5
ALPHA, CONV_ALPHA, OFT_ALPHA = 1.0, 1.0, 1e-3

VARIANTS = {
    # variant -> fixture groups, kohya's ss_network_args
    "networks.lora": (["networks.lora"], None),
    "networks.lora conv_dim": (["networks.lora", "networks.lora conv_dim=2"], {"conv_dim": "2", "conv_alpha": "1"}),
    "networks.oft": (["networks.oft"], None),
    "networks.oft all linear + conv": (["networks.oft", "networks.oft enable_all_linear enable_conv"],
                                       {"enable_all_linear": "True", "enable_conv": "True"}),
}


def keys_of(family, variant):
    groups, _ = VARIANTS[variant]
    out = {}
    for g in groups:
        out.update(FIX[f"{family}/{g}"])
    return out


def kohya_file(path, family, variant, dtype=torch.float16):
    """A file laid out as kohya's ``save_weights`` writes it (every tensor in the save dtype)."""
    _, args = VARIANTS[variant]
    oft = variant.startswith("networks.oft")
    meta = {"ss_network_module": "networks.oft" if oft else "networks.lora", "ss_network_dim": "4",
            "ss_network_alpha": str(OFT_ALPHA if oft else ALPHA)}
    if args:
        meta["ss_network_args"] = json.dumps(args)
    if not oft:
        return lora_file(path, keys_of(family, variant), lambda k: CONV_ALPHA if k == 3 else ALPHA, dtype, meta)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, (out, inn, k, r) in keys_of(family, variant).items():
        # kohya's dim is the block count; blocks of 8 rows keep the files small
        sd[f"{key}.oft_blocks"] = (torch.randn(out // 8, 8, 8, generator=g) * 0.05).to(dtype)
        sd[f"{key}.alpha"] = torch.tensor(OFT_ALPHA).to(dtype)
    save_file(sd, str(path), meta)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("kohya")
    cache = {}

    def get(family, variant):
        if (family, variant) not in cache:
            p = kohya_file(d / f"{family}-{variant.replace(' ', '_')}.safetensors", family, variant)
            cache[family, variant] = lycoris_ext.load_network(p)
        return cache[family, variant]

    return get


CASES = [(f, v) for f in ("sd15", "sdxl") for v in VARIANTS]


def test_fixture_counts():
    """What kohya's builders make on the real layouts (986: a typical SDXL LoRA's module count)."""
    assert {k: len(v) for k, v in FIX.items() if isinstance(v, dict)} == {
        "sd15/networks.lora": 264, "sd15/networks.lora conv_dim=2": 86,
        "sd15/networks.oft": 128, "sd15/networks.oft enable_all_linear enable_conv": 150,
        "sdxl/networks.lora": 986, "sdxl/networks.lora conv_dim=2": 66,
        "sdxl/networks.oft": 560, "sdxl/networks.oft enable_all_linear enable_conv": 228,
    }


@pytest.mark.parametrize("naming", ["a1111", "diffusers"])
@pytest.mark.parametrize("family,variant", CASES, ids=[f"{f}-{v}" for f, v in CASES])
def test_every_key_resolves(files, family, variant, naming):
    net = files(family, variant)
    assert not net.unknown and len(net.modules) == len(keys_of(family, variant))
    res = resolve(net, tree(family, naming))
    assert res.verdict == FITS, res.summary if hasattr(res, "summary") else res.report()
    assert not res.unmatched and not res.mismatched
    assert len({m.target for m in res.matches}) == len(net.modules)


@pytest.mark.parametrize("family,variant", [c for c in CASES if "lora" in c[1]], ids=lambda x: x)
def test_scale_is_alpha_over_rank(files, family, variant):
    net = files(family, variant)
    keys = keys_of(family, variant)
    for key, a in net.modules.items():
        out, inn, k, r = keys[key]
        assert a.scale_source == "alpha tensor" and a.rank == r
        assert a.scale == pytest.approx((CONV_ALPHA if k == 3 else ALPHA) / r)
    s = summarize(net)
    assert s["training"]["network_module"] == "networks.lora" and s["warnings"] == []


@pytest.mark.parametrize("m", [1.0, 0.7])
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_lora_change_equals_kohya_forward(files, family, m):
    variant = "networks.lora conv_dim"
    check_lora_forward(files(family, variant), keys_of(family, variant), m, TOL)


def _kohya_oft_weight(W, blocks, alpha, m):
    n, b, _ = blocks.shape
    q = blocks - blocks.transpose(1, 2)
    norm = torch.norm(q.flatten())
    q = q * ((torch.clamp(norm, max=alpha * W.shape[0]) + 1e-8) / (norm + 1e-8))
    eye = torch.eye(b).expand(n, b, b)
    r = torch.matmul(eye + q, torch.inverse(eye - q))
    r = m * (r - eye) + eye
    wb = W.reshape(n, b, *W.shape[1:])
    return torch.einsum("knm,kn...->km...", r, wb).reshape(W.shape)


@pytest.mark.parametrize("m", [1.0, 0.6])
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_oft_change_equals_kohya_forward(files, family, m):
    variant = "networks.oft all linear + conv"
    net = files(family, variant)
    g = torch.Generator().manual_seed(2)
    for key in pick(keys_of(family, variant)):
        out, inn, k, r = keys_of(family, variant)[key]
        a = net.modules[key]
        W = torch.randn(out, inn, k, k, generator=g) * 0.05 if k else torch.randn(out, inn, generator=g) * 0.05
        new_w, _ = a.apply(W, multiplier=m)
        want = _kohya_oft_weight(W, a.param("oft_blocks"), float(a.alpha), m)
        assert (new_w - want).abs().max().item() < TOL, key
        assert (new_w - W).abs().max().item() > 100 * TOL  # the constraint binds, and it still changes


def test_dylora_extract_versus_dyn(tmp_path):
    """A DyLoRA file is a LoRA file. kohya's ``extract_lora_from_dylora`` cuts
    the first k ranks and keeps alpha (scale alpha / k); ``dyn=k`` keeps A1111's
    built-in's alpha / full rank. Both are exact; they differ by full / k."""
    g = torch.Generator().manual_seed(3)
    down, up = torch.randn(8, 16, generator=g), torch.randn(32, 8, generator=g)
    save_file({"lora_unet_x.lora_down.weight": down, "lora_unet_x.lora_up.weight": up, "lora_unet_x.alpha": torch.tensor(4.0)},
              str(tmp_path / "dy.safetensors"))
    save_file({"lora_unet_x.lora_down.weight": down[:2].contiguous(), "lora_unet_x.lora_up.weight": up[:, :2].contiguous(),
               "lora_unet_x.alpha": torch.tensor(4.0)}, str(tmp_path / "extract2.safetensors"))
    dy = lycoris_ext.load_network(tmp_path / "dy.safetensors").modules["lora_unet_x"]
    ex = lycoris_ext.load_network(tmp_path / "extract2.safetensors").modules["lora_unet_x"]
    W = torch.zeros(32, 16)
    d_dyn = dy.truncated(2).apply(W)[0]
    d_ex = ex.apply(W)[0]
    assert torch.allclose(d_dyn, up[:, :2] @ down[:2] * 4 / 8, atol=TOL)
    assert torch.allclose(d_ex, d_dyn * 4, atol=TOL)
