"""Per-block weight specs, compatible with the LoRA Block Weight extension (LBW).

A spec is a preset name (``MIDD``) or a list of weights (``1,0,0,0,1,1,...``).
The list's length alone picks the layout, as in LBW:

- 26: BASE, IN00-IN11, M00, OUT00-OUT11 (SD1/SD2, every block)
- 17: BASE, IN01, IN02, IN04, IN05, IN07, IN08, M00, OUT03-OUT11 (SD1/SD2 blocks with attention)
- 12: BASE, IN04, IN05, IN07, IN08, M00, OUT00-OUT05 (SDXL blocks with attention)
- 20: BASE, IN00-IN08, M00, OUT00-OUT08 (SDXL, every block)

A block the list does not name gets 0, as in LBW (so the same prompt gives
the same picture); :class:`BlockWeights` remembers which blocks those were so
the runtime can warn when they switch off layers the network really has.
Special values: ``R`` (random 0..1), ``U`` (random -1.5..1.5), ``X`` (the
``x=`` weight) and ``X+d``/``X-d``.
"""

from __future__ import annotations

import math
import os
import random
import re
from typing import Mapping


LAYOUTS: dict[int, tuple[str, ...]] = {
    26: ("BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))),
    17: ("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00", *(f"OUT{i:02d}" for i in range(3, 12))),
    12: ("BASE", "IN04", "IN05", "IN07", "IN08", "M00", *(f"OUT{i:02d}" for i in range(6))),
    20: ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))),
}
ALL_BLOCKS = LAYOUTS[26]

DEFAULT_PRESETS: dict[str, str] = {
    "NONE": ",".join(["0"] * 17),
    "ALL": ",".join(["1"] * 17),
    "INS": "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "IND": "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "INALL": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
    "OUTD": "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
    "OUTALL": "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
    "ALL0.5": ",".join(["0.5"] * 17),
}
PRESETS_FILE = "lbwpresets.txt"


class BlockSpecError(ValueError):
    """A block-weight spec that cannot be read."""


class BlockWeights(dict):
    """Block ID -> weight, plus the spec it came from and the blocks it left at 0."""

    def __init__(self, weights: Mapping[str, float], spec: str = "", unnamed: frozenset[str] = frozenset()):
        super().__init__(weights)
        self.spec = spec
        self.unnamed = unnamed

    def __repr__(self) -> str:
        return f"BlockWeights({self.spec!r})"


def read_presets(path: str | os.PathLike) -> dict[str, str]:
    """User presets in LBW's file format: ``NAME:v1,v2,...`` a line.

    A line counts only if it has a colon, no ``#``, and a list of a valid
    length; names are case-sensitive and split at the first colon.
    """
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        if ":" not in line or "#" in line:
            continue
        name, _, values = line.partition(":")
        name, values = name.strip(), values.strip()
        if name and len(_split(values)) in LAYOUTS:
            out[name] = values
    return out


def write_preset(path: str | os.PathLike, name: str, values: str) -> None:
    """Add or replace one preset line in an LBW presets file."""
    name = name.strip()
    if not name or ":" in name or "#" in name or "\n" in name:
        raise BlockSpecError(f"invalid preset name {name!r} (no ':', '#' or line breaks)")
    if len(_split(values)) not in LAYOUTS:
        raise BlockSpecError(f"a preset needs {_lengths()} values, not {len(_split(values))}")
    lines = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read().splitlines() if ln.partition(":")[0].strip() != name]
    lines.append(f"{name}:{values}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _split(values: str) -> list[str]:
    """LBW separates values with commas (whitespace around them is ignored)."""
    return [v.strip() for v in values.strip().split(",") if v.strip()]


def _lengths() -> str:
    return ", ".join(str(n) for n in sorted(LAYOUTS))


def _is_value(tok: str) -> bool:
    t = tok.strip()
    if t.upper() in ("R", "U") or _X.match(t):
        return True
    try:
        float(t)
        return True
    except ValueError:
        return False


_X = re.compile(r"^X\s*(?:([+-])\s*([0-9.]+))?$", re.IGNORECASE)


def _value(tok: str, x: float, rng: random.Random) -> float:
    t = tok.strip()
    if t.upper() == "R":
        return round(rng.uniform(0.0, 1.0), 3)
    if t.upper() == "U":
        return round(rng.uniform(-1.5, 1.5), 3)
    m = _X.match(t)
    if m:
        d = float(m[2]) if m[2] else 0.0
        return x + d if m[1] != "-" else x - d
    try:
        v = float(t)
    except ValueError:
        raise BlockSpecError(f"'{tok}' is not a number, R, U or X") from None
    if not math.isfinite(v):
        raise BlockSpecError(f"'{tok}' is not a finite number")
    return v


def parse_block_weights(spec: str, presets: Mapping[str, str] | None = None, x: float = 1.0,
                        rng: random.Random | None = None) -> BlockWeights:
    """A spec (preset name or list) -> :class:`BlockWeights` over all 26 block IDs."""
    if spec is None:
        raise BlockSpecError("empty block-weight spec")
    spec = str(spec).strip()
    table = {**DEFAULT_PRESETS, **(presets or {})}
    values = table.get(spec, spec)
    toks = _split(values)
    if len(toks) not in LAYOUTS:
        if len(toks) == 1 and not _is_value(toks[0]):
            raise BlockSpecError(f"unknown block-weight preset '{spec}' (presets: {', '.join(sorted(table))})")
        raise BlockSpecError(f"a block-weight list needs {_lengths()} values, not {len(toks)} ('{spec}')")
    rng = rng or random.Random()
    layout = LAYOUTS[len(toks)]
    weights = {b: 0.0 for b in ALL_BLOCKS}
    for block, tok in zip(layout, toks):
        weights[block] = _value(tok, x, rng)
    return BlockWeights(weights, spec, frozenset(ALL_BLOCKS) - set(layout))


def format_block_weights(weights: Mapping[str, float], family: str) -> str:
    """The full list for a family (26 for SD1/SD2, 20 for SDXL), for writing ``lbw=``."""
    layout = LAYOUTS[20] if family == "sdxl" else LAYOUTS[26]
    return ",".join(_fmt(float(weights.get(b, 0.0))) for b in layout)


def _fmt(v: float) -> str:
    """The shortest text that reads back as the same float (``1`` for 1.0)."""
    r = repr(v)
    return r[:-2] if r.endswith(".0") else r
