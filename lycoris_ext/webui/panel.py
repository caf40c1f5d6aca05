"""The per-block weight panel in txt2img and img2img.

Pick a network from the prompt (or type its name); the model family decides
the sliders (26 for SD1/SD2, 20 for SDXL); presets fill them; the panel
writes or updates ``lbw=`` in that network's token (in the browser, so the
prompt box is edited where the user types) and shows which blocks the
network really changes. Custom presets are saved in LBW's file format.
"""

from __future__ import annotations

import gradio as gr

from modules import scripts

from ..resolve.lbw import ALL_BLOCKS, DEFAULT_PRESETS, LAYOUTS, BlockSpecError, format_block_weights, parse_block_weights, write_preset
from ..tokens import TokenError, find_tokens, parse_token
from . import host
from .html import block_badges, text

SDXL_HIDDEN = set(ALL_BLOCKS) - set(LAYOUTS[20])


class PanelLogic:
    """What the panel's buttons do, without any UI (tested directly)."""

    def __init__(self, ext):
        self.ext = ext

    @staticmethod
    def family() -> str:
        return "sdxl" if host.current_family() == "sdxl" else "sd"

    def networks_in_prompt(self, prompt: str) -> list[str]:
        names = []
        for _, items, _ in find_tokens(prompt or ""):
            try:
                name = parse_token(items).name
            except TokenError:
                continue
            if name not in names:
                names.append(name)
        return names

    def preset_names(self) -> list[str]:
        return [*DEFAULT_PRESETS, *sorted(self.ext.presets())]

    def values_for(self, spec: str | None) -> list[float]:
        """Slider values (all 26 blocks) for a spec; all 1 when there is none."""
        if not spec:
            return [1.0] * len(ALL_BLOCKS)
        weights = parse_block_weights(spec, self.ext.presets())
        return [weights[b] for b in ALL_BLOCKS]

    def current_spec(self, name: str, prompt: str) -> str | None:
        for _, items, _ in find_tokens(prompt or ""):
            try:
                spec = parse_token(items)
            except TokenError:
                continue
            if spec.name == name:
                return spec.lbw
        entry = self.ext.library.find(name)
        if entry is not None:
            from modules import extra_networks

            um = extra_networks.get_user_metadata(entry.path) or {}
            return str(um.get("preferred block weights") or "") or None
        return None

    def touched(self, name: str) -> dict[str, int]:
        entry = self.ext.library.find(name)
        rt = self.ext.runtime()
        if entry is None or rt is None:
            return {}
        try:
            net = self.ext.load(entry)
        except Exception:  # noqa: BLE001 - shown as "no blocks"
            return {}
        return dict(rt.resolution(net).matched_blocks())

    def select(self, name: str, prompt: str):
        """(slider values, info HTML) for the network chosen in the dropdown."""
        if not name:
            return [1.0] * len(ALL_BLOCKS), ""
        try:
            values = self.values_for(self.current_spec(name, prompt))
            err = ""
        except BlockSpecError as e:
            values, err = [1.0] * len(ALL_BLOCKS), f"<p class='lycoris-error'>{text(e)}</p>"
        layout = LAYOUTS[20] if self.family() == "sdxl" else LAYOUTS[26]
        if self.ext.library.find(name) is None:
            return values, err + f"<p class='lycoris-error'>{text(name)}: no such network</p>"
        return values, err + block_badges(list(layout), self.touched(name))

    def spec_from_values(self, values) -> str:
        fam = "sdxl" if self.family() == "sdxl" else "sd1"
        return format_block_weights(dict(zip(ALL_BLOCKS, values)), fam)

    def save(self, preset_name: str, values) -> list[str]:
        write_preset(self.ext.presets_path(), preset_name, self.spec_from_values(values))
        return self.preset_names()


def make_panel_script(ext):
    """The Script class the WebUI instantiates for txt2img and img2img."""
    logic = PanelLogic(ext)

    class LycorisBlockWeights(scripts.Script):
        def title(self):
            return "LyCORIS block weights"

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        # Every generation passes here (always-on script), whatever other extensions do
        # to the extra-network registry: see LycorisExtension.activation_finished.
        def process(self, p, *args):
            logic.ext.generation_started(p)

        def before_process_batch(self, p, *args, **kwargs):
            logic.ext.batch_started(p)

        def after_extra_networks_activate(self, p, *args, **kwargs):
            logic.ext.activation_finished(p, kwargs.get("extra_network_data"))

        def postprocess(self, p, processed, *args):
            """With the setting on, a plot of each scheduled network's weights per step."""
            if not host.opt("lycoris_plot_weights", False):
                return
            plots = getattr(p, "lycoris_plot", None) or {}
            panels = [(title, total, series) for title, (total, series) in plots.items() if series]
            if not panels:
                return
            from .plot import draw

            processed.images.append(draw(panels))
            if isinstance(getattr(processed, "infotexts", None), list):
                processed.infotexts.append("LyCORIS: network weights per sampling step")

        def ui(self, is_img2img):
            from . import take_over

            take_over(logic.ext)  # after every before_ui callback, before the card tabs are built
            tab = "img2img" if is_img2img else "txt2img"
            sdxl = logic.family() == "sdxl"
            with gr.Accordion("LyCORIS block weights", open=False, elem_id=f"{tab}_lycoris_blocks"):
                with gr.Row():
                    network = gr.Dropdown(label="Network", choices=[], value=None, allow_custom_value=True,
                                          elem_id=f"{tab}_lycoris_blocks_network")
                    from_prompt = gr.Button("Networks in prompt", elem_id=f"{tab}_lycoris_blocks_from_prompt")
                    preset = gr.Dropdown(label="Preset", choices=logic.preset_names(), value=None,
                                         elem_id=f"{tab}_lycoris_blocks_preset")
                info = gr.HTML(elem_id=f"{tab}_lycoris_blocks_info")
                message = gr.HTML(elem_id=f"{tab}_lycoris_blocks_message")
                sliders = []
                with gr.Row(elem_id=f"{tab}_lycoris_blocks_sliders"):
                    for b in ALL_BLOCKS:
                        sliders.append(gr.Slider(minimum=-1.0, maximum=2.0, step=0.05, value=1.0, label=b,
                                                 visible=not (sdxl and b in SDXL_HIDDEN),
                                                 elem_id=f"{tab}_lycoris_block_{b}"))
                with gr.Row():
                    write = gr.Button("Write lbw= to the prompt", variant="primary", elem_id=f"{tab}_lycoris_blocks_write")
                    preset_name = gr.Textbox(label="Save as preset", placeholder="name", elem_id=f"{tab}_lycoris_blocks_preset_name")
                    save = gr.Button("Save preset", elem_id=f"{tab}_lycoris_blocks_save")
                prompt_box = gr.Textbox(visible=False, elem_id=f"{tab}_lycoris_blocks_prompt")
                spec_box = gr.Textbox(visible=False, elem_id=f"{tab}_lycoris_blocks_spec")
            from . import tools_ui

            tools_ui.build(logic.ext, prompt_box, tab)  # bake / save as one LoRA, from the same prompt

            def networks(prompt):
                names = logic.networks_in_prompt(prompt)
                return gr.update(choices=names, value=names[0] if names else None)

            def chosen(name, prompt):
                values, html = logic.select(name, prompt)
                visible = [not (logic.family() == "sdxl" and b in SDXL_HIDDEN) for b in ALL_BLOCKS]
                # the sliders now show this network's weights, not a preset's
                return [html, gr.update(value=None), "", *[gr.update(value=v, visible=vis) for v, vis in zip(values, visible)]]

            def from_preset(name):
                if not name:  # cleared (a network was picked): leave the sliders as they are
                    return [gr.update()] + [gr.update() for _ in ALL_BLOCKS]
                try:
                    return [""] + logic.values_for(name)
                except BlockSpecError as e:
                    return [f"<p class='lycoris-error'>{text(e)}</p>"] + [gr.update() for _ in ALL_BLOCKS]

            def save_preset(name, *values):
                try:
                    return gr.update(choices=logic.save(name, values)), ""
                except BlockSpecError as e:
                    return gr.update(), f"<p class='lycoris-error'>{text(e)}</p>"

            from_prompt.click(fn=networks, _js=f"(x) => lycorisPromptText('{tab}')", inputs=[prompt_box], outputs=[network])
            network.change(fn=chosen, _js=f"(name, p) => [name, lycorisPromptText('{tab}')]", inputs=[network, prompt_box], outputs=[info, preset, message, *sliders])
            preset.change(fn=from_preset, inputs=[preset], outputs=[message, *sliders])
            write.click(fn=lambda name, *values: logic.spec_from_values(values), inputs=[network, *sliders], outputs=[spec_box]) \
                .then(fn=None, _js=f"(name, spec) => lycorisWriteLbw('{tab}', name, spec)", inputs=[network, spec_box], outputs=[])
            save.click(fn=save_preset, inputs=[preset_name, *sliders], outputs=[preset, message])
            return []

    return LycorisBlockWeights
