"""Buttons for the network tools: "Bake the prompt's networks into a checkpoint"
and "Save the prompt's networks as one LoRA".

:func:`build` makes an accordion with both (output name, dtype, rank or
energy, a report) wired to a prompt textbox; the handlers are plain functions
(:func:`bake_prompt`, :func:`save_prompt_as_lora`) over the same request
code as the API routes (:mod:`.tools_api`), with progress through gradio's
``gr.Progress`` when the WebUI gives one. The result appears in the
checkpoint dropdown (after its refresh button) or the Lora card list (the
folders are rescanned).
"""

from __future__ import annotations

import html

from ..errors import NetworkFileError
from . import host
from .tools_api import RequestError, bake_request, convert_request

DTYPES = ("as the checkpoint", "fp16", "bf16", "fp32")


def _progress_fn(progress):
    if progress is None:
        return False
    return lambda frac, note: progress(frac, desc=note)


def _error(text: str) -> str:
    return f"<div class='lycoris-tools-error'>{html.escape(text)}</div>"


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='lycoris-tools-report'>{body}</table>"


def _networks(report: dict) -> str:
    out = []
    for n in report.get("networks", []):
        w = f"te {n['te']:g}, unet {n['unet']:g}" + (f", lbw={n['lbw']}" if n.get("lbw") else "")
        out.append(f"{n['name']} ({n['shorthash']}): {w}; {n.get('summary', '')}")
    return "\n".join(out)


def bake_report_html(report: dict) -> str:
    return _table([("written", report["output"]), ("networks", _networks(report)),
                   ("layers changed", str(report["layers_changed"])), ("dtype", str(report["dtype"])),
                   ("seconds", f"{report['seconds']:.1f}")])


def convert_report_html(report: dict) -> str:
    worst = sorted(report.get("layers", []), key=lambda r: -r["relative_error"])[:5]
    rows = [("written", report["output"]), ("networks", _networks(report)),
            ("layers written", str(report["layers_written"])), ("largest rank", str(report["rank_max"])),
            ("relative error (Frobenius, all layers)", f"{report['relative_error']:.3e}")]
    if report.get("bias_changes_dropped"):
        rows.append(("bias changes dropped", f"{report['bias_changes_dropped']} layers (a LoRA file cannot hold them)"))
    if worst:
        rows.append(("largest errors", "\n".join(f"{r['key']}: rank {r['rank']}, {r['relative_error']:.3e}" for r in worst)))
    rows.append(("seconds", f"{report['seconds']:.1f}"))
    return _table(rows)


def _run(fn, ext, body, render) -> str:
    try:
        return render(fn(ext, body))
    except RequestError as e:
        return _error(e.detail)
    except NetworkFileError as e:
        return _error(str(e))


def bake_prompt(ext, prompt: str, name: str, dtype: str, overwrite: bool = False, progress=None) -> str:
    """HTML: the report of baking ``prompt``'s networks into the loaded checkpoint, or the error."""
    body = {"prompt": prompt, "name": name, "dtype": None if dtype not in DTYPES[1:] else dtype,
            "overwrite": bool(overwrite), "progress": _progress_fn(progress)}
    return _run(bake_request, ext, body, bake_report_html)


def save_prompt_as_lora(ext, prompt: str, name: str, rank, energy, dtype: str = "fp16", overwrite: bool = False,
                        progress=None) -> str:
    """HTML: the report of converting ``prompt``'s networks into one LoRA, or the error.
    ``energy`` > 0 picks the rank per layer; otherwise ``rank``."""
    use_energy = energy is not None and float(energy) > 0
    body = {"prompt": prompt, "name": name, "dtype": dtype if dtype in DTYPES[1:] else "fp16",
            "overwrite": bool(overwrite), "progress": _progress_fn(progress)}
    if use_energy:
        body["energy"] = float(energy)
    elif rank is not None:
        body["rank"] = int(rank) if float(rank).is_integer() else rank
    return _run(convert_request, ext, body, convert_report_html)


def build(ext, prompt, tab: str):
    """The accordion, wired to the ``prompt`` textbox; returns its components."""
    import gradio as gr

    with gr.Accordion("LyCORIS network tools", open=False, elem_id=f"{tab}_lycoris_tools"):
        with gr.Row():
            name = gr.Textbox(label="Output name", placeholder="file name, without folder", elem_id=f"{tab}_lycoris_tools_name")
            overwrite = gr.Checkbox(label="Replace an existing file", value=False, elem_id=f"{tab}_lycoris_tools_overwrite")
        with gr.Row():
            bake_dtype = gr.Dropdown(label="Checkpoint dtype", choices=list(DTYPES), value=DTYPES[0],
                                     elem_id=f"{tab}_lycoris_tools_bake_dtype")
            bake_button = gr.Button("Bake the prompt's networks into a checkpoint", elem_id=f"{tab}_lycoris_tools_bake")
        with gr.Row():
            rank = gr.Number(label="LoRA rank", value=32, precision=0, elem_id=f"{tab}_lycoris_tools_rank")
            energy = gr.Slider(label="or energy kept per layer (0: use the rank)", minimum=0.0, maximum=1.0, step=0.001,
                               value=0.0, elem_id=f"{tab}_lycoris_tools_energy")
            lora_dtype = gr.Dropdown(label="LoRA dtype", choices=list(DTYPES[1:]), value="fp16",
                                     elem_id=f"{tab}_lycoris_tools_lora_dtype")
            lora_button = gr.Button("Save the prompt's networks as one LoRA", elem_id=f"{tab}_lycoris_tools_lora")
        report = gr.HTML(elem_id=f"{tab}_lycoris_tools_report")

    # gradio fills a gr.Progress default with the UI's bar; gradio 3 refuses to launch a UI
    # without its queue (--no-gradio-queue) when any handler has one
    tracker = getattr(gr, "Progress", None) if host.gradio_queue() else None

    def on_bake(prompt_text, out_name, dtype, replace, progress=tracker() if tracker else None):
        return bake_prompt(ext, prompt_text, out_name, dtype, replace, progress)

    def on_lora(prompt_text, out_name, r, e, dtype, replace, progress=tracker() if tracker else None):
        return save_prompt_as_lora(ext, prompt_text, out_name, r, e, dtype, replace, progress)

    # The prompt as it is in the browser now (``prompt`` may be a hidden box; lycoris_ext.js reads the real one).
    live = f"(p, ...rest) => [lycorisPromptText('{tab}'), ...rest]"
    bake_button.click(fn=on_bake, _js=live, inputs=[prompt, name, bake_dtype, overwrite], outputs=[report])
    lora_button.click(fn=on_lora, _js=live, inputs=[prompt, name, rank, energy, lora_dtype, overwrite], outputs=[report])
    return {"name": name, "overwrite": overwrite, "bake_dtype": bake_dtype, "bake": bake_button, "rank": rank,
            "energy": energy, "lora_dtype": lora_dtype, "lora": lora_button, "report": report}
