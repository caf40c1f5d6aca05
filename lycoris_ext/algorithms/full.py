"""Full (diff): ``dW = diff``, ``db = diff_b``."""

from __future__ import annotations

from .base import Adapter


class Full(Adapter):
    algorithm = "full"
    detect = ("diff",)
    fresh_delta = False  # the change is the stored tensor itself
    suffixes = ("diff", "diff_b")

    def _parse(self) -> None:
        d = self.tensor("diff", (1, 2, 3, 4, 5))
        self._natural = tuple(d.shape)
        self.bias_delta = None
        if self.has("diff_b"):
            b = self.tensor("diff_b", (1,))
            if b.shape[0] != d.shape[0]:
                raise self.error("diff_b", f"has {b.shape[0]} values but diff has {d.shape[0]} output rows")
            self.bias_delta = b

    def natural_shape(self):
        return self._natural

    def core_delta(self, weight, bias=None):
        dw = self.param("diff", weight.device).reshape(weight.shape)
        # A layer without a bias keeps none (the reference ignores diff_b then).
        db = self.param("diff_b", weight.device) if (self.bias_delta is not None and bias is not None) else None
        return dw, db
