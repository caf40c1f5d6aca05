"""The card's metadata editor: the built-in's fields, plus preferred block
weights, the resolution report for the loaded model and a per-block chart."""

from __future__ import annotations

import datetime
import re

import gradio as gr

from modules import ui_extra_networks_user_metadata

from ..analysis import block_change
from ..resolve.lbw import BlockSpecError, parse_block_weights
from ..runtime.params import weight_view
from ..summary import scale_facts, scale_fields, top_tags
from .html import block_chart, resolution_table, text

RE_COMMA = re.compile(r" *, *")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


class LycorisMetadataEditor(ui_extra_networks_user_metadata.UserMetadataEditor):
    def __init__(self, ui, tabname, page):
        super().__init__(ui, tabname, page)
        self.select_sd_version = None
        self.taginfo = None
        self.edit_activation_text = None
        self.slider_preferred_weight = None
        self.edit_negative_text = None
        self.edit_block_weights = None
        self.html_report = None
        self.html_chart = None

    # ---------------------------------------------------------------- data
    def _entry(self, name):
        return self.page.ext.library.entries.get(name)

    def get_metadata_table(self, name):
        """Every value escaped: file names and metadata come from strangers."""
        entry = self._entry(name)
        if entry is None:
            return []
        rows = [
            ("Filename:", text(self.relative_path(entry.path))),
            ("File size:", text(_size(entry.size))),
            ("Hash:", text(entry.shorthash or "-")),
            ("Modified:", text(datetime.datetime.fromtimestamp(entry.mtime).strftime("%Y-%m-%d %H:%M"))),
            ("Base model:", text(f"{entry.family.upper() if entry.family != 'unknown' else 'unknown'} ({entry.family_reason})")),
        ]
        meta = entry.metadata
        for key, label in (("ss_output_name", "Output name:"), ("ss_sd_model_name", "Model:"),
                           ("ss_clip_skip", "Clip skip:"), ("ss_network_module", "Module:"),
                           ("ss_network_dim", "Dim:"), ("ss_network_alpha", "Alpha:")):
            v = meta.get(key)
            if v not in (None, "", "None"):
                rows.append((label, text(v)))
        rows.extend(self.scale_rows(entry))
        started = meta.get("ss_training_started_at")
        if started:
            try:
                rows.append(("Date trained:", text(datetime.datetime.utcfromtimestamp(float(started)).strftime("%Y-%m-%d %H:%M"))))
            except (ValueError, OverflowError, OSError):
                pass
        return rows

    def scale_rows(self, entry):
        """Where the modules' scales came from (alpha tensors, PEFT adapter
        metadata, default), the adapter metadata, and warnings."""
        try:
            net = self.page.ext.load(entry)
        except Exception as e:  # noqa: BLE001 - shown to the user instead
            return [("Scale:", text(f"file unreadable: {e}"))]
        return [(f"{label[:1].upper()}{label[1:]}:", text(value)) for label, value in scale_facts(scale_fields(net))]

    def resolution(self, name):
        """The file's resolution against the loaded model (None without a model)."""
        entry = self._entry(name)
        rt = self.page.ext.runtime()
        if entry is None or rt is None:
            return None
        try:
            net = self.page.ext.load(entry)
        except Exception as e:  # noqa: BLE001 - shown to the user instead
            return str(e)
        return rt.resolution(net)

    def report_html(self, name) -> tuple[str, str]:
        res = self.resolution(name)
        if res is None:
            return "<p>No model loaded.</p>", ""
        if isinstance(res, str):
            return f"<p class='lycoris-error'>{text(res)}</p>", ""
        touched = dict(res.matched_blocks())
        chart = block_chart(block_change(res, weight_view), res.model_family, touched)
        return resolution_table(res.report()), chart

    def put_values_into_components(self, name):
        values = super().put_values_into_components(name)
        um = self.get_user_metadata(name)
        item = self.page.items.get(name, {})
        entry = self._entry(name)
        tags = top_tags(entry.metadata, 24) if entry is not None else []
        report, chart = self.report_html(name)
        return [
            *values[0:5],
            item.get("sd_version", "Unknown"),
            gr.HighlightedText.update(value=[(t, str(c)) for t, c in tags], visible=bool(tags)),
            um.get("activation text", ""),
            float(um.get("preferred weight", 0.0) or 0.0),
            um.get("negative text", ""),
            um.get("preferred block weights", ""),
            report,
            chart,
        ]

    def save_lycoris_user_metadata(self, name, desc, sd_version, activation_text, preferred_weight, negative_text, block_weights, notes):
        block_weights = (block_weights or "").strip()
        if block_weights:
            try:
                parse_block_weights(block_weights, self.page.ext.presets())
            except BlockSpecError as e:
                raise gr.Error(f"Preferred block weights: {e}")
        um = self.get_user_metadata(name)
        um["description"] = desc
        um["sd version"] = sd_version
        um["activation text"] = activation_text
        um["preferred weight"] = preferred_weight
        um["negative text"] = negative_text
        um["preferred block weights"] = block_weights
        um["notes"] = notes
        self.write_user_metadata(name, um)

    # ------------------------------------------------------------------ ui
    def create_extra_default_items_in_left_column(self):
        self.select_sd_version = gr.Dropdown(["SD1", "SD2", "SDXL", "Unknown"], value="Unknown",
                                             label="Stable Diffusion version", interactive=True)

    def create_editor(self):
        self.create_default_editor_elems()
        self.taginfo = gr.HighlightedText(label="Training dataset tags")
        self.edit_activation_text = gr.Text(label="Activation text", info="Added to the prompt with the network")
        self.slider_preferred_weight = gr.Slider(label="Preferred weight", info="Set to 0 to disable",
                                                 minimum=0.0, maximum=2.0, step=0.01)
        self.edit_negative_text = gr.Text(label="Negative prompt", info="Added to the negative prompt")
        self.edit_block_weights = gr.Text(label="Preferred block weights",
                                          info="LBW preset name or list (17/26 values for SD1/SD2, 12/20 for SDXL); added as lbw=")
        self.html_report = gr.HTML(elem_classes="lycoris-report-html")
        self.html_chart = gr.HTML(elem_classes="lycoris-chart-html")
        self.edit_notes = gr.TextArea(label="Notes", lines=4)

        def select_tag(activation_text, evt: gr.SelectData):
            tag = evt.value[0]
            words = re.split(RE_COMMA, activation_text)
            if tag in words:
                return ", ".join(w for w in words if w != tag and w.strip())
            return activation_text + ", " + tag if activation_text else tag

        self.taginfo.select(fn=select_tag, inputs=[self.edit_activation_text], outputs=[self.edit_activation_text], show_progress=False)
        self.create_default_buttons()
        viewed = [
            self.edit_name, self.edit_description, self.html_filedata, self.html_preview, self.edit_notes,
            self.select_sd_version, self.taginfo, self.edit_activation_text, self.slider_preferred_weight,
            self.edit_negative_text, self.edit_block_weights, self.html_report, self.html_chart,
        ]
        self.button_edit.click(fn=self.put_values_into_components, inputs=[self.edit_name_input], outputs=viewed) \
            .then(fn=lambda: gr.update(visible=True), inputs=[], outputs=[self.box])
        edited = [self.edit_description, self.select_sd_version, self.edit_activation_text, self.slider_preferred_weight,
                  self.edit_negative_text, self.edit_block_weights, self.edit_notes]
        self.setup_save_handler(self.button_save, self.save_lycoris_user_metadata, edited)

