"""The reference: lycoris-lora 4.1.3's own modules, driven through their forward.

``reference_weight`` runs a library module's normal (non-bypass) forward and
captures the weight that forward actually uses, so the comparison is against
what the library computes when it runs, not against its ``merge_to`` or
bypass paths (which disagree with the forward; see DEVELOPERS.md).
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
logging.getLogger("lycoris").setLevel(logging.ERROR)

from lycoris import create_lycoris  # noqa: E402
from lycoris.modules.locon import LoConModule  # noqa: E402


class ThreeLayers(nn.Module):
    """A Linear, a 1x1 Conv2d and a 3x3 Conv2d (plus norms for the norm algorithm)."""

    def __init__(self, wide: int = 256, narrow: int = 128):
        super().__init__()
        self.lin = nn.Linear(wide, narrow)
        self.c1 = nn.Conv2d(narrow, wide, 1)
        self.c3 = nn.Conv2d(wide, narrow, 3, padding=1)
        self.ln = nn.LayerNorm(narrow)
        self.gn = nn.GroupNorm(8, wide)


def sample_input(module: nn.Module, generator=None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return torch.randn(2, module.in_features, generator=generator)
    if isinstance(module, nn.Conv2d):
        return torch.randn(1, module.in_channels, 6, 6, generator=generator)
    if isinstance(module, nn.LayerNorm):
        return torch.randn(2, module.normalized_shape[0], generator=generator)
    if isinstance(module, nn.GroupNorm):
        return torch.randn(1, module.num_channels, 3, 3, generator=generator)
    raise TypeError(type(module))


def original_params(lora) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The target layer's weight and bias before the network."""
    if type(lora).__name__ == "FullModule":
        b = lora.org_bias[0] if lora.org_bias else None
        return lora._org_weight[0].detach().clone(), None if b is None else b.detach().clone()
    org = lora.org_module[0]
    b = getattr(org, "bias", None)
    return org.weight.detach().clone(), None if b is None else b.detach().clone()


@torch.no_grad()
def reference_weight(lora, multiplier: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) that the module's forward applies at ``multiplier``."""
    lora.multiplier = multiplier
    lora.bypass_mode = False
    captured = {}
    op = lora.op

    def capture(x, *args, **kwargs):
        captured["w"] = kwargs["weight"] if "weight" in kwargs else args[0]
        captured["b"] = kwargs["bias"] if "bias" in kwargs else (args[1] if len(args) > 1 else None)
        return op(x, *args, **kwargs)

    lora.op = capture
    try:
        lora.forward(sample_input(lora.org_module[0]))
    finally:
        lora.op = op
    w, b = original_params(lora)
    if type(lora).__name__ == "FullModule" and not lora.is_diff:
        return captured["w"].clone(), captured["b"]
    new_b = None if (captured["b"] is None or b is None) else b + captured["b"]
    return w + captured["w"], new_b


def make_network(model: nn.Module, seed: int = 1, noise: float = 0.1, linear_dim=8, linear_alpha=4,
                 conv_dim=4, conv_alpha=2, **kwargs):
    """A lycoris-lora network on ``model`` with random non-zero parameters."""
    net = create_lycoris(model, 1.0, linear_dim=linear_dim, linear_alpha=linear_alpha,
                         conv_dim=conv_dim, conv_alpha=conv_alpha, preset="full", **kwargs)
    net.apply_to()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return net


def locon_reference(org_module: nn.Module, up, down, alpha) -> LoConModule:
    """A library LoCon module holding the given factors (DyLoRA's files are LoCon files)."""
    rank = down.shape[0]
    mod = LoConModule("ref", org_module, 1.0, rank, float(alpha))
    with torch.no_grad():
        mod.lora_up.weight.copy_(up.reshape(mod.lora_up.weight.shape))
        mod.lora_down.weight.copy_(down.reshape(mod.lora_down.weight.shape))
    mod.org_forward = org_module.forward
    return mod


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
