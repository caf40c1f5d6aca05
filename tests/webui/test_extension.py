"""The extension inside the A1111 v1.10.1 stand-in: registration, activation
sequences, hires pass, missing/broken/other-model networks, infotext write and
paste, API routes, the card page, the metadata editor, the block panel."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import changed, params_snapshot


def run(w, prompt, **kw):
    from modules import processing

    p = w.a1111.make_txt2img(prompt=prompt, **kw)
    res = processing.process_images(p)
    return p, res


# --------------------------------------------------------------- registration

@pytest.mark.parametrize("builtin", [None, "enabled", "disabled"])
def test_registration_owns_lora_and_lyco(webui, builtin):
    from modules import extra_networks, ui_extra_networks

    from lycoris_ext.webui.extra_network import ExtraNetworkLycoris
    from lycoris_ext.webui.page import LycorisPage

    webui.start(builtin=builtin is not None, builtin_enabled=builtin == "enabled")
    assert isinstance(extra_networks.extra_network_registry["lora"], ExtraNetworkLycoris)
    assert isinstance(extra_networks.extra_network_aliases["lyco"], ExtraNetworkLycoris)
    lora_pages = [p for p in ui_extra_networks.extra_pages if p.name == "lora"]
    assert len(lora_pages) == 1 and isinstance(lora_pages[0], LycorisPage)


def test_settings_section(webui):
    from modules import shared

    webui.start()
    for key in ("lycoris_mode", "lycoris_default_multiplier", "lycoris_cache_count", "lycoris_cache_mb",
                "lycoris_show_all", "lycoris_missing_popup"):
        assert key in shared.opts.data_labels
        assert shared.opts.data_labels[key].section[0] == "lycoris_ext"
    assert shared.opts.lycoris_mode == "merge"


def test_the_trim_delay_follows_its_setting(webui, monkeypatch):
    """Freed memory goes back after the setting's seconds without a change
    (0: at once, -1: never), from the runtime's next change on."""
    from modules import shared

    from lycoris_ext.runtime import memory

    monkeypatch.setattr(memory, "THRESHOLD", 1)  # the tiny model frees a few MB
    webui.write("style", seed=1)
    w = webui.start()
    run(w, "a <lora:style:1>")
    rt = w.ext.runtime()
    assert shared.opts.lycoris_trim_seconds == 10 and rt.trimmer.delay == 10.0
    assert shared.opts.set("lycoris_trim_seconds", -1) is True
    assert rt.trimmer.delay is None  # never: kept for the next networks
    run(w, "a")
    assert rt.pool.nbytes > 0 and rt.trimmer.trims == 0  # nothing given back
    assert shared.opts.set("lycoris_trim_seconds", 0) is True
    run(w, "a <lora:style:1>")
    run(w, "a")  # at once
    assert rt.pool.nbytes == 0 and rt.trimmer.trims == 1
    shared.opts.set("lycoris_trim_seconds", "not a number")
    assert w.ext.trim_delay() == 10.0


def test_token_applied_exactly_once_with_builtin_enabled(webui):
    webui.write("style", seed=1)
    w = webui.start(builtin=True)
    snap = params_snapshot(w.model)
    p, _ = run(w, "a <lora:style:1>")
    rt = w.ext.runtime()
    assert len(rt.uses) == 1
    # every changed weight equals original + one delta (not two)
    res = rt.resolution(rt.uses[0].network)
    m = next(x for x in res.matches if x.target.part == "unet")
    w0 = snap[next(n for n in snap if n.endswith(m.target.path + ".weight"))]
    want, _ = m.adapter.apply(w0, None, 1.0)
    from lycoris_ext.runtime.params import weight_view

    assert torch.allclose(weight_view(m.target), want, atol=1e-6)


# ------------------------------------------------------------------ activate

def test_activate_sequences(webui):
    webui.write("a", seed=1)
    webui.write("b", algorithm="loha", seed=2)
    w = webui.start()
    snap = params_snapshot(w.model)
    run(w, "x <lora:a:0.5>")
    one = changed(w.model, snap)
    assert one
    run(w, "x <lora:a:0.5> <lyco:b:1:0.3>")
    rt = w.ext.runtime()
    assert [(u.label, u.te, u.unet) for u in rt.uses] == [("a", 0.5, 0.5), ("b", 1.0, 0.3)]
    run(w, "x <lora:b:te=0.2:unet=0.7>")
    assert [(u.label, u.te, u.unet) for u in rt.uses] == [("b", 0.2, 0.7)]
    run(w, "no tokens at all")
    assert changed(w.model, snap) == set() and rt.kept_bytes == 0


def test_same_prompt_twice_costs_nothing(webui):
    webui.write("a", seed=1)
    w = webui.start()
    run(w, "x <lora:a:0.5>")
    run(w, "y <lora:a:0.5>")
    assert w.ext.runtime().last_report.rebuilt == 0


def test_same_tokens_new_file_new_conditioning(webui):
    """The WebUI caches conditionings by prompt and tokens: a file changed on
    disk (or gone) under the same tokens must not reuse last time's."""
    from lycoris_ext.webui import host
    from modules import processing

    path = webui.write("a", seed=1)
    w = webui.start()
    prompt = "x <lora:a:1>"

    def fresh():
        host.drop_cached_conds(processing.StableDiffusionProcessing)
        return run(w, prompt)[1].images[0]

    first = run(w, prompt)[1].images[0]
    assert torch.equal(run(w, prompt)[1].images[0], first)  # unchanged: cached, same image
    webui.write("a", seed=2)  # the same name, other weights
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, res = run(w, prompt)
    changed_file = res.images[0]
    assert not torch.equal(changed_file, first)
    from lycoris_ext.files import addnet_hash

    assert f'Lora hashes: "a: {addnet_hash(path)[:12]}"' in res.infotexts[0]  # the new file's hash
    assert torch.equal(changed_file, fresh())
    os.remove(path)
    p, res = run(w, prompt)
    gone = res.images[0]
    assert "Lora not found: a" in res.comments and w.ext.library.find("a") is None
    assert torch.equal(gone, fresh())
    assert torch.equal(gone, run(w, "x <lora:never_was:1>")[1].images[0])  # the same text, no network


def test_hash_follows_the_file_not_the_cache(webui):
    """The WebUI trusts a cached hash while the file is not newer: a file
    replaced by an older one, or two files with one stem, must still get
    their own hashes in the infotext."""
    from lycoris_ext.files import addnet_hash

    path = webui.write("a", seed=1)
    webui.write("dup", seed=3, folder=webui.lora_dir / "one")
    webui.write("dup", seed=4, folder=webui.lora_dir / "two")
    w = webui.start()
    assert f'"a: {addnet_hash(path)[:12]}"' in run(w, "x <lora:a:1>")[1].infotexts[0]
    st = os.stat(path)
    webui.write("a", seed=2)  # replaced by a file with an older time (cp -p, an archive)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    w.ext.refresh()
    assert f'"a: {addnet_hash(path)[:12]}"' in run(w, "x <lora:a:1>")[1].infotexts[0]
    one, two = (str(webui.lora_dir / d / "dup.safetensors") for d in ("one", "two"))
    text = run(w, "x <lora:one/dup:1> <lora:two/dup:1>")[1].infotexts[0]
    assert f"one/dup: {addnet_hash(one)[:12]}" in text and f"two/dup: {addnet_hash(two)[:12]}" in text
    assert addnet_hash(one) != addnet_hash(two)


def test_hires_pass_uses_its_own_set(webui):
    webui.write("a", seed=1)
    webui.write("b", seed=2)
    w = webui.start()
    seen = []
    orig = w.ext.activate

    def spy(p, params_list):
        r = orig(p, params_list)
        seen.append((bool(getattr(p, "is_hr_pass", False)), [(u.label, u.te) for u in w.ext.runtime().uses]))
        return r

    w.ext.activate = spy
    w.ext.extra_network.ext = w.ext  # the network calls ext.activate
    p, _ = run(w, "x <lora:a:0.8:hr=0.3>", enable_hr=True, hr_scale=1.0, hr_upscaler="Latent", hr_prompt="x <lora:b:1> <lora:a:0.8:hr=0.3>", hr_second_pass_steps=2, denoising_strength=0.5)
    first = [s for hr, s in seen if not hr]
    hires = [s for hr, s in seen if hr]
    assert first and first[0] == [("a", 0.8)]
    assert hires and hires[-1] == [("b", 1.0), ("a", 0.3)]
    # hashes of both passes end up in the infotext
    assert set(w.ext.library.find(n).shorthash for n in ("a", "b")) <= set(p.lora_hashes.values())


def test_missing_broken_and_other_model_are_reported(webui):
    webui.write("good", seed=1)
    webui.write("xl", family="sdxl", seed=2)
    (webui.lora_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    w = webui.start()
    snap = params_snapshot(w.model)
    p, res = run(w, "x <lora:good:1> <lora:nope:1> <lora:broken:1> <lora:xl:1>")
    comments = " | ".join(p.comments)
    assert "Lora not found: nope" in comments
    assert "broken" in comments and "not valid JSON" in comments
    assert "another base model" in comments and "xl (made for SDXL)" in comments
    rt = w.ext.runtime()
    assert [u.label for u in rt.uses] == ["good", "xl"]
    assert rt.last_report.networks[1].skipped  # xl reported, not applied
    assert changed(w.model, snap)
    assert {c.network for cs in rt._applied.values() for c in cs} == {"good"}


def test_bad_token_is_reported_others_apply(webui):
    webui.write("good", seed=1)
    w = webui.start()
    p, _ = run(w, "x <lora:good:1> <lora:good:te=abc>")
    assert any("te='abc'" in c for c in p.comments)
    assert [u.label for u in w.ext.runtime().uses] == ["good"]


def test_quoted_names_and_subfolders(webui):
    webui.write("dup", seed=1, folder=webui.lora_dir / "one")
    webui.write("dup", seed=2, folder=webui.lora_dir / "two")
    webui.write("col:on", seed=3, folder=webui.lyco_dir)
    w = webui.start()
    run(w, 'x <lora:one/dup:1> <lora:two/dup:0.5> <lora:"col:on":0.7>')
    assert [u.label for u in w.ext.runtime().uses] == ["one/dup", "two/dup", "col:on"]
    assert len({u.network.path for u in w.ext.runtime().uses}) == 3


def test_model_reload_forgets_state(webui):
    from modules import script_callbacks

    webui.write("a", seed=1)
    w = webui.start()
    run(w, "x <lora:a:1>")
    rt = w.ext.runtime()
    assert rt.kept_bytes > 0
    with torch.no_grad():
        for p in w.model.parameters():
            p.fill_(0.5)  # the WebUI loads new checkpoint weights into the same modules
    snap = params_snapshot(w.model)
    script_callbacks.model_loaded_callback(w.model)
    assert changed(w.model, snap) == set()
    assert w.ext.runtime(create=False) is None


def test_step_schedule_through_cfg_denoiser(webui):
    from modules import shared

    webui.write("a", seed=1)
    w = webui.start()
    shared.opts.lycoris_mode = "auto"
    steps_seen = []
    orig = w.ext.runtime

    def probe(params):
        rt = orig(create=False)
        w.ext.on_cfg_denoiser(params)
        unet = any(tid[0] == "unet" for tid in rt._applied)
        te = any(tid[0].startswith("te") for tid in rt._applied)
        steps_seen.append((params.denoiser.step, rt.effective_mode, unet, te))

    from modules import script_callbacks

    script_callbacks.on_cfg_denoiser(probe)
    run(w, "x <lora:a:1:start=2:stop=4>", steps=6)
    # steps count from 0 and are exact (params.sampling_step lags the denoiser by one call)
    assert [on for _, _, on, _ in steps_seen] == [False, False, True, True, False, False]
    # as in LBW, start/stop act on the UNet: the text encoder's part stays on
    assert all(te for *_, te in steps_seen)
    assert all(mode == "bypass" for _, mode, *_ in steps_seen)
    # a second-order sampler calls the denoiser twice per step (but the last): steps 0,0,1,1,2
    steps_seen.clear()
    run(w, "x <lora:a:1:start=1:stop=2>", steps=3, sampler_name="Heun")
    assert [on for _, _, on, _ in steps_seen] == [False, False, True, True, False]


# ------------------------------------------------------------------ infotext

def test_infotext_hashes_and_paste_remap(webui):
    from modules import infotext_utils, script_callbacks

    path = webui.write("renamed_locally", seed=1)
    w = webui.start()
    entry = w.ext.library.find("renamed_locally")
    h = w.ext.library.ensure_hash(entry)[:12]
    p, res = run(w, "x <lora:renamed_locally:0.6>")
    text = res.infotexts[0]
    assert f'Lora hashes: "renamed_locally: {h}"' in text
    params = infotext_utils.parse_generation_parameters(text)
    assert params["Lora hashes"] == f"renamed_locally: {h}"
    # someone else's picture: their name for the same file, and one we do not have
    theirs = f'x <lora:their_name:0.6> <lora:unknown:1>\nSteps: 3, Sampler: Euler, CFG scale: 7, Lora hashes: "their_name: {h}, unknown: 000000000000"'
    params = infotext_utils.parse_generation_parameters(theirs)
    script_callbacks.infotext_pasted_callback(theirs, params)
    assert params["Prompt"] == "x <lora:renamed_locally:0.6> <lora:unknown:1>"
    assert os.path.exists(path)


# ----------------------------------------------------------------------- API

def test_api_routes(webui):
    webui.write("a", seed=1, metadata={"ss_output_name": "alias_a", "ss_tag_frequency": json.dumps({"d": {"t": 1}})})
    w = webui.start()
    c = w.ui.client()
    r = c.get("/sdapi/v1/loras")
    assert r.status_code == 200
    assert r.json() == [{"name": "a", "alias": "alias_a", "path": str(webui.lora_dir / "a.safetensors"),
                         "metadata": {"ss_output_name": "alias_a", "ss_tag_frequency": {"d": {"t": 1}}}}]
    webui.write("b", seed=2)
    r = c.post("/sdapi/v1/refresh-loras")
    assert r.status_code == 200 and [x["name"] for x in r.json()] == ["a", "b"]
    r = c.get("/lycoris/v1/networks/alias_a")
    body = r.json()
    assert r.status_code == 200 and body["name"] == "a" and body["algorithms"] == ["lora"]
    assert body["resolution"]["verdict"] == "fits"
    assert c.get("/lycoris/v1/networks/nope").status_code == 404
    assert c.get("/lycoris/v1/networks/..%2F..%2Fsecret").status_code == 404
    assert c.get("/lycoris/v1/networks/a%00b").status_code == 400
    (webui.lora_dir / "bad.safetensors").write_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00{")
    c.post("/sdapi/v1/refresh-loras")
    r = c.get("/lycoris/v1/networks/bad")
    assert r.status_code == 422 and "bad.safetensors" in r.json()["detail"]


def test_api_memory_reports_what_the_extension_holds(webui):
    webui.write("a", seed=1)
    w = webui.start()
    c = w.ui.client()
    empty = c.get("/lycoris/v1/memory").json()
    assert empty["originals"] == 0 and empty["pooled"] == 0 and empty["networks"] == 0
    run(w, "x <lora:a:1>")
    ext = w.ext
    rt = ext.runtime(create=False)
    held = c.get("/lycoris/v1/memory").json()
    net = ext.cache.networks()[0]
    assert held["originals"] == rt.kept_bytes > 0 and held["pooled"] == 0
    assert held["networks"] == net.nbytes > 0 and held["networks_count"] == 1
    assert held["layers"]["merged"] == rt.layers()["merged"] > 0
    run(w, "x")
    back = c.get("/lycoris/v1/memory").json()
    assert back["originals"] == 0 and back["pooled"] == held["originals"]  # waiting for the next originals
    assert back["networks"] == held["networks"]  # the file cache stays
    alloc = back["allocator"]  # this machine: glibc, or tcmalloc when preloaded
    if alloc is not None:
        assert alloc["name"] in ("glibc", "tcmalloc")
        assert 0 < alloc["allocated"] <= alloc["heap"] and 0 <= alloc["free"] <= alloc["heap"]


def test_api_routes_replace_the_builtin(webui):
    webui.write("a", seed=1)
    w = webui.start(builtin=True)
    paths = [(getattr(r, "path", None), tuple(sorted(getattr(r, "methods", ()) or ()))) for r in w.ui.app.router.routes]
    assert paths.count(("/sdapi/v1/loras", ("GET",))) == 1
    assert w.ui.client().get("/sdapi/v1/loras").json()[0]["name"] == "a"


# ---------------------------------------------------------------------- page

def _page():
    from modules import ui_extra_networks

    return next(p for p in ui_extra_networks.extra_pages if p.name == "lora")


def test_page_items_and_filter(webui):
    from modules import shared

    webui.write("sd1net", seed=1)
    webui.write("xlnet", family="sdxl", seed=2, metadata={"ss_output_name": "XL net"})
    webui.write("nested", seed=3, folder=webui.lyco_dir / "deep" / "er")
    (webui.lora_dir / "sd1net.png").write_bytes(b"\x89PNG fake")
    (webui.lora_dir / "sd1net.txt").write_text("my description")
    w = webui.start("sd15")
    page = _page()
    items = {i["name"]: i for i in page.list_items()}
    assert sorted(items) == ["nested", "sd1net"]  # SDXL file hidden on an SD1 model
    it = items["sd1net"]
    assert it["description"] == "my description"
    assert it["preview"].startswith("./sd_extra_networks/thumb?filename=")
    assert it["sd_version"] == "SD1" and set(it["sort_keys"]) >= {"default", "date_created", "date_modified", "name", "path"}
    from lycoris_ext.webui.html import js

    assert "lycorisCardClicked" in it["onclick"] and js("<lora:sd1net:{w}>") in it["onclick"]
    shared.opts.lycoris_show_all = True
    assert sorted(i["name"] for i in page.list_items()) == ["nested", "sd1net", "xlnet"]
    html = page.create_html("txt2img")
    assert "data-name=\"xlnet\"" in html and "txt2img" in html


def test_card_uses_preferred_weight_activation_and_block_weights(webui):
    path = webui.write("a", seed=1)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"preferred weight": 0.65, "activation text": "trigger word", "negative text": "blurry",
                   "preferred block weights": "MIDD"}, f)
    webui.start()
    item = _page().create_item("a")
    from lycoris_ext.webui.html import js

    args = item["onclick"]
    assert js("<lora:a:0.65:lbw=MIDD>") in args and js("trigger word") in args and js("(blurry:1)") in args


def test_embedded_cover_image(webui):
    webui.write("cov", seed=1, metadata={"ssmd_cover_images": json.dumps(["aGVsbG8="])})
    webui.write("badcov", seed=2, metadata={"ssmd_cover_images": "not json"})
    webui.start()
    page = _page()
    assert page.create_item("cov")["preview"] == "./sd_extra_networks/cover-images?page=lora&item=cov"
    assert page.create_item("badcov")["preview"] is None


# -------------------------------------------------------------------- editor

def test_metadata_editor(webui):
    webui.write("a", seed=1, metadata={"ss_tag_frequency": json.dumps({"x": {"cat": 3, "dog": 1}})})
    w = webui.start()
    page = _page()
    page.items = {i["name"]: i for i in page.list_items()}
    editor = page.create_user_metadata_editor(None, "txt2img")
    values = editor.put_values_into_components("a")
    assert len(values) == 13
    report, chart = values[11], values[12]
    assert "fits" in report and "lycoris-chart" in chart
    editor.save_lycoris_user_metadata("a", "desc", "SD1", "trig", 0.7, "neg", "OUTS", "notes")
    saved = json.load(open(webui.lora_dir / "a.json"))
    assert saved == {"description": "desc", "sd version": "SD1", "activation text": "trig", "preferred weight": 0.7,
                     "negative text": "neg", "preferred block weights": "OUTS", "notes": "notes"}
    import gradio as gr

    with pytest.raises(gr.Error):
        editor.save_lycoris_user_metadata("a", "", "SD1", "", 0, "", "1,2,3", "")


# --------------------------------------------------------------------- panel

def test_block_panel_logic(webui):
    from lycoris_ext.resolve.lbw import read_presets
    from lycoris_ext.webui.panel import PanelLogic

    webui.write("a", seed=1)
    w = webui.start()
    logic = PanelLogic(w.ext)
    prompt = 'x <lora:a:1:lbw=OUTS> <lyco:"q:r":1> <lora:a:0.5>'
    assert logic.networks_in_prompt(prompt) == ["a", "q:r"]
    values, info = logic.select("a", prompt)
    assert values[0] == 1 and values[1:5] == [0, 0, 0, 0]  # OUTS: BASE 1, IN blocks 0
    assert "lycoris-block on" in info
    spec = logic.spec_from_values(values)
    assert len(spec.split(",")) == 26
    names = logic.save("mine", values)
    assert "mine" in names and read_presets(w.ext.presets_path())["mine"] == spec
    assert logic.values_for("mine") == values


def test_block_panel_ui_built(webui):
    import gradio as gr

    w = webui.start("sdxl")
    sliders = [c for c in gr.created if (getattr(c, "elem_id", None) or "").startswith("txt2img_lycoris_block_")]
    tx = [s for s in sliders if s.elem_id.count("_") == 3]
    assert len(tx) == 26
    assert sum(1 for s in tx if s.visible is False) == 6  # SDXL: IN09-11, OUT09-11 hidden


def test_block_panel_events(webui):
    """The panel's handlers, as gradio calls them: one value per output; a preset
    fills the sliders and keeps the block badges; picking a network clears the preset."""
    import gradio as gr

    webui.write("a", seed=1)
    w = webui.start()

    def handler(elem_id, trigger):
        block = gr.find(elem_id)
        (ev,) = [e for e in block.events if e.trigger == trigger]
        return ev

    pick = handler("txt2img_lycoris_blocks_network", "change")
    out = pick("a", "x <lora:a:1:lbw=OUTS>")
    assert len(out) == len(pick.outputs)
    info, preset, message, *values = out
    assert "lycoris-block on" in info and preset["value"] is None and message == ""
    assert [v["value"] for v in values][:5] == [1, 0, 0, 0, 0]
    choose = handler("txt2img_lycoris_blocks_preset", "change")
    assert choose.outputs[0] is gr.find("txt2img_lycoris_blocks_message")  # not the badges
    out = choose("MIDD")
    assert len(out) == len(choose.outputs) and out[0] == "" and len(out[1:]) == 26
    out = choose(None)  # cleared when a network is picked: nothing changes
    assert all(o == gr.update() for o in out)
    out = choose("no such preset")
    assert "lycoris-error" in out[0] and all(o == gr.update() for o in out[1:])
    save = handler("txt2img_lycoris_blocks_save", "click")
    names, msg = save("mine", *([0.5] * 26))
    assert "mine" in names["choices"] and msg == ""


def test_install_py(monkeypatch):
    import importlib.util
    import runpy

    from conftest import REPO

    runpy.run_path(os.path.join(REPO, "install.py"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "safetensors" else real(n, *a))
    with pytest.raises(RuntimeError) as info:
        runpy.run_path(os.path.join(REPO, "install.py"))
    assert "safetensors" in str(info.value)
