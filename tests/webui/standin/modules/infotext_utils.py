"""Stand-in for modules/infotext_utils.py (A1111 v1.10.1).

``quote(text)`` (``json.dumps(text, ensure_ascii=False)`` when the text has ',', newline or ':',
else unchanged), ``unquote(text)`` (``json.loads`` of a double-quoted string, else unchanged),
``re_param_code``/``re_param``/``re_imagesize`` (the real regexes), ``parse_generation_parameters(x,
skip_fields=None)`` (prompt lines, "Negative prompt:" lines, the last line parsed as ``key: value``
pairs when it has at least 3 of them, JSON-quoted values unquoted, ``WxH`` values split into
``key-1``/``key-2``, then the same defaults filled in: Clip skip "1", Hires fields, RNG "GPU",
Schedule type "Automatic", VAE Encoder/Decoder "Full", FP8 weight "Disable", ...; ``skip_fields``
default ``opts.infotext_skip_pasting``), ``image_from_url_text`` and ``PasteField``.
Simplified: styles are never extracted from prompts, "Emphasis" is never inferred, no infotext version
back-compat rules, no paste-button wiring (``connect_paste`` is absent; tests call
``script_callbacks.infotext_pasted_callback`` directly).
"""

from __future__ import annotations

import json
import os
import re
import sys

from modules import shared

sys.modules['modules.generation_parameters_copypaste'] = sys.modules[__name__]  # alias for the old name, as in the real module

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")
re_hypernet_hash = re.compile(r"\(([0-9a-f]+)\)$")


class PasteField(tuple):
    def __new__(cls, component, target, *, api=None):
        return super().__new__(cls, (component, target))

    def __init__(self, component, target, *, api=None):
        super().__init__()
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


def quote(text):
    if ',' not in str(text) and '\n' not in str(text) and ':' not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def image_from_url_text(filedata):
    """Gallery entry -> PIL image: a PIL image as is, a path string or a dict with a 'name' path."""
    from PIL import Image

    if filedata is None:
        return None
    if isinstance(filedata, list):
        filedata = filedata[0] if filedata else None
    if isinstance(filedata, Image.Image):
        return filedata
    if isinstance(filedata, dict):
        filedata = filedata.get("name")
    if isinstance(filedata, (list, tuple)):
        filedata = filedata[0]
    if isinstance(filedata, str) and os.path.exists(filedata):
        image = Image.open(filedata)
        image.load()
        return image
    raise ValueError(f"stand-in image_from_url_text cannot decode {type(filedata).__name__}")


_defaults = [
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", 'original'),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
]

_defaults_late = [
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
]


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None):
    if skip_fields is None:
        skip_fields = shared.opts.infotext_skip_pasting

    res = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False

    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ''

    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line

    for k, v in re_param.findall(lastline):
        try:
            if v[0] == '"' and v[-1] == '"':
                v = unquote(v)
            m = re_imagesize.match(v)
            if m is not None:
                res[f"{k}-1"] = m.group(1)
                res[f"{k}-2"] = m.group(2)
            else:
                res[k] = v
        except Exception:
            print(f"Error parsing \"{k}: {v}\"")

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt

    if "Clip skip" not in res:
        res["Clip skip"] = "1"

    hypernet = res.get("Hypernet", None)
    if hypernet is not None:
        res["Prompt"] += f"""<hypernet:{hypernet}:{res.get("Hypernet strength", "1.0")}>"""

    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0

    for key, value in _defaults:
        res.setdefault(key, value)
    for key, value in _defaults_late:
        res.setdefault(key, value)

    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False

    if "Refiner switch by sampling steps" not in res:
        res["Refiner switch by sampling steps"] = False

    for key in skip_fields:
        res.pop(key, None)

    return res
