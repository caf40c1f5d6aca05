"""The wanted set: which networks, with which multipliers, at which steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from ..network import Network
from ..resolve.names import OTHER

#: A multiplier is a number, or a function of (step, total steps) -> number.
Weight = Union[float, Callable[[int, int], float]]


def _at(w: Weight, step: int | None, total: int | None) -> float:
    if callable(w):
        return float(w(step or 0, total or 0))
    return float(w)


@dataclass(frozen=True)
class Use:
    """One network in the wanted set.

    ``te``/``unet`` multiply the text-encoder and UNet layers; ``blocks``
    (block ID -> weight) multiplies per block (text encoders are ``BASE``;
    layers outside the UNet's blocks always keep 1); ``dyn`` keeps the first
    N ranks of LoRA layers; ``start``/``stop`` limit the network to sampling
    steps ``start <= step < stop``.
    """

    network: Network
    te: Weight = 1.0
    unet: Weight = 1.0
    dyn: int | None = None
    blocks: Mapping[str, float] | None = None
    start: int | None = None
    stop: int | None = None
    name: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return self.name or self.network.name

    @property
    def scheduled(self) -> bool:
        """Whether the multipliers can change between sampling steps."""
        return self.start is not None or self.stop is not None or callable(self.te) or callable(self.unet)

    def active(self, step: int | None) -> bool:
        if step is None:
            return self.start is None or self.start <= 0
        if self.start is not None and step < self.start:
            return False
        if self.stop is not None and step >= self.stop:
            return False
        return True

    def part_multiplier(self, part: str, step: int | None = None, total: int | None = None) -> float:
        if not self.active(step):
            return 0.0
        return _at(self.te if part.startswith("te") else self.unet, step, total)

    def block_weight(self, block: str) -> float:
        if self.blocks is None or block == OTHER:
            return 1.0
        return float(self.blocks.get(block, 1.0))
