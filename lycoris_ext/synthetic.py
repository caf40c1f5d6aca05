"""Torch module trees with the real models' names and layouts, random weights.

Used by the demo, the benchmarks and the tests: an SD1.5/SD2/SDXL module tree
built from the packaged inventories, at full size or with every width divided
by ``shrink`` (so the names, kinds and proportions stay real while the tensors
are small). Nothing is downloaded.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn as nn

from .resolve.tree import A1111, ModelTree, Row


def _dim(d: int, shrink: int) -> int:
    # Widths shrink; small structural sizes (latent channels, kernels, the 77
    # positions) stay as they are.
    return d // shrink if (shrink > 1 and d >= 64 and d % shrink == 0) else d


def _module_for(cls: str, params: dict[str, tuple[int, ...]], shrink: int) -> nn.Module:
    p = {k: tuple(_dim(d, shrink) for d in v) for k, v in params.items()}
    w = p.get("weight")
    if "in_proj_weight" in p:
        d3, width = p["in_proj_weight"]
        return nn.MultiheadAttention(width, 1, bias="in_proj_bias" in p, device="meta")
    if w is not None and "Embedding" in cls:
        return nn.Embedding(*w, device="meta")
    if w is not None and len(w) == 2:
        return nn.Linear(w[1], w[0], bias="bias" in p, device="meta")
    if w is not None and len(w) == 4:
        return nn.Conv2d(w[1], w[0], tuple(w[2:]), padding=w[2] // 2, bias="bias" in p, device="meta")
    if w is not None and len(w) == 1 and "GroupNorm" in cls:
        return nn.GroupNorm(math.gcd(32, w[0]), w[0], device="meta")
    if w is not None and len(w) == 1:
        return nn.LayerNorm(w[0], device="meta")
    m = nn.Module()
    for name, shape in p.items():
        m.register_parameter(name, nn.Parameter(torch.empty(shape, device="meta")))
    return m


def build_part(rows: Iterable[Row], shrink: int = 1) -> nn.Module:
    """One part (a text encoder or the UNet) from ``(path, class, params, _)`` rows."""
    root = nn.Module()
    made = {"": root}
    for path, cls, params, _ in rows:
        if path == "" or path in made:
            continue
        parent_path, _, name = path.rpartition(".")
        parent = made.get(parent_path)
        if parent is None:
            continue  # under a module that built its own children (attention)
        existing = getattr(parent, name, None)
        if isinstance(existing, nn.Module):
            made[path] = existing
            continue
        mod = _module_for(cls, dict(params), shrink)
        parent.add_module(name, mod)
        made[path] = mod
    return root


@torch.no_grad()
def materialize(module: nn.Module, dtype=torch.float32, device="cpu", seed: int = 0) -> nn.Module:
    """Give every meta parameter real storage with random values (scaled by fan-in)."""
    module.to_empty(device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in module.named_parameters():
        fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
        std = 1.0 / math.sqrt(fan_in) if p.dim() > 1 else 0.02
        if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "ln_1.weight", "ln_2.weight")) or (p.dim() == 1 and name.endswith("weight")):
            vals = 1.0 + 0.02 * torch.randn(p.shape, generator=g)
        else:
            vals = torch.randn(p.shape, generator=g) * std
        p.data = vals.to(device=device, dtype=dtype)
    return module


def build_model(model: str = "sd15", shrink: int = 8, dtype=torch.float32, device="cpu", seed: int = 0) -> dict[str, nn.Module]:
    """``{part: module}`` for ``sd15``/``sd2``/``sdxl`` with A1111's names."""
    from .resolve.inventory import a1111_rows

    parts = {}
    for i, (part, rows) in enumerate(a1111_rows(model).items()):
        parts[part] = materialize(build_part(rows, shrink), dtype, device, seed + i)
    return parts


def build_tree(model: str = "sd15", shrink: int = 8, dtype=torch.float32, device="cpu", seed: int = 0) -> tuple[dict[str, nn.Module], ModelTree]:
    from .resolve.inventory import FAMILY_OF

    parts = build_model(model, shrink, dtype, device, seed)
    return parts, ModelTree(parts, A1111, FAMILY_OF[model])
