"""Drive an extension as if inside AUTOMATIC1111 WebUI v1.10.1, with the stand-in in ``standin/``.

Importing this module puts ``tests/webui/standin`` first on ``sys.path``, so ``import modules.*`` and
``import gradio`` resolve to the stand-ins (see each stand-in file's docstring for what it keeps and
what it simplifies). Typical test::

    import a1111                      # before anything imports modules.* or gradio
    a1111.reset()
    a1111.load_builtin_lora()         # optional: the builtin Lora's registration footprint
    ext = a1111.load_extension(REPO, name="lycoris-ext")
    model = a1111.make_sd_model("sd15", shrink=16)
    ui = a1111.start_ui()             # before_ui (reverse order), settings, UI, routes, app_started
    p = a1111.make_txt2img(prompt="a <lora:x:0.5>", steps=3)
    res = processing.process_images(p)
    a1111.client(ui.app).get("/sd_extra_networks/metadata", params={...})

Import it as ``import a1111`` (tests/webui is on sys.path for the tests there), not as
``webui.a1111``: one copy of its state.

Startup order reproduced by ``start_ui`` (webui.py + modules/initialize.py + ui.create_ui):
  [scripts already loaded: root ``scripts/`` (xyz_grid.py) first, then extensions in load order]
  ui_extra_networks.initialize(); register_default_pages(); extra_networks.initialize();
  register_default_extra_networks()  -> registrations made at import time are wiped, as in A1111
  script_callbacks.before_ui_callback()   (callbacks in reverse of their metadata.ini-sorted order)
  script_callbacks.ui_settings_callback()
  txt2img then img2img: ScriptRunner.initialize_scripts, always-on script UIs, the Script dropdown,
      a gallery, ui_extra_networks.create_ui(...) (page.create_html(empty=True), user metadata editors)
      and ui_extra_networks.setup_ui(...)
  script_callbacks.ui_tabs_callback(); the demo Blocks
  app = fastapi.FastAPI(); ui_extra_networks.add_pages_to_demo(app)
  script_callbacks.app_started_callback(demo, app)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import types
import zlib

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin")
if sys.path[:1] != [STANDIN]:
    while STANDIN in sys.path:
        sys.path.remove(STANDIN)
    sys.path.insert(0, STANDIN)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import gradio as gr  # noqa: E402
from modules import (  # noqa: E402
    cache, errors, extensions, extra_networks, hashes, lowvram, patches, paths, processing, script_callbacks,
    script_loading, scripts, sd_hijack, sd_models, shared, shared_cmd_options, shared_options, ui_extra_networks,
)

BUILTIN_SCRIPTS_DIR = os.path.join(STANDIN, "scripts_builtin")
BUILTIN_LORA_DIR = os.path.join(STANDIN, "extensions-builtin", "Lora")
PROCESSING_SCRIPTS = {"comments.py"}

_state = {"builtin_scripts_loaded": False, "loaded_extensions": []}


# --------------------------------------------------------------------------------------------------
# reset


def reset(*, unload=True):
    """Clear every registry, callback, option and cache of the stand-in (call at the start of a test).
    With ``unload`` (default) the ``script_unloaded`` callbacks run first (in reverse order, as on a UI
    reload) so extensions can undo their hooks; patches made through ``modules.patches`` are undone."""
    if unload:
        script_callbacks.script_unloaded_callback()
    extra_networks.initialize()
    ui_extra_networks.initialize()
    ui_extra_networks.allowed_dirs.clear()
    script_callbacks.clear_callbacks()
    scripts.reset()
    script_loading.loaded_scripts.clear()
    extensions.reset()

    shared_cmd_options.reset()
    shared.options_templates.clear()
    shared.options_templates.update(shared_options.builtin_templates())
    shared.opts.data = {k: v.default for k, v in shared.options_templates.items() if not v.do_not_save}
    for key in [k for k in vars(shared.opts) if k not in _OPTS_FIELDS]:
        delattr(shared.opts, key)

    shared.state.__init__()
    shared.demo = None
    shared.sd_upscalers.clear()
    sd_models.reset()
    sd_hijack.model_hijack.__init__()
    lowvram.module_in_gpu = None

    processing.StableDiffusionProcessing.cached_c = [None, None]
    processing.StableDiffusionProcessing.cached_uc = [None, None]
    processing.StableDiffusionProcessingTxt2Img.cached_hr_c = [None, None]
    processing.StableDiffusionProcessingTxt2Img.cached_hr_uc = [None, None]

    patches.undo_all()
    cache.reset()
    hashes.computed.clear()
    errors.reset()
    gr.reset()

    _state["builtin_scripts_loaded"] = False
    _state["loaded_extensions"].clear()


_OPTS_FIELDS = {"data_labels", "data", "restricted_opts"}


# --------------------------------------------------------------------------------------------------
# loading scripts and extensions


def _ensure_runners():
    if scripts.scripts_txt2img is None:
        scripts.scripts_txt2img = scripts.ScriptRunner()
    if scripts.scripts_img2img is None:
        scripts.scripts_img2img = scripts.ScriptRunner()


def load_builtin_scripts():
    """Load the WebUI's own ``scripts/`` (the xyz_grid.py stand-in) as ``load_scripts`` does first:
    module name = file name, ``basedir`` = the WebUI root. Idempotent until ``reset()``."""
    if _state["builtin_scripts_loaded"]:
        return
    _state["builtin_scripts_loaded"] = True
    # scripts/ first, then modules/processing_scripts/ (comments.py); A1111 loads the latter after
    # the extensions' scripts, here before them (no test depends on that order).
    for filename in sorted(os.listdir(BUILTIN_SCRIPTS_DIR), key=lambda f: (f in PROCESSING_SCRIPTS, f)):
        path = os.path.join(BUILTIN_SCRIPTS_DIR, filename)
        if filename.endswith(".py") and os.path.isfile(path):
            scripts.load_script_file(scripts.ScriptFile(paths.script_path, filename, path))
    _ensure_runners()


def load_extension(ext_dir, *, name=None, builtin=False, enabled=True):
    """Register ``ext_dir`` as an installed extension (canonical name = ``name`` or the directory's
    basename, lower-cased; its ``metadata.ini`` is read) and run its ``scripts/*.py`` in filename order
    the way ``modules.scripts.load_scripts`` does: each file through ``script_loading.load_module``
    (module name = basename, not put in sys.modules), with the extension dir at the front of
    ``sys.path`` and ``scripts.current_basedir`` set only while the file runs, and every ``Script``
    subclass found appended to ``scripts.scripts_data`` as ``ScriptClassData``. The WebUI's own scripts
    (xyz_grid.py) are loaded first if they are not yet. Call order = load order (A1111 loads
    extensions-builtin before extensions/, each sorted by directory name). Returns the ``Extension``
    (with ``.modules``: ``{script filename: module}``)."""
    load_builtin_scripts()
    ext = extensions.register(ext_dir, is_builtin=builtin, enabled=enabled, name=name)
    if ext is None:
        raise RuntimeError(f"extension {ext_dir} clashes with an already registered canonical name")
    ext.modules = {}
    if ext in extensions.active():
        for scriptfile in ext.list_files("scripts", ".py"):
            ext.modules[scriptfile.filename] = scripts.load_script_file(scriptfile)
    _state["loaded_extensions"].append(ext)
    _ensure_runners()
    return ext


def load_builtin_lora(enabled=True):
    """Load the stand-in of the builtin Lora extension (canonical name ``lora``, callbacks named
    ``lora/lora_script.py/<category>``), as A1111 does before any user extension."""
    return load_extension(BUILTIN_LORA_DIR, builtin=True, enabled=enabled)


def find_script_module(module_name):
    """The module of the first ``scripts_data`` entry whose script class lives in ``module_name``
    (e.g. ``"xyz_grid.py"``), or None."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ == module_name and hasattr(data, "module"):
            return data.module
    return None


# --------------------------------------------------------------------------------------------------
# startup


class UiState(types.SimpleNamespace):
    """What start_ui() built: demo, app, txt2img/img2img interfaces, script runners, extra networks
    UIs (``extra_networks_ui[tabname]``), galleries, ``ui_tabs`` (from on_ui_tabs callbacks)."""

    def client(self):
        return client(self.app)


def _build_tab(tabname, is_img2img):
    runner = scripts.scripts_img2img if is_img2img else scripts.scripts_txt2img
    scripts.scripts_current = runner
    runner.initialize_scripts(is_img2img=is_img2img)

    with gr.Blocks(analytics_enabled=False) as interface:
        with gr.Tab("Generation", id=f"{tabname}_generation", elem_id=f"{tabname}_generation_tab") as generation_tab:
            gr.Textbox(label="Prompt", elem_id=f"{tabname}_prompt", lines=3)
            gr.Textbox(label="Negative prompt", elem_id=f"{tabname}_neg_prompt", lines=3)
            runner.prepare_ui()
            sections = []
            for script in runner.alwayson_scripts:
                if script.section not in sections:
                    sections.append(script.section)
            for section in sections:
                if section is not None:
                    runner.setup_ui_for_section(section)
            runner.setup_ui()
            gallery = gr.Gallery(label="Output", elem_id=f"{tabname}_gallery")
        en_ui = ui_extra_networks.create_ui(interface, [generation_tab], tabname)
        ui_extra_networks.setup_ui(en_ui, gallery)

    scripts.scripts_current = None
    return interface, en_ui, gallery


def start_ui(*, build_ui=True):
    """Run A1111's startup sequence after script loading (see module docstring); returns ``UiState``.
    With ``build_ui=False`` the txt2img/img2img/extra-networks UI is skipped (before_ui, ui_settings,
    ui_tabs and app_started still run)."""
    from fastapi import FastAPI

    load_builtin_scripts()
    _ensure_runners()

    ui_extra_networks.initialize()
    ui_extra_networks.register_default_pages()
    extra_networks.initialize()
    extra_networks.register_default_extra_networks()

    script_callbacks.before_ui_callback()

    script_callbacks.ui_settings_callback()

    st = UiState(extra_networks_ui={}, galleries={}, interfaces={})
    st.txt2img_runner = scripts.scripts_txt2img
    st.img2img_runner = scripts.scripts_img2img
    if build_ui:
        for tabname, is_img2img in (("txt2img", False), ("img2img", True)):
            interface, en_ui, gallery = _build_tab(tabname, is_img2img)
            st.interfaces[tabname] = interface
            st.extra_networks_ui[tabname] = en_ui
            st.galleries[tabname] = gallery

    st.ui_tabs = script_callbacks.ui_tabs_callback()

    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        with gr.Tabs(elem_id="tabs"):
            for tabname, interface in st.interfaces.items():
                with gr.Tab(tabname, id=tabname, elem_id=f"tab_{tabname}"):
                    pass
            for item in st.ui_tabs:
                interface, label, ifid = item[0], item[1], item[2]
                with gr.Tab(label, id=ifid, elem_id=f"tab_{ifid}"):
                    pass
    shared.demo = demo
    st.demo = demo

    app = FastAPI()
    ui_extra_networks.add_pages_to_demo(app)
    st.app = app

    script_callbacks.app_started_callback(demo, app)
    return st


def reload_ui(*, build_ui=True):
    """What "Reload UI" does (webui.py): ``app_reload_callback()``, ``script_unloaded_callback()``,
    then ``initialize_rest(reload_script_modules=True)`` - callbacks cleared, the WebUI's scripts and
    every extension loaded so far executed again (fresh module objects) in the same order - and the
    startup sequence of ``start_ui``. Returns the new ``UiState``."""
    script_callbacks.app_reload_callback()
    script_callbacks.script_unloaded_callback()
    loaded = [(ext.path, ext.name, ext.is_builtin, ext.enabled) for ext in _state["loaded_extensions"]]
    scripts.reset()
    script_callbacks.clear_callbacks()
    extensions.reset()
    _state["builtin_scripts_loaded"] = False
    _state["loaded_extensions"].clear()
    load_builtin_scripts()
    for path, name, builtin, enabled in loaded:
        load_extension(path, name=name, builtin=builtin, enabled=enabled)
    return start_ui(build_ui=build_ui)


def client(app):
    """A ``fastapi.testclient.TestClient`` for the app (needs httpx)."""
    from fastapi.testclient import TestClient
    return TestClient(app, raise_server_exceptions=False)


# --------------------------------------------------------------------------------------------------
# a fake sd_model shaped like A1111's


def _tokenize_one(text):
    return [zlib.crc32(w.encode("utf8")) % 49406 + 1 for w in re.findall(r"\w+|[^\w\s]", text.lower())]


def _first_linear(module):
    for _, m in module.named_modules():
        if isinstance(m, nn.Linear):
            return m
    return None


def _prompt_noise(prompt, n, dim, dtype):
    g = torch.Generator().manual_seed(zlib.crc32(prompt.encode("utf8")))
    return torch.randn((n, dim), generator=g).to(dtype)


class FakeTextEncoderWrapper(nn.Module):
    """Stands for A1111's hijacked text encoder (FrozenCLIPEmbedderWithCustomWords and friends):
    ``.wrapped`` is the original module (the synthetic part, with A1111's names)."""

    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped

    def tokenize(self, texts):
        return [_tokenize_one(t) for t in texts]

    def encode(self, prompts, tokens=77):
        lin = _first_linear(self.wrapped)
        p = next(self.wrapped.parameters())
        x = torch.stack([_prompt_noise(t, tokens, lin.in_features, p.dtype) for t in prompts]).to(p.device)
        return lin(x)


class FakeConditioner(nn.Module):
    """Stands for sgm's GeneralConditioner as A1111 uses it for SDXL (also ``sd_model.cond_stage_model``)."""

    def __init__(self, embedders):
        super().__init__()
        self.embedders = nn.ModuleList(embedders)

    def tokenize(self, texts):
        return [_tokenize_one(t) for t in texts]


class DiffusionWrapper(nn.Module):
    def __init__(self, diffusion_model, conditioning_key="crossattn"):
        super().__init__()
        self.diffusion_model = diffusion_model
        self.conditioning_key = conditioning_key


class FakeSdModel(nn.Module):
    """Shaped like A1111's ``shared.sd_model`` for the parts an extension touches.

    ``get_learned_conditioning(prompts)`` runs each text encoder's first ``nn.Linear`` (through its
    forward, so weight patches and forward hooks show) on per-prompt deterministic inputs: a
    ``(B, 77, context_dim)`` tensor (SD1/SD2) or ``{"crossattn": ..., "vector": ...}`` (SDXL).
    ``apply_model(x, t, cond)`` runs the UNet's ``input_blocks.0.0`` conv on ``x`` and the first
    ``attn2.to_k`` on the cross-attention context, and returns a tensor shaped like ``x``."""

    def __init__(self, family, parts):
        super().__init__()
        self.family = family
        self.model = DiffusionWrapper(parts["unet"])
        self.is_sd1 = family == "sd15"
        self.is_sd2 = family == "sd2"
        self.is_sdxl = family == "sdxl"
        self.is_ssd = False
        self.is_sd3 = False
        self.latent_channels = 4
        self.parameterization = "eps"
        self.lowvram = False
        self.first_stage_model = None
        if self.is_sdxl:
            self.conditioner = FakeConditioner([FakeTextEncoderWrapper(parts["te1"]), FakeTextEncoderWrapper(parts["te2"])])
            self.cond_stage_model = self.conditioner
            self.cond_stage_key = "txt"
        else:
            self.cond_stage_model = FakeTextEncoderWrapper(parts["te"])
            self.cond_stage_key = "crossattn"
        unet = parts["unet"]
        # the synthetic UNet root has no forward of its own: give it the stand-in's
        unet.forward = lambda x, t, context=None, _unet=unet: self._unet_forward(_unet, x, t, context)
        self._to_k_name = next((n for n, m in unet.named_modules() if n.endswith("attn2.to_k")), None)
        to_k = unet.get_submodule(self._to_k_name)
        self.context_dim = to_k.in_features
        label = next((m for n, m in unet.named_modules() if n.startswith("label_emb") and isinstance(m, nn.Linear)), None)
        self.adm_in_channels = label.in_features if label is not None else None
        self.sd_checkpoint_info = None
        self.sd_model_checkpoint = None
        self.sd_model_hash = None

    @contextlib.contextmanager
    def ema_scope(self, context=None):
        yield

    def _fit(self, c):
        d = self.context_dim
        if c.shape[-1] > d:
            return c[..., :d]
        if c.shape[-1] < d:
            return torch.nn.functional.pad(c, (0, d - c.shape[-1]))
        return c

    def get_learned_conditioning(self, prompts):
        prompts = list(prompts)
        if self.is_sdxl:
            c = torch.cat([e.encode(prompts) for e in self.conditioner.embedders], dim=-1)
            vector = torch.zeros((len(prompts), self.adm_in_channels or 1), dtype=c.dtype, device=c.device)
            return {"crossattn": self._fit(c), "vector": vector}
        return self._fit(self.cond_stage_model.encode(prompts))

    def apply_model(self, x, t, cond):
        """Through the UNet root module's own call (as DiffusionWrapper calls
        ``diffusion_model(x, t, context=...)``), so hooks on it fire."""
        if "c_crossattn" in cond:
            ctx = cond["c_crossattn"][0]
            ctx = ctx["crossattn"] if isinstance(ctx, dict) else ctx
        else:
            ctx = cond["crossattn"]
        return self.model.diffusion_model(x, t, context=ctx)

    def _unet_forward(self, unet, x, t, context=None):
        conv_in = unet.get_submodule("input_blocks.0.0")
        to_k = unet.get_submodule(self._to_k_name)
        h = conv_in(x.to(conv_in.weight.dtype))
        k = to_k(context.to(to_k.weight.dtype))
        return (h.mean(dim=1, keepdim=True) + k.mean(dim=(1, 2)).view(-1, 1, 1, 1)).expand_as(x).to(x.dtype)


_FAMILIES = {"sd15": "sd15", "sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}


def make_sd_model(family="sd15", shrink=16, *, seed=0, load=True, name=None):
    """Build a ``FakeSdModel`` from ``lycoris_ext.synthetic.build_model(family, shrink)``.

    SD1/SD2: ``cond_stage_model.wrapped`` = the 'te' part; SDXL: ``conditioner.embedders[0/1].wrapped``
    = 'te1'/'te2' (and ``cond_stage_model`` is the conditioner); ``model.diffusion_model`` = 'unet'.
    ``sd_checkpoint_info`` is a registered ``sd_models.CheckpointInfo`` (fake file under
    models/Stable-diffusion, a made-up sha256/shorthash), ``sd_model_checkpoint``/``sd_model_hash`` set.
    With ``load=True`` (default) the model becomes ``shared.sd_model`` the way ``sd_models.load_model``
    does it: lowvram flag applied from cmd_opts, ``model_data`` set, then ``model_loaded`` callbacks.
    ``opts.sd_model_checkpoint`` is set to its title."""
    from lycoris_ext.synthetic import build_model

    family = _FAMILIES[family]
    parts = build_model(family, shrink, seed=seed)
    model = FakeSdModel(family, parts)

    filename = os.path.join(sd_models.model_path, f"{name or 'fake-' + family}.safetensors")
    info = sd_models.CheckpointInfo(filename)
    info.sha256 = hashlib.sha256(f"{filename}|{seed}|{shrink}".encode()).hexdigest()
    info.shorthash = info.sha256[0:10]
    info.title = f'{info.name} [{info.shorthash}]'
    info.short_title = f'{info.name_for_extra} [{info.shorthash}]'
    info.ids += [info.shorthash, info.sha256, info.title, info.short_title]
    info.register()

    if load:
        sd_models.checkpoint_builders[info.filename] = lambda _info: model
        shared.opts.data["sd_model_checkpoint"] = info.title
        sd_models.load_model(info)
    else:
        model.sd_checkpoint_info = info
        model.sd_model_checkpoint = info.filename
        model.sd_model_hash = info.shorthash
        lowvram.apply(model)
    return model


# --------------------------------------------------------------------------------------------------
# processing helpers


def make_txt2img(*, script_args=None, runner=True, **kwargs):
    """A ``StableDiffusionProcessingTxt2Img`` with test-friendly defaults (64x64, 3 steps, seed 1,
    sampler "Euler") overridable by kwargs; ``p.scripts`` is ``scripts.scripts_txt2img`` when
    ``runner`` and it has been initialized (start_ui), ``p.script_args`` = ``script_args`` (a list as
    long as ``runner.inputs``: by default ``[0]`` then each control's ``value``)."""
    defaults = dict(prompt="", negative_prompt="", width=64, height=64, steps=3, seed=1, sampler_name="Euler", cfg_scale=7.0)
    defaults.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**defaults)
    _attach_runner(p, scripts.scripts_txt2img if runner else None, script_args)
    return p


def make_img2img(*, script_args=None, runner=True, **kwargs):
    """Same as make_txt2img for ``StableDiffusionProcessingImg2Img`` (``scripts.scripts_img2img``)."""
    defaults = dict(prompt="", negative_prompt="", width=64, height=64, steps=3, seed=1, sampler_name="Euler", cfg_scale=7.0, denoising_strength=0.5)
    defaults.update(kwargs)
    p = processing.StableDiffusionProcessingImg2Img(**defaults)
    _attach_runner(p, scripts.scripts_img2img if runner else None, script_args)
    return p


def default_script_args(runner):
    """``[0, *values of every script control]`` - what the UI would send with defaults."""
    return [0] + [getattr(c, "value", None) for c in runner.inputs[1:]]


def _attach_runner(p, runner, script_args):
    if runner is None or not runner.scripts:
        return
    p.scripts = runner
    p.script_args = list(script_args) if script_args is not None else default_script_args(runner)


__all__ = [
    "STANDIN", "reset", "load_builtin_scripts", "load_extension", "load_builtin_lora", "find_script_module",
    "start_ui", "reload_ui", "UiState", "client", "make_sd_model", "FakeSdModel", "make_txt2img", "make_img2img",
    "default_script_args",
]
