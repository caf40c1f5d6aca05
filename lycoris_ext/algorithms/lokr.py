"""LoKr: ``dW = gamma * kron(w1, w2)``, each half stored full or as factors."""

from __future__ import annotations

import torch

from .. import functional as F
from .base import Adapter


class LoKr(Adapter):
    """Every LyCORIS factorisation: ``lokr_w1`` or ``lokr_w1_a @ lokr_w1_b``;
    ``lokr_w2``, ``lokr_w2_a @ lokr_w2_b`` or a Tucker ``lokr_t2`` core.

    gamma is alpha over the rank of the factorised half, and 1 when both
    halves are stored full (LyCORIS ignores alpha then).
    """

    algorithm = "lokr"
    detect = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
    suffixes = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2", "alpha", "dora_scale")
    allows_dora = True

    def _parse(self) -> None:
        rank = None
        if self.has("lokr_w1"):
            w1 = self.tensor("lokr_w1", (2,))
            self.w1_shape = tuple(w1.shape)
        else:
            w1a = self.tensor("lokr_w1_a", (2,))
            w1b = self.tensor("lokr_w1_b", (2,))
            if w1a.shape[1] != w1b.shape[0]:
                raise self.error("lokr_w1_b", f"has {w1b.shape[0]} ranks but lokr_w1_a has {w1a.shape[1]}")
            self.w1_shape = (w1a.shape[0], w1b.shape[1])
            rank = w1a.shape[1]
        kernel: tuple[int, ...] = ()
        self.tucker = False
        if self.has("lokr_w2"):
            w2 = self.tensor("lokr_w2", (2, 3, 4, 5))
            c, d = w2.shape[:2]
            kernel = tuple(w2.shape[2:])
        elif self.has("lokr_t2"):
            t2 = self.tensor("lokr_t2", (3, 4, 5))
            w2a = self.tensor("lokr_w2_a", (2,))
            w2b = self.tensor("lokr_w2_b", (2,))
            if tuple(t2.shape[:2]) != (w2a.shape[0], w2b.shape[0]):
                raise self.error("lokr_t2", f"has shape {tuple(t2.shape)}, which does not join lokr_w2_a {tuple(w2a.shape)} and lokr_w2_b {tuple(w2b.shape)}")
            c, d = w2a.shape[1], w2b.shape[1]
            kernel = tuple(t2.shape[2:])
            rank = rank if rank is not None else t2.shape[0]
            self.tucker = True
            self.features.add("tucker")
        else:
            w2a = self.tensor("lokr_w2_a", (2,))
            w2b = self.tensor("lokr_w2_b", (2, 3, 4, 5))
            if w2a.shape[1] != w2b.shape[0]:
                raise self.error("lokr_w2_b", f"has {w2b.shape[0]} ranks but lokr_w2_a has {w2a.shape[1]}")
            c = w2a.shape[0]
            d = w2b.shape[1]
            kernel = tuple(w2b.shape[2:])
            # LyCORIS flattens (in, k, k) into one axis of w2_b; the kernel is
            # then only known from the target.
            rank = rank if rank is not None else w2a.shape[1]
        a, b = self.w1_shape
        self._natural = (a * c, b * d, *kernel) if kernel else (a * c, b * d)
        full = self.has("lokr_w1") and self.has("lokr_w2")
        if full:
            self.set_rank_alpha(None)
            self.scale = 1.0
        else:
            self.set_rank_alpha(rank)

    def natural_shape(self):
        return self._natural

    def _half(self, which: str, device) -> torch.Tensor:
        p = lambda s: self.param(s, device)  # noqa: E731
        if which == "1":
            return p("lokr_w1") if self.has("lokr_w1") else p("lokr_w1_a") @ p("lokr_w1_b")
        if self.has("lokr_w2"):
            return p("lokr_w2")
        if self.tucker:
            return F.tucker3(p("lokr_t2"), p("lokr_w2_a"), p("lokr_w2_b"))
        return p("lokr_w2_a") @ F.flat(p("lokr_w2_b"))

    def core_delta(self, weight, bias=None):
        w1 = self._half("1", weight.device)
        w2 = self._half("2", weight.device)
        return (F.kron(w1 * self.scale, w2)).reshape(weight.shape), None

    def add_into(self, target, weight, multiplier=1.0, bias=None):
        if self.magnitude is not None:
            return super().add_into(target, weight, multiplier, bias)
        w1 = self._half("1", weight.device) * self.scale
        w2 = F.flat(self._half("2", weight.device))
        # rows i*c .. j*c of kron(w1, w2) are kron(w1[i:j], w2): exact, element by element
        F.add_by_rows(target.view(w1.shape[0] * w2.shape[0], -1), w2.shape[0],
                      lambda i, j: torch.kron(w1[i:j], w2), multiplier)
        return None
