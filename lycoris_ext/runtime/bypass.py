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
from ..storage import logical_shape, packed_storage
from .merge import FactorCache, dense_sum, split
from .uses import RowContext, RowWeights

_HOOKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.GroupNorm)


def is_linear(module) -> bool:
    """``nn.Linear``, or a host's own linear layer that is a bare ``nn.Module``
    computing ``F.linear(x, self.weight, self.bias)`` (Forge's
    ``backend.operations.ForgeOperations.Linear``, and its quantized ones)."""
    if isinstance(module, nn.Linear):
        return True
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor):
        return False
    shape = logical_shape(w)
    if len(shape) != 2:
        return False
    features = (getattr(module, "out_features", None), getattr(module, "in_features", None))
    if features == (None, None):
        # Forge's GGUF and bitsandbytes layers keep no feature counts: a
        # leaf over a quantized 2-D weight is a linear layer there
        return packed_storage(module) is not None and next(module.children(), None) is None
    return features == shape


def hookable(target: Target) -> bool:
    """Whether a forward hook can carry this target's change.

    Packed attention slices, transposed parameters and partial inputs are
    used inside other modules' forwards, so they are always merged.
    """
    return (
        (isinstance(target.module, _HOOKABLE) or is_linear(target.module))
        and target.param == "weight"
        and target.rows is None
        and target.cols is None
        and not target.transposed
    )


def _add(y: torch.Tensor, t: torch.Tensor, inplace: bool) -> torch.Tensor:
    if inplace and y.dtype == t.dtype and y.shape == torch.broadcast_shapes(y.shape, t.shape):
        return y.add_(t)
    return y + t


class BypassHook:
    """The state and the forward hook of one layer.

    Contributions with a number as multiplier are folded into one change;
    those with :class:`RowWeights` (per image of a batch) are kept apart and
    weighted per row of each call, from ``rows``.
    """

    def __init__(self, target: Target, rows: RowContext | None = None):
        self.target = target
        self.module = target.module
        self.rows = rows or RowContext()
        self.up = self.down = self.dense_w = self.dense_b = None
        self.row_lowrank: list[tuple[RowWeights, int]] = []  # (weights, rank) per row-wise factor block
        self.row_up = self.row_down = None
        self.row_dense: list[tuple[RowWeights, object, object]] = []  # (weights, dw or {m: dw}, db or {m: db})
        self._cast: dict[tuple, tuple] = {}
        # decided once: a host may later swap the layer's weight object for another kind
        self.linear = is_linear(self.module)
        self.handle = self.module.register_forward_hook(self)

    def _weight32(self) -> torch.Tensor:
        """The layer's weight in float32; for a quantized one a zero stand-in
        of its shape (the runtime sends no change that reads it there)."""
        w = self.module.weight
        if packed_storage(self.module) is not None:
            return torch.zeros(logical_shape(w), dtype=torch.float32, device=w.device)
        return w.detach().float()

    @torch.no_grad()
    def _set_rows(self, contribs, factors: FactorCache) -> None:
        mod = self.module
        if not contribs:
            self.row_lowrank, self.row_dense, self.row_up, self.row_down = [], [], None, None
            return
        w32 = self._weight32()
        b32 = mod.bias.detach().float() if getattr(mod, "bias", None) is not None else None
        ups, downs = [], []
        self.row_lowrank, self.row_dense = [], []
        conv = isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        thin_ok = not conv or (mod.groups == 1 and mod.padding_mode == "zeros")
        for c in contribs:
            f = factors.get(c.adapter, w32.device) if thin_ok else None
            if f is not None:
                ups.append(f[0])
                downs.append(f[1])
                self.row_lowrank.append((c.multiplier, f[0].shape[1]))
            elif c.adapter.linear_in_multiplier:
                dw, db = c.adapter.delta(w32, 1.0, b32)
                self.row_dense.append((c.multiplier, dw, db))
            else:  # exact per distinct multiplier (BOFT's stages are not linear in it)
                values = sorted(set(c.multiplier.cond) | set(c.multiplier.uncond))
                deltas = {m: c.adapter.delta(w32, m, b32) for m in values}
                self.row_dense.append((c.multiplier, {m: d[0] for m, d in deltas.items()}, {m: d[1] for m, d in deltas.items()}))
        self.row_up = torch.cat(ups, 1) if ups else None
        self.row_down = torch.cat(downs, 0) if downs else None

    @torch.no_grad()
    def set(self, contribs, factors: FactorCache) -> None:
        """Recompute the change for a new list of contributions."""
        mod = self.module
        device = mod.weight.device
        rowwise = [c for c in contribs if isinstance(c.multiplier, RowWeights)]
        contribs = [c for c in contribs if not isinstance(c.multiplier, RowWeights)]
        self._set_rows(rowwise, factors)
        up, down, dense = split(contribs, factors, device)
        if up is not None and isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and (mod.groups != 1 or mod.padding_mode != "zeros"):
            # Thin convs cannot follow a grouped or padded-mode layer: go dense.
            delta = (up @ down).reshape(mod.weight.shape)
            up = down = None
        else:
            delta = None
        dw = db = None
        if dense:
            b = mod.bias.detach().float() if getattr(mod, "bias", None) is not None else None
            dw, db = dense_sum(dense, self._weight32(), b)
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

    def _row_part(self, module, x, y):
        """Add the row-wise contributions: each row weighted by its image's multiplier."""
        n = x.shape[0]
        images, uncond = self.rows.rows_for(n)
        conv = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        per_row = lambda rw, like: rw.at(images, uncond).to(device=like.device, dtype=like.dtype)  # noqa: E731
        if self.row_up is not None:
            key = ("rows", x.device, x.dtype)
            t = self._cast.get(key)
            if t is None:
                up, down = self.row_up, self.row_down
                if conv:
                    down = down.reshape(down.shape[0], *module.weight.shape[1:])
                    up = up.reshape(*up.shape, *[1] * (module.weight.dim() - 2))
                t = self._cast[key] = (up.to(x.device, x.dtype), down.to(x.device, x.dtype))
            up, down = t
            scale = torch.cat([per_row(rw, x).unsqueeze(1).expand(n, r) for rw, r in self.row_lowrank], 1)
            if conv:
                opf = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[module.weight.dim() - 2]
                h = opf(x, down, None, module.stride, module.padding, module.dilation)
                h = h * scale.reshape(n, -1, *[1] * (h.dim() - 2))
                y = y + opf(h, up)
            else:
                h = F.linear(x, down)
                h = h * scale.reshape(n, *[1] * (h.dim() - 2), -1)
                y = y + F.linear(h, up)
        for rw, dws, dbs in self.row_dense:
            if isinstance(dws, dict):
                for m, dw in dws.items():
                    mask = (per_row(rw, x) == m).to(y.dtype).reshape(n, *[1] * (y.dim() - 1))
                    y = y + mask * self._dense_out(x, dw, dbs[m], y)
            else:
                y = y + per_row(rw, y).reshape(n, *[1] * (y.dim() - 1)) * self._dense_out(x, dws, dbs, y)
        return y

    def _dense_out(self, x, dw, db, like):
        module = self.module
        dw = None if dw is None else dw.to(x.device, x.dtype)
        db = None if db is None else db.to(x.device, x.dtype)
        if self.linear:
            out = F.linear(x, dw, db)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out = module._conv_forward(x, dw, db)
        elif isinstance(module, nn.LayerNorm):
            out = F.layer_norm(x, module.normalized_shape, dw, db, module.eps)
        else:
            out = F.group_norm(x, module.num_groups, dw, db, module.eps)
        return out.to(like.dtype)

    @torch.no_grad()
    def __call__(self, module, args, output):
        x = args[0]
        y = output
        if self.row_up is not None or self.row_dense:
            y = self._row_part(module, x, y)
        if self.up is None and self.dense_w is None and self.dense_b is None:
            return y.to(output.dtype)
        up, down, dw, db = self._tensors(x)
        # The layer's own output is a fresh tensor: add into it in place
        # unless autograd records it.
        inplace = not y.requires_grad
        if self.linear:
            if up is not None:
                h = F.linear(x, down)
                if inplace and y.is_contiguous() and y.dtype == h.dtype:
                    y.view(-1, y.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]), up.t())
                else:
                    y = y + F.linear(h, up)
            if dw is not None:
                y = _add(y, F.linear(x, dw, db), inplace)
            elif db is not None:
                y = _add(y, db, inplace)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[module.weight.dim() - 2]
            if up is not None:
                h = conv(x, down, None, module.stride, module.padding, module.dilation)
                y = _add(y, conv(h, up), inplace)
            if dw is not None:
                y = _add(y, module._conv_forward(x, dw, db), inplace)
            elif db is not None:
                y = _add(y, db.reshape(1, -1, *[1] * (y.dim() - 2)), inplace)
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
