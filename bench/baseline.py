"""The benchmark's baseline: A1111 v1.10's way of applying networks.

What the WebUI's built-in Lora extension does (``networks.py``,
``network_apply_weights``), written as a reasonably efficient in-process
equivalent so the comparison is about the method, not about overheads:

* a backup of every weight any active network touches (A1111 backs up every
  Linear/Conv/Norm it sees, touched or not; this keeps only the touched ones,
  which is kinder to the baseline), on the weight's own device (A1111 keeps
  CPU backups; on CPU that is the same thing);
* on every change of the wanted set (any name or multiplier), every backed-up
  weight is copied back from its backup, then for each layer each active
  network's change is computed on its own, in float32, with the same
  ``Adapter.delta`` math the runtime uses, and added into the weight, one
  network at a time;
* going back to no network restores every backup (and, here, frees them, so
  that a later first apply pays for its backups just as the runtime does;
  the matched keys stay cached, which the runtime does not do).

Key matching is done once per network (A1111 does it when it loads a file and
keeps the loaded network in memory), with the same resolver as the runtime.
"""

from __future__ import annotations

import torch

from lycoris_ext.resolve import resolve
from lycoris_ext.runtime.params import bias_view, nbytes, weight_view


class A1111Baseline:
    """``set([(network, multiplier), ...])`` the way A1111 v1.10 does it."""

    def __init__(self, tree):
        self.tree = tree
        self._resolved: dict[int, tuple] = {}
        self._targets: dict[tuple, object] = {}
        self._backup_w: dict[tuple, torch.Tensor] = {}
        self._backup_b: dict[tuple, torch.Tensor] = {}
        self._current: tuple = ()

    def matches(self, network):
        hit = self._resolved.get(id(network))
        if hit is None or hit[0] is not network:
            hit = (network, resolve(network, self.tree).matches)
            self._resolved[id(network)] = hit
        return hit[1]

    @property
    def kept_bytes(self) -> int:
        return sum(nbytes(t) for t in self._backup_w.values()) + sum(nbytes(t) for t in self._backup_b.values())

    @torch.no_grad()
    def set(self, wanted) -> int:
        """Apply exactly ``wanted``; returns the number of layers rewritten."""
        wanted = [(n, float(m)) for n, m in wanted if m != 0]
        sig = tuple((id(n), m) for n, m in wanted)
        if sig == self._current:
            return 0  # A1111 skips a layer whose wanted names did not change
        per_layer: dict[tuple, list] = {}
        for net, m in wanted:
            for match in self.matches(net):
                tid = match.target.id
                self._targets[tid] = match.target
                per_layer.setdefault(tid, []).append((match.adapter, m))
        for tid in per_layer:
            if tid not in self._backup_w:
                self._backup_w[tid] = weight_view(self._targets[tid]).detach().clone()
        for tid, backup in self._backup_w.items():
            target = self._targets[tid]
            w = weight_view(target)
            w.copy_(backup)
            b = bias_view(target)
            if tid in self._backup_b:
                b.copy_(self._backup_b[tid])
            for adapter, m in per_layer.get(tid, ()):
                w32 = w if w.dtype == torch.float32 else w.float()
                b32 = None if b is None else b.float()
                dw, db = adapter.delta(w32, m, b32)
                if w.dtype == torch.float32:
                    w.add_(dw)
                else:
                    w.copy_(w32 + dw)
                if db is not None:
                    if tid not in self._backup_b:
                        self._backup_b[tid] = b.detach().clone()
                    b.copy_(b32 + db)
        self._current = sig
        n = len(self._backup_w)
        if not wanted:
            # Backups go (so a later first apply pays for them, as the
            # runtime's does); matches stay cached, as A1111 keeps loaded
            # networks in memory, which is kinder to the baseline.
            self._backup_w.clear()
            self._backup_b.clear()
            self._targets.clear()
        return n

    def restore(self) -> int:
        return self.set(())

    def forget(self) -> None:
        """Drop backups and cached matches without touching the weights."""
        self._backup_w.clear()
        self._backup_b.clear()
        self._targets.clear()
        self._resolved.clear()
        self._current = ()
