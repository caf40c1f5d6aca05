"""Key styles: which prefix a trainer puts in front of a layer's path.

A module key of a file is ``<prefix><body>``: the prefix says which model
part (text encoder(s) or UNet) the key means, the body is that layer's path
in some naming scheme, with dots kept (diffusers/PEFT, OneTrainer, OMI) or
turned into underscores (kohya, LyCORIS, SimpleTuner). Adding a style is one
line in :data:`STYLES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..parts import TE, TE1, TE2, UNET



@dataclass(frozen=True)
class Style:
    prefix: str
    #: Parts the key may mean, in order of preference.
    parts: tuple[str, ...]
    #: The body keeps its dots.
    dotted: bool
    #: Who writes it (shown in reports).
    name: str


STYLES: tuple[Style, ...] = tuple(
    sorted(
        (
            # kohya sd-scripts, LyCORIS kohya.py, OneTrainer legacy/kohya export
            Style("lora_unet_", (UNET,), False, "kohya"),
            Style("lora_te_", (TE, TE1), False, "kohya"),
            # diffusers' kohya export writes lora_te1 for SD1's only encoder too
            Style("lora_te1_", (TE1, TE), False, "kohya"),
            Style("lora_te2_", (TE2,), False, "kohya"),
            Style("oft_unet_", (UNET,), False, "kohya OFT"),
            # LyCORIS wrapper (SimpleTuner): one prefix for whatever it wrapped
            Style("lycoris_", (UNET, TE, TE1, TE2), False, "LyCORIS"),
            # diffusers / PEFT
            Style("unet.", (UNET,), True, "diffusers"),
            Style("text_encoder.", (TE, TE1), True, "diffusers"),
            Style("text_encoder_2.", (TE2,), True, "diffusers"),
            # OneTrainer 2025 internal form
            Style("lora_unet.", (UNET,), True, "OneTrainer"),
            Style("lora_te.", (TE, TE1), True, "OneTrainer"),
            Style("lora_te1.", (TE1, TE), True, "OneTrainer"),
            Style("lora_te2.", (TE2,), True, "OneTrainer"),
            # OMI (OneTrainer, 2025)
            Style("clip_l.", (TE1, TE), True, "OMI"),
            Style("clip_g.", (TE2,), True, "OMI"),
            Style("lora_clip_l.", (TE1, TE), True, "OMI"),
            Style("lora_clip_g.", (TE2,), True, "OMI"),
            # ComfyUI / checkpoint-style names
            Style("diffusion_model.", (UNET,), True, "ComfyUI"),
            Style("model.diffusion_model.", (UNET,), True, "checkpoint"),
            Style("text_encoders.clip_l.", (TE1, TE), True, "ComfyUI"),
            Style("text_encoders.clip_g.", (TE2,), True, "ComfyUI"),
            # A1111's own layer names
            Style("diffusion_model_", (UNET,), False, "A1111"),
        ),
        key=lambda s: -len(s.prefix),
    )
)


def split_prefix(key: str) -> tuple[Style | None, str]:
    """``(style, body)``; ``(None, key)`` when no known prefix starts the key."""
    for style in STYLES:
        if key.startswith(style.prefix) and len(key) > len(style.prefix):
            return style, key[len(style.prefix):]
    return None, key


_TE_BODY_STARTS = ("text_model", "encoder_layers", "encoder.layers", "final_layer_norm", "embeddings", "text_projection")


def part_hint(key: str) -> str:
    """The part a key means, judged from the key alone (no model at hand).

    ``lycoris_`` keys carry no part marker; a text-encoder-shaped body is
    taken as ``te``. Unknown styles give ``"unknown"``.
    """
    style, body = split_prefix(key)
    if style is None:
        return "unknown"
    if style.prefix == "lycoris_":
        return TE if body.startswith(_TE_BODY_STARTS) else UNET
    return style.parts[0]
