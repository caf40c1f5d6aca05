"""Small models with the real module names, and sample networks written for them."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext.resolve.tree import ModelTree
from lycoris_ext.samples import default_targets, module_tensors, sample_network
from lycoris_ext.synthetic import build_tree


def small_model(model: str = "sd15", shrink: int = 16, dtype=torch.float32, seed: int = 0):
    """``(parts, tree)``: an A1111-named module tree with every width / ``shrink``."""
    return build_tree(model, shrink=shrink, dtype=dtype, seed=seed)


def snapshot(parts) -> dict[str, torch.Tensor]:
    return {f"{p}.{n}": t.detach().clone() for p, m in parts.items() for n, t in m.state_dict(keep_vars=True).items()}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor (so -0.0 != 0.0 and NaN payloads count)."""
    return t.reshape(-1).contiguous().view(torch.uint8)


def same_as(parts, snap) -> list[str]:
    """Names of tensors that differ (in any bit) from ``snap``."""
    out = []
    for p, m in parts.items():
        for n, t in m.state_dict(keep_vars=True).items():
            ref = snap[f"{p}.{n}"]
            if t.dtype != ref.dtype or t.shape != ref.shape or not torch.equal(_bits(t.detach()), _bits(ref)):
                out.append(f"{p}.{n}")
    return out


def write_sample(path, tree: ModelTree, algorithm: str, rank: int = 4, seed: int = 0, conv_rank=None, **kw):
    save_file(sample_network(tree, algorithm, rank=rank, seed=seed, conv_rank=conv_rank, **kw), str(path))
    return lycoris_ext.load_network(path)


def write_norm_network(path, tree: ModelTree, seed: int = 0):
    """w_norm/b_norm on every norm layer of the UNet's transformer blocks and the text encoder."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for t in tree.targets:
        if t.kind == "norm" and ("transformer_blocks" in t.path or t.part != "unet"):
            key = tree.key_for(t)
            sd[f"{key}.w_norm"] = torch.randn(t.shape, generator=g) * 0.05
            sd[f"{key}.b_norm"] = torch.randn(t.shape, generator=g) * 0.05
    save_file(sd, str(path))
    return lycoris_ext.load_network(path)


def write_full_with_bias(path, tree: ModelTree, seed: int = 0):
    """Full diffs with diff_b on the UNet's attention output projections."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for t in default_targets(tree):
        if t.path.endswith("to_out.0"):
            key = tree.key_for(t)
            for s, v in module_tensors("full", t.shape, 1, g).items():
                sd[f"{key}.{s}"] = v
            sd[f"{key}.diff_b"] = torch.randn(t.shape[0], generator=g) * 0.01
    save_file(sd, str(path))
    return lycoris_ext.load_network(path)
