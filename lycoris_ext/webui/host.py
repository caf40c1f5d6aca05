"""The WebUI's objects as the glue needs them: model parts, folders, options.

Every access to ``modules.*`` that is not a class to subclass goes through
here, so the rest of the glue reads like plain code.
"""

from __future__ import annotations

import os

from modules import shared

from ..resolve.tree import A1111, ModelTree


def opt(key: str, default=None):
    """An option's value, or ``default`` when the option is not registered."""
    try:
        value = getattr(shared.opts, key)
    except AttributeError:
        return default
    return default if value is None else value


CONDS_CACHES = ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc")


def drop_cached_conds(p) -> None:
    """Forget the processing object's cached conditionings.

    The WebUI keys them on the prompt and its tokens (the lists are shared by
    every processing object), so a network whose file or settings changed
    under the same tokens would otherwise give last time's conditioning.
    """
    for name in CONDS_CACHES:
        cache = getattr(p, name, None)
        if isinstance(cache, list) and cache:
            cache[0] = None


def network_dirs() -> list[str]:
    """``--lora-dir`` (default models/Lora) and ``--lyco-dir-backcompat`` (models/LyCORIS).

    The built-in Lora extension's preload declares both options (even when it
    is disabled), so they are read, never declared again.
    """
    models = getattr(shared, "models_path", None) or os.path.join(os.getcwd(), "models")
    lora = getattr(shared.cmd_opts, "lora_dir", None) or os.path.join(models, "Lora")
    lyco = getattr(shared.cmd_opts, "lyco_dir_backcompat", None) or os.path.join(models, "LyCORIS")
    return [os.path.abspath(lora), os.path.abspath(lyco)]


def model_family(sd_model) -> str:
    if sd_model is None:
        return "unknown"
    if getattr(sd_model, "is_sdxl", False):
        return "sdxl"
    if getattr(sd_model, "is_sd2", False):
        return "sd2"
    if getattr(sd_model, "is_sd1", False):
        return "sd1"
    return "unknown"


def model_parts(sd_model) -> dict:
    """``{part: root module}`` with the roots whose names A1111's inventories use."""
    parts = {}
    conditioner = getattr(sd_model, "conditioner", None)
    if conditioner is not None:
        embedders = [e for e in getattr(conditioner, "embedders", []) if hasattr(e, "wrapped")]
        for i, e in enumerate(embedders):
            parts[f"te{i + 1}"] = e.wrapped
    else:
        cond = getattr(sd_model, "cond_stage_model", None)
        if cond is not None:
            parts["te"] = getattr(cond, "wrapped", cond)
    unet = getattr(getattr(sd_model, "model", None), "diffusion_model", None)
    if unet is not None:
        parts["unet"] = unet
    return parts


def model_tree(sd_model) -> ModelTree:
    fam = model_family(sd_model)
    return ModelTree(model_parts(sd_model), A1111, None if fam == "unknown" else fam)


def current_model():
    return getattr(shared, "sd_model", None)
