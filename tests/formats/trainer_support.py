"""Shared by the trainer-format tests: real model layouts, kohya-layout files,
and the LoRA forward kohya-derived trainers run (restated, no code of theirs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lycoris_ext.resolve.inventory import model_tree

FIXTURES = Path(__file__).parent / "fixtures"
_TREES: dict = {}


def fixture(name: str) -> dict:
    return json.load(gzip.open(FIXTURES / name))


def tree(family: str, naming: str = "a1111"):
    """The project's real-layout tree (A1111 inventory or diffusers names), cached."""
    if (family, naming) not in _TREES:
        _TREES[family, naming] = model_tree(family, naming)
    return _TREES[family, naming]


def lora_file(path, keys: dict, alpha_of, dtype=torch.float16, metadata=None, seed: int = 0, extra=None):
    """A kohya-layout LoRA file: ``<key>.lora_down.weight`` (rank, in[, k, k]),
    ``<key>.lora_up.weight`` (out, rank[, 1, 1]), ``<key>.alpha`` 0-d, every
    tensor in the save dtype; ``keys`` maps module key -> [out, in, kernel (0:
    Linear), rank]; ``alpha_of(kernel)`` gives the alpha."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, (out, inn, k, r) in keys.items():
        kern = (k, k) if k else ()
        sd[f"{key}.lora_down.weight"] = (torch.randn(r, inn, *kern, generator=g) * 0.1).to(dtype)
        sd[f"{key}.lora_up.weight"] = (torch.randn(out, r, *((1, 1) if k else ()), generator=g) * 0.1).to(dtype)
        sd[f"{key}.alpha"] = torch.tensor(alpha_of(k)).to(dtype)
    sd.update(extra or {})
    save_file(sd, str(path), metadata or {})
    return path


def lora_forward(x, W, down, up, scale, m, stride=1, padding=0):
    """``org(x) + up(down(x)) * m * scale``; down has the layer's kernel, stride and padding."""
    if W.dim() == 2:
        return F.linear(x, W) + F.linear(F.linear(x, down), up) * m * scale
    org = F.conv2d(x, W, stride=stride, padding=padding)
    return org + F.conv2d(F.conv2d(x, down, stride=stride, padding=padding), up) * m * scale


def pick(keys: dict):
    """One module of each kind: text-encoder Linear, UNet Linear, 1x1 conv, 3x3 conv."""
    picked = {}
    for key, (out, inn, k, r) in keys.items():
        kind = ("te" if "_te" in key.split("_text_model")[0] else "unet", k)
        picked.setdefault(kind, key)
    return list(picked.values())


def check_lora_forward(net, keys: dict, m: float, tol: float, seed: int = 1):
    """Every picked module's change equals :func:`lora_forward` (3x3 convs with stride 1 and 2)."""
    g = torch.Generator().manual_seed(seed)
    for key in pick(keys):
        out, inn, k, r = keys[key]
        a = net.modules[key]
        W = torch.randn(out, inn, k, k, generator=g) * 0.05 if k else torch.randn(out, inn, generator=g) * 0.05
        new_w, _ = a.apply(W, multiplier=m)
        down, up = a.param("lora_down.weight"), a.param("lora_up.weight")
        for stride in ((1, 2) if k == 3 else (1,)):
            pad = 1 if k == 3 else 0
            x = torch.randn(2, inn, 8, 8, generator=g) if k else torch.randn(2, 3, inn, generator=g)
            want = lora_forward(x, W, down, up, a.scale, m, stride, pad)
            got = F.conv2d(x, new_w, stride=stride, padding=pad) if k else F.linear(x, new_w)
            assert (got - want).abs().max().item() < tol, key
