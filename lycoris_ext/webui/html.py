"""Escaping and small HTML builders. Every string that comes from a file, a
file name or user metadata goes through :func:`text` (HTML) or :func:`js`
(a JavaScript literal, safe inside an HTML attribute after :func:`text`)."""

from __future__ import annotations

import html
import json

from ..resolve.lbw import LAYOUTS


def text(s) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if s is None else str(s), quote=True)


def js(value) -> str:
    """A JavaScript literal of ``value`` that cannot close a tag or an attribute."""
    out = json.dumps(value, ensure_ascii=False)
    return (out.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("'", "\\u0027").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def block_chart(values: dict[str, float], family: str, touched: dict[str, int] | None = None) -> str:
    """A bar per block (BASE, IN.., M00, OUT..) scaled to the largest change."""
    layout = LAYOUTS[20] if family == "sdxl" else LAYOUTS[26]
    top = max([v for v in values.values() if v] or [1.0])
    bars = []
    for b in layout:
        v = values.get(b, 0.0)
        pct = 0 if not top else max(0.0, min(100.0, 100.0 * v / top))
        n = (touched or {}).get(b, 0)
        title = f"{b}: change {v:.4g}, {n} layers"
        bars.append(
            f"<div class='lycoris-bar' title='{text(title)}'>"
            f"<div class='lycoris-bar-fill' style='height:{pct:.1f}%'></div>"
            f"<span class='lycoris-bar-label'>{text(b)}</span></div>"
        )
    return f"<div class='lycoris-chart'>{''.join(bars)}</div>"


def resolution_table(report: dict) -> str:
    """The resolution report (matched per block, unmatched, mismatched) as HTML."""
    rows = [f"<p class='lycoris-verdict'><b>{text(report.get('verdict'))}</b>: {text(report.get('summary'))}</p>"]
    for part, r in report.get("parts", {}).items():
        matched = ", ".join(f"{text(b)}: {int(n)}" for b, n in r.get("matched", {}).items()) or "-"
        rows.append(f"<div class='lycoris-part'><b>{text(part)}</b>: {matched}")
        if r.get("unmatched"):
            items = "".join(f"<li>{text(k)}</li>" for k in r["unmatched"][:50])
            more = f"<li>... {len(r['unmatched']) - 50} more</li>" if len(r["unmatched"]) > 50 else ""
            rows.append(f"<details><summary>{len(r['unmatched'])} unmatched</summary><ul>{items}{more}</ul></details>")
        if r.get("mismatched"):
            items = "".join(f"<li>{text(m['key'])}: {text(m['reason'])}</li>" for m in r["mismatched"][:50])
            rows.append(f"<details><summary>{len(r['mismatched'])} do not fit</summary><ul>{items}</ul></details>")
        rows.append("</div>")
    if report.get("unknown_keys"):
        items = "".join(f"<li>{text(u['key'])}: {text(u['reason'])}</li>" for u in report["unknown_keys"][:50])
        rows.append(f"<details><summary>{len(report['unknown_keys'])} unknown keys</summary><ul>{items}</ul></details>")
    return "<div class='lycoris-report'>" + "".join(rows) + "</div>"


def block_badges(blocks: list[str], touched: dict[str, int]) -> str:
    """Which blocks a network changes (for the block-weight panel)."""
    spans = []
    for b in blocks:
        n = touched.get(b, 0)
        cls = "lycoris-block on" if n else "lycoris-block"
        spans.append(f"<span class='{cls}' title='{text(f'{b}: {n} layers')}'>{text(b)}</span>")
    return "<div class='lycoris-blocks'>" + "".join(spans) + "</div>"
