"""The extension's section in Settings."""

from __future__ import annotations

import gradio as gr

from modules import shared

SECTION = ("lycoris_ext", "LyCORIS networks")


def options() -> dict:
    OptionInfo = shared.OptionInfo
    return {
        "lycoris_mode": OptionInfo("merge", "How networks are applied", gr.Radio, {"choices": ["merge", "bypass", "auto"]})
        .info("merge: written into the weights (fastest sampling); bypass: added on the fly by hooks (switching costs nothing); "
              "auto: bypass while a step schedule or weight curve is active"),
        "lycoris_default_multiplier": OptionInfo(1.0, "Default multiplier (for <lora:name> and cards without a preferred weight)",
                                                 gr.Slider, {"minimum": -2.0, "maximum": 2.0, "step": 0.05}),
        "lycoris_cache_count": OptionInfo(16, "Networks kept loaded in memory (count)", gr.Number, {"precision": 0}),
        "lycoris_cache_mb": OptionInfo(4096, "Networks kept loaded in memory (megabytes)", gr.Number, {"precision": 0}),
        "lycoris_originals_on_cpu": OptionInfo(False, "Keep the original weights of changed layers in RAM instead of VRAM (slower switching, less VRAM)"),
        "lycoris_trim_seconds": OptionInfo(10, "Seconds without a change of networks before memory freed by going back to "
                                              "original weights is given back to the system (0: at once; -1: never)",
                                           gr.Number, {"precision": 0})
        .info("kept meanwhile for the next networks' originals: a network applied later takes its memory afresh, "
              "which on a CPU can cost several times the switch itself"),
        "lycoris_show_all": OptionInfo(False, "Show networks of all base models on the Lora tab"),
        "lycoris_preferred_name": OptionInfo("Alias from file", "When adding to prompt, refer to a network by", gr.Radio,
                                             {"choices": ["Alias from file", "Filename"]}),
        "lycoris_missing_popup": OptionInfo(False, "Show a popup when a network in the prompt is missing, unreadable or for another base model"),
        "lycoris_hashes_to_infotext": OptionInfo(True, "Add Lora hashes to infotext"),
        "lycoris_trigger_words": OptionInfo(False, "Add each network's trigger words to the prompt (its activation text, or else its most frequent training tags)"),
        "lycoris_plot_weights": OptionInfo(False, "Show a plot of each network's weight per step with the results (when a weight changes over the steps)"),
    }


def on_ui_settings(ext) -> None:
    section = shared.options_section(SECTION, options())
    for key, info in section.items():
        shared.opts.add_option(key, info)
    if hasattr(shared.opts, "onchange"):
        def resize():
            from . import host

            ext.cache.resize(int(host.opt("lycoris_cache_count", 16)), int(host.opt("lycoris_cache_mb", 4096)) << 20)

        shared.opts.onchange("lycoris_cache_count", resize, call=False)
        shared.opts.onchange("lycoris_cache_mb", resize, call=False)
        shared.opts.onchange("lycoris_trim_seconds", ext.apply_trim_delay, call=False)
