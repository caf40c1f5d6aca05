"""LoHa: ``dW = gamma * (w1a @ w1b) * (w2a @ w2b)``, optional Tucker cores."""

from __future__ import annotations

from .. import functional as F
from .base import Adapter


#: Largest ``r1 * r2`` for which LoHa is written as one low-rank product
#: (measured on a CPU: rank 8 x 8 is ~3x faster that way; 16 x 16 is slower).
KHATRI_RAO_MAX_RANK = 64


class LoHa(Adapter):
    algorithm = "loha"
    detect = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
    suffixes = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2", "alpha", "dora_scale")
    allows_dora = True
    # The product's factors are r2 times the file's: rebuilt when needed, not kept.
    cache_lowrank = False

    def _parse(self) -> None:
        w1a = self.tensor("hada_w1_a", (2,))
        w1b = self.tensor("hada_w1_b", (2, 3, 4, 5))
        w2a = self.tensor("hada_w2_a", (2,))
        w2b = self.tensor("hada_w2_b", (2, 3, 4, 5))
        tucker = self.has("hada_t1") or self.has("hada_t2")
        if tucker:
            # Tucker stores the factors rank-first: w_a (r, out), w_b (r, in).
            t1 = self.tensor("hada_t1", (3, 4, 5))
            t2 = self.tensor("hada_t2", (3, 4, 5))
            for name, t, w_a, w_b in (("hada_t1", t1, w1a, w1b), ("hada_t2", t2, w2a, w2b)):
                if w_b.dim() != 2 or tuple(t.shape[:2]) != (w_a.shape[0], w_b.shape[0]):
                    raise self.error(name, f"has shape {tuple(t.shape)}, which does not join its factors {tuple(w_a.shape)} and {tuple(w_b.shape)}")
            if w1a.shape[1] != w2a.shape[1] or w1b.shape[1] != w2b.shape[1] or t1.shape[2:] != t2.shape[2:]:
                raise self.error("hada_w2_a", "the two Hadamard halves have different shapes")
            self._natural = (w1a.shape[1], w1b.shape[1], *t1.shape[2:])
            self.features.add("tucker")
            rank = w1b.shape[0]
        else:
            for a_name, b_name, w_a, w_b in (("hada_w1_a", "hada_w1_b", w1a, w1b), ("hada_w2_a", "hada_w2_b", w2a, w2b)):
                if w_a.shape[1] != w_b.shape[0]:
                    raise self.error(b_name, f"has {w_b.shape[0]} ranks but {a_name} has {w_a.shape[1]} (shapes {tuple(w_a.shape)} and {tuple(w_b.shape)})")
            n1 = (w1a.shape[0], F.flat(w1b).shape[1])
            n2 = (w2a.shape[0], F.flat(w2b).shape[1])
            if n1 != n2:
                raise self.error("hada_w2_a", f"the two Hadamard halves give shapes {n1} and {n2}")
            self._natural = (w1a.shape[0], *w1b.shape[1:]) if w1b.dim() > 2 else n1
            rank = w1b.shape[0]
        self.tucker = tucker
        # rank of the change written as one product (Khatri-Rao of the halves)
        self.product_rank = None if tucker else w1a.shape[1] * w2a.shape[1]
        self.set_rank_alpha(rank)

    def natural_shape(self):
        return self._natural

    def core_delta(self, weight, bias=None):
        p = lambda s: self.param(s, weight.device)  # noqa: E731
        if self.tucker:
            d = F.tucker3(p("hada_t1"), p("hada_w1_a"), p("hada_w1_b")).mul_(
                F.tucker3(p("hada_t2"), p("hada_w2_a"), p("hada_w2_b"))
            )
        else:
            d = F.hadamard(p("hada_w1_a"), p("hada_w1_b"), p("hada_w2_a"), p("hada_w2_b"))
        return d.mul_(self.scale).reshape(weight.shape), None

    def lowrank(self, device=None):
        # As a rank r1*r2 product when that is small: cheaper than the two
        # full-size products, and summed with the other low-rank networks.
        if not self._as_product():
            return None
        p = lambda s: self.param(s, device)  # noqa: E731
        up, down = F.khatri_rao(p("hada_w1_a"), p("hada_w1_b"), p("hada_w2_a"), p("hada_w2_b"))
        return up.mul_(self.scale), down

    def _as_product(self) -> bool:
        return self.product_rank is not None and self.magnitude is None and self.product_rank <= KHATRI_RAO_MAX_RANK

    def add_into(self, target, weight, multiplier=1.0, bias=None):
        if self.tucker or self.magnitude is not None or self._as_product():
            return super().add_into(target, weight, multiplier, bias)
        p = lambda s: F.flat(self.param(s, weight.device))  # noqa: E731
        w1a, w1b, w2a, w2b = p("hada_w1_a"), p("hada_w1_b"), p("hada_w2_a"), p("hada_w2_b")
        F.add_by_rows(target.view(w1a.shape[0], -1), 1,
                      lambda i, j: (w1a[i:j] @ w1b).mul_(w2a[i:j] @ w2b).mul_(self.scale), multiplier)
        return None
