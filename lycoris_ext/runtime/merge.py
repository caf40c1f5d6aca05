"""The math of one layer in the runtime: originals plus every contribution.

Every low-rank contribution of a layer (LoRA/LoCon, any number of networks)
is written with one matrix product over concatenated factors, straight into
the weight when the weight is float32; the other algorithms add their dense
change. Everything is computed in float32 from the kept original, in the
order of the wanted set, so the result depends only on the wanted set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..algorithms import Adapter


@dataclass(frozen=True, eq=False)
class Contribution:
    """One network's adapter on one target, at one multiplier."""

    network: str
    key: str
    adapter: Adapter
    multiplier: float

    @property
    def signature(self) -> tuple:
        return (id(self.adapter), self.multiplier)


class FactorCache:
    """Float32 ``(up * gamma, down)`` of low-rank adapters, per device.

    Keeps the adapters alive while cached, so ``id()`` keys stay valid.
    """

    def __init__(self):
        self._cache: dict[tuple[int, torch.device], tuple[Adapter, tuple | None]] = {}

    def get(self, adapter: Adapter, device: torch.device):
        if not adapter.cache_lowrank:
            return adapter.lowrank(device)
        k = (id(adapter), torch.device(device))
        hit = self._cache.get(k)
        if hit is None:
            hit = (adapter, adapter.lowrank(device))
            self._cache[k] = hit
        return hit[1]

    def drop(self, keep: set[int]) -> None:
        """Forget adapters whose ids are not in ``keep``."""
        for k in [k for k in self._cache if k[0] not in keep]:
            del self._cache[k]

    def __len__(self) -> int:
        return len(self._cache)


def blame(exc: BaseException, contribution: Contribution) -> None:
    """Note on an exception which contribution raised it (the runtime names it)."""
    if getattr(exc, "contribution", None) is None:
        try:
            exc.contribution = contribution
        except Exception:  # pragma: no cover - exceptions without a __dict__
            pass


def split(contribs, factors: FactorCache, device):
    """``(U, D, dense)``: concatenated low-rank factors and the other contributions."""
    ups, downs, dense = [], [], []
    for c in contribs:
        try:
            f = factors.get(c.adapter, device)
        except BaseException as e:
            blame(e, c)
            raise
        if f is None:
            dense.append(c)
            continue
        up, down = f
        ups.append(up if c.multiplier == 1 else up * c.multiplier)
        downs.append(down)
    if not ups:
        return None, None, dense
    if len(ups) == 1:
        return ups[0], downs[0], dense
    return torch.cat(ups, 1), torch.cat(downs, 0), dense


def add_dense(target: torch.Tensor, contribs, w32: torch.Tensor, b32: torch.Tensor | None):
    """Add each non-low-rank contribution's change (from the original ``w32``)
    into ``target`` in order; return the bias change, or None."""
    db = None
    for c in contribs:
        try:
            b = c.adapter.add_into(target, w32, c.multiplier, b32)
        except BaseException as e:
            blame(e, c)
            raise
        if b is not None:
            db = b if db is None else db + b
    return db


def dense_sum(contribs, w32: torch.Tensor, b32: torch.Tensor | None):
    """``(dw, db)``: the summed changes of non-low-rank contributions."""
    dw = torch.zeros_like(w32, memory_format=torch.contiguous_format)
    return dw, add_dense(dw, contribs, w32, b32)


@torch.no_grad()
def combine(orig_w: torch.Tensor, orig_b: torch.Tensor | None, contribs, factors: FactorCache,
            out: torch.Tensor | None = None):
    """The new (weight, bias) in float32, or written into ``out`` directly.

    ``out`` (a float32, contiguous view of the live weight, not sharing memory
    with ``orig_w``) is filled in place: one copy of the original, each dense
    change added in order, then every low-rank contribution in one
    ``addmm_``. Without ``out`` the same steps fill a new tensor, so both give
    the same bits. Returns ``(weight or None if written, bias or None)``.
    """
    device = orig_w.device
    w32 = orig_w if orig_w.dtype == torch.float32 else orig_w.float()
    b32 = None if orig_b is None else orig_b.float()
    up, down, dense = split(contribs, factors, device)
    if out is None:
        # The dense changes are computed from w32, so never write into it.
        fresh = w32 is not orig_w and not dense and w32.is_contiguous()
        result = w32 if fresh else w32.clone(memory_format=torch.contiguous_format)
        target = result
    else:
        result = None
        target = out.view(w32.shape)
        target.copy_(w32)
    db = add_dense(target, dense, w32, b32) if dense else None
    if up is not None:
        target.view(w32.shape[0], -1).addmm_(up, down)
    return result, (None if db is None else b32 + db)
