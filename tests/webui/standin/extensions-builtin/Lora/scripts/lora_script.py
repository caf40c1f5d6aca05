"""A tiny stand-in for A1111 v1.10.1's builtin ``extensions-builtin/Lora`` extension, for tests that
need it present (``a1111.load_builtin_lora()``), e.g. to check which "lora" network wins.

What it reproduces is the builtin's *registration footprint*, not its network code:
* canonical extension name ``lora`` and script file ``lora_script.py``, so its callbacks are named
  ``lora/lora_script.py/<category>`` (what a metadata.ini ``Before=``/``After=`` refers to);
* an ``on_before_ui`` callback that registers a page titled "Lora" (name/tabname ``lora``), an
  ``ExtraNetwork`` named ``lora`` and the alias ``lyco`` for it, like the real ``before_ui``;
* ``on_model_loaded``, ``on_script_unloaded``, two ``on_infotext_pasted`` and one ``on_app_started``
  registration (adding ``GET /sdapi/v1/loras`` -> [] and ``POST /sdapi/v1/refresh-loras`` -> null);
* the builtin's ``extra_networks`` options (``sd_lora``, ``lora_preferred_name``,
  ``lora_add_hashes_to_infotext``, ``lora_bundled_ti_to_infotext``, ``lora_show_all``,
  ``lora_hide_unknown_for_versions``, ``lora_in_memory_limit``, ``lora_not_found_warning_console``,
  ``lora_not_found_gradio_warning``) and ``lora_functional`` under compatibility, added at import with
  ``shared.options_templates.update``.
The network only records its ``activate``/``deactivate`` calls in ``FakeBuiltinLora.calls``; the page
lists no items. Nothing here is the builtin's code.
"""

from modules import extra_networks, script_callbacks, shared, ui_extra_networks


class FakeBuiltinLora(extra_networks.ExtraNetwork):
    calls = []

    def __init__(self):
        super().__init__('lora')
        self.errors = {}

    def activate(self, p, params_list):
        FakeBuiltinLora.calls.append(("activate", [x.items for x in params_list]))

    def deactivate(self, p):
        FakeBuiltinLora.calls.append(("deactivate",))


class FakeBuiltinLoraPage(ui_extra_networks.ExtraNetworksPage):
    def __init__(self):
        super().__init__('Lora')

    def create_item(self, name, index=None, enable_filter=True):
        return None

    def list_items(self):
        return iter(())

    def allowed_directories_for_previews(self):
        return [shared.cmd_opts.lora_dir, shared.cmd_opts.lyco_dir_backcompat]


state = {"network": None, "page": None}


def before_ui():
    state["page"] = FakeBuiltinLoraPage()
    ui_extra_networks.register_page(state["page"])
    state["network"] = FakeBuiltinLora()
    extra_networks.register_extra_network(state["network"])
    extra_networks.register_extra_network_alias(state["network"], "lyco")


def assign_network_names_to_compvis_modules(sd_model):
    pass


def unload():
    pass


def infotext_pasted_addnet(infotext, params):
    pass


def infotext_pasted(infotext, d):
    pass


def api_networks(_, app):
    @app.get("/sdapi/v1/loras")
    async def get_loras():
        return []

    @app.post("/sdapi/v1/refresh-loras")
    async def refresh_loras():
        return None


script_callbacks.on_model_loaded(assign_network_names_to_compvis_modules)
script_callbacks.on_script_unloaded(unload)
script_callbacks.on_before_ui(before_ui)
script_callbacks.on_infotext_pasted(infotext_pasted_addnet)

shared.options_templates.update(shared.options_section(('extra_networks', "Extra Networks"), {
    "sd_lora": shared.OptionInfo("None", "Add network to prompt", None, {"choices": ["None"]}),
    "lora_preferred_name": shared.OptionInfo("Alias from file", "When adding to prompt, refer to Lora by", None, {"choices": ["Alias from file", "Filename"]}),
    "lora_add_hashes_to_infotext": shared.OptionInfo(True, "Add Lora hashes to infotext"),
    "lora_bundled_ti_to_infotext": shared.OptionInfo(True, "Add Lora name as TI hashes for bundled Textual Inversion"),
    "lora_show_all": shared.OptionInfo(False, "Always show all networks on the Lora page"),
    "lora_hide_unknown_for_versions": shared.OptionInfo([], "Hide networks of unknown versions for model versions", None, {"choices": ["SD1", "SD2", "SDXL"]}),
    "lora_in_memory_limit": shared.OptionInfo(0, "Number of Lora networks to keep cached in memory", None, {"precision": 0}),
    "lora_not_found_warning_console": shared.OptionInfo(False, "Lora not found warning in console"),
    "lora_not_found_gradio_warning": shared.OptionInfo(False, "Lora not found warning popup in webui"),
}))
shared.options_templates.update(shared.options_section(('compatibility', "Compatibility"), {
    "lora_functional": shared.OptionInfo(False, "Lora/Networks: use old method that takes longer when you have multiple Loras active and produces same results as kohya-ss/sd-webui-additional-networks extension"),
}))

script_callbacks.on_app_started(api_networks)
script_callbacks.on_infotext_pasted(infotext_pasted)
shared.opts.onchange("lora_in_memory_limit", lambda: None)
