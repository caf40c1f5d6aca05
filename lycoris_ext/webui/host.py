"""The WebUI's objects as the glue needs them: model parts, folders, options.

Every access to ``modules.*`` that is not a class to subclass goes through
here, so the rest of the glue reads like plain code.
"""

from __future__ import annotations

import functools
import os

from modules import shared

from ..parts import TE, UNET, text_parts
from ..resolve.tree import A1111, ModelTree


def opt(key: str, default=None):
    """An option's value, or ``default`` when the option is not registered."""
    try:
        value = getattr(shared.opts, key)
    except AttributeError:
        return default
    return default if value is None else value


CONDS_CACHES = ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc")


def drop_cached_conds(p, names=CONDS_CACHES) -> None:
    """Forget the processing object's cached conditionings.

    The WebUI keys them on the prompt and its tokens (the lists are shared by
    every processing object), so a network whose file or settings changed
    under the same tokens would otherwise give last time's conditioning.
    """
    for name in names:
        cache = getattr(p, name, None)
        if isinstance(cache, list) and cache:
            cache[0] = None


def drop_hires_conds(p) -> None:
    """Make the WebUI encode the hires pass's conditionings again.

    Forge encodes them in ``setup_conds``, before the hires pass, with the
    hires networks activated; when the hires tokens equal the first pass's
    (``hr=`` in the prompt itself) that early call looks like the first pass,
    so they were encoded with the first pass's text-encoder weights.
    ``calculate_hr_conds`` returns at once while ``p.hr_c`` is set.
    """
    drop_cached_conds(p, ("cached_hr_c", "cached_hr_uc"))
    p.hr_c = p.hr_uc = None


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
    """``{part: root module}`` with the roots whose names A1111's inventories use.

    A1111 and reForge (which grafts its modules into A1111's model object)
    have them at A1111's places; Forge's model object is not a module and
    keeps them in ``forge_objects``: the UNet at ``unet.model.diffusion_model``
    (ldm names), the text encoders at ``clip.cond_stage_model.clip_l`` /
    ``clip_h`` / ``clip_g`` (HF CLIP names under ``transformer.``).
    """
    parts = _a1111_parts(sd_model)
    if UNET not in parts:
        parts = _forge_parts(sd_model) or parts
    return parts


def _a1111_parts(sd_model) -> dict:
    parts = {}
    conditioner = getattr(sd_model, "conditioner", None)
    if conditioner is not None:
        embedders = [e for e in getattr(conditioner, "embedders", []) if hasattr(e, "wrapped")]
        for i, e in enumerate(embedders):
            parts[text_parts(len(embedders))[i]] = e.wrapped
    else:
        cond = getattr(sd_model, "cond_stage_model", None)
        if cond is not None:
            parts[TE] = getattr(cond, "wrapped", cond)
    unet = getattr(getattr(sd_model, "model", None), "diffusion_model", None)
    if unet is not None:
        parts[UNET] = unet
    return parts


def _forge_parts(sd_model) -> dict:
    objects = getattr(sd_model, "forge_objects", None)
    unet = getattr(getattr(getattr(objects, "unet", None), "model", None), "diffusion_model", None)
    if unet is None:
        return {}
    clip = getattr(getattr(objects, "clip", None), "cond_stage_model", None)
    encoders = [getattr(clip, name) for name in ("clip_l", "clip_h", "clip_g") if getattr(clip, name, None) is not None]
    parts = dict(zip(text_parts(len(encoders)), encoders))
    parts[UNET] = unet
    return parts


def row_layout(kwargs: dict, rows: int):
    """``(images, uncond)`` of the rows of one UNet call where the host says it.

    Forge and reForge (ComfyUI-style ``calc_cond_uncond_batch``) call the UNet
    with ``transformer_options["cond_or_uncond"]``: one entry per chunk (0 cond,
    1 uncond; the uncond chunk first when both fit in one call), each chunk a
    whole batch in image order (AND sub-prompts: one chunk each). Row ``r`` is
    image ``r % B`` of chunk ``r // B``. None where there is no such option (A1111).
    """
    options = kwargs.get("transformer_options")
    sides = options.get("cond_or_uncond") if isinstance(options, dict) else None
    if not sides or rows % len(sides):
        return None
    b = rows // len(sides)
    return [r % b for r in range(rows)], [sides[r // b] == 1 for r in range(rows)]


def writing(modules):
    """A context in which the runtime may write these modules' weights.

    Forge loads every weight under ``torch.inference_mode()``; such tensors
    can only be changed inside it (and are read as plain tensors outside)."""
    import contextlib

    import torch

    for module in modules:
        for prm in module.parameters():
            return torch.inference_mode() if prm.is_inference() else contextlib.nullcontext()
    return contextlib.nullcontext()


def model_tree(sd_model) -> ModelTree:
    fam = model_family(sd_model)
    return ModelTree(model_parts(sd_model), A1111, None if fam == "unknown" else fam)


def current_model():
    """The loaded model, or None while there is none to apply networks to
    (Forge's ``FakeInitialModel`` stands in until its first generation loads
    the checkpoint)."""
    model = getattr(shared, "sd_model", None)
    if model is None or UNET not in model_parts(model):
        return None
    return model


def current_family() -> str:
    """The loaded model's family; before Forge has loaded one, the family of
    the checkpoint it will load (read from the file's header)."""
    model = current_model()
    if model is not None:
        return model_family(model)
    try:
        from modules import sd_models

        path = getattr(sd_models.select_checkpoint(), "filename", None)
    except Exception:  # noqa: BLE001 - no checkpoint selected (yet): nothing to tell
        return "unknown"
    return checkpoint_family(path) if path else "unknown"


@functools.lru_cache(maxsize=8)
def _header_family(path: str, mtime: float) -> str:
    from ..errors import NetworkFileError
    from ..tools.checkpoint import Checkpoint, detect_layout

    try:
        with Checkpoint(path) as ckpt:
            return detect_layout(ckpt)
    except (NetworkFileError, OSError):
        return "unknown"


def checkpoint_family(path: str) -> str:
    """``sd1``/``sd2``/``sdxl`` of a safetensors checkpoint from its keys (header only), else ``unknown``."""
    if not path.lower().endswith(".safetensors") or not os.path.isfile(path):
        return "unknown"
    return _header_family(path, os.path.getmtime(path))


def gradio_queue() -> bool:
    """Whether the UI runs with gradio's queue (off with ``--no-gradio-queue``)."""
    return not getattr(shared.cmd_opts, "no_gradio_queue", False)
