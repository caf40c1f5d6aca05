"""The wanted set: which networks, with which multipliers, at which steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from ..network import Network
from ..parts import is_text
from ..resolve.names import OTHER

@dataclass(frozen=True)
class RowWeights:
    """UNet multipliers per image of a batch: on its conditional rows and on
    its unconditional rows (the negative prompt's side of the batch).

    Only bypass hooks can carry them; the runtime learns which image and side
    each row of the UNet's input is from :class:`RowContext`.
    """

    cond: tuple[float, ...]
    uncond: tuple[float, ...]

    def scaled(self, k: float) -> "RowWeights":
        return RowWeights(tuple(v * k for v in self.cond), tuple(v * k for v in self.uncond))

    @property
    def is_zero(self) -> bool:
        return not any(self.cond) and not any(self.uncond)

    def at(self, images, uncond):
        """Per-row multipliers (a float tensor) for rows of ``images`` (index tensor)."""
        import torch

        c = torch.tensor(self.cond, dtype=torch.float32)
        u = torch.tensor(self.uncond, dtype=torch.float32)
        idx = images.clamp(0, len(self.cond) - 1)
        return torch.where(uncond, u[idx], c[idx])


#: A multiplier is a number, a function of (step, total steps) -> number, or
#: (UNet only) per-image :class:`RowWeights`.
Weight = Union[float, Callable[[int, int], float], RowWeights]


def _at(w: Weight, step: int | None, total: int | None):
    if isinstance(w, RowWeights):
        return w
    if callable(w):
        return float(w(step or 0, total or 0))
    return float(w)


@dataclass(frozen=True)
class Use:
    """One network in the wanted set.

    ``te``/``unet`` multiply the text-encoder and UNet layers; ``blocks``
    (block ID -> weight) multiplies per block (text encoders are ``BASE``;
    layers outside the UNet's blocks always keep 1); ``dyn`` keeps the first
    N ranks of LoRA layers; ``start``/``stop`` limit the UNet's part to
    sampling steps ``start <= step < stop`` (as LBW: the text encoders, which
    run before sampling, keep their multiplier).
    """

    network: Network
    te: Weight = 1.0
    unet: Weight = 1.0
    dyn: int | None = None
    blocks: Mapping[str, float] | None = None
    start: int | None = None
    stop: int | None = None
    name: str | None = None
    #: With row-wise ``unet``: a number or curve multiplying every row's weight.
    scale: "Weight" = 1.0
    extra: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return self.name or self.network.name

    @property
    def scheduled(self) -> bool:
        """Whether the multipliers can change between sampling steps."""
        curve = lambda w: callable(w) and not isinstance(w, RowWeights)  # noqa: E731
        return self.start is not None or self.stop is not None or curve(self.te) or curve(self.unet) or curve(self.scale)

    @property
    def rowwise(self) -> bool:
        """Whether the UNet multiplier differs between the rows of a batch."""
        return isinstance(self.unet, RowWeights)

    def active(self, step: int | None) -> bool:
        if step is None:
            return self.start is None or self.start <= 0
        if self.start is not None and step < self.start:
            return False
        if self.stop is not None and step >= self.stop:
            return False
        return True

    def part_multiplier(self, part: str, step: int | None = None, total: int | None = None):
        """A number, or :class:`RowWeights` for a row-wise UNet multiplier."""
        te = is_text(part)
        if not te and not self.active(step):
            return 0.0
        w = self.te if te else self.unet
        if isinstance(w, RowWeights):
            if te:
                raise ValueError("per-image weights apply to the UNet only")
            return w.scaled(_at(self.scale, step, total))
        return _at(w, step, total)

    def block_weight(self, block: str) -> float:
        if self.blocks is None or block == OTHER:
            return 1.0
        return float(self.blocks.get(block, 1.0))


@dataclass
class RowContext:
    """Which image, and which side (conditional or not), each row of the
    UNet's current input belongs to. Set by the host before each UNet call."""

    images: object = None  # LongTensor (rows,)
    uncond: object = None  # BoolTensor (rows,)

    def set(self, images, uncond) -> None:
        import torch

        self.images = torch.as_tensor(images, dtype=torch.long)
        self.uncond = torch.as_tensor(uncond, dtype=torch.bool)

    def clear(self) -> None:
        self.images = self.uncond = None

    def rows_for(self, n: int):
        """``(images, uncond)`` for a call of ``n`` rows (image 0's conditional side when unknown)."""
        import torch

        if self.images is None or len(self.images) != n:
            return torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
        return self.images, self.uncond
