"""One module per algorithm behind a shared base and a registry.

A new algorithm is one new file here and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import NetworkFileError
from .base import Adapter, Entry, natural_fits
from .full import Full
from .glora import GLoRA
from .ia3 import IA3
from .loha import LoHa
from .lokr import LoKr
from .lora import LoRA
from .norm import Norm
from .oft import BOFT, OFT

REGISTRY: tuple[type[Adapter], ...] = (LoRA, LoHa, LoKr, IA3, Full, Norm, GLoRA, OFT, BOFT)
ALGORITHMS: tuple[str, ...] = tuple(a.algorithm for a in REGISTRY)


def detect(key: str, entries: Mapping[str, Entry], path: str | None = None) -> type[Adapter] | None:
    """The algorithm whose keys a module carries, or None if no algorithm claims it.

    Two algorithms claiming the same module is an error: the file mixes
    their keys and no reading of it is right.
    """
    found = [cls for cls in REGISTRY if cls.claims(entries)]
    if len(found) > 1:
        names = ", ".join(c.algorithm for c in found)
        raise NetworkFileError(path, key, f"module has keys of several algorithms ({names}): {sorted(entries)}")
    return found[0] if found else None


def build_adapter(key: str, entries: Mapping[str, Entry], path: str | None = None) -> Adapter | None:
    cls = detect(key, entries, path)
    return cls(key, entries, path) if cls is not None else None


__all__ = [
    "Adapter", "Entry", "REGISTRY", "ALGORITHMS", "detect", "build_adapter", "natural_fits",
    "LoRA", "LoHa", "LoKr", "IA3", "Full", "Norm", "GLoRA", "OFT", "BOFT",
]
