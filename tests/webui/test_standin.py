"""Self-tests of the A1111 v1.10.1 stand-in: its behaviour matches the real WebUI on the points the
extension's glue depends on (each expectation below is taken from the real source)."""

import json
import os
import textwrap

import pytest

import a1111  # noqa: F401  (puts the stand-in first on sys.path)

import gradio as gr
import torch
from modules import (
    errors, extra_networks, infotext_utils, processing, script_callbacks, scripts, shared,
    ui_extra_networks,
)
from modules.extra_networks import ExtraNetworkParams


@pytest.fixture(autouse=True)
def _fresh():
    a1111.reset()
    yield
    a1111.reset()


class Recorder(extra_networks.ExtraNetwork):
    def __init__(self, name, fail_on=None):
        super().__init__(name)
        self.calls = []
        self.fail_on = fail_on

    def activate(self, p, params_list):
        self.calls.append(("activate", [x.items for x in params_list]))
        if self.fail_on and any(x.items[0] == self.fail_on for x in params_list):
            raise ValueError("boom")

    def deactivate(self, p):
        self.calls.append(("deactivate",))


def write_extension(root, dirname, files):
    path = os.path.join(root, dirname)
    for rel, text in files.items():
        full = os.path.join(path, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf8") as f:
            f.write(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------------
# extra_networks


def test_params_split_named_positional_and_equality():
    p = ExtraNetworkParams(items=["net", "0.5", "te=0.8", "a=b=c", "", 1.25])
    assert p.positional == ["net", "0.5", "a=b=c", "", 1.25]
    assert p.named == {"te": "0.8"}
    assert ExtraNetworkParams(items=["x", "1"]) == ExtraNetworkParams(items=["x", "1"])
    assert ExtraNetworkParams(items=["x", "1"]) != ExtraNetworkParams(items=["x", "1.0"])
    with pytest.raises(TypeError):
        hash(p)
    # key and value are not stripped
    assert ExtraNetworkParams(items=[" te = 1"]).named == {" te ": " 1"}


def test_parse_prompt_and_first_prompt_rule():
    text, data = extra_networks.parse_prompt("a, <lora:x::1>, b <lyco:y:0.5:unet=0.2> <lora:z>")
    assert text == "a, , b  "
    assert list(data) == ["lora", "lyco"]
    assert [x.items for x in data["lora"]] == [["x", "", "1"], ["z"]]
    assert data["lyco"][0].named == {"unet": "0.2"}
    # names are \w+ only: a dash does not match
    assert extra_networks.parse_prompt("<my-net:a>")[1] == {}

    prompts, data = extra_networks.parse_prompts(["one <lora:a:1>", "two <lora:b:1> <hypernet:h>"])
    assert prompts == ["one ", "two  "]
    assert list(data) == ["lora"] and data["lora"][0].items == ["a", "1"]
    assert extra_networks.parse_prompts([]) == ([], None)


def test_lookup_alias_only_when_name_unregistered_and_lists_merge():
    lora = Recorder("lora")
    other = Recorder("lyco")
    extra_networks.register_extra_network(lora)
    extra_networks.register_extra_network_alias(lora, "lyco")
    _, data = extra_networks.parse_prompt("<lyco:a:1><lora:b:1><unknown:c>")
    res = extra_networks.lookup_extra_networks(data)
    assert list(res) == [lora] and [x.items[0] for x in res[lora]] == ["a", "b"]

    extra_networks.register_extra_network(other)
    res = extra_networks.lookup_extra_networks(data)
    assert res[other][0].items[0] == "a" and res[lora][0].items[0] == "b"


def test_activate_calls_unmentioned_with_empty_and_retries_failures_with_empty():
    a, b, c = Recorder("aaa", fail_on="bad"), Recorder("bbb"), Recorder("ccc")
    for net in (a, b, c):
        extra_networks.register_extra_network(net)

    seen = {}

    class Runner:
        def after_extra_networks_activate(self, p, **kwargs):
            seen.update(kwargs)

    p = a1111.processing.StableDiffusionProcessingTxt2Img(prompt="x")
    p.scripts_value = Runner()
    p.prompts, p.seeds, p.subseeds, p.iteration = ["x"], [1], [2], 3
    _, data = extra_networks.parse_prompt("<aaa:bad><ccc:n:1>")
    extra_networks.activate(p, data)

    assert a.calls == [("activate", [["bad"]]), ("activate", [])]
    assert b.calls == [("activate", [])]
    assert c.calls == [("activate", [["n", "1"]])]
    assert [r for r in errors.reported if r[0] == "display"][0][1].startswith("activating extra network aaa with arguments")
    assert seen["batch_number"] == 3 and seen["extra_network_data"] is data and seen["seeds"] == [1]

    extra_networks.deactivate(p, data)
    assert a.calls[-1] == ("deactivate",) and b.calls[-1] == ("deactivate",)


# ---------------------------------------------------------------------------------------------------
# callbacks, extension loading, startup order


def test_callback_names_and_duplicates(tmp_path):
    path = write_extension(tmp_path, "My-Ext", {"scripts/s.py": """
        from modules import script_callbacks
        def f(): pass
        script_callbacks.on_before_ui(f)
        script_callbacks.on_before_ui(f)
        script_callbacks.on_before_ui(f, name="named")
    """})
    a1111.load_extension(path)
    names = [c.name for c in script_callbacks.callback_map["callbacks_before_ui"]]
    assert names == ["my-ext/s.py/before_ui", "my-ext/s.py/before_ui-1", "my-ext/s.py/before_ui/named"]


def test_scripts_load_like_load_module(tmp_path):
    path = write_extension(tmp_path, "ext", {"scripts/main.py": """
        import sys
        from modules import scripts
        BASEDIR = scripts.basedir()
        ON_PATH = sys.path[0]
        class S(scripts.Script):
            def title(self): return "S"
            def show(self, is_img2img): return scripts.AlwaysVisible
    """})
    ext = a1111.load_extension(path, name="renamed")
    mod = ext.modules["main.py"]
    assert mod.__name__ == "main.py" and "main.py" not in __import__("sys").modules
    assert mod.BASEDIR == ext.path == mod.ON_PATH
    assert scripts.basedir() != ext.path
    names = [(d.script_class.__name__, d.module.__name__) for d in scripts.scripts_data]
    assert names[0][1] == "xyz_grid.py" and ("S", "main.py") in names
    assert ext.canonical_name == "renamed"


def _conflict_extension(tmp_path, with_before):
    files = {"scripts/mine.py": """
        from modules import extra_networks, script_callbacks
        class Mine(extra_networks.ExtraNetwork):
            def __init__(self): super().__init__('lora')
            def activate(self, p, params_list): pass
            def deactivate(self, p): pass
        ORDER = []
        def before_ui():
            ORDER.append('mine')
            extra_networks.register_extra_network(Mine())
        extra_networks.register_extra_network(Mine())   # at import: wiped by startup
        script_callbacks.on_before_ui(before_ui)
    """}
    if with_before:
        files["metadata.ini"] = """
            [callbacks/lycoris-ext/mine.py/before_ui]
            Before = lora/lora_script.py/before_ui
        """
    return write_extension(tmp_path, "checkout", files)


@pytest.mark.parametrize("with_before", [False, True])
def test_before_ui_reverse_order_and_metadata_before(tmp_path, with_before):
    a1111.load_builtin_lora()
    ext = a1111.load_extension(_conflict_extension(tmp_path, with_before), name="lycoris-ext")
    assert type(extra_networks.extra_network_registry["lora"]).__name__ == "Mine"  # import-time registration

    a1111.start_ui(build_ui=False)

    winner = type(extra_networks.extra_network_registry["lora"]).__name__
    names = [c.name for c in script_callbacks.ordered_callbacks("before_ui")]
    if with_before:
        assert names == ["lycoris-ext/mine.py/before_ui", "lora/lora_script.py/before_ui"]
        assert winner == "Mine"          # ran last because before_ui runs in reverse
    else:
        assert names == ["lora/lora_script.py/before_ui", "lycoris-ext/mine.py/before_ui"]
        assert winner == "FakeBuiltinLora"
    assert ext.modules["mine.py"].ORDER == ["mine"]
    # "lyco" is an alias of the builtin's network in both cases; "hypernet" is the default network
    assert "lyco" in extra_networks.extra_network_aliases and "hypernet" in extra_networks.extra_network_registry
    assert [p.name for p in ui_extra_networks.extra_pages] == ["lora"]


def test_dispatchers_catch_exceptions_and_script_unloaded_is_reversed(tmp_path):
    order = []
    script_callbacks.on_script_unloaded(lambda: order.append(1))
    script_callbacks.on_script_unloaded(lambda: 1 / 0)
    script_callbacks.on_script_unloaded(lambda: order.append(3))
    script_callbacks.script_unloaded_callback()
    assert order == [3, 1]
    assert any("Error executing callback script_unloaded" in r[1] for r in errors.reported)


# ---------------------------------------------------------------------------------------------------
# options


def test_options_behaviour():
    opts = shared.opts
    assert opts.extra_networks_default_multiplier == 1.0 and opts.extra_networks_tree_view_style == "Dirs"
    assert opts.samples_format == "png" and opts.persistent_cond_cache is True and opts.batch_cond_uncond is True
    with pytest.raises(AttributeError):
        opts.no_such_option  # noqa: B018
    info = shared.OptionInfo(2, "x").info("hint").needs_reload_ui().link("wiki", "u")
    assert info.comment_after == "<span class='info'>(hint)</span> <span class='info'>(requires Reload UI)</span>"
    calls = []
    opts.add_option("my_opt", info)
    opts.onchange("my_opt", lambda: calls.append(opts.my_opt))
    assert calls == [2]
    assert opts.set("my_opt", 3) is True and calls == [2, 3]
    assert opts.set("my_opt", 3) is False
    shared.options_templates.update(shared.options_section(("s", "S"), {"late_opt": shared.OptionInfo("d", "late")}))
    assert opts.late_opt == "d" and shared.options_templates["late_opt"].section == ("s", "S")


# ---------------------------------------------------------------------------------------------------
# extra networks page


class Page(ui_extra_networks.ExtraNetworksPage):
    def __init__(self, root):
        super().__init__("Test Nets")
        self.root = root
        self.created = []

    def allowed_directories_for_previews(self):
        return [self.root]

    def create_item(self, name, index=None, enable_filter=True):
        self.created.append((name, enable_filter))
        path = os.path.join(self.root, name)
        return {
            "name": name, "filename": path + ".safetensors", "shorthash": "abc",
            "preview": self.find_preview(path), "description": self.find_description(path),
            "search_terms": [self.search_terms_from_path(path + ".safetensors")],
            "local_preview": f"{path}.png", "metadata": {"ss_x": "1", "ssmd_cover_images": "[]"},
            "prompt": ui_extra_networks.quote_js(f"<t:{name}:") + " + opts.extra_networks_default_multiplier + " + ui_extra_networks.quote_js(">"),
            "sort_keys": {"default": index or 0, **self.get_sort_keys(path + ".safetensors")},
        }

    def list_items(self):
        for i, name in enumerate(["a", "sub/b"]):
            yield self.create_item(name, i)


def test_create_item_html_escaping_and_args(tmp_path):
    page = Page(str(tmp_path))
    item = {"name": 'we<ird>&"', "filename": str(tmp_path / "x.safetensors"), "local_preview": str(tmp_path / "x.png"),
            "prompt": '"<lora:x:" + opts.extra_networks_default_multiplier + ">"', "description": "<b>d</b>",
            "search_terms": ["<raw>"], "sort_keys": {"name": 'a"b'}}
    args = page.create_item_html("txt2img", item)
    assert args["name"] == "we&lt;ird&gt;&amp;&quot;"
    assert args["card_clicked"] == "cardClicked(&#x27;txt2img&#x27;, &quot;&lt;lora:x:&quot; + opts.extra_networks_default_multiplier + &quot;&gt;&quot;, &#x27;&#x27;, false);"
    assert args["description"] == "&lt;b&gt;d&lt;/b&gt;"
    assert args["search_terms"] == "<span class='hidden search_terms'><raw></span>"
    assert args["sort_keys"] == 'data-sort-name="a&quot;b"'
    assert args["metadata_button"] == ""
    assert "extraNetworksEditUserMetadata(event, 'txt2img', 'test_nets')" in args["edit_button"]
    assert args["local_preview"] == ui_extra_networks.quote_js(str(tmp_path / "x.png"))
    assert args["style"] == "font-size: 100.0%;"
    shared.opts.extra_networks_card_description_is_html = True
    assert page.create_item_html("txt2img", item)["description"] == "<b>d</b>"

    html_card = page.create_item_html("txt2img", {**item, "metadata": {"a": 1}}, shared.html("extra-networks-card.html"))
    assert 'data-name="we&lt;ird&gt;&amp;&quot;"' in html_card
    assert "extraNetworksRequestMetadata(event, 'test_nets')" in html_card
    assert f'data-clipboard-text="{item["filename"]}"' in html_card

    hidden = {**item, "filename": str(tmp_path / ".hid" / "x.safetensors")}
    assert page.create_item_html("txt2img", hidden)["search_only"] == " search_only"
    shared.opts.extra_networks_hidden_models = "Never"
    assert page.create_item_html("txt2img", hidden, "{name}") == ""
    assert ui_extra_networks.quote_js('a"b\\c\n') == '"a\\"b\\\\c\n"'


def test_page_html_sort_keys_swap_tree_view_and_routes(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ["a.safetensors", "a.png", "a.txt", "sub/b.safetensors"]:
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"description": "from json"}))
    page = Page(str(tmp_path))
    ui_extra_networks.register_page(page)
    assert ui_extra_networks.allowed_dirs == {str(tmp_path)}

    html = page.create_html("txt2img")
    assert "txt2img_test_nets_cards" in html and "txt2img_test_nets_dirs" in html
    a = page.items["a"]
    assert a["preview"].startswith("./sd_extra_networks/thumb?filename=") and a["description"] == "from json"
    assert a["search_terms"] == [os.path.join(tmp_path.name, "a.safetensors")]
    st = os.stat(tmp_path / "a.safetensors")
    assert a["sort_keys"]["date_created"] == int(st.st_mtime) and a["sort_keys"]["date_modified"] == int(st.st_ctime)
    assert page.metadata["a"]["ss_x"] == "1"

    shared.opts.extra_networks_tree_view_style = "Tree"
    assert "data-hash=\"abc\"" in page.create_html("txt2img")

    from fastapi import FastAPI
    app = FastAPI()
    ui_extra_networks.add_pages_to_demo(app)
    c = a1111.client(app)
    meta = c.get("/sd_extra_networks/metadata", params={"page": "test nets", "item": "a"}).json()
    assert json.loads(meta["metadata"]) == {"ss_x": "1"}
    assert c.get("/sd_extra_networks/metadata", params={"page": "nope", "item": "a"}).json() == {}
    card = c.get("/sd_extra_networks/get-single-card", params={"page": "test nets", "tabname": "img2img", "name": "a"}).json()
    assert page.created[-1] == ("a", False) and 'data-name="a"' in card["html"]
    assert c.get("/sd_extra_networks/thumb", params={"filename": str(tmp_path / "a.png")}).status_code == 200
    outside = tmp_path.parent / "outside.png"
    outside.write_bytes(b"x")
    assert c.get("/sd_extra_networks/thumb", params={"filename": str(outside)}).status_code == 500
    assert c.get("/sd_extra_networks/thumb", params={"filename": str(tmp_path / "zz.png")}).status_code == 404

    import base64
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    page.metadata["a"]["ssmd_cover_images"] = json.dumps([base64.b64encode(buf.getvalue()).decode()])
    assert page.find_embedded_preview(str(tmp_path / "a"), "a", page.metadata["a"]) == "./sd_extra_networks/cover-images?page=test_nets&item=a"
    r = c.get("/sd_extra_networks/cover-images", params={"page": "test nets", "item": "a"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert c.get("/sd_extra_networks/cover-images", params={"page": "test nets", "item": "a", "index": 1}).status_code == 404


def test_user_metadata_editor_ids_and_handlers(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "sub" / "b.safetensors").write_bytes(b"x")
    page = Page(str(tmp_path))
    ui_extra_networks.register_page(page)   # too early: startup clears the pages
    script_callbacks.on_before_ui(lambda: ui_extra_networks.register_page(page))
    ui = a1111.start_ui()
    assert ui_extra_networks.extra_pages == [page]
    assert gr.find("txt2img_test_nets_cards_html").value.count("Loading...") == 1

    box = gr.find("txt2img_test_nets_edit_user_metadata")
    assert isinstance(box, gr.Box) and box.visible is False and box.elem_classes == ["edit-user-metadata"]
    assert gr.find("txt2img_test_nets_edit_user_metadata_name").visible is False
    button = gr.find("txt2img_test_nets_edit_user_metadata_button")
    page.create_html("txt2img")
    ev = button.events[0]
    name, desc, table, card, notes = ev("a")
    assert name == "a" and "<th>Filename: </th><td>a.safetensors</td>" in table and ev.chain[0].trigger == "then"

    editor = ui.extra_networks_ui["txt2img"].user_metadata_editors[0]
    save = editor.button_save.events[0]
    save("a", "new desc", "n")
    assert json.loads((tmp_path / "a.json").read_text()) == {"description": "new desc", "notes": "n"}
    assert 'extraNetworksRefreshSingleCard("test nets","txt2img", name)' in save.chain[0].js
    assert editor.button_cancel.events[0].js == "closePopup"


# ---------------------------------------------------------------------------------------------------
# processing


def _record_denoiser():
    seen = []
    script_callbacks.on_cfg_denoiser(lambda prm: seen.append((prm.sampling_step, prm.total_sampling_steps, prm.denoiser.step, tuple(prm.x.shape))))
    return seen


def test_cfg_denoiser_step_lag_euler_heun_and_hires():
    a1111.make_sd_model("sd15", 16)
    seen = _record_denoiser()
    processing.process_images(a1111.make_txt2img(prompt="x", steps=4, batch_size=2))
    assert [s[:3] for s in seen] == [(0, 4, 0), (0, 4, 1), (1, 4, 2), (2, 4, 3)]
    assert seen[0][3][0] == 4  # cond rows then uncond rows

    seen.clear()
    processing.process_images(a1111.make_txt2img(prompt="x", steps=3, sampler_name="Heun"))
    assert [s[0] for s in seen] == [0, 0, 0, 1, 1] and {s[1] for s in seen} == {3}

    seen.clear()
    processing.process_images(a1111.make_txt2img(prompt="x", steps=3, enable_hr=True, hr_second_pass_steps=2))
    assert [s[:2] for s in seen] == [(0, 3), (0, 3), (1, 3), (0, 2), (0, 2)]
    assert seen[-1][3][-1] == 16  # hires latents: 64 * 2 / 8


def test_process_order_conds_cache_and_deactivate_rule():
    a1111.make_sd_model("sd15", 16)
    net = Recorder("lora")
    extra_networks.register_extra_network(net)
    encoded = []

    def te(prompts):
        encoded.append((list(prompts), prompts.is_negative_prompt, len(net.calls)))
        return shared.sd_model.get_learned_conditioning(prompts)

    p = a1111.make_txt2img(prompt=["a <lora:n:1>", "b"], batch_size=1, n_iter=2)
    p.te_hook = te
    processing.process_images(p)
    # batch 0 activates the first prompt's networks, batch 1 (no token) calls activate with [];
    # conds are computed after activation (uc first); the last batch had no token -> no deactivate
    assert net.calls == [("activate", [["n", "1"]]), ("activate", [])]
    assert encoded == [([""], True, 1), (["a "], False, 1), ([""], True, 2), (["b"], False, 2)]

    encoded.clear()
    p = a1111.make_txt2img(prompt="a <lora:n:1>", batch_size=1, n_iter=2)
    p.te_hook = te
    processing.process_images(p)
    # the second batch has equal prompts and equal ExtraNetworkParams: cond cache hit, no encode
    assert encoded == [([""], True, 3), (["a "], False, 3)]
    assert net.calls[-2:] == [("activate", [["n", "1"]]), ("deactivate",)]


def test_hires_and_lowvram_activation_sequence():
    shared.cmd_opts.lowvram = True
    a1111.make_sd_model("sd15", 16)
    assert shared.sd_model.lowvram is True
    net = Recorder("lora")
    extra_networks.register_extra_network(net)
    p = a1111.make_txt2img(prompt="a <lora:first:1>", hr_prompt="a <lora:hr:1>", enable_hr=True, hr_second_pass_steps=1)
    processing.process_images(p)
    assert [c[1] for c in net.calls if c[0] == "activate"] == [[["first", "1"]], [["hr", "1"]], [["first", "1"]], [["hr", "1"]]]
    assert p.is_hr_pass is False


def test_infotext_quoting_and_parse_round_trip():
    a1111.make_sd_model("sd15", 16)
    p = a1111.make_txt2img(prompt="cat, <lora:n:1>", negative_prompt="bad", steps=2)
    p.extra_generation_params["Lora hashes"] = "n: 0123456789ab, m: ba9876543210"
    p.extra_generation_params["Note"] = 'say "hi"\nthere'
    p.extra_generation_params["Per image"] = ["only"]
    p.extra_generation_params["Computed"] = lambda p, index, **kw: f"i{index}"
    res = processing.process_images(p)
    info = res.infotexts[0]
    assert 'Lora hashes: "n: 0123456789ab, m: ba9876543210"' in info
    assert "Per image: only" in info and "Computed: i0" in info
    parsed = infotext_utils.parse_generation_parameters(info)
    # without p.scripts the batch prompts are not restored before the infotext: tokens stripped
    assert parsed["Prompt"] == "cat," and parsed["Negative prompt"] == "bad"
    assert parsed["Lora hashes"] == "n: 0123456789ab, m: ba9876543210"
    assert parsed["Note"] == 'say "hi"\nthere'
    assert parsed["Size-1"] == "64" and parsed["Clip skip"] == "1" and parsed["Steps"] == "2"
    assert infotext_utils.quote("a:b") == '"a:b"' and infotext_utils.quote("ab") == "ab"

    a1111.start_ui()  # with a script runner (as in the UI) the prompts are restored: tokens kept
    res = processing.process_images(a1111.make_txt2img(prompt="cat, <lora:n:1>", steps=1))
    assert infotext_utils.parse_generation_parameters(res.infotexts[0])["Prompt"] == "cat, <lora:n:1>"
    assert infotext_utils.unquote('"x, y"') == "x, y"


# ---------------------------------------------------------------------------------------------------
# xyz grid, gradio stand-in, model shapes


def test_xyz_grid_is_found_like_extensions_do_and_axes_snapshot_at_ui(tmp_path):
    path = write_extension(tmp_path, "ext", {"scripts/axes.py": """
        from modules import scripts
        for data in scripts.scripts_data:
            if data.script_class.__module__ == "xyz_grid.py" and hasattr(data, "module"):
                xyz = data.module
                xyz.axis_options.append(xyz.AxisOption("My axis", str, xyz.apply_field("my_field")))
    """})
    a1111.load_extension(path)
    xyz = a1111.find_script_module("xyz_grid.py")
    assert xyz.__name__ == "xyz_grid.py" and xyz.axis_options[-1].label == "My axis"
    assert xyz.format_value_add_label(None, xyz.axis_options[1], 0.123456789123) == "Seed: 0.12345679"

    a1111.make_sd_model("sd15", 16)
    ui = a1111.start_ui()
    script = ui.txt2img_runner.script("X/Y/Z plot")
    assert script.current_axis_options[-1].label == "My axis"
    x_type = gr.find("script_txt2img_xyz_plot_x_type")
    assert x_type.type == "index" and "My axis" in x_type.choices and "Image CFG Scale" not in x_type.choices

    p = a1111.make_txt2img(prompt="x", steps=1)
    idx = len(script.current_axis_options) - 1
    res = script.run(p, idx, "u, v", None, 0, "", None, 0, "", None, True, False, False, False, False, False, False, 0, False)
    assert len(res.images) == 2 and getattr(p, "my_field", None) is None


def test_gradio_records_kwargs_nesting_and_events():
    with gr.Blocks() as demo:
        with gr.Row(elem_id="r"):
            d = gr.Dropdown(["a", "b"], value="a", label="D", elem_classes="c")
            b = gr.Button("Go")
    ev = b.click(fn=lambda v: v + "!", inputs=[d], outputs=[d], _js="f").then(fn=None, js="g")
    assert d.choices == ["a", "b"] and d.value == "a" and d.elem_classes == ["c"] and d.parent.elem_id == "r"
    assert demo.children[0].children == [d, b]
    assert b.events[0]("x") == "x!" and b.events[0].js == "f" and ev.trigger == "then" and ev.js == "g"
    assert gr.update(visible=False) == {"visible": False, "__type__": "generic_update"}
    gr.Warning("w")
    assert gr.warnings == ["w"] and issubclass(gr.Error, Exception)


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_fake_model_shapes(family):
    model = a1111.make_sd_model(family, 16)
    assert model is shared.sd_model and model.sd_checkpoint_info.shorthash == model.sd_model_hash
    if family == "sdxl":
        assert model.is_sdxl and [e.wrapped for e in model.conditioner.embedders]
        c = model.get_learned_conditioning(["x", "y"])
        assert set(c) == {"crossattn", "vector"} and c["crossattn"].shape[:2] == (2, 77)
        assert model.cond_stage_key == "txt"
    else:
        assert model.cond_stage_model.wrapped is not None and model.cond_stage_key == "crossattn"
        assert getattr(model, f"is_{'sd1' if family == 'sd15' else 'sd2'}")
    names = {n for n, _ in model.named_modules()}
    assert any(n.startswith("model.diffusion_model.input_blocks") for n in names)
    res = processing.process_images(a1111.make_txt2img(prompt="x", steps=1))
    assert torch.isfinite(res.images[0]).all()


def test_model_loaded_callbacks_fire_on_load_and_checkpoint_switch():
    seen = []
    script_callbacks.on_model_loaded(lambda m: seen.append(m.sd_checkpoint_info.name_for_extra))
    a1111.make_sd_model("sd15", 16)
    other = a1111.make_sd_model("sd15", 16, name="other", load=False)
    from modules import sd_models
    sd_models.reload_model_weights(info=other.sd_checkpoint_info)
    assert seen == ["fake-sd15", "other"]
    assert sd_models.reload_model_weights() is shared.sd_model and seen == ["fake-sd15", "other"]


def test_reload_ui_unloads_and_reloads_scripts(tmp_path):
    path = write_extension(tmp_path, "ext", {"scripts/s.py": """
        import torch
        from modules import patches, script_callbacks
        LOG = []
        def forward(self, x):
            return torch.zeros(1)
        patches.patch(__name__, torch.nn.Identity, "forward", forward)
        script_callbacks.on_before_ui(lambda: LOG.append("before_ui"))
        script_callbacks.on_script_unloaded(lambda: (LOG.append("unloaded"), patches.undo(__name__, torch.nn.Identity, "forward")))
    """})
    first = a1111.load_extension(path).modules["s.py"]
    a1111.start_ui(build_ui=False)
    assert first.LOG == ["before_ui"] and torch.nn.Identity()(torch.ones(3)).shape == (1,)
    a1111.reload_ui(build_ui=False)
    second = extensions_modules("ext")["s.py"]
    assert first.LOG == ["before_ui", "unloaded"] and second is not first and second.LOG == ["before_ui"]
    a1111.reset()
    assert second.LOG == ["before_ui", "unloaded"] and torch.nn.Identity()(torch.ones(3)).shape == (3,)


def extensions_modules(name):
    from modules import extensions
    return extensions.loaded_extensions[name].modules
