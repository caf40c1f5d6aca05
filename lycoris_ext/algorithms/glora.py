"""GLoRA: ``dW = gamma * (W @ A + B)``, both low-rank, A acting on the input axis."""

from __future__ import annotations

from .. import functional as F
from .base import Adapter


class GLoRA(Adapter):
    """Current LyCORIS layout: ``a1 (in, r)``, ``a2 (r, in)``, ``b1 (out, r)``,
    ``b2 (r, in*k)``; the pre-2024 layout stores the transposed roles
    (``a1 (r, in)``, ``a2 (in, r)``, ``b1 (r, in)``, ``b2 (out, r)``) and is
    read into the same form.
    """

    algorithm = "glora"
    detect = ("a1.weight", "a2.weight", "b1.weight", "b2.weight")
    suffixes = ("a1.weight", "a2.weight", "b1.weight", "b2.weight", "bm.weight", "alpha")
    needs_weight = True

    def _parse(self) -> None:
        a1 = self.tensor("a1.weight", (2, 3, 4, 5))
        a2 = self.tensor("a2.weight", (2, 3, 4, 5))
        b1 = self.tensor("b1.weight", (2, 3, 4, 5))
        b2 = self.tensor("b2.weight", (2, 3, 4, 5))
        for name, t in (("a1.weight", a1), ("a2.weight", a2), ("b1.weight", b1)):
            if any(d != 1 for d in t.shape[2:]):
                raise self.error(name, f"has shape {tuple(t.shape)}; only b2 may carry a kernel")
        A1, A2, B1, B2 = ((t.shape[0], t[0].numel()) for t in (a1, a2, b1, b2))
        current = A1[1] == A2[0] == B1[1] == B2[0] and A1[0] == A2[1] and B2[1] % A1[0] == 0
        old = A1[0] == A2[1] == B1[0] == B2[1] and A1[1] == A2[0] == B1[1] and b2.dim() == 2
        if current and old:
            # Only when out == in: the layout with the smaller rank is the real one.
            current = A1[1] <= A1[0]
        if current:
            self._roles = ("a1.weight", "a2.weight", "b1.weight", "b2.weight")
        elif old:
            # a1 (r, in), a2 (in, r): A = a2 @ a1 on the input axis; B = b2 @ b1.
            self._roles = ("a2.weight", "a1.weight", "b2.weight", "b1.weight")
            self.features.add("old-layout")
        else:
            raise self.error("b2.weight", f"GLoRA factors do not join: a1 {tuple(a1.shape)}, a2 {tuple(a2.shape)}, b1 {tuple(b1.shape)}, b2 {tuple(b2.shape)}")
        a_in, a_out, b_up, b_down = (self._entries[s][1] for s in self._roles)
        self.in_features = a_in.shape[0]
        if self.has("bm.weight"):
            bm = self.tensor("bm.weight", (3, 4, 5))
            if tuple(bm.shape[:2]) != (b_up.shape[1], b_down.shape[0]):
                raise self.error("bm.weight", f"has shape {tuple(bm.shape)}, which does not join b1 and b2")
            self.features.add("tucker")
            self._natural = (b_up.shape[0], b_down.shape[1], *bm.shape[2:])
        else:
            self._natural = (b_up.shape[0], *b_down.shape[1:])
        rank = a_out.shape[0]
        self.set_rank_alpha(rank)

    def natural_shape(self):
        return self._natural

    def _check_target(self, shape):
        if len(shape) < 2 or shape[1] != self.in_features:
            raise self.error("a1.weight", f"acts on {self.in_features} input channels but the weight {shape} has {shape[1] if len(shape) > 1 else 0}")

    def core_delta(self, weight, bias=None):
        a_in, a_out, b_up, b_down = (self.param(s, weight.device) for s in self._roles)
        if self.has("bm.weight"):
            b_down = F.tucker_down(self.param("bm.weight", weight.device), b_down)
        return F.glora(weight, a_in, a_out, b_up, b_down) * self.scale, None
