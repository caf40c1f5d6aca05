"""Beside the peers users have installed: an extension that takes the ``lora``
token (sd-webui-loractl re-registers its handler in every generation), A1111's
prompt comments, LBW's ``start=``, loractl's curves, and API-only servers."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from conftest import changed, params_snapshot

# A stand-in of sd-webui-loractl's registration footprint: in process() (every
# generation) it registers its own handler as "lora" and the alias "loractl"
# unless its handler already holds the slot (its scripts/loractl.py).
LORACTL = '''
import modules.scripts as scripts
from modules import extra_networks

CALLS = []


class LoraCtlNetwork(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")

    def activate(self, p, params_list):
        CALLS.append([list(x.items) for x in params_list])

    def deactivate(self, p):
        pass


class LoraCtlScript(scripts.Script):
    def title(self):
        return "Dynamic Lora Weights"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def {hook}(self, p, *args, **kwargs):
        if type(extra_networks.extra_network_registry["lora"]) is not LoraCtlNetwork:
            network = LoraCtlNetwork()
            extra_networks.register_extra_network(network)
            extra_networks.register_extra_network_alias(network, "loractl")
'''


def start_with_peer(webui, tmp_path, monkeypatch, name, hook="process"):
    """Start the WebUI with this extension and then the peer (A1111 loads extensions by folder name)."""
    folder = tmp_path / "extensions" / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "peer.py").write_text(textwrap.dedent(LORACTL.replace("{hook}", hook)), encoding="utf-8")
    start_ui, peer = webui.a1111.start_ui, []

    def load_peer_then_start_ui(**kw):
        peer.append(webui.a1111.load_extension(str(folder), name=name))
        return start_ui(**kw)

    monkeypatch.setattr(webui.a1111, "start_ui", load_peer_then_start_ui)
    w = webui.start()
    monkeypatch.setattr(webui.a1111, "start_ui", start_ui)
    return w, peer[0].modules["peer.py"]


def run(w, prompt, **kw):
    from modules import processing

    p = w.a1111.make_txt2img(prompt=prompt, **kw)
    res = processing.process_images(p)
    return p, res


def same(model, want) -> bool:
    return all(torch.equal(p.detach(), want[n]) for n, p in model.named_parameters())


# ------------------------------------------------------------- the lora slot

def test_loractl_takeover_leaves_no_weights_and_keeps_lora_working(webui, tmp_path, monkeypatch, caplog):
    webui.write("tinylora", seed=3)
    w, peer = start_with_peer(webui, tmp_path, monkeypatch, "sd-webui-loractl")
    peer_calls = peer.CALLS
    snap = params_snapshot(w.model)

    run(w, "a cat <lyco:tinylora:1>")
    full = params_snapshot(w.model)
    p, _ = run(w, "a cat <lyco:tinylora:1:lbw=MIDD>")
    assert changed(w.model, snap)
    mid = params_snapshot(w.model)
    # the sequence: a plain prompt right after must render the plain model
    p, _ = run(w, "a cat")
    assert changed(w.model, snap) == set() and w.ext.runtime().kept_bytes == 0
    # <lora:...> is this extension's again, block weights included
    p, _ = run(w, "a cat <lora:tinylora:1:lbw=MIDD>")
    assert same(w.model, mid)
    p, _ = run(w, "a cat <lora:tinylora:1>")
    assert same(w.model, full) and not same(w.model, mid)
    assert all(call == [] for call in peer_calls)  # the peer's handler never got a token
    # loractl's own alias reaches this extension too
    p, _ = run(w, "a cat <loractl:tinylora:1:lbw=MIDD>")
    assert same(w.model, mid)
    # said in the generation info (the first time) and once in the console
    messages = [r.getMessage() for r in caplog.records if "sd-webui-loractl" in r.getMessage()]
    assert len(messages) == 1 and "took them back" in messages[0]


def test_slot_taken_too_late_restores_and_says_so(webui, tmp_path, monkeypatch):
    """An extension that takes the slot after this one's last chance (here in
    before_process_batch, loaded later): its tokens are not this extension's,
    so this extension's weights go, and the generation info says why."""
    webui.write("tinylora", seed=3)
    w, peer = start_with_peer(webui, tmp_path, monkeypatch, "zz-late-taker", hook="before_process_batch")
    snap = params_snapshot(w.model)
    run(w, "a cat <lyco:tinylora:1>")
    assert changed(w.model, snap)
    p, _ = run(w, "a cat <lora:tinylora:1:lbw=MIDD>")
    assert peer.CALLS[-1] == [["tinylora", "1", "lbw=MIDD"]]
    assert changed(w.model, snap) == set() and w.ext.runtime().kept_bytes == 0
    assert any("zz-late-taker" in c and "lbw=" in c for c in p.comments)
    p, _ = run(w, "a dog")
    assert changed(w.model, snap) == set()


def test_generation_without_extra_networks_gets_the_plain_model(webui):
    webui.write("tinylora", seed=3)
    w = webui.start()
    snap = params_snapshot(w.model)
    run(w, "a cat <lora:tinylora:1>")
    assert changed(w.model, snap)
    run(w, "a cat <lora:tinylora:1>", disable_extra_networks=True)
    assert changed(w.model, snap) == set()


# ------------------------------------------------------------- card tokens

def test_card_token_survives_prompt_comments(webui):
    """A name no token can hold (here: it has '#', which A1111's comments cut)
    is inserted as '@' and the short hash, which the comments leave alone."""
    from modules import shared

    webui.write("style#2", seed=4)
    w = webui.start()
    assert shared.opts.enable_prompt_comments is True  # A1111's default
    entry = w.ext.library.find("style#2")
    token_name = w.ext.library.display_name(entry)
    assert token_name == "@" + w.ext.library.ensure_hash(entry)[:12]
    page = next(pg for pg in w.a1111.ui_extra_networks.extra_pages if pg.name == "lora")
    item = page.create_item("style#2")
    assert json.loads(item["prompt"]) == f"<lora:{token_name}:1>"
    snap = params_snapshot(w.model)
    p, _ = run(w, f"a cat <lora:{token_name}:1>")
    assert [u.label for u in w.ext.runtime().uses] == [token_name]
    assert changed(w.model, snap)
    assert p.lora_hashes == {token_name: entry.shorthash}
    # what the old '#' form did with comments on: the token is cut away
    run(w, "a cat <lora:#" + entry.shorthash + ":1>")
    assert w.ext.runtime().uses == ()


# ------------------------------------------------------------- LBW and loractl syntax

def test_lbw_start_keeps_the_text_encoder_on(webui):
    """LBW encodes the prompt with the network's text-encoder part on and
    starts only the UNet at step S; te=0 still switches the text encoder off."""
    webui.write("tinylora", seed=3)
    w = webui.start()
    snap = params_snapshot(w.model)
    run(w, "a cat <lora:tinylora:1:start=2>", steps=4)
    te_changed = {n for n in changed(w.model, snap) if "cond_stage_model" in n or "conditioner" in n}
    assert te_changed  # merged for the whole generation
    run(w, "a cat <lora:tinylora:1:te=0:start=2>", steps=4)
    assert not {n for n in changed(w.model, snap) if "cond_stage_model" in n or "conditioner" in n}


@pytest.mark.parametrize("curve", ["1@0,0@1", "1~0,0~1"])
def test_curve_ends_on_the_last_step_of_each_pass(webui, curve):
    """1.0 is the last sampled step of each pass, hires pass included."""
    from modules import script_callbacks, shared

    from lycoris_ext.webui.extension import sampling_step

    webui.write("tinylora", seed=3)
    w = webui.start()
    shared.opts.lycoris_mode = "bypass"
    seen = []

    def probe(params):
        step, total = sampling_step(params)
        seen.append((total, [u.part_multiplier("unet", step, total) for u in w.ext.runtime().uses]))

    script_callbacks.on_cfg_denoiser(probe)
    run(w, f"a cat <lora:tinylora:{curve}>", steps=5, enable_hr=True, hr_scale=1.0, hr_second_pass_steps=3,
        denoising_strength=0.5, hr_upscaler="Latent")
    first = [m[0] for total, m in seen if total == 5]
    hires = [m[0] for total, m in seen if total != 5]
    assert first == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert hires and hires[0] == 1.0 and hires[-1] == 0.0


# ------------------------------------------------------------- API-only servers

def test_xyz_axes_without_the_ui(webui):
    """--nowebui: no before_ui, but app_started runs; the axes are added once."""
    from modules import script_callbacks

    webui.write("tinylora", seed=3)
    w = webui.a1111
    ext = w.load_extension(__import__("conftest").REPO, name="lycoris-ext")
    w.make_sd_model("sd15", shrink=16)
    from fastapi import FastAPI

    w.extra_networks.initialize()
    w.extra_networks.register_default_extra_networks()
    app = FastAPI()
    script_callbacks.app_started_callback(None, app)
    script_callbacks.app_started_callback(None, app)
    xyz = w.find_script_module("xyz_grid.py")
    labels = [o.label for o in xyz.axis_options]
    assert labels.count("LoRA: network") == 1 and labels.count("LoRA block weights") == 1
    assert ext.modules["lycoris_ext_main.py"]._ext.extra_network is w.extra_networks.extra_network_registry["lora"]
