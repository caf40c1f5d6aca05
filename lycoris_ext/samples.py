"""Sample network files of every algorithm, written for a model's own layers.

The demo and the benchmarks use these: tensors shaped like real trainers'
output (kohya key style), with random values sized so the change is visible
but moderate. Nothing here is needed to *use* networks.
"""

from __future__ import annotations

import math
import re

import torch

from .parts import UNET
from .resolve.tree import ModelTree, Target

# What kohya's LoRA trains by default: attention, feed-forward and proj_in/out
# in the UNet; attention and MLP in the text encoders.
_DEFAULT = re.compile(r"(attn[12]\.to_(q|k|v|out\.0)|ff\.net\.(0\.proj|2)|proj_(in|out)|self_attn\.(q|k|v|out)_proj|mlp\.(fc[12]|c_fc|c_proj))$")


def default_targets(tree: ModelTree, conv: bool = False) -> list[Target]:
    """The layers kohya's trainer targets (plus ResBlock convs with ``conv``)."""
    out = []
    for t in tree.targets:
        label = tree.forms[t.id][0]
        if t.param == "in_proj_weight" or _DEFAULT.search(label) or (t.part == UNET and _DEFAULT.search(t.path)):
            out.append(t)
        elif conv and t.part == UNET and t.kind == "conv" and t.block != "OTHER":
            out.append(t)
    return out


def factor_pair(n: int, factor: int) -> tuple[int, int]:
    """``(a, b)`` with ``a * b == n``, ``a <= b``, ``a`` the divisor closest to ``factor``."""
    best = 1
    for a in range(1, int(math.isqrt(n)) + 1):
        if n % a == 0 and abs(a - factor) < abs(best - factor):
            best = a
    return best, n // best


def _rand(g, *shape, std=1.0):
    return torch.randn(shape, generator=g) * std


def module_tensors(algorithm: str, shape: tuple[int, ...], rank: int, g: torch.Generator, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """Tensors (suffix -> tensor) of one module of ``algorithm`` for a weight of ``shape``."""
    out_dim, in_dim, *k = shape if len(shape) > 1 else (shape[0], 1)
    kk = math.prod(k) if k else 1
    alpha = float(rank if alpha is None else alpha)
    conv = bool(k)
    if algorithm in ("lora", "dora"):
        t = {
            "lora_up.weight": _rand(g, out_dim, rank, *([1, 1] if conv else []), std=0.5 / math.sqrt(rank)),
            "lora_down.weight": _rand(g, rank, in_dim, *k, std=1 / math.sqrt(in_dim * kk)),
            "alpha": torch.tensor(alpha),
        }
        if algorithm == "dora":
            t["dora_scale"] = 1 + _rand(g, out_dim, 1, *([1] * len(k)), std=0.05)
        return t
    if algorithm == "loha":
        s = (0.5 / math.sqrt(rank)) ** 0.5
        return {
            "hada_w1_a": _rand(g, out_dim, rank, std=s), "hada_w1_b": _rand(g, rank, in_dim * kk, std=s / math.sqrt(in_dim * kk) ** 0.5),
            "hada_w2_a": _rand(g, out_dim, rank, std=s), "hada_w2_b": _rand(g, rank, in_dim * kk, std=s / math.sqrt(in_dim * kk) ** 0.5),
            "alpha": torch.tensor(alpha),
        }
    if algorithm == "lokr":
        a, c = factor_pair(out_dim, 8)
        b, d = factor_pair(in_dim, 8)
        return {
            "lokr_w1": _rand(g, a, b, std=1 / math.sqrt(b)),
            "lokr_w2_a": _rand(g, c, rank, std=0.5 / math.sqrt(rank)),
            "lokr_w2_b": _rand(g, rank, d * kk, std=1 / math.sqrt(d * kk)),
            "alpha": torch.tensor(alpha),
        }
    if algorithm == "ia3":
        return {"weight": _rand(g, out_dim, std=0.1), "on_input": torch.tensor(0)}
    if algorithm == "full":
        return {"diff": _rand(g, *shape, std=0.01 / math.sqrt(in_dim * kk))}
    if algorithm == "oft":
        b, n = factor_pair(out_dim, rank)
        return {"oft_blocks": _rand(g, n, b, b, std=0.02), "alpha": torch.tensor(0.0)}
    if algorithm == "glora":
        return {
            "a1.weight": _rand(g, in_dim, rank, std=0.1 / math.sqrt(rank)), "a2.weight": _rand(g, rank, in_dim, std=1 / math.sqrt(in_dim)),
            "b1.weight": _rand(g, out_dim, rank, std=0.5 / math.sqrt(rank)), "b2.weight": _rand(g, rank, in_dim * kk, std=1 / math.sqrt(in_dim * kk)),
            "alpha": torch.tensor(alpha),
        }
    raise ValueError(f"no sample for algorithm '{algorithm}'")


def sample_network(tree: ModelTree, algorithm: str = "lora", rank: int = 8, conv_rank: int | None = None,
                   seed: int = 0, targets: list[Target] | None = None, alpha: float | None = None,
                   dtype=torch.float32) -> dict[str, torch.Tensor]:
    """A kohya-keyed state dict of ``algorithm`` on ``targets`` (default: kohya's)."""
    g = torch.Generator().manual_seed(seed)
    targets = targets if targets is not None else default_targets(tree, conv=conv_rank is not None)
    out: dict[str, torch.Tensor] = {}
    for t in targets:
        r = conv_rank if (t.kind == "conv" and conv_rank) else rank
        key = tree.key_for(t)
        for suffix, v in module_tensors(algorithm, t.shape, r, g, alpha).items():
            out[f"{key}.{suffix}"] = v.to(dtype) if v.is_floating_point() else v
    return out
