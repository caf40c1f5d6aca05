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
from . import threads


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
    """Low-rank factors for the layer being rebuilt, never float32 copies kept.

    ``get(adapter, device, raw=True)`` gives ``(up, down, gamma)`` with
    ``adapter.lowrank(device) == (up.float() * gamma, down.float())`` bit for
    bit: for a plain LoRA/LoCon the file's own tensors (in the file's dtype;
    on another device a copy in that dtype is kept while the adapter is in
    use), which the caller converts straight into its float32 buffer; for the
    others (LoHa as a Khatri-Rao product, Tucker) the float32 factors computed
    now, with ``gamma`` 1. Without ``raw`` it gives the float32 pair. Nothing
    float32 outlives the call: a layer's factors cost memory only while that
    layer is rebuilt (or while a bypass hook holds them).
    """

    def __init__(self):
        self._cache: dict[tuple[int, torch.device], tuple[Adapter, tuple]] = {}

    def _source(self, adapter: Adapter, device: torch.device):
        source = getattr(adapter, "lowrank_source", None)
        src = source() if source is not None else None
        if src is None:
            return None
        up, down, gamma = src
        if up.device == device and down.device == device:
            return src
        k = (id(adapter), device)
        hit = self._cache.get(k)
        if hit is None:
            hit = (adapter, (up.to(device), down.to(device), gamma))
            self._cache[k] = hit
        return hit[1]

    def get(self, adapter: Adapter, device, raw: bool = False):
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        src = self._source(adapter, device)
        if src is None:
            f = adapter.lowrank(device)
            return f if f is None or not raw else (f[0], f[1], 1.0)
        if raw:
            return src
        up, down, gamma = src
        up = up.to(torch.float32)
        return (up if gamma == 1 else up * gamma), down.to(torch.float32)

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
    """``(U, D, dense)``: the low-rank contributions as one float32 product
    ``U @ D`` (built here: each network's factors converted straight into its
    columns of ``U`` and rows of ``D``, times gamma, times its multiplier,
    in that order), and the other contributions.

    The factors are small (a few hundred kB per network and layer), so they
    are built in the calling thread alone (:func:`threads.serial`: waking
    torch's sleeping OpenMP workers for each of them made this step 2.5
    times slower in a WebUI's server than in one process)."""
    lows, dense = [], []
    for c in contribs:
        try:
            f = factors.get(c.adapter, device, raw=True)
        except BaseException as e:
            blame(e, c)
            raise
        if f is None:
            dense.append(c)
        else:
            lows.append((c, f))
    if not lows:
        return None, None, dense
    rank = sum(f[0].shape[1] for _, f in lows)
    up = torch.empty((lows[0][1][0].shape[0], rank), dtype=torch.float32, device=device)
    down = torch.empty((rank, lows[0][1][1].shape[1]), dtype=torch.float32, device=device)
    at = 0
    with threads.serial(device):
        for c, (u, d, gamma) in lows:
            r = u.shape[1]
            cols_u = up[:, at:at + r] if len(lows) > 1 else up
            # converted, then scaled in float32 while the columns are in cache
            # (a mixed-dtype product in one pass was slower on a CPU)
            cols_u.copy_(u)
            if gamma != 1:
                cols_u.mul_(gamma)
            if c.multiplier != 1:
                cols_u.mul_(c.multiplier)
            (down[at:at + r] if len(lows) > 1 else down).copy_(d)
            at += r
    return up, down, dense


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
            out: torch.Tensor | None = None, out_holds_orig: bool = False):
    """The new (weight, bias) in float32, or written into ``out`` directly.

    ``out`` (a float32, contiguous view of the live weight, not sharing memory
    with ``orig_w``) is filled in place: one copy of the original, each dense
    change added in order, then every low-rank contribution in one
    ``addmm_``. Without ``out`` the same steps fill a new tensor, so both give
    the same bits. ``out_holds_orig`` says ``out`` already equals the
    original bit for bit (a layer merged for the first time), which saves
    the copy. Returns ``(weight or None if written, bias or None)``.
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
        if not out_holds_orig:
            target.copy_(w32)
    db = add_dense(target, dense, w32, b32) if dense else None
    if up is not None:
        target.view(w32.shape[0], -1).addmm_(up, down)
    return result, (None if db is None else b32 + db)
