"""OFT and BOFT: rotate the weight's output rows by orthogonal blocks."""

from __future__ import annotations

import torch

from .. import functional as F
from .base import Adapter


class _Orthogonal(Adapter):
    needs_weight = True

    def _parse_common(self, blocks: torch.Tensor) -> None:
        n, b = blocks.shape[-3], blocks.shape[-1]
        if blocks.shape[-2] != b:
            raise self.error(self._blocks_key, f"has shape {tuple(blocks.shape)}; blocks must be square")
        self.block_num, self.block_size = n, b
        self.out_features = n * b
        self.rescale = None
        if self.has("rescale"):
            r = self.tensor("rescale")
            if r.shape[0] != r.numel():
                raise self.error("rescale", f"has shape {tuple(r.shape)}; expected (out, 1, ...)")
            if r.numel() != self.out_features:
                raise self.error("rescale", f"has {r.numel()} values but the blocks cover {self.out_features} rows")
            self.rescale = r
            self.features.add("rescale")
        # LyCORIS stores the constraint as alpha and applies alpha * out_dim.
        alpha = self.scalar("alpha")
        self.alpha = alpha
        self.constraint = (alpha or 0.0) * self.out_features
        self.rank = b

    def natural_shape(self):
        return None

    def _check_target(self, shape):
        if len(shape) < 2 or shape[0] != self.out_features:
            raise self.error(self._blocks_key, f"{self.block_num} blocks of {self.block_size} cover {self.out_features} rows but the weight {shape} has {shape[0] if shape else 0}")

    def _rescaled(self, rotated: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.rescale is None:
            return rotated
        return rotated * self.param("rescale", weight.device).reshape(-1, *[1] * (weight.dim() - 1))

    def rotation(self, device) -> torch.Tensor:
        blocks = self.param(self._blocks_key, device)
        return F.cayley(blocks, self.constraint)


class OFT(_Orthogonal):
    """Diagonal OFT (LyCORIS ``oft_blocks`` 3-D, kohya OFT) and the old
    LyCORIS 2.0 ``oft_diag`` form, which stores the finished rotation.

    Only the weight turns; kohya's and LyCORIS's forwards keep the bias.
    """

    algorithm = "oft"
    detect = ("oft_diag",)
    suffixes = ("oft_blocks", "oft_diag", "rescale", "alpha")

    @classmethod
    def claims(cls, entries):
        if "oft_diag" in entries:
            return True
        t = entries.get("oft_blocks")
        return t is not None and t[1].dim() == 3

    def _parse(self) -> None:
        self.direct = self.has("oft_diag") and not self.has("oft_blocks")
        self._blocks_key = "oft_diag" if self.direct else "oft_blocks"
        blocks = self.tensor(self._blocks_key, (3,))
        self._parse_common(blocks)
        if self.direct:
            self.features.add("oft_diag")

    def rotation(self, device):
        if self.direct:
            return self.param(self._blocks_key, device)
        return super().rotation(device)

    def core_delta(self, weight, bias=None):
        r = self.rotation(weight.device)
        return self._rescaled(F.rotate_rows_blockwise(weight, r), weight) - weight, None


class BOFT(_Orthogonal):
    """Butterfly OFT: ``oft_blocks`` of shape (stages, n, b, b)."""

    algorithm = "boft"
    detect = ()
    suffixes = ("oft_blocks", "rescale", "alpha")

    @classmethod
    def claims(cls, entries):
        t = entries.get("oft_blocks")
        return t is not None and t[1].dim() == 4

    def _parse(self) -> None:
        self._blocks_key = "oft_blocks"
        blocks = self.tensor("oft_blocks", (4,))
        self._parse_common(blocks)
        self.stages = blocks.shape[0]
        self.linear_in_multiplier = self.rescale is not None or self.stages == 1
        if self.block_size % 2:
            raise self.error("oft_blocks", f"butterfly blocks must have an even size, not {self.block_size}")
        span = 2 ** (self.stages - 1) * self.block_size
        if self.out_features % span:
            raise self.error("oft_blocks", f"{self.stages} butterfly stages of {self.block_size} need a multiple of {span} rows, not {self.out_features}")

    def core_delta(self, weight, bias=None):
        r = self.rotation(weight.device)
        return self._rescaled(F.butterfly(weight, r), weight) - weight, None

    def delta(self, weight, multiplier=1.0, bias=None):
        # Without rescale the reference interpolates every stage towards the
        # identity, which is not linear in the multiplier for several stages.
        if self.rescale is not None or multiplier == 1:
            return super().delta(weight, multiplier, bias)
        r = self.rotation(weight.device)
        return F.butterfly(weight, r, multiplier) - weight, None
