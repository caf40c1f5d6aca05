"""Weight curves in both passes, X/Y/Z axes, trigger words and the weight plot."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lycoris_ext.curves import parse_weight
from lycoris_ext.webui.extension import sampling_step


def _curve_probe(w):
    """Record, at every denoiser callback, the UNet multiplier in effect."""
    from modules import script_callbacks

    seen = []

    def probe(params):
        rt = w.ext.runtime()
        p = params.denoiser.p
        mults = {c.multiplier for t, cs in rt._applied.items() if t[0] == "unet" for c in cs}
        seen.append((bool(p.is_hr_pass), *sampling_step(params), mults))

    script_callbacks.on_cfg_denoiser(probe)
    return seen


@pytest.mark.parametrize("mode", ["merge", "bypass", "auto"])
def test_curves_at_every_step_of_both_passes(webui, mode):
    from modules import processing, shared

    webui.write("a", seed=1)
    w = webui.start()
    shared.opts.lycoris_mode = mode
    seen = _curve_probe(w)
    p = w.a1111.make_txt2img(prompt="x <lora:a:0@0,1@0.5:hrunet=2@0;0@3>", steps=6, enable_hr=True, hr_scale=1.0,
                             hr_upscaler="Latent", hr_second_pass_steps=4, denoising_strength=0.5)
    processing.process_images(p)
    first = parse_weight("0@0,1@0.5")
    hires = parse_weight("2@0;0@3")
    firsts = [(s, t, m) for hr, s, t, m in seen if not hr]
    hrs = [(s, t, m) for hr, s, t, m in seen if hr]
    assert firsts and hrs
    for s, t, m in firsts:
        assert t == 6 and m == ({first(s, t)} if first(s, t) else set()), (s, m)
    for s, t, m in hrs:
        assert t == 4 and m == ({hires(s, t)} if hires(s, t) else set()), (s, m)
    assert {round(first(s, 6), 3) for s, _, _ in firsts} >= {0.0, 1.0}  # it really moved
    rt = w.ext.runtime()
    if mode != "merge":
        assert rt.effective_mode == "bypass"


def test_curve_merge_equals_bypass_at_every_step(tmp_path):
    from lycoris_ext.runtime import BYPASS, MERGE, Runtime, Use
    from support.models import small_model, write_sample

    parts, tree = small_model("sd15", shrink=16)
    net = write_sample(tmp_path / "c.safetensors", tree, "loha", rank=2, seed=3)
    curve = parse_weight("0.2@0,1@0.5,-0.5@1")
    use = Use(net, 1.0, curve)
    targets = [m.target for m in Runtime(tree).resolution(net).matches if m.target.part == "unet" and m.target.kind == "linear"][:20]
    xs = [torch.randn(2, 3, t.module.in_features, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(targets)]
    merge, bypass = Runtime(tree, mode=MERGE), Runtime(tree, mode=BYPASS)
    for step in range(8):
        merge.set([use], step=step, total_steps=8)
        with torch.no_grad():
            ym = [t.module(x) for t, x in zip(targets, xs)]
        merge.restore()
        bypass.set([use], step=step, total_steps=8)
        with torch.no_grad():
            yb = [t.module(x) for t, x in zip(targets, xs)]
        bypass.restore()
        for a, b in zip(ym, yb):
            assert float((a - b).abs().max() / b.abs().max()) <= 1e-5, step


def test_xyz_axes(webui):
    from types import SimpleNamespace

    webui.write("one", seed=1)
    webui.write("two", seed=2)
    webui.write("xl", family="sdxl", seed=3)
    w = webui.start()
    import a1111
    from modules import shared

    xyz = a1111.find_script_module("xyz_grid.py")
    axes = {o.label: o for o in xyz.axis_options}
    for label in ("LoRA: network", "LoRA weight", "LoRA TE weight", "LoRA UNet weight", "LoRA block weights", "LoRA start step", "LoRA stop step"):
        assert label in axes
    assert axes["LoRA: network"].choices() == ["one", "two"]  # the SDXL network does not fit the SD1 model
    shared.opts.lycoris_show_all = True
    assert axes["LoRA: network"].choices() == ["one", "two", "xl"]
    shared.opts.lycoris_show_all = False
    assert "MIDD" in axes["LoRA block weights"].choices()
    p = SimpleNamespace(prompt="a <lora:one:0.5> b", hr_prompt="")
    axes["LoRA: network"].apply(p, "two", [])
    assert p.prompt == "a <lora:two:0.5> b"
    assert axes["LoRA: network"].format_value(p, axes["LoRA: network"], "two") == "LoRA: two"
    axes["LoRA weight"].apply(p, 0.25, [])
    assert p.prompt == "a <lora:two:0.25:0.25> b"
    axes["LoRA TE weight"].apply(p, 0.75, [])
    assert p.prompt == "a <lora:two:0.75:0.25> b"
    axes["LoRA UNet weight"].apply(p, 1.5, [])
    axes["LoRA block weights"].apply(p, "OUTS", [])
    axes["LoRA start step"].apply(p, 3, [])
    axes["LoRA stop step"].apply(p, 9, [])
    assert p.prompt == "a <lora:two:0.75:1.5:lbw=OUTS:start=3:stop=9> b"
    q = SimpleNamespace(prompt="no token", hr_prompt="hires <lora:one:1>")
    axes["LoRA: network"].apply(q, "one", [])
    assert q.prompt == "no token <lora:one:1>" and q.hr_prompt == "hires <lora:one:1>"


def test_xyz_axes_apply_in_a_generation(webui):
    from modules import processing

    webui.write("one", seed=1)
    webui.write("two", seed=2)
    w = webui.start()
    import a1111

    xyz = a1111.find_script_module("xyz_grid.py")
    axis = next(o for o in xyz.axis_options if o.label == "LoRA: network")
    for name in ("one", "two"):
        p = a1111.make_txt2img(prompt="x <lora:one:0.8>")
        axis.apply(p, name, ["one", "two"])
        processing.process_images(p)
        assert [u.label for u in w.ext.runtime().uses] == [name]


def test_trigger_words(webui):
    from modules import processing, shared

    path = webui.write("a", seed=1)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"activation text": "shiny style"}, f)
    webui.write("b", seed=2, metadata={"ss_tag_frequency": json.dumps({"x": {"cat": 9, "dog": 4, "hat": 1}})})
    w = webui.start()
    shared.opts.lycoris_trigger_words = True
    p = w.a1111.make_txt2img(prompt="a photo <lora:a:1> <lora:b:0.5>")
    res = processing.process_images(p)
    assert p.prompts[0].endswith("shiny style, cat, dog, hat")
    assert res.infotexts[0].startswith("a photo <lora:a:1> <lora:b:0.5>, shiny style, cat, dog, hat")
    p = w.a1111.make_txt2img(prompt="shiny style, a photo <lora:a:1>")
    processing.process_images(p)
    assert p.prompts[0].count("shiny style") == 1  # never twice
    shared.opts.lycoris_trigger_words = False
    p = w.a1111.make_txt2img(prompt="a photo <lora:a:1>")
    processing.process_images(p)
    assert "shiny" not in p.prompts[0]


def test_weight_plot(webui):
    from modules import processing, shared

    webui.write("a", seed=1)
    w = webui.start()
    shared.opts.lycoris_plot_weights = True
    p = w.a1111.make_txt2img(prompt="x <lora:a:0@0,1@1>", steps=4)
    res = processing.process_images(p)
    from PIL import Image

    assert isinstance(res.images[-1], Image.Image) and res.infotexts[-1].startswith("LyCORIS")
    p = w.a1111.make_txt2img(prompt="x <lora:a:1>", steps=4)
    res = processing.process_images(p)
    assert not any(isinstance(i, Image.Image) for i in res.images)  # nothing scheduled: no plot
