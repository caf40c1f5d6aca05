"""Stand-in for scripts/xyz_grid.py (A1111 v1.10.1).

Loaded by ``a1111.load_builtin_scripts()`` through ``script_loading.load_module``, so this module's
``__name__`` is ``"xyz_grid.py"`` and its ``Script`` is registered in ``modules.scripts.scripts_data``
before any extension script, exactly where extensions look for it.

Kept: ``AxisOption(label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0,
choices=None, prepare=None)``, ``AxisOptionImg2Img``/``AxisOptionTxt2Img`` (``is_img2img``), the
format helpers (``format_value_add_label`` -> ``"{label}: {x}"`` with floats rounded to 8 places,
``format_value``, ``format_value_join_list``, ``format_nothing``, ``format_remove_path``),
``apply_field``, ``apply_override``, ``apply_prompt``, ``do_nothing``, ``str_permutations``,
``boolean_choice``, ``list_to_csv_string``/``csv_string_to_list_strip``, the module-level
``axis_options`` list (first entries and labels as in the real list), and ``Script`` whose ``ui()``
snapshots ``current_axis_options`` at UI build time and builds the x/y/z type dropdowns
(``type="index"``) and value boxes with the real elem ids.
``Script.run(p, x_type, x_values, x_values_dropdown, y_type, ..., csv_mode)`` keeps the real signature
and per-cell behaviour: values parsed (dropdown values when the axis has choices and not csv_mode,
``prepare`` if set, else CSV; ``int``/``float`` ranges ``a-b``, ``a-b (+s)``, ``a-b [n]``), ``opt.type``
applied, ``confirm`` called, then for each cell ``pc = copy(p)`` (shallow: ``extra_generation_params``
and ``override_settings`` are shared with ``p``), ``pc.styles`` copied, x/y/z ``apply(pc, v, vs)``,
``process_images(pc)``.
Simplified: no grid image or legends (the returned ``Processed`` holds the cells' images/infotexts
in x-fastest order), no axis reordering by cost, no seed variation options, a shorter
``axis_options`` list (no checkpoint/VAE/sampler-specific axes).
"""

import csv
import re
from copy import copy
from io import StringIO
from itertools import permutations, chain
import os.path

import gradio as gr

import modules.scripts as scripts
from modules import errors
from modules.processing import process_images, Processed
from modules.shared import opts
import modules.processing
from modules.ui_components import ToolButton

fill_values_symbol = "\U0001f4d2"


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)
    return fun


def apply_prompt(p, x, xs):
    if xs[0] not in p.prompt and xs[0] not in p.negative_prompt:
        raise RuntimeError(f"Prompt S/R did not find {xs[0]} in prompt or negative prompt.")
    p.prompt = p.prompt.replace(xs[0], x)
    p.negative_prompt = p.negative_prompt.replace(xs[0], x)


def apply_override(field, boolean: bool = False):
    def fun(p, x, xs):
        if boolean:
            x = True if x.lower() == "true" else False
        p.override_settings[field] = x
    return fun


def boolean_choice(reverse: bool = False):
    def choice():
        return ["False", "True"] if reverse else ["True", "False"]
    return choice


def format_value_add_label(p, opt, x):
    if type(x) == float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_value(p, opt, x):
    if type(x) == float:
        x = round(x, 8)
    return x


def format_value_join_list(p, opt, x):
    return ", ".join(x)


def do_nothing(p, x, xs):
    pass


def format_nothing(p, opt, x):
    return ""


def format_remove_path(p, opt, x):
    return os.path.basename(x)


def str_permutations(x):
    """marker type for an axis whose values are all permutations of a list"""
    return x


def list_to_csv_string(data_list):
    with StringIO() as o:
        csv.writer(o).writerow(data_list)
        return o.getvalue().strip()


def csv_string_to_list_strip(data_str):
    return list(map(str.strip, chain.from_iterable(csv.reader(StringIO(data_str), skipinitialspace=True))))


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Var. seed", int, apply_field("subseed")),
    AxisOption("Var. strength", float, apply_field("subseed_strength")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOptionTxt2Img("Hires steps", int, apply_field("hr_second_pass_steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOptionImg2Img("Image CFG Scale", float, apply_field("image_cfg_scale")),
    AxisOption("Prompt S/R", str, apply_prompt, format_value=format_value),
    AxisOption("Clip skip", int, apply_override('CLIP_stop_at_last_layers')),
    AxisOption("Denoising", float, apply_field("denoising_strength")),
    AxisOption("Token merging ratio", float, apply_override('token_merging_ratio')),
]

re_range = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
re_range_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*")
re_range_count = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*])?\s*")
re_range_count_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*")


def _expand_numeric(valslist, kind):
    import numpy as np

    out = []
    r, rc = (re_range, re_range_count) if kind is int else (re_range_float, re_range_count_float)
    for val in valslist:
        if val.strip() == '':
            continue
        m = r.fullmatch(val)
        mc = rc.fullmatch(val)
        if m is not None:
            start, end = kind(m.group(1)), kind(m.group(2))
            step = kind(m.group(3)) if m.group(3) is not None else 1
            if kind is int:
                out += list(range(start, end + (1 if step > 0 else -1), step))
            else:
                out += np.arange(start, end + step, step).tolist()
        elif mc is not None:
            start, end = kind(mc.group(1)), kind(mc.group(2))
            num = int(mc.group(3)) if mc.group(3) is not None else 1
            vals = np.linspace(start=start, stop=end, num=num).tolist()
            out += [int(x) for x in vals] if kind is int else vals
        else:
            out.append(val)
    return out


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = [x for x in axis_options if type(x) == AxisOption or x.is_img2img == is_img2img]
        labels = [x.label for x in self.current_axis_options]

        controls = []
        with gr.Row():
            with gr.Column(scale=19):
                for axis, default in (("x", 1), ("y", 0), ("z", 0)):
                    with gr.Row():
                        axis_type = gr.Dropdown(label=f"{axis.upper()} type", choices=labels, value=self.current_axis_options[default].label, type="index", elem_id=self.elem_id(f"{axis}_type"))
                        axis_values = gr.Textbox(label=f"{axis.upper()} values", lines=1, elem_id=self.elem_id(f"{axis}_values"))
                        axis_values_dropdown = gr.Dropdown(label=f"{axis.upper()} values", visible=False, multiselect=True, interactive=True)
                        ToolButton(value=fill_values_symbol, elem_id=f"xyz_grid_fill_{axis}_tool_button", visible=False)
                    controls += [axis_type, axis_values, axis_values_dropdown]

        with gr.Row(variant="compact", elem_id="axis_options"):
            draw_legend = gr.Checkbox(label='Draw legend', value=True, elem_id=self.elem_id("draw_legend"))
            include_lone_images = gr.Checkbox(label='Include Sub Images', value=False, elem_id=self.elem_id("include_lone_images"))
            include_sub_grids = gr.Checkbox(label='Include Sub Grids', value=False, elem_id=self.elem_id("include_sub_grids"))
            no_fixed_seeds = gr.Checkbox(label='Keep -1 for seeds', value=False, elem_id=self.elem_id("no_fixed_seeds"))
            vary_seeds_x = gr.Checkbox(label='Vary seeds for X', value=False, elem_id=self.elem_id("vary_seeds_x"))
            vary_seeds_y = gr.Checkbox(label='Vary seeds for Y', value=False, elem_id=self.elem_id("vary_seeds_y"))
            vary_seeds_z = gr.Checkbox(label='Vary seeds for Z', value=False, elem_id=self.elem_id("vary_seeds_z"))
            margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2, elem_id=self.elem_id("margin_size"))
            csv_mode = gr.Checkbox(label='Use text inputs instead of dropdowns', value=False, elem_id=self.elem_id("csv_mode"))

        return controls + [draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode]

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values, z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode):
        x_type, y_type, z_type = x_type or 0, y_type or 0, z_type or 0

        if not no_fixed_seeds:
            modules.processing.fix_seed(p)

        if not opts.return_grid:
            p.batch_size = 1

        def process_axis(opt, vals, vals_dropdown):
            if opt.label == 'Nothing':
                return [0]

            if opt.choices is not None and not csv_mode:
                valslist = vals_dropdown
            elif opt.prepare is not None:
                valslist = opt.prepare(vals)
            else:
                valslist = csv_string_to_list_strip(vals)

            if opt.type in (int, float):
                valslist = _expand_numeric(valslist, opt.type)
            elif opt.type == str_permutations:
                valslist = list(permutations(valslist))

            valslist = [opt.type(x) for x in valslist]

            if opt.confirm:
                opt.confirm(p, valslist)

            return valslist

        x_opt = self.current_axis_options[x_type]
        xs = process_axis(x_opt, x_values, x_values_dropdown)
        y_opt = self.current_axis_options[y_type]
        ys = process_axis(y_opt, y_values, y_values_dropdown)
        z_opt = self.current_axis_options[z_type]
        zs = process_axis(z_opt, z_values, z_values_dropdown)

        images, infotexts, prompts, seeds = [], [], [], []
        first = None
        for iz, z in enumerate(zs):
            for iy, y in enumerate(ys):
                for ix, x in enumerate(xs):
                    pc = copy(p)
                    pc.styles = pc.styles[:]
                    x_opt.apply(pc, x, xs)
                    y_opt.apply(pc, y, ys)
                    z_opt.apply(pc, z, zs)
                    try:
                        res = process_images(pc)
                    except Exception as e:
                        errors.display(e, "generating image for xyz plot")
                        res = Processed(p, [], p.seed, "")
                    first = first or res
                    images.append(res.images[0] if res.images else None)
                    infotexts.append(res.infotexts[0] if res.infotexts else "")
                    prompts.append(res.prompt)
                    seeds.append(res.seed)

        result = copy(first) if first is not None else Processed(p, [])
        result.images = images
        result.infotexts = infotexts
        result.all_prompts = prompts
        result.all_seeds = seeds
        result.index_of_first_image = 0
        return result
