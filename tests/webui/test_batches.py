"""Per-image networks in a batch and networks in the negative prompt, through the stand-in."""

from __future__ import annotations

import pytest
import torch

from lycoris_ext.runtime.uses import RowWeights


def generate(w, prompt, negative="", **kw):
    from modules import processing

    p = w.a1111.make_txt2img(prompt=prompt, negative_prompt=negative, **kw)
    res = processing.process_images(p)
    return p, res, None


@pytest.fixture
def nets(webui):
    webui.write("a", "lora", seed=1, rank=4)
    webui.write("b", "loha", seed=2, rank=2)
    webui.write("n", "lora", seed=3, rank=4)
    return webui


def test_mixed_batch_equals_each_image_alone(nets):
    w = nets.start()
    prompts = ["a cat <lora:a:0.9>", "a cat <lora:b:0.7>", "a cat <lora:a:-0.5> <lora:b:1:0.4>"]
    p, res, _ = generate(w, prompts, batch_size=3, seed=7)
    rt = w.ext.runtime()
    # the UNet carries row-wise uses only; the text-encoder uses of the last encoded group stay
    assert any(u.rowwise for u in rt.uses) and all(u.rowwise or u.unet == 0 for u in rt.uses)
    assert rt.layers()["hooked"] > 0
    assert p.lycoris_plan is not None and p.lycoris_plan.mixed
    batch_images = [img.clone() for img in res.images]
    for i, prompt in enumerate(prompts):
        _, alone, _ = generate(w, prompt, batch_size=1, seed=7 + i)
        diff = (batch_images[i].float() - alone.images[0].float()).abs().mean()
        assert diff <= 1 / 255, (i, float(diff))
        rel = (batch_images[i].float() - alone.images[0].float()).abs().max() / alone.images[0].float().abs().max()
        assert rel <= 1e-5, (i, float(rel))
    # each image's infotext names its own networks
    ha, hb = (w.ext.library.ensure_hash(w.ext.library.find(n))[:12] for n in ("a", "b"))
    info = res.infotexts
    assert f'Lora hashes: "a: {ha}"' in info[0] and "b:" not in info[0].split("Lora hashes")[1]
    assert f'Lora hashes: "b: {hb}"' in info[1]
    assert f'Lora hashes: "a: {ha}, b: {hb}"' in info[2]


def test_per_image_hashes_in_every_batch_of_a_job(nets):
    """n_iter > 1: the WebUI asks for a batch's infotexts with the index in the
    batch (and for the job's with the index in the job); both name the image's own networks."""
    w = nets.start()
    prompts = ["x <lora:a:1>", "x <lora:b:1>", "x <lora:b:1>", "x <lora:a:1> <lora:b:1>"]
    p, res, _ = generate(w, prompts, batch_size=2, n_iter=2, seed=3)
    ha, hb = (w.ext.library.ensure_hash(w.ext.library.find(n))[:12] for n in ("a", "b"))
    want = [f'"a: {ha}"', f'"b: {hb}"', f'"b: {hb}"', f'"a: {ha}, b: {hb}"']
    assert len(res.infotexts) == 4
    for i, text in enumerate(want):
        assert "Lora hashes: " + text in res.infotexts[i], (i, res.infotexts[i])
        assert "Lora hashes: " + text in res.infotext(p, i), i


def test_uniform_batch_takes_the_ordinary_path(nets):
    w = nets.start()
    p, res, _ = generate(w, ["x <lora:a:0.5>", "y <lora:a:0.5>"], batch_size=2)
    rt = w.ext.runtime()
    assert p.lycoris_plan is None and not any(u.rowwise for u in rt.uses)
    assert rt.layers()["hooked"] == 0  # merge mode, as configured
    assert "get_conds_with_caching" not in p.__dict__


def test_negative_prompt_tokens(nets):
    w = nets.start()
    encoded = []

    def te_hook(prompts):
        from modules import shared

        rt = w.ext.runtime()
        te_on = any(c.network == "n" for t, cs in rt._applied.items() for c in cs if t[0] == "te")
        encoded.append((list(prompts), bool(getattr(prompts, "is_negative_prompt", False)), te_on))
        return shared.sd_model.get_learned_conditioning(prompts)

    from modules import processing

    p = w.a1111.make_txt2img(prompt="a cat", negative_prompt="ugly <lora:n:0.8>", batch_size=1)
    p.te_hook = te_hook
    res = processing.process_images(p)
    rt = w.ext.runtime()
    # the token never reaches the text encoder; it is active only for the negative prompt's encoding
    assert encoded == [(["ugly "], True, True), (["a cat"], False, False)]
    # UNet: weight 0 on the conditional rows, 0.8 on the unconditional ones
    use = next(u for u in rt.uses if u.label == "n")
    assert use.unet == RowWeights((0.0,), (1.0,)) and use.scale == pytest.approx(0.8)
    # the infotext keeps the negative prompt as written, and hashes it
    h = w.ext.library.ensure_hash(w.ext.library.find("n"))[:12]
    assert "Negative prompt: ugly <lora:n:0.8>" in res.infotexts[0] and f"n: {h}" in res.infotexts[0]


def test_row_plan_follows_the_denoiser_layout(nets):
    from lycoris_ext.webui.batch import row_plan

    class P:
        prompts = ["a", "b", "c"]
        c = None
        is_hr_pass = False

    class Params:
        x = torch.zeros(6, 4, 8, 8)
        text_cond = torch.zeros(3, 77, 8)

    assert row_plan(P(), Params()) == ([0, 1, 2, 0, 1, 2], [False, False, False, True, True, True])

    class Multi:  # AND: image 0 has two sub-prompts
        batch = [[1, 2], [1], [1]]

    P.c = Multi()
    Params.x = torch.zeros(7, 4, 8, 8)
    Params.text_cond = torch.zeros(4, 77, 8)
    assert row_plan(P(), Params()) == ([0, 0, 1, 2, 0, 1, 2], [False] * 4 + [True] * 3)
    Params.x = torch.zeros(4, 4, 8, 8)  # skip-uncond: conditional rows only
    assert row_plan(P(), Params())[1] == [False] * 4
