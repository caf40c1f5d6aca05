"""Norm: ``w += w_norm``, ``b += b_norm`` on LayerNorm and GroupNorm."""

from __future__ import annotations

from .base import Adapter


class Norm(Adapter):
    algorithm = "norm"
    detect = ("w_norm", "b_norm")
    fresh_delta = False  # the change is the stored tensor itself
    suffixes = ("w_norm", "b_norm")

    def _parse(self) -> None:
        w = self.tensor("w_norm", (1,)) if self.has("w_norm") else None
        b = self.tensor("b_norm", (1,)) if self.has("b_norm") else None
        if w is not None and b is not None and w.shape != b.shape:
            raise self.error("b_norm", f"has shape {tuple(b.shape)} but w_norm has {tuple(w.shape)}")
        self.channels = (w if w is not None else b).shape[0]

    def natural_shape(self):
        return (self.channels,)

    def _check_target(self, shape):
        if len(shape) != 1:
            raise self.error(None, f"norm weights fit only LayerNorm/GroupNorm (1-D) weights, not {shape}")

    def core_delta(self, weight, bias=None):
        dw = self.param("w_norm", weight.device) if self.has("w_norm") else weight.new_zeros(weight.shape)
        db = self.param("b_norm", weight.device) if (self.has("b_norm") and bias is not None) else None
        return dw, db
