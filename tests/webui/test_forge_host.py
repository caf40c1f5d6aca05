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
