"""How much a network changes each block of a model (for the card's per-block chart)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import torch

from .resolve.resolution import Resolution
from .resolve.tree import Target


@torch.no_grad()
def block_change(resolution: Resolution, weight_of: Callable[[Target], torch.Tensor | None] | None = None) -> dict[str, float]:
    """Frobenius norm of the total change per block, at multiplier 1.

    Low-rank layers use ``||U D||^2 = sum((U^T U) * (D D^T))`` (no dense
    product). Algorithms whose change depends on the weight (IA3, OFT, GLoRA,
    DoRA) need ``weight_of(target)``; without it they are left out.
    """
    sums: dict[str, float] = defaultdict(float)
    for m in resolution.matches:
        lr = m.adapter.lowrank("cpu")
        if lr is not None:
            up, down = lr
            sums[m.target.block] += float(((up.T @ up) * (down @ down.T)).sum())
            continue
        w = weight_of(m.target) if weight_of is not None else None
        if w is None:
            if m.adapter.reads_weight:
                continue
            w = torch.zeros(m.target.shape)
        dw, _ = m.adapter.delta(w.detach().float().cpu())
        sums[m.target.block] += float(dw.pow(2).sum())
    return {b: math.sqrt(max(v, 0.0)) for b, v in sums.items()}
