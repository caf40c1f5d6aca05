"""Module inventories of the real models, shipped with the package.

``a1111_<family>.json.gz`` lists every module A1111 v1.10.1 builds for SD1.5,
SD2.1 and SDXL base (path, class, parameter shapes), so a file can be checked
against a model without loading one (``inspect --model``), and the tests and
benchmarks can build real-size layouts. The diffusers-named inventory of the
same model is derived from it with the name translations in :mod:`.names`.
"""

from __future__ import annotations

import functools
import gzip
import json
import os

from ..parts import UNET
from .names import ldm_to_diffusers, openclip_to_hf
from .tree import A1111, DIFFUSERS, ModelTree, Row

MODELS = ("sd15", "sd2", "sdxl")
FAMILY_OF = {"sd15": "sd1", "sd2": "sd2", "sdxl": "sdxl"}
_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


@functools.lru_cache(maxsize=None)
def _load(model: str) -> dict:
    if model not in MODELS:
        raise ValueError(f"unknown model '{model}' (choose from {', '.join(MODELS)})")
    with gzip.open(os.path.join(_DATA, f"a1111_{model}.json.gz"), "rb") as f:
        return json.loads(f.read())


def a1111_rows(model: str) -> dict[str, list[Row]]:
    """``{part: [(path, class, params, None)]}`` as A1111 v1.10.1 names them."""
    return {
        part: [(p, c, {k: tuple(v) for k, v in params.items()}, None) for p, c, params in rows]
        for part, rows in _load(model).items()
    }


def _diffusers_te(rows: list[Row]) -> list[Row]:
    openclip = any("resblocks" in r[0] for r in rows)
    out: list[Row] = []
    for path, cls, params, _ in rows:
        if not openclip:
            if path.startswith("transformer."):
                out.append((path[len("transformer."):], cls, params, None))
            continue
        inner = path[len("model."):] if path.startswith("model.") else path
        if "text_projection" in params:
            w, p = params["text_projection"]
            out.append(("text_projection", "Linear", {"weight": (p, w)}, None))
        if "in_proj_weight" in params:
            d3, width = params["in_proj_weight"]
            hf = openclip_to_hf(inner)
            for name in ("q_proj", "k_proj", "v_proj"):
                out.append((f"{hf}.{name}", "Linear", {"weight": (d3 // 3, width), "bias": (d3 // 3,)}, None))
            continue
        hf = openclip_to_hf(inner)
        if hf:
            out.append((hf, cls, params, None))
    return out


def diffusers_rows(model: str) -> dict[str, list[Row]]:
    """The same model as ``UNet2DConditionModel`` + transformers CLIP names."""
    out: dict[str, list[Row]] = {}
    for part, rows in a1111_rows(model).items():
        if part == UNET:
            out[part] = [(d, c, p, None) for path, c, p, _ in rows if p and (d := ldm_to_diffusers(path))]
        else:
            out[part] = _diffusers_te(rows)
    return out


def model_tree(model: str, naming: str = A1111) -> ModelTree:
    """A :class:`ModelTree` of a real model's layout (no weights allocated)."""
    rows = a1111_rows(model) if naming == A1111 else diffusers_rows(model)
    if naming not in (A1111, DIFFUSERS):
        raise ValueError(f"naming must be '{A1111}' or '{DIFFUSERS}'")
    return ModelTree.from_rows(rows, naming, FAMILY_OF[model])
