"""Multiplier curves: ``weight@step`` keyframes (the syntax sd-webui-loractl and SD.Next read).

``0@0,1@0.5`` rises linearly from 0 at the start to 1 half-way and stays
there. A step of at most 1.0 is a fraction of the pass's steps, above 1 an
absolute step. Before the first keyframe the first weight holds, after the
last the last. Keyframes may be separated by commas or semicolons.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

_KEY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*@\s*((?:\d+\.?\d*|\.\d+))\s*$")


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear weight over sampling steps; call it with ``(step, total_steps)``."""

    keys: tuple[tuple[float, float], ...]  # (step or fraction, weight), in text order
    text: str = ""

    def points(self, total: int) -> list[tuple[float, float]]:
        pts = [((s * total if s <= 1.0 else s), w) for s, w in self.keys]
        return sorted(pts, key=lambda p: p[0])

    def __call__(self, step: int, total: int) -> float:
        pts = self.points(total)
        xs = [p[0] for p in pts]
        i = bisect_right(xs, step)
        if i == 0:
            return pts[0][1]
        if i == len(pts):
            return pts[-1][1]
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if x1 == x0:
            return y1
        return y0 + (y1 - y0) * (step - x0) / (x1 - x0)

    @property
    def constant(self) -> float | None:
        ws = {w for _, w in self.keys}
        return ws.pop() if len(ws) == 1 else None

    def __str__(self) -> str:
        return self.text or ",".join(f"{w:g}@{s:g}" for s, w in self.keys)


def parse_weight(value) -> float | Curve:
    """A number, or a :class:`Curve` for text with ``@`` keyframes."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if "@" not in text:
        try:
            return float(text)
        except ValueError:
            raise ValueError("not a number") from None
    keys = []
    for part in re.split(r"[,;]", text):
        if not part.strip():
            continue
        m = _KEY.match(part)
        if not m:
            raise ValueError(f"'{part.strip()}' is not weight@step")
        keys.append((float(m[2]), float(m[1])))
    if not keys:
        raise ValueError("empty curve")
    return Curve(tuple(keys), text)
