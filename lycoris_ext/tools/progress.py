"""A plain progress bar on stderr (no dependency), or nothing."""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(n)`` advances; redraws at most 10 times a second."""

    def __init__(self, total: float, label: str, enabled: bool = True, stream=None, unit: str = ""):
        self.total = max(float(total), 1.0)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.unit = unit
        self.done = 0.0
        self._t0 = time.monotonic()
        self._last = 0.0

    def update(self, n: float = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * 30)
        msg = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {now - self._t0:6.1f}s {note[:40]:<40}"
        self.stream.write(msg)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def make(progress, total: float, label: str) -> Progress:
    """``progress`` is True/False (a bar on stderr or none), or a callable
    ``(fraction, note)`` (the WebUI's progress), or a :class:`Progress`."""
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return _Callback(total, label, progress)
    return Progress(total, label, enabled=bool(progress))


class _Callback(Progress):
    def __init__(self, total, label, fn):
        super().__init__(total, label, enabled=False)
        self.fn = fn

    def update(self, n: float = 1, note: str = "") -> None:
        self.done += n
        self.fn(min(1.0, self.done / self.total), note)
