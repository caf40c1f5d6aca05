"""Per-image networks in one batch: row-wise bypass equals each image computed alone."""

from __future__ import annotations

import pytest
import torch

from lycoris_ext.runtime import BYPASS, MERGE, Runtime, Use
from lycoris_ext.runtime.uses import RowWeights
from support.models import same_as, small_model, snapshot, write_norm_network, write_sample


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    parts, tree = small_model("sd15", shrink=16)
    d = tmp_path_factory.mktemp("rows")
    nets = {
        "a": write_sample(d / "a.safetensors", tree, "lora", rank=4, seed=1, conv_rank=2),
        "b": write_sample(d / "b.safetensors", tree, "loha", rank=2, seed=2),
        "c": write_sample(d / "c.safetensors", tree, "dora", rank=2, seed=3),
        "d": write_sample(d / "d.safetensors", tree, "oft", rank=4, seed=4),
        "n": write_norm_network(d / "n.safetensors", tree, seed=5),
    }
    return parts, tree, nets


def _inputs(module, rows, g):
    if isinstance(module, torch.nn.Linear):
        return torch.randn(rows, 3, module.in_features, generator=g)
    if isinstance(module, torch.nn.Conv2d):
        return torch.randn(rows, module.in_channels, 5, 5, generator=g)
    if isinstance(module, torch.nn.LayerNorm):
        return torch.randn(rows, 3, *module.normalized_shape, generator=g)
    return torch.randn(rows, module.num_channels, 4, 4, generator=g)


# Three images: image 0 has a at 0.8; image 1 has b at 0.5 and, in its negative
# prompt, c at 0.7; image 2 has a at -0.4 and b at 1.0; d everywhere at 0.3.
PER_IMAGE = [
    {"cond": {"a": 0.8, "d": 0.3}, "uncond": {"a": 0.8, "d": 0.3}},
    {"cond": {"b": 0.5, "d": 0.3}, "uncond": {"b": 0.5, "c": 0.7, "d": 0.3}},
    {"cond": {"a": -0.4, "b": 1.0, "n": 0.5, "d": 0.3}, "uncond": {"a": -0.4, "b": 1.0, "n": 0.5, "d": 0.3}},
]


def row_uses(nets):
    names = sorted({n for img in PER_IMAGE for side in img.values() for n in side})
    uses = []
    for n in names:
        cond = tuple(img["cond"].get(n, 0.0) for img in PER_IMAGE)
        unc = tuple(img["uncond"].get(n, 0.0) for img in PER_IMAGE)
        uses.append(Use(nets[n], 0.0, RowWeights(cond, unc), name=n))
    return uses


@pytest.mark.parametrize("mode", [MERGE, BYPASS])
def test_mixed_batch_equals_each_image_alone(world, mode):
    parts, tree, nets = world
    snap = snapshot(parts)
    rt = Runtime(tree, mode=mode)
    rt.set(row_uses(nets))
    # the UNet layers are hooked whatever the mode; no weight is written
    assert rt.layers()["hooked"] > 0 and rt.layers()["merged"] == 0 and same_as(parts, snap) == []
    targets = [t for t in tree.targets if t.part == "unet" and t.id in rt._applied]
    assert len(targets) > 100
    images = torch.tensor([0, 1, 2, 0, 1, 2])
    uncond = torch.tensor([False, False, False, True, True, True])
    rt.rows.set(images, uncond)
    g = torch.Generator().manual_seed(0)
    xs = {t.id: _inputs(t.module, 6, g) for t in targets}
    with torch.no_grad():
        batched = {t.id: t.module(xs[t.id]) for t in targets}
    rt.rows.clear()
    # each row alone: the plain scalar uses for that image and side
    alone = Runtime(tree, mode=BYPASS)
    rt.restore()
    for row in range(6):
        img, side = int(images[row]), "uncond" if uncond[row] else "cond"
        alone.set([Use(nets[n], 0.0, m, name=n) for n, m in PER_IMAGE[img][side].items()])
        with torch.no_grad():
            for t in targets:
                y = t.module(xs[t.id][row:row + 1])
                ref = batched[t.id][row:row + 1]
                err = float((ref - y).abs().max() / y.abs().max().clamp_min(1e-12))
                assert err <= 1e-5, (t.label, row, err)
    alone.restore()
    assert same_as(parts, snap) == []


def test_unknown_rows_fall_back_to_first_image(world):
    parts, tree, nets = world
    rt = Runtime(tree, mode=BYPASS)
    rt.set(row_uses(nets))
    t = next(t for t in tree.targets if t.part == "unet" and t.id in rt._applied and isinstance(t.module, torch.nn.Linear))
    x = torch.randn(2, 3, t.module.in_features)
    rt.rows.clear()
    with torch.no_grad():
        y = t.module(x)
    rt.rows.set([0, 0], [False, False])
    with torch.no_grad():
        assert torch.equal(t.module(x), y)
    rt.restore()


def test_row_weights_do_not_touch_text_encoders(world):
    parts, tree, nets = world
    with pytest.raises(ValueError):
        Use(nets["a"], RowWeights((1.0,), (1.0,)), 1.0).part_multiplier("te")
