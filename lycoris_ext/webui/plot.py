"""A small plot of each network's weights per sampling step (optional, with the results)."""

from __future__ import annotations

from ..parts import TE, UNET

COLORS = [(230, 97, 1), (94, 60, 153), (27, 158, 119), (217, 95, 2), (117, 112, 179), (231, 41, 138), (102, 166, 30), (166, 118, 29)]


def weight_series(uses, total: int) -> list[tuple[str, list[float], list[float]]]:
    """``(name, te per step, unet per step)`` of every scheduled use (row-wise: the largest weight)."""
    out = []
    for u in uses:
        if not u.scheduled or total <= 0:
            continue
        te, unet = [], []
        for s in range(total):
            t = u.part_multiplier(TE, s, total) if not u.rowwise else 0.0
            w = u.part_multiplier(UNET, s, total)
            if not isinstance(w, (int, float)):
                w = max(list(w.cond) + list(w.uncond), key=abs)
            te.append(float(t))
            unet.append(float(w))
        out.append((u.label, te, unet))
    return out


def draw(series_by_pass: list[tuple[str, int, list]], width: int = 512, height: int = 220):
    """A PIL image: one panel per pass, one solid (UNet) and one dotted (TE) line per network."""
    from PIL import Image, ImageDraw

    panels = [s for s in series_by_pass if s[2]]
    img = Image.new("RGB", (width, max(1, len(panels)) * height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for k, (title, total, series) in enumerate(panels):
        top = k * height
        left, right, y0, y1 = 40, width - 10, top + 25, top + height - 30
        values = [v for _, te, un in series for v in te + un] + [0.0, 1.0]
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        ymap = lambda v: y1 - (v - lo) / span * (y1 - y0)  # noqa: E731
        xmap = lambda s: left + (right - left) * (s / max(1, total - 1))  # noqa: E731
        d.rectangle([left, y0, right, y1], outline=(180, 180, 180))
        d.text((left, top + 5), f"{title}: weight per step ({total} steps)", fill=(0, 0, 0))
        for v in (lo, 0.0, 1.0, hi):
            d.text((2, ymap(v) - 5), f"{v:.2g}", fill=(90, 90, 90))
        for i, (name, te, unet) in enumerate(series):
            c = COLORS[i % len(COLORS)]
            d.line([(xmap(s), ymap(v)) for s, v in enumerate(unet)], fill=c, width=2)
            for s, v in enumerate(te):
                if s % 2 == 0:
                    d.point((xmap(s), ymap(v)), fill=c)
            d.text((right - 150, y0 + 5 + 12 * i), f"{name} (UNet, TE dotted)", fill=c)
    return img
