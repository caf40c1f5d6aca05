"""The parts of a model a network changes: the one table of their names.

``te`` is the text encoder of SD1/SD2, ``te1``/``te2`` SDXL's two (CLIP-L
and OpenCLIP-G), ``unet`` the UNet. Every module that names a part uses
these constants; prompt arguments spelled the same (``te=``, ``unet=``)
are token syntax, not parts, and live in :mod:`lycoris_ext.tokens`.
"""

from __future__ import annotations

TE, TE1, TE2, UNET = "te", "te1", "te2", "unet"
TEXT_PARTS = (TE, TE1, TE2)
PARTS = (*TEXT_PARTS, UNET)
#: Said in reports.
PART_NAMES = {TE: "text encoder", TE1: "text encoder 1", TE2: "text encoder 2", UNET: "UNet", "unknown": "unknown part"}
#: The key prefix kohya's trainer writes for each part.
KOHYA_PREFIXES = {TE: "lora_te_", TE1: "lora_te1_", TE2: "lora_te2_", UNET: "lora_unet_"}


def is_text(part: str) -> bool:
    """Whether ``part`` is a text encoder."""
    return part in TEXT_PARTS


def text_parts(count: int) -> tuple[str, ...]:
    """The parts of a model with ``count`` text encoders, in order."""
    return (TE,) if count == 1 else tuple(f"te{i + 1}" for i in range(count))
