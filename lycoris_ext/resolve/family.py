"""Which base model a network file was made for: SD1, SD2, SDXL or unknown.

Shapes are the strongest evidence (the cross-attention width is 768 in SD1,
1024 in SD2 and 2048 in SDXL; the text encoders are 768, 1024, 768+1280
wide), then key styles that only SDXL files use, then the trainers'
metadata.
"""

from __future__ import annotations

import re

from ..network import Network
from ..keys import split_key
from ..parts import TE2, UNET
from .styles import split_prefix

# The one table of base-model families. Keys: ``sd1``, ``sd2``, ``sdxl``, ``sd``
# (SD1 or SD2: a file that cannot tell) and ``unknown``.
#: The name said in reports and messages.
FAMILY_NAMES = {"sd1": "SD1", "sd2": "SD2", "sd": "SD1/SD2", "sdxl": "SDXL", "unknown": "unknown"}
#: The WebUI's "Stable Diffusion version" of a card (user metadata ``sd version``).
FAMILY_LABELS = {"sd1": "SD1", "sd2": "SD2", "sd": "SD1", "sdxl": "SDXL", "unknown": "Unknown"}
#: A label the user chose, back to a family (``SD1`` means SD1, not "SD1 or SD2").
LABEL_FAMILIES = {"SD1": "sd1", "SD2": "sd2", "SDXL": "sdxl", "Unknown": "unknown"}
#: Forge's ``SdVersion`` names (its cards' ``data-sort-sdversion``, read by its sd/xl filter).
FORGE_SD_VERSIONS = {"sd1": "SdVersion.SD1", "sd2": "SdVersion.SD2", "sd": "SdVersion.SD1", "sdxl": "SdVersion.SDXL",
                     "unknown": "SdVersion.Unknown"}


def compatible(file_family: str, model_family: str) -> bool:
    """Whether a file made for ``file_family`` can apply to a ``model_family`` model."""
    if "unknown" in (file_family, model_family) or file_family == model_family:
        return True
    return file_family == "sd" and model_family in ("sd1", "sd2")


# Layer names that exist in one UNet layout only (SD1/SD2: attention at the
# first level and a fourth level; SDXL: transformer depth above 1, label embedding).
_SD_ONLY = re.compile(
    r"(down_blocks[._]0[._]attentions|up_blocks[._]3[._]attentions|down_blocks[._]3[._]|up_blocks[._]3[._]"
    r"|input_blocks[._][12][._]1[._]|input_blocks[._](9|10|11)[._]|output_blocks[._](9|10|11)[._])"
)
_SDXL_ONLY = re.compile(r"(transformer_blocks[._][1-9]|label_emb|add_embedding)")

_CROSS = re.compile(r"attn2[._](processor[._])?to_[kv]$")
_TE_Q = re.compile(r"(self_attn[._]q_proj|attn[._]in_proj|mlp[._]fc1|mlp[._]c_fc)$")
_CROSS_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def _in_width(adapter) -> int | None:
    shape = adapter.natural_shape()
    if shape is not None and len(shape) >= 2:
        return shape[1]
    return getattr(adapter, "in_features", None)


def family_from_metadata(metadata: dict[str, str]) -> str | None:
    arch = metadata.get("modelspec.architecture", "").lower()
    if arch.startswith("stable-diffusion-xl"):
        return "sdxl"
    if arch.startswith("stable-diffusion-v2"):
        return "sd2"
    if arch.startswith("stable-diffusion-v1"):
        return "sd1"
    base = metadata.get("ss_base_model_version", "").lower()
    if base.startswith("sdxl"):
        return "sdxl"
    if base.startswith(("sd_v2", "sd_2", "sd2")):
        return "sd2"
    if base.startswith(("sd_v1", "sd_1", "sd1")):
        return "sd1"
    if metadata.get("ss_v2") == "True":
        return "sd2"
    if metadata.get("ss_v2") == "False":
        return "sd1"
    return None


def _decide(widths, metadata: dict[str, str]) -> tuple[str, str]:
    """The family from ``(module key, input width or None)`` pairs and metadata."""
    cross: dict[str, int] = {}
    te_widths: set[int] = set()
    sdxl_keys = 0
    layout: set[str] = set()
    single_te = False
    for key, width in widths:
        style, _ = split_prefix(key)
        if style is not None and style.parts[0] == TE2:
            sdxl_keys += 1
        if style is not None and style.parts[0] == UNET:
            if _SDXL_ONLY.search(key):
                layout.add("sdxl")
            elif _SD_ONLY.search(key):
                layout.add("sd")
        if style is not None and style.prefix in ("lora_te_", "lora_te.", "text_encoder."):
            single_te = True
        if width is None:
            continue
        if _CROSS.search(key):
            fam = _CROSS_WIDTH.get(width)
            if fam:
                cross[fam] = cross.get(fam, 0) + 1
        elif _TE_Q.search(key) and style is not None and style.parts[0] != UNET:
            te_widths.add(width)
    if cross:
        fam = max(cross, key=cross.get)
        width = {v: k for k, v in _CROSS_WIDTH.items()}[fam]
        return fam, f"cross-attention layers take {width}-wide text embeddings"
    if 1280 in te_widths or sdxl_keys:
        return "sdxl", "it has keys for SDXL's second text encoder"
    if 1024 in te_widths:
        return "sd2", "its text-encoder layers are 1024 wide (OpenCLIP ViT-H)"
    meta = family_from_metadata(metadata)
    if layout == {"sdxl"}:
        return "sdxl", "its UNet layers exist only in SDXL's layout"
    if layout == {"sd"}:
        if meta in ("sd1", "sd2"):
            return meta, "from the training metadata"
        return "sd", "its UNet layers exist only in SD1/SD2's layout"
    if meta:
        return meta, "from the training metadata"
    if 768 in te_widths and single_te:
        return "sd1", "its only text encoder is 768 wide (CLIP-L)"
    return "unknown", "no cross-attention or text-encoder layer and no metadata tell"


def detect_family(network: Network) -> tuple[str, str]:
    """``(family, reason)`` for a network file, ``family`` in sd1/sd2/sdxl/unknown."""
    return _decide(((k, _in_width(a)) for k, a in network.modules.items()), network.metadata)


def _header_widths(header: dict):
    """Input widths per module from a safetensors header's shapes (no tensor read)."""
    shapes: dict[str, dict[str, list[int]]] = {}
    for key, entry in header.items():
        module, suffix, _ = split_key(key)
        if suffix is not None and isinstance(entry, dict) and isinstance(entry.get("shape"), list):
            shapes.setdefault(module, {})[suffix] = entry["shape"]
    for module, s in shapes.items():
        width = None
        if len(s.get("lora_down.weight", ())) >= 2:
            width = s["lora_down.weight"][1]
        elif len(s.get("hada_w1_b", ())) >= 2:
            width = s["hada_w1_b"][1]
        elif len(s.get("diff", ())) >= 2:
            width = s["diff"][1]
        else:
            b = s.get("lokr_w1", s.get("lokr_w1_b"))
            d = s.get("lokr_w2", s.get("lokr_w2_b"))
            if b and d and len(b) >= 2 and len(d) >= 2 and "lokr_t2" not in s:
                width = b[1] * d[1]
        yield module, width


def family_from_header(header: dict, metadata: dict[str, str]) -> tuple[str, str]:
    """Like :func:`detect_family`, from a file's header alone (cheap: for listings)."""
    return _decide(_header_widths(header), metadata)
