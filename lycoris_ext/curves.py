"""Multiplier curves: ``weight@step`` keyframes (the syntax sd-webui-loractl and SD.Next read).

``0@0,1@0.5`` rises linearly from 0 at the start to 1 half-way and stays
there. As in loractl, when no keyframe's step is above 1.0 the steps are
fractions of the pass, with 1.0 on its last sampled step (``1@0,0@1`` ends at
exactly 0); otherwise every step is an absolute sampling step (from 0).
Before the first keyframe the first weight holds, after the last the last.
Keyframes may be separated by commas or semicolons, and ``~`` may stand for
``@`` (loractl's code accepts both).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

#: Characters that separate a keyframe's weight from its step.
MARKS = "@~"
_KEY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*[@~]\s*((?:\d+\.?\d*|\.\d+))\s*$")


def is_curve_text(text: str) -> bool:
    """Whether a token value is written as keyframes rather than a number or a block list."""
    return any(m in text for m in MARKS)


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear weight over sampling steps; call it with ``(step, total_steps)``."""

    keys: tuple[tuple[float, float], ...]  # (step or fraction, weight), in text order
    text: str = ""

    @property
    def fractional(self) -> bool:
        """Steps are fractions of the pass (no keyframe above 1.0), as loractl decides."""
        return max(s for s, _ in self.keys) <= 1.0

    def points(self, total: int) -> list[tuple[float, float]]:
        """Keyframes as (sampling step, weight); a fraction 1.0 is the pass's last step, ``total - 1``."""
        last = max(int(total) - 1, 0)
        pts = [((s * last if self.fractional else s), w) for s, w in self.keys]
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
    if not is_curve_text(text):
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
            raise ValueError(f"'{part.strip()}' is not weight@step (or weight~step)")
        keys.append((float(m[2]), float(m[1])))
    if not keys:
        raise ValueError("empty curve")
    return Curve(tuple(keys), text)
