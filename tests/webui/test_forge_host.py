"""Forge's model object, as the adapter reads it (facts from Forge main, 2025-06):

- ``shared.sd_model`` is a plain object (``backend/diffusion_engine/sd15.py``), not a module, with
  A1111's compatibility attributes as stubs (``cond_stage_model = None``, no ``.model``,
  ``is_sd1``/``is_sd2``/``is_sdxl``; ``backend/diffusion_engine/base.py``);
- its modules are in ``forge_objects``: the UNet at ``unet.model.diffusion_model`` with ldm names, the
  text encoder at ``clip.cond_stage_model.clip_l`` with HF CLIP names under ``transformer.``;
- every weight is loaded under ``torch.inference_mode()`` (``backend/loader.py``), so it can only be
  written inside inference mode, and extra networks are activated outside it.
"""

from __future__ import annotations

import types

import torch

from conftest import changed, params_snapshot


class ForgeEngine:
    """The facts above, nothing else."""

    is_sd1, is_sd2, is_sdxl = True, False, False
    cond_stage_model = None
    first_stage_model = None

    def __init__(self, te, unet):
        ns = types.SimpleNamespace
        self.forge_objects = ns(unet=ns(model=ns(diffusion_model=unet)), clip=ns(cond_stage_model=ns(clip_l=te)))


def forge_model():
    from lycoris_ext.synthetic import build_model

    with torch.inference_mode():
        parts = build_model("sd15", shrink=16)
        parts = {k: m.requires_grad_(False) for k, m in parts.items()}
    assert next(parts["unet"].parameters()).is_inference()
    return ForgeEngine(parts["te"], parts["unet"]), parts


def activate(w, prompt):
    from modules import extra_networks

    p = w.a1111.make_txt2img(prompt=prompt)
    p.setup_prompts()
    p.iteration = 0
    p.prompts, p.negative_prompts = p.all_prompts[:1], p.all_negative_prompts[:1]
    p.parse_extra_network_prompts()
    extra_networks.activate(p, p.extra_network_data)
    return p


def test_forge_parts_and_writes_inside_inference_mode(webui):
    from modules import sd_models

    from lycoris_ext.webui import host

    webui.write("tiny", seed=5)
    webui.write("tiny_lokr", algorithm="lokr", seed=6)
    w = webui.start()
    engine, parts = forge_model()
    assert host.model_parts(engine) == {"te": parts["te"], "unet": parts["unet"]}
    assert host.model_family(engine) == "sd1"
    sd_models.model_data.set_sd_model(engine)
    modules = torch.nn.ModuleDict(parts)
    snap = params_snapshot(modules)

    p = activate(w, "a cat <lora:tiny:1> <lora:tiny_lokr:0.5>")
    rt = w.ext.runtime()
    assert [u.label for u in rt.uses] == ["tiny", "tiny_lokr"] and not any("error" in c.lower() for c in p.comments)
    touched = changed(modules, snap)
    assert any(n.startswith("te.") for n in touched) and any(n.startswith("unet.") for n in touched)
    assert p.lora_hashes.keys() == {"tiny", "tiny_lokr"}
    # the same networks merged into ordinary tensors of the same model give the same bits
    from lycoris_ext.resolve.tree import A1111, ModelTree
    from lycoris_ext.runtime import Runtime
    from lycoris_ext.synthetic import build_model

    plain = torch.nn.ModuleDict(build_model("sd15", shrink=16))
    assert all(torch.equal(prm, snap[n]) for n, prm in plain.named_parameters())
    Runtime(ModelTree(dict(plain.items()), A1111, "sd1")).set(list(rt.uses), step=0, total_steps=3)
    merged = params_snapshot(plain)
    assert all(torch.equal(prm, merged[n]) for n, prm in modules.named_parameters())

    activate(w, "a cat")
    assert changed(modules, snap) == set() and rt.kept_bytes == 0


class ForgeLinear(torch.nn.Module):
    """Forge's ``ForgeOperations.Linear``: a bare module (not ``nn.Linear``) computing F.linear."""

    def __init__(self, linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias)


def _forge_linears(module):
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, ForgeLinear(child))
        else:
            _forge_linears(child)
    return module


def test_forge_linear_layers_take_bypass_hooks(webui):
    """Bypass (and per-image rows) need hooks on Forge's own Linear class too; merged instead,
    every image of a batch would get the first image's weight."""
    from lycoris_ext.network import load_network
    from lycoris_ext.resolve.tree import A1111, ModelTree
    from lycoris_ext.runtime import Runtime, Use
    from lycoris_ext.synthetic import build_model

    path = webui.write("tiny", seed=5)
    parts = build_model("sd15", shrink=16)
    plain = Runtime(ModelTree(dict(parts), A1111, "sd1"), mode="merge")
    forge = {k: _forge_linears(m) for k, m in build_model("sd15", shrink=16).items()}
    rt = Runtime(ModelTree(forge, A1111, "sd1"), mode="bypass")
    net = load_network(path)
    rt.set([Use(net, 1.0, 0.7)])
    plain.set([Use(net, 1.0, 0.7)])
    assert rt.layers()["merged"] == 0 and rt.layers()["hooked"] == plain.layers()["merged"]
    name = next(n for n, m in forge["unet"].named_modules() if isinstance(m, ForgeLinear) and "attn1.to_q" in n)
    x = torch.randn(2, 5, forge["unet"].get_submodule(name).in_features)
    assert torch.allclose(forge["unet"].get_submodule(name)(x), parts["unet"].get_submodule(name)(x), atol=1e-5)


def test_row_layout_from_forge_transformer_options():
    """Forge/reForge call the UNet with ``transformer_options["cond_or_uncond"]``: one entry per
    chunk of a whole batch (1 = uncond), the uncond chunk first when both fit in one call."""
    from lycoris_ext.webui import host

    opts = lambda sides: {"transformer_options": {"cond_or_uncond": sides}}  # noqa: E731
    assert host.row_layout(opts([1, 0]), 8) == ([0, 1, 2, 3, 0, 1, 2, 3], [True] * 4 + [False] * 4)
    assert host.row_layout(opts([0]), 3) == ([0, 1, 2], [False] * 3)
    assert host.row_layout(opts([0, 0, 1]), 6) == ([0, 1, 0, 1, 0, 1], [False] * 4 + [True] * 2)  # AND: a chunk each
    assert host.row_layout({}, 4) is None and host.row_layout(opts([1, 0]), 7) is None


def test_hires_weights_reencode_the_hires_conditioning(webui):
    """Forge and reForge encode the hires conditioning before the hires pass; with ``hr=`` the
    tokens equal the first pass's, so it was encoded with the first pass's text-encoder weights.
    At the hires pass's activation it is dropped, so the WebUI encodes it again."""
    from modules import extra_networks

    webui.write("tiny", seed=5)
    w = webui.start()
    p = w.a1111.make_txt2img(prompt="a cat <lora:tiny:1:hr=0.5>", enable_hr=True)
    p.setup_prompts()
    p.iteration, p.is_hr_pass = 0, True
    p.prompts, p.negative_prompts = p.all_prompts[:1], p.all_negative_prompts[:1]
    p.hr_c, p.hr_uc = "encoded before", "encoded before"
    w.ext.activate(p, [extra_networks.ExtraNetworkParams(items=["tiny", "1", "hrunet=0.5"])])
    assert p.hr_c == "encoded before"  # only the UNet differs: nothing to encode again
    w.ext.activate(p, [extra_networks.ExtraNetworkParams(items=["tiny", "1", "hr=0.5"])])
    assert p.hr_c is None and p.hr_uc is None
    assert [(u.te, u.unet) for u in w.ext.runtime().uses] == [(0.5, 0.5)]


class FakeInitialModel:
    """Forge's ``shared.sd_model`` until the first generation loads the checkpoint
    (``modules/sd_models.py``: ``cond_stage_model = None``, ``chunk_length = 75``, nothing else)."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


def test_before_forge_loads_a_model_the_ui_uses_the_selected_checkpoint(webui, tmp_path):
    """No runtime over Forge's stand-in model (its report would say 'does not fit: 0/264'),
    and the block sliders and cards follow the checkpoint Forge will load."""
    from safetensors.torch import save_file

    from modules import sd_models, shared

    from lycoris_ext.webui import host, panel

    webui.write("tiny", seed=5)
    webui.write("tinyxl", family="sdxl", seed=6)
    w = webui.start()
    ckpt = tmp_path / "xl.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
               "conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, str(ckpt))
    info = sd_models.CheckpointInfo(str(ckpt))
    info.register()
    shared.opts.sd_model_checkpoint = info.title
    sd_models.model_data.set_sd_model(FakeInitialModel())

    assert host.current_model() is None and w.ext.runtime() is None
    assert host.current_family() == "sdxl" and panel.PanelLogic.family() == "sdxl"
    assert w.ext.shown_for_model("sdxl") and not w.ext.shown_for_model("sd1")
    # once Forge has loaded its engine, the loaded model decides
    engine, _ = forge_model()
    sd_models.model_data.set_sd_model(engine)
    assert host.current_model() is engine and host.current_family() == "sd1"
    assert w.ext.runtime() is not None and w.ext.shown_for_model("sd1")


def test_cards_carry_forges_sd_version_attribute(webui):
    """Forge's sd/xl radio hides cards by ``data-sort-sdversion``, which its own cards carry."""
    webui.write("tiny", seed=5)
    webui.write("tinyxl", family="sdxl", seed=6)
    w = webui.start()
    from lycoris_ext.webui.page import LycorisPage

    page = LycorisPage(w.ext)
    html_sd = page.create_item_html("txt2img", page.create_item("tiny", enable_filter=False))["sort_keys"]
    html_xl = page.create_item_html("txt2img", page.create_item("tinyxl", enable_filter=False))["sort_keys"]
    assert 'data-sort-sdversion="SdVersion.SD1"' in html_sd and 'data-sort-sdversion="SdVersion.SDXL"' in html_xl


def test_no_progress_tracking_without_gradio_queue(webui, monkeypatch):
    """gradio 3 refuses to launch a UI without its queue (``--no-gradio-queue``,
    reForge's and many users' flag) when a handler has a ``gr.Progress`` default."""
    import inspect

    import gradio as gr

    from modules import shared

    from lycoris_ext.webui import tools_ui

    w = webui.start()
    monkeypatch.setattr(gr, "Progress", lambda: "progress bar", raising=False)
    for queue_off, want in ((False, "progress bar"), (True, None)):
        monkeypatch.setattr(shared.cmd_opts, "no_gradio_queue", queue_off, raising=False)
        with gr.Blocks():
            comps = tools_ui.build(w.ext, gr.Textbox(elem_id="txt2img_prompt"), "txt2img")
        for button in ("bake", "lora"):
            fn = comps[button].events[0].fn
            assert inspect.signature(fn).parameters["progress"].default == want
