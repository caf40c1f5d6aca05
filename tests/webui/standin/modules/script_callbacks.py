"""Stand-in for modules/script_callbacks.py (A1111 v1.10.1).

Same registration API (``on_X(callback, *, name=None)``), parameter classes with the real fields
(``ImageSaveParams``, ``ExtraNoiseParams``, ``CFGDenoiserParams``, ``CFGDenoisedParams``,
``AfterCFGCallbackParams``, ``UiTrainTabParams``, ``ImageGridLoopParams``, ``BeforeTokenCounterParams``),
``ScriptCallback(script, callback, name)``, and dispatchers ``X_callback(...)``.

Behaviour kept:
* callback names are ``f"{extension_canonical_name}/{basename(file)}/{category}"`` (``base`` outside
  extensions), ``+ f"/{name}"`` if given, ``-1``, ``-2``... appended for duplicates; ``file`` is the
  first stack frame outside this module (the registering script).
* ``sort_callbacks``: metadata.ini ``[callbacks/<name>]`` ``Before=``/``After=`` of every registered
  extension make a dependency graph that is topologically sorted (only when at least one instruction
  names a registered callback), then ``opts.prioritized_callbacks_<category>`` moves named ones first.
  ``ordered_callbacks`` caches the sorted list per category until the count changes.
* every dispatcher catches exceptions per callback and reports them (``errors.report``), never raising;
  ``before_ui_callback`` and ``script_unloaded_callback`` run the ordered list in REVERSE.
* ``remove_current_script_callbacks()`` and ``remove_callbacks_for_function(fn)``.
Simplified: no startup timer records.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional, Any

from modules import errors, extensions, shared, util


def report_exception(c, job):
    errors.report(f"Error executing callback {job} for {c.script}", exc_info=True)


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise = noise
        self.x = x
        self.xi = xi


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params):
        self.txt2img_preview_params = txt2img_preview_params


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


@dataclasses.dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list

    is_positive: bool = True


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: any
    name: str = "unnamed"


def _caller_filename():
    here = os.path.normcase(__file__)
    frame = sys._getframe(1)
    while frame is not None:
        if os.path.normcase(frame.f_code.co_filename) != here:
            return frame.f_code.co_filename
        frame = frame.f_back
    return 'unknown file'


def add_callback(callbacks, fun, *, name=None, category='unknown', filename=None):
    if filename is None:
        filename = _caller_filename()

    extension = extensions.find_extension(filename)
    extension_name = extension.canonical_name if extension else 'base'

    callback_name = f"{extension_name}/{os.path.basename(filename)}/{category}"
    if name is not None:
        callback_name += f'/{name}'

    unique_name = callback_name
    taken = {x.name for x in callbacks}
    for index in range(1000):
        if unique_name not in taken:
            break
        unique_name = f'{callback_name}-{index + 1}'

    callbacks.append(ScriptCallback(filename, fun, unique_name))


def sort_callbacks(category, unordered_callbacks, *, enable_user_sort=True):
    callbacks = unordered_callbacks.copy()
    by_name = {x.name: x for x in callbacks}

    instructions = {}
    for extension in extensions.extensions:
        for instruction in extension.metadata.list_callback_order_instructions():
            if instruction.name in by_name:
                instructions.setdefault(instruction.name, []).append(instruction)

    if instructions:
        dependencies = {c.name: [] for c in callbacks}
        for c in callbacks:
            for instruction in instructions.get(c.name, []):
                for after in instruction.after:
                    if after in by_name:
                        dependencies[c.name].append(after)
                for before in instruction.before:
                    if before in by_name:
                        dependencies[before].append(c.name)
        callbacks = [by_name[x] for x in util.topological_sort(dependencies)]

    if enable_user_sort:
        for name in reversed(getattr(shared.opts, 'prioritized_callbacks_' + category, [])):
            index = next((i for i, c in enumerate(callbacks) if c.name == name), None)
            if index is not None:
                callbacks.insert(0, callbacks.pop(index))

    return callbacks


def ordered_callbacks(category, unordered_callbacks=None, *, enable_user_sort=True):
    if unordered_callbacks is None:
        unordered_callbacks = callback_map.get('callbacks_' + category, [])

    if not enable_user_sort:
        return sort_callbacks(category, unordered_callbacks, enable_user_sort=False)

    cached = ordered_callbacks_map.get(category)
    if cached is not None and len(cached) == len(unordered_callbacks):
        return cached

    cached = sort_callbacks(category, unordered_callbacks)
    ordered_callbacks_map[category] = cached
    return cached


def enumerate_callbacks():
    for category, callbacks in callback_map.items():
        if category.startswith('callbacks_'):
            category = category[len('callbacks_'):]
        yield category, callbacks


_categories = ['app_started', 'model_loaded', 'ui_tabs', 'ui_train_tabs', 'ui_settings', 'before_image_saved',
               'image_saved', 'extra_noise', 'cfg_denoiser', 'cfg_denoised', 'cfg_after_cfg', 'before_component',
               'after_component', 'image_grid', 'infotext_pasted', 'script_unloaded', 'before_ui', 'on_reload',
               'list_optimizers', 'list_unets', 'before_token_counter']

callback_map = {f'callbacks_{c}': [] for c in _categories}
ordered_callbacks_map = {}


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()
    ordered_callbacks_map.clear()


def _run(category, job, *args, reverse=False):
    callbacks = ordered_callbacks(category)
    for c in (reversed(callbacks) if reverse else list(callbacks)):
        try:
            c.callback(*args)
        except Exception:
            report_exception(c, job)


def app_started_callback(demo: Optional[Any], app):
    _run('app_started', 'app_started_callback', demo, app)


def app_reload_callback():
    _run('on_reload', 'callbacks_on_reload')


def model_loaded_callback(sd_model):
    _run('model_loaded', 'model_loaded_callback', sd_model)


def ui_tabs_callback():
    res = []
    for c in ordered_callbacks('ui_tabs'):
        try:
            res += c.callback() or []
        except Exception:
            report_exception(c, 'ui_tabs_callback')
    return res


def ui_train_tabs_callback(params: UiTrainTabParams):
    _run('ui_train_tabs', 'callbacks_ui_train_tabs', params)


def ui_settings_callback():
    _run('ui_settings', 'ui_settings_callback')


def before_image_saved_callback(params: ImageSaveParams):
    _run('before_image_saved', 'before_image_saved_callback', params)


def image_saved_callback(params: ImageSaveParams):
    _run('image_saved', 'image_saved_callback', params)


def extra_noise_callback(params: ExtraNoiseParams):
    _run('extra_noise', 'callbacks_extra_noise', params)


def cfg_denoiser_callback(params: CFGDenoiserParams):
    _run('cfg_denoiser', 'cfg_denoiser_callback', params)


def cfg_denoised_callback(params: CFGDenoisedParams):
    _run('cfg_denoised', 'cfg_denoised_callback', params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams):
    _run('cfg_after_cfg', 'cfg_after_cfg_callback', params)


def before_component_callback(component, **kwargs):
    for c in ordered_callbacks('before_component'):
        try:
            c.callback(component, **kwargs)
        except Exception:
            report_exception(c, 'before_component_callback')


def after_component_callback(component, **kwargs):
    for c in ordered_callbacks('after_component'):
        try:
            c.callback(component, **kwargs)
        except Exception:
            report_exception(c, 'after_component_callback')


def image_grid_callback(params: ImageGridLoopParams):
    _run('image_grid', 'image_grid', params)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]):
    _run('infotext_pasted', 'infotext_pasted', infotext, params)


def script_unloaded_callback():
    _run('script_unloaded', 'script_unloaded', reverse=True)


def before_ui_callback():
    _run('before_ui', 'before_ui', reverse=True)


def list_optimizers_callback():
    res = []
    _run('list_optimizers', 'list_optimizers', res)
    return res


def list_unets_callback():
    res = []
    _run('list_unets', 'list_unets', res)
    return res


def before_token_counter_callback(params: BeforeTokenCounterParams):
    _run('before_token_counter', 'before_token_counter', params)


def remove_current_script_callbacks():
    filename = _caller_filename()
    if filename == 'unknown file':
        return
    for lst in list(callback_map.values()) + list(ordered_callbacks_map.values()):
        for c in [c for c in lst if c.script == filename]:
            lst.remove(c)


def remove_callbacks_for_function(callback_func):
    for lst in list(callback_map.values()) + list(ordered_callbacks_map.values()):
        for c in [c for c in lst if c.callback == callback_func]:
            lst.remove(c)


def _register(category, callback, name):
    # the frame of the on_X function is inside this file, so the caller found is the script
    add_callback(callback_map['callbacks_' + category], callback, name=name, category=category)


def on_app_started(callback, *, name=None):
    """callback(demo: gr.Blocks | None, app: FastAPI) once the app is up"""
    _register('app_started', callback, name)


def on_before_reload(callback, *, name=None):
    _register('on_reload', callback, name)


def on_model_loaded(callback, *, name=None):
    """callback(sd_model) when a model is created or weights are reloaded"""
    _register('model_loaded', callback, name)


def on_ui_tabs(callback, *, name=None):
    """callback() -> list of (gradio_component, title, elem_id) or None"""
    _register('ui_tabs', callback, name)


def on_ui_train_tabs(callback, *, name=None):
    _register('ui_train_tabs', callback, name)


def on_ui_settings(callback, *, name=None):
    """callback(); add settings with shared.opts.add_option(key, shared.OptionInfo(...))"""
    _register('ui_settings', callback, name)


def on_before_image_saved(callback, *, name=None):
    _register('before_image_saved', callback, name)


def on_image_saved(callback, *, name=None):
    _register('image_saved', callback, name)


def on_extra_noise(callback, *, name=None):
    _register('extra_noise', callback, name)


def on_cfg_denoiser(callback, *, name=None):
    """callback(params: CFGDenoiserParams) after the inner model's inputs are built"""
    _register('cfg_denoiser', callback, name)


def on_cfg_denoised(callback, *, name=None):
    _register('cfg_denoised', callback, name)


def on_cfg_after_cfg(callback, *, name=None):
    _register('cfg_after_cfg', callback, name)


def on_before_component(callback, *, name=None):
    _register('before_component', callback, name)


def on_after_component(callback, *, name=None):
    _register('after_component', callback, name)


def on_image_grid(callback, *, name=None):
    _register('image_grid', callback, name)


def on_infotext_pasted(callback, *, name=None):
    """callback(infotext: str, params: dict) before an infotext is applied; mutate params"""
    _register('infotext_pasted', callback, name)


def on_script_unloaded(callback, *, name=None):
    _register('script_unloaded', callback, name)


def on_before_ui(callback, *, name=None):
    _register('before_ui', callback, name)


def on_list_optimizers(callback, *, name=None):
    _register('list_optimizers', callback, name)


def on_list_unets(callback, *, name=None):
    _register('list_unets', callback, name)


def on_before_token_counter(callback, *, name=None):
    _register('before_token_counter', callback, name)
