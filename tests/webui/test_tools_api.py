"""The network tools' API routes in the A1111 stand-in: bake the prompt's
networks into a checkpoint, save them as one LoRA; errors as status codes
with the file named, and no output left behind."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lycoris_ext.tools import bake
from lycoris_ext.tools.checkpoint import LAYOUTS


def _write_checkpoint(model, family) -> str:
    """The loaded model's weights as a real file at its checkpoint's path."""
    from lycoris_ext.webui.host import model_parts

    _, prefixes = LAYOUTS[family]
    sd = {prefixes[p] + k: v.detach().clone().contiguous() for p, m in model_parts(model).items() for k, v in m.state_dict().items()}
    path = model.sd_checkpoint_info.filename
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(sd, path)
    return path


@pytest.fixture
def tools_webui(webui, tmp_path):
    from modules import shared

    webui.write("a", seed=1)
    webui.write("b", algorithm="lokr", seed=2)
    webui.write("o", algorithm="oft", seed=3)
    w = webui.start()
    w.ckpt = _write_checkpoint(w.model, "sd1")
    w.ckpt_dir = tmp_path / "ckpts"
    shared.cmd_opts.ckpt_dir = str(w.ckpt_dir)
    yield w
    del shared.cmd_opts.ckpt_dir


def test_bake_route_writes_what_bake_writes(tools_webui, tmp_path):
    w = tools_webui
    c = w.ui.client()
    r = c.post("/lycoris/v1/bake", json={"prompt": "a cat <lora:a:0.8> <lora:b:1:0.5:lbw=MIDD>", "name": "baked"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = w.ckpt_dir / "baked.safetensors"
    assert body["output"] == str(out) and [n["name"] for n in body["networks"]] == ["a", "b"]
    ref = tmp_path / "ref.safetensors"
    bake(w.ckpt, [str(w.lora_dir / "a.safetensors") + ":0.8", str(w.lora_dir / "b.safetensors") + ":1:0.5:lbw=MIDD"], ref)
    got, want = load_file(out), load_file(ref)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in got)
    with safe_open(str(out), "pt") as f:
        rec = json.loads(f.metadata()["lycoris_ext.bake"])
    assert rec["networks"][1]["lbw"] == "MIDD" and rec["networks"][0]["te"] == 0.8
    # the same name again: refused unless overwrite
    again = {"networks": [{"name": "a", "weight": 0.5}], "name": "baked"}
    assert c.post("/lycoris/v1/bake", json=again).status_code == 409
    assert c.post("/lycoris/v1/bake", json={**again, "overwrite": True, "dtype": "fp16"}).status_code == 200


def test_convert_route_writes_a_lora_into_the_folder(tools_webui):
    w = tools_webui
    c = w.ui.client()
    r = c.post("/lycoris/v1/convert", json={"prompt": "<lora:a:0.5> <lora:b> <lora:o:0.7>", "name": "merged", "rank": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rank_max"] <= 6 and 0 < body["relative_error"] < 1 and body["layers"]
    assert os.path.isfile(w.lora_dir / "merged.safetensors")
    names = [x["name"] for x in c.get("/sdapi/v1/loras").json()]
    assert "merged" in names  # the card list knows it (the folders were rescanned)
    r = c.post("/lycoris/v1/convert", json={"networks": [{"name": "a"}], "name": "full", "energy": 1.0, "dtype": "fp32"})
    assert r.status_code == 200 and r.json()["relative_error"] < 1e-5


@pytest.mark.parametrize("route", ["bake", "convert"])
def test_bad_requests(tools_webui, route):
    w = tools_webui
    c = w.ui.client()
    extra = {"rank": 4} if route == "convert" else {}
    url = f"/lycoris/v1/{route}"
    folder = w.lora_dir if route == "convert" else w.ckpt_dir
    before = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    cases = [
        ({"prompt": "<lora:nope:1>", "name": "x", **extra}, 404, "nope"),
        ({"prompt": "<lora:a:1>", "name": "../escape", **extra}, 400, "plain file name"),
        ({"prompt": "no tokens", "name": "x", **extra}, 400, "no networks"),
        ({"prompt": "<lora:a:0@0,1@0.5>", "name": "x", **extra}, 400, "curves"),
        ({"prompt": "<lora:a:1>", "name": "x", "checkpoint": "missing-model", **extra}, 404, "no checkpoint"),
    ]
    if route == "convert":
        cases += [({"prompt": "<lora:a>", "name": "x", "rank": 0}, 400, "--rank must be"),
                  ({"prompt": "<lora:a>", "name": "x", "rank": 2.5}, 400, "whole number"),
                  ({"prompt": "<lora:a>", "name": "x"}, 400, "exactly one of")]
    else:
        cases += [({"prompt": "<lora:a>", "name": "x", "dtype": "fp8"}, 400, "dtype")]
    for body, status, text in cases:
        r = c.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["detail"]
    (w.lora_dir / "bad.safetensors").write_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00{")
    c.post("/sdapi/v1/refresh-loras")
    r = c.post(url, json={"prompt": "<lora:a> <lora:bad>", "name": "x", **extra})
    assert r.status_code == 422 and "bad.safetensors" in r.json()["detail"]
    after = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    assert [f for f in after if f != "bad.safetensors"] == [f for f in before if f != "bad.safetensors"]


# ------------------------------------------------------------------ the buttons

def test_buttons_bake_and_save_the_prompts_networks(tools_webui):
    import gradio as gr

    from lycoris_ext.webui import tools_ui

    w = tools_webui
    with gr.Blocks():
        prompt = gr.Textbox(elem_id="txt2img_prompt")
        comps = tools_ui.build(w.ext, prompt, "txt2img")
    bake_click = comps["bake"].events[0]
    lora_click = comps["lora"].events[0]
    assert bake_click.inputs[0] is prompt and lora_click.outputs == [comps["report"]]
    seen = []
    html_out = tools_ui.bake_prompt(w.ext, "<lora:a:0.5>", "from_ui", "fp16", progress=lambda f, desc="": seen.append(f))
    assert "from_ui.safetensors" in html_out and (w.ckpt_dir / "from_ui.safetensors").is_file()
    assert seen and seen[-1] == 1.0
    html_out = lora_click("a cat <lora:a:0.5> <lora:b:0.8>", "ui_lora", 4, 0, "fp16", False)
    assert "relative error" in html_out and (w.lora_dir / "ui_lora.safetensors").is_file()
    html_out = lora_click("<lora:a>", "ui_energy", 4, 0.95, "fp32", False)
    assert "ui_energy.safetensors" in html_out
    # errors are shown, escaped, and write nothing
    html_out = bake_click("<lora:<script>x</script>:1>", "bad", "as the checkpoint", False)
    assert "lycoris-tools-error" in html_out and "<script>" not in html_out
    assert not (w.ckpt_dir / "bad.safetensors").exists()
