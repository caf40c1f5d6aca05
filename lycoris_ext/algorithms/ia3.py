"""IA3: scale the weight's output rows (or input columns) by ``1 + w``."""

from __future__ import annotations

from .. import functional as F
from .base import Adapter


class IA3(Adapter):
    """``weight`` holds one value per channel; ``on_input`` picks columns.

    The bias is not touched, as in the reference.
    """

    algorithm = "ia3"
    detect = ("on_input",)
    suffixes = ("weight", "on_input")
    needs_weight = True

    def _parse(self) -> None:
        w = self.tensor("weight")
        if sum(1 for d in w.shape if d != 1) > 1:
            raise self.error("weight", f"has shape {tuple(w.shape)}; IA3 expects one value per channel")
        self.on_input = bool(self.scalar("on_input"))
        self.channels = w.numel()
        self.features.add("on_input" if self.on_input else "on_output")

    def _check_target(self, shape):
        axis = 1 if self.on_input else 0
        if len(shape) < 2 or shape[axis] != self.channels:
            side = "input columns" if self.on_input else "output rows"
            raise self.error("weight", f"has {self.channels} values but a weight of shape {shape} has {shape[axis] if len(shape) > axis else 0} {side}")

    def core_delta(self, weight, bias=None):
        return F.channel_scale(weight, self.param("weight", weight.device), self.on_input), None
