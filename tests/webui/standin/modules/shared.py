"""Stand-in for modules/shared.py (A1111 v1.10.1), with the ``sd_model`` property that
modules/shared_items.py grafts onto it.

Provides ``cmd_opts``, ``parser``, ``opts`` (an ``options.Options`` over ``options_templates`` - the same
dict object, so ``shared.options_templates.update(...)`` by an extension adds options), ``OptionInfo``,
``OptionHTML``, ``options_section``, ``restricted_opts``, ``state``, ``sd_model`` (get: the current
model from ``sd_models.model_data``; set: ``model_data.set_sd_model``), ``html``/``html_path``/
``walk_files``/``natural_sort_key``/``listfiles``, the path constants, ``hypernetworks``,
``sd_upscalers``, ``latent_upscale_modes``, ``prompt_styles`` and ``total_tqdm``.
Simplified: ``prompt_styles`` applies no styles; ``total_tqdm`` counts only; ``sd_model`` is never
loaded lazily (it is None until a test sets one, e.g. with ``a1111.make_sd_model``).
"""

import sys
import types

import gradio as gr

from modules import shared_cmd_options, options, util
from modules.paths_internal import models_path, script_path, data_path, sd_configs_path, sd_default_config, sd_model_file, default_sd_model_file, extensions_dir, extensions_builtin_dir  # noqa: F401

cmd_opts = shared_cmd_options.cmd_opts
parser = shared_cmd_options.parser

batch_cond_uncond = True
parallel_processing_allowed = True
styles_filename = []
config_filename = cmd_opts.ui_settings_file
hide_dirs = {"visible": not cmd_opts.hide_ui_dir_config}

demo = None
device = None
weight_load_location = None
xformers_available = False
hypernetworks = {}
loaded_hypernetworks = []
face_restorers = []
settings_components = None
tab_names = []
sd_upscalers = []
clip_model = None
progress_print_out = sys.stdout
gradio_theme = gr.themes.Base()
hf_endpoint = "https://huggingface.co"

latent_upscale_default_mode = "Latent"
latent_upscale_modes = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}

options_section = options.options_section
OptionInfo = options.OptionInfo
OptionHTML = options.OptionHTML

natural_sort_key = util.natural_sort_key
listfiles = util.listfiles
html_path = util.html_path
html = util.html
walk_files = util.walk_files
ldm_print = util.ldm_print


class _PromptStyles:
    styles = {}

    def apply_styles_to_prompt(self, prompt, styles):
        return prompt

    def apply_negative_styles_to_prompt(self, prompt, styles):
        return prompt

    def extract_styles_from_prompt(self, prompt, negative_prompt):
        return [], prompt, negative_prompt


class _TotalTQDM:
    def __init__(self):
        self.total = 0
        self.count = 0

    def update(self):
        self.count += 1

    def updateTotal(self, new_total):
        self.total = new_total

    def clear(self):
        self.count = 0


prompt_styles = _PromptStyles()
total_tqdm = _TotalTQDM()
interrogator = None
mem_mon = None


def reload_hypernetworks():
    pass


def list_checkpoint_tiles(use_short=False):
    from modules import sd_models
    return list(sd_models.checkpoints_list)


def refresh_checkpoints():
    pass


def reload_gradio_theme(theme_name=None):
    pass


from modules import shared_options  # noqa: E402
from modules.shared_state import State  # noqa: E402

options_templates = shared_options.options_templates
restricted_opts = shared_options.restricted_opts
opts = options.Options(options_templates, restricted_opts)
state = State()


class Shared(types.ModuleType):
    @property
    def sd_model(self):
        from modules import sd_models
        return sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        from modules import sd_models
        sd_models.model_data.set_sd_model(value)


sys.modules[__name__].__class__ = Shared
