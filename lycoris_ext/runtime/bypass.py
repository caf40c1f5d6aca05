"""Bypass mode: a forward hook on each touched layer instance adds the change
to its output; the weights are never written.

Low-rank contributions run as two thin products on the activations; the
others as one product with their summed dense change (computed once per
wanted set, from the untouched weight). Hooks are per instance; no class of
``torch.nn`` is patched.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..resolve.tree import Target
from .merge import FactorCache, dense_delta, split

_HOOKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.GroupNorm)


def hookable(target: Target) -> bool:
    """Whether a forward hook can carry this target's change.

    Packed attention slices, transposed parameters and partial inputs are
    used inside other modules' forwards, so they are always merged.
    """
    return (
        isinstance(target.module, _HOOKABLE)
        and target.param == "weight"
        and target.rows is None
        and target.cols is None
        and not target.transposed
    )


class BypassHook:
    """The state and the forward hook of one layer."""

    def __init__(self, target: Target):
        self.target = target
        self.module = target.module
        self.up = self.down = self.dense_w = self.dense_b = None
        self._cast: dict[tuple, tuple] = {}
        self.handle = self.module.register_forward_hook(self)

    @torch.no_grad()
    def set(self, contribs, factors: FactorCache) -> None:
        """Recompute the change for a new list of contributions."""
        mod = self.module
        w = mod.weight.detach()
        device = w.device
        up, down, dense = split(contribs, factors, device)
        if up is not None and isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and (mod.groups != 1 or mod.padding_mode != "zeros"):
            # Thin convs cannot follow a grouped or padded-mode layer: go dense.
            delta = (up @ down).reshape(w.shape)
            up = down = None
        else:
            delta = None
        dw = db = None
        if dense:
            b = mod.bias.detach().float() if getattr(mod, "bias", None) is not None else None
            dw, db = dense_delta(dense, w.float(), b)
        if delta is not None:
            dw = delta if dw is None else dw + delta
        self.up, self.down, self.dense_w, self.dense_b = up, down, dw, db
        self._cast.clear()

    def _tensors(self, x: torch.Tensor):
        key = (x.device, x.dtype)
        t = self._cast.get(key)
        if t is None:
            conv = isinstance(self.module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
            w = self.module.weight
            up = down = None
            if self.up is not None:
                up, down = self.up, self.down
                if conv:
                    down = down.reshape(down.shape[0], *w.shape[1:])
                    up = up.reshape(*up.shape, *[1] * (w.dim() - 2))
            t = tuple(None if v is None else v.to(device=x.device, dtype=x.dtype)
                      for v in (up, down, self.dense_w, self.dense_b))
            self._cast[key] = t
        return t

    @torch.no_grad()
    def __call__(self, module, args, output):
        if self.up is None and self.dense_w is None and self.dense_b is None:
            return output
        x = args[0]
        up, down, dw, db = self._tensors(x)
        y = output
        if isinstance(module, nn.Linear):
            if up is not None:
                y = y + F.linear(F.linear(x, down), up)
            if dw is not None:
                y = y + F.linear(x, dw, db)
            elif db is not None:
                y = y + db
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[module.weight.dim() - 2]
            if up is not None:
                h = conv(x, down, None, module.stride, module.padding, module.dilation)
                y = y + conv(h, up)
            if dw is not None:
                y = y + module._conv_forward(x, dw, db)
            elif db is not None:
                y = y + db.reshape(1, -1, *[1] * (y.dim() - 2))
        elif isinstance(module, nn.LayerNorm):
            if dw is not None:
                y = y + F.layer_norm(x, module.normalized_shape, dw, db, module.eps)
            elif db is not None:
                y = y + db
        elif isinstance(module, nn.GroupNorm):
            if dw is not None:
                y = y + F.group_norm(x, module.num_groups, dw, db, module.eps).to(y.dtype)
            elif db is not None:
                y = y + db.reshape(1, -1, *[1] * (y.dim() - 2))
        return y.to(output.dtype)

    def remove(self) -> None:
        self.handle.remove()
        self._cast.clear()
