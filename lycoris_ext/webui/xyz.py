"""Axes for the WebUI's X/Y/Z plot script (``scripts/xyz_grid.py``).

Each axis edits the first lora/lyco token of the prompt (and of the hires
prompt, when one is set); the network axis appends a token when the prompt
has none. They work for every algorithm, since they only write tokens.
"""

from __future__ import annotations

from ..resolve.lbw import DEFAULT_PRESETS
from ..tokens import TokenError, find_tokens, parse_token, rewrite_token

PREFIX = "LoRA"


def _first_spec(prompt: str):
    for _, items, _ in find_tokens(prompt or ""):
        try:
            return parse_token(items)
        except TokenError:
            continue
    return None


def _edit(p, fn) -> None:
    p.prompt = fn(p.prompt)
    if getattr(p, "hr_prompt", ""):
        p.hr_prompt = fn(p.hr_prompt)


def apply_network(p, x, xs):
    _edit(p, lambda s: rewrite_token(s, new_name=str(x)))


def apply_weight(p, x, xs):
    _edit(p, lambda s: rewrite_token(s, weights=(float(x), float(x))))


def _weights(prompt: str, te=None, unet=None):
    spec = _first_spec(prompt)
    cur_te, cur_unet = (1.0, 1.0) if spec is None else (spec.te, spec.unet)
    num = lambda w: w if isinstance(w, (int, float)) else 1.0  # noqa: E731  (a curve is replaced)
    return rewrite_token(prompt, weights=(num(te if te is not None else cur_te), num(unet if unet is not None else cur_unet)),
                         append_if_missing=False)


def apply_te(p, x, xs):
    _edit(p, lambda s: _weights(s, te=float(x)))


def apply_unet(p, x, xs):
    _edit(p, lambda s: _weights(s, unet=float(x)))


def apply_blocks(p, x, xs):
    _edit(p, lambda s: rewrite_token(s, named={"lbw": str(x).strip()}, append_if_missing=False))


def apply_start(p, x, xs):
    _edit(p, lambda s: rewrite_token(s, named={"step": None, "start": int(x)}, append_if_missing=False))


def apply_stop(p, x, xs):
    _edit(p, lambda s: rewrite_token(s, named={"step": None, "stop": int(x)}, append_if_missing=False))


def find_xyz_module():
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ == "xyz_grid.py" and hasattr(data, "module"):
            return data.module
    return None


def register_axes(ext) -> bool:
    """Add the axes once per loaded xyz_grid module; False when the script is absent."""
    xyz = find_xyz_module()
    if xyz is None:
        return False
    have = {getattr(o, "label", None) for o in xyz.axis_options}

    def names():
        return [ext.library.display_name(e, ext.prefer_alias()) for e in ext.library if ext.shown_for_model(e.family)]

    def presets():
        return [*DEFAULT_PRESETS, *sorted(ext.presets())]

    def network_label(p, opt, x):
        return f"{PREFIX}: {x}"

    axes = [
        xyz.AxisOption(f"{PREFIX}: network", str, apply_network, format_value=network_label, choices=names, cost=0.5),
        xyz.AxisOption(f"{PREFIX} weight", float, apply_weight),
        xyz.AxisOption(f"{PREFIX} TE weight", float, apply_te),
        xyz.AxisOption(f"{PREFIX} UNet weight", float, apply_unet),
        xyz.AxisOption(f"{PREFIX} block weights", str, apply_blocks, choices=presets),
        xyz.AxisOption(f"{PREFIX} start step", int, apply_start),
        xyz.AxisOption(f"{PREFIX} stop step", int, apply_stop),
    ]
    for axis in axes:
        if axis.label not in have:
            xyz.axis_options.append(axis)
    return True
