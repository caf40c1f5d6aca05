"""Pair a network's module keys with a model's layers, and report everything.

No key is dropped silently: each one ends up matched (with its target and
block), unmatched (no layer has that name), or mismatched (the layer exists
but the tensors do not fit it), and the report says which.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..algorithms import Adapter
from ..errors import NetworkFileError
from ..network import Network, UnknownKey
from ..parts import TE, is_text
from .family import FAMILY_NAMES, compatible, detect_family
from .styles import part_hint, split_prefix
from .tree import ModelTree, Target

FITS = "fits"
PARTLY = "partly fits"
OTHER_MODEL = "made for another base model"
NO_FIT = "does not fit"


@dataclass(frozen=True)
class Match:
    key: str
    adapter: Adapter
    target: Target


@dataclass(frozen=True)
class Miss:
    key: str
    part: str
    reason: str


@dataclass
class Resolution:
    """The outcome of resolving one network against one model."""

    network: Network
    model_family: str
    file_family: str
    family_reason: str
    matches: list[Match] = field(default_factory=list)
    unmatched: list[Miss] = field(default_factory=list)
    mismatched: list[Miss] = field(default_factory=list)
    parts: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()

    @property
    def unknown(self) -> list[UnknownKey]:
        return self.network.unknown

    @property
    def verdict(self) -> str:
        if not compatible(self.file_family, self.model_family):
            return OTHER_MODEL
        if not self.matches:
            return NO_FIT
        if self.unmatched or self.mismatched or self.unknown:
            return PARTLY
        return FITS

    @property
    def applicable(self) -> bool:
        """Whether the runtime should apply it (never to another base model)."""
        return self.verdict in (FITS, PARTLY)

    def matched_blocks(self, part: str | None = None) -> Counter:
        return Counter(m.target.block for m in self.matches if part is None or m.target.part == part)

    def summary(self) -> str:
        n = len(self.network.modules)
        s = f"{len(self.matches)}/{n} layers matched"
        if self.unmatched:
            s += f", {len(self.unmatched)} unmatched"
        if self.mismatched:
            s += f", {len(self.mismatched)} do not fit"
        if self.unknown:
            s += f", {len(self.unknown)} unknown keys"
        if self.verdict == OTHER_MODEL:
            s += f"; made for {FAMILY_NAMES[self.file_family]} ({self.family_reason}), the model is {FAMILY_NAMES[self.model_family]}"
        return s

    def report(self) -> dict:
        """JSON-ready: per model part, matched counts per block, unmatched and mismatched keys."""
        parts = {}
        names = list(self.parts) + sorted({m.part for m in self.unmatched + self.mismatched} - set(self.parts))
        for part in names:
            blocks = self.matched_blocks(part)
            parts[part] = {
                "matched": {b: blocks[b] for b in sorted(blocks, key=_block_order)},
                "unmatched": [m.key for m in self.unmatched if m.part == part],
                "mismatched": [{"key": m.key, "reason": m.reason} for m in self.mismatched if m.part == part],
            }
        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "model_family": self.model_family,
            "file_family": self.file_family,
            "file_family_reason": self.family_reason,
            "matched": len(self.matches),
            "modules": len(self.network.modules),
            "parts": parts,
            "unknown_keys": [{"key": u.key, "reason": u.reason} for u in self.unknown],
        }


def _block_order(b: str) -> tuple:
    order = {"BASE": 0, "IN": 1, "M": 2, "OUT": 3}
    for p, o in order.items():
        if b.startswith(p):
            digits = b[len(p):]
            return (o, int(digits) if digits.isdigit() else 0)
    return (9, 0)


def _fit(adapter: Adapter, target: Target) -> tuple[Target | None, str | None]:
    """The target (or an input-channel slice of it) the adapter fits, or a reason."""
    try:
        adapter.check_target(target.shape)
        return target, None
    except NetworkFileError as e:
        reason = e.reason
    natural = adapter.natural_shape()
    # Inpainting (9 input channels) and instruct-pix2pix (8) conv_in: a file
    # made for the 4-channel model changes the first input channels only.
    if target.kind == "conv" and target.path.endswith(("input_blocks.0.0", "conv_in")) and natural is not None and len(natural) >= 2:
        kernel = math.prod(target.shape[2:])
        if len(natural) == len(target.shape):
            channels = natural[1]
        elif natural[1] % kernel == 0:  # LoHa/LoKr store conv factors flattened
            channels = natural[1] // kernel
        else:
            channels = 0
        if 0 < channels < target.shape[1]:
            sliced = target.with_cols(0, channels)
            if adapter.fits(sliced.shape):
                return sliced, None
    return None, reason


def resolve(network: Network, tree: ModelTree) -> Resolution:
    """Match every module key of ``network`` to a layer of ``tree``."""
    fam, why = detect_family(network)
    res = Resolution(network, tree.family, fam, why, parts=tree.parts, blocks=tree.blocks)
    taken: dict[tuple, str] = {}
    for key, adapter in network.modules.items():
        style, body = split_prefix(key)
        if style is None:
            candidates, dotted = tree.parts, "." in key
        else:
            candidates, dotted = style.parts, style.dotted
        present = [p for p in candidates if p in tree.parts]
        if style is not None and style.prefix != "lycoris_":
            home = present[0] if present else candidates[0]
        else:
            # No part marker in the key: file it where its body says it belongs.
            home = part_hint(key)
            if home == TE and TE not in tree.parts:
                home = next((p for p in tree.parts if is_text(p)), home)
        found = [(p, t) for p in present if (t := tree.lookup(p, body, dotted)) is not None]
        if not found:
            res.unmatched.append(Miss(key, home, "no layer of the model has this name"))
            continue
        chosen, reason = None, None
        for part, target in found:
            chosen, r = _fit(adapter, target)
            if chosen is not None:
                break
            reason = reason or f"{r} ({target.label})"
        if chosen is None:
            res.mismatched.append(Miss(key, found[0][0], reason))
            continue
        if chosen.id in taken:
            res.mismatched.append(Miss(key, chosen.part, f"targets the same layer as '{taken[chosen.id]}' ({chosen.label})"))
            continue
        taken[chosen.id] = key
        res.matches.append(Match(key, adapter, chosen))
    return res
