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


def dense_delta(contribs, w32: torch.Tensor, b32: torch.Tensor | None):
    """Sum of the non-low-rank contributions' changes, each from the original."""
    dw = db = None
    for c in contribs:
        try:
            w, b = c.adapter.delta(w32, c.multiplier, b32)
        except BaseException as e:
            blame(e, c)
            raise
        dw = w if dw is None else dw + w
        if b is not None:
            db = b if db is None else db + b
    return dw, db


@torch.no_grad()
def combine(orig_w: torch.Tensor, orig_b: torch.Tensor | None, contribs, factors: FactorCache,
            out: torch.Tensor | None = None):
    """The new (weight, bias) in float32, or written into ``out`` directly.

    ``out`` (a float32, contiguous view of the live weight) lets a layer with
    only low-rank contributions be rebuilt in one read of the original and
    one write. Returns ``(weight or None if written, bias or None)``.
    """
    device = orig_w.device
    w32 = orig_w if orig_w.dtype == torch.float32 else orig_w.float()
    b32 = None if orig_b is None else orig_b.float()
    up, down, dense = split(contribs, factors, device)
    dw, db = dense_delta(dense, w32, b32) if dense else (None, None)
    new_b = None if db is None else b32 + db
    if up is None:
        return (w32 if dw is None else w32 + dw), new_b
    base = w32.reshape(w32.shape[0], -1)
    if dw is not None:
        base = base + dw.reshape(base.shape)
    if out is not None and dw is None:
        torch.addmm(base, up, down, out=out.view(base.shape))
        return None, new_b
    return torch.addmm(base, up, down).reshape(w32.shape), new_b
