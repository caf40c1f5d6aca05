"""What a network file is, in facts a user (or a card page) can read."""

from __future__ import annotations

import json
import os
from collections import Counter

from .network import Network
from .parts import PART_NAMES
from .resolve.family import FAMILY_NAMES, detect_family
from .resolve.styles import part_hint, split_prefix

LONG_VALUE = 2000


def top_tags(metadata: dict[str, str], n: int = 10) -> list[tuple[str, int]]:
    """Most frequent training tags from kohya's ``ss_tag_frequency``."""
    raw = metadata.get("ss_tag_frequency")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    counts: Counter = Counter()
    if isinstance(data, dict):
        for tags in data.values():
            if isinstance(tags, dict):
                for tag, c in tags.items():
                    if isinstance(c, (int, float)):
                        counts[str(tag).strip()] += int(c)
    return counts.most_common(n)


def decoded_metadata(metadata: dict[str, str]) -> dict:
    """Metadata with JSON-object strings decoded (for display, as the WebUI shows it)."""
    out = {}
    for k, v in metadata.items():
        if isinstance(v, str) and v.startswith("{"):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out


def training_summary(metadata: dict[str, str]) -> dict:
    pick = {
        "output_name": "ss_output_name",
        "network_module": "ss_network_module",
        "network_args": "ss_network_args",
        "dim": "ss_network_dim",
        "alpha": "ss_network_alpha",
        "base_model_name": "ss_sd_model_name",
        "base_model_version": "ss_base_model_version",
        "resolution": "ss_resolution",
        "epochs": "ss_num_epochs",
        "steps": "ss_max_train_steps",
        "learning_rate": "ss_learning_rate",
        "images": "ss_num_train_images",
        "title": "modelspec.title",
        "architecture": "modelspec.architecture",
        "description": "modelspec.description",
        "trigger_phrase": "modelspec.trigger_phrase",
    }
    out = {k: metadata[v] for k, v in pick.items() if metadata.get(v) not in (None, "", "None")}
    tags = top_tags(metadata)
    if tags:
        out["top_tags"] = tags
    return out


def _kind(adapter) -> str:
    shape = adapter.natural_shape()
    if shape is None:
        return "unknown"
    if len(shape) == 1:
        return "norm"
    if len(shape) > 2 and any(d != 1 for d in shape[2:]):
        return "conv"
    return "linear"


def summarize(network: Network) -> dict:
    """The facts ``inspect`` prints, as one JSON-ready dict."""
    mods = network.modules.values()
    ranks = [a.rank for a in mods if a.rank is not None]
    alphas = [a.alpha for a in mods if a.alpha is not None]
    fam, why = detect_family(network)
    styles = Counter((split_prefix(k)[0].name if split_prefix(k)[0] else "unknown") for k in network.modules)
    metadata = {
        k: (v if len(v) <= LONG_VALUE else f"<{len(v)} characters>") for k, v in network.metadata.items()
    }
    size = os.path.getsize(network.path) if os.path.isfile(network.path) else None
    return {
        "file": network.path,
        "name": network.name,
        "format": network.format,
        "size": size,
        "algorithms": network.algorithms,
        "modules": len(network.modules),
        "modules_per_algorithm": dict(Counter(a.algorithm for a in mods)),
        "layer_kinds": dict(Counter(_kind(a) for a in mods)),
        "features": network.features,
        "rank": {"min": min(ranks), "max": max(ranks)} if ranks else None,
        "alpha": {"min": min(alphas), "max": max(alphas)} if alphas else None,
        "parts": dict(Counter(part_hint(k) for k in network.modules)),
        "key_styles": dict(styles),
        "base_model": fam,
        "base_model_reason": why,
        "embeddings": {
            name: {"tensors": sorted(t), "vectors": sum(x.shape[0] if x.dim() > 1 else 1 for x in t.values())}
            for name, t in network.embeddings.items()
        },
        **scale_fields(network),
        "unknown_keys": [{"key": u.key, "reason": u.reason} for u in network.unknown],
        "training": training_summary(network.metadata),
        "metadata": metadata,
    }


def scale_fields(network: Network) -> dict:
    """Where each module's scale came from, the adapter metadata read, warnings."""
    return {
        "scale_sources": network.scale_sources,
        "scales": {k: {"scale": a.scale, "source": a.scale_source} for k, a in network.modules.items() if a.scale_source is not None},
        "adapter_metadata": {(p if p is not None else ""): c.describe() for p, c in network.adapter_metadata.items()},
        "warnings": network.warnings,
    }


def scale_facts(s: dict) -> list[tuple[str, str]]:
    """``(label, text)`` lines of :func:`scale_fields` (for ``inspect`` and the metadata editor)."""
    out = []
    by_source: dict = {}
    for m in (s.get("scales") or {}).values():
        by_source.setdefault(m["source"], []).append(m["scale"])
    parts = []
    for src, n in (s.get("scale_sources") or {}).items():
        v = by_source.get(src)
        parts.append(f"{src} ({n}{', scale ' + _range({'min': min(v), 'max': max(v)}) if v else ''})")
    if parts:
        out.append(("scale from", "; ".join(parts)))
    for prefix, c in (s.get("adapter_metadata") or {}).items():
        name = "alpha" if c.get("peft_type") == "LOKR" else "lora_alpha"
        desc = [c["peft_type"]] if c.get("peft_type") else []
        desc += [f"r {c['r']:g}" if c.get("r") is not None else "r -",
                 f"{name} {c['lora_alpha']:g}" if c.get("lora_alpha") is not None else f"{name} -"]
        if c.get("use_rslora"):
            desc.append("rsLoRA")
        for k in ("rank_pattern", "alpha_pattern"):
            if c.get(k):
                desc.append(f"{k} " + ", ".join(f"{p}={v:g}" for p, v in c[k].items()))
        out.append(("adapter metadata", f"{prefix or '(no prefix)'}: {', '.join(desc)}"))
    for w in s.get("warnings") or []:
        out.append(("warning", w))
    return out




def _range(r) -> str:
    if not r:
        return "-"
    fmt = lambda v: f"{v:g}"  # noqa: E731
    return fmt(r["min"]) if r["min"] == r["max"] else f"{fmt(r['min'])}..{fmt(r['max'])}"


def format_summary(s: dict) -> str:
    """Plain-text form of :func:`summarize`."""
    size = f"{s['size'] / 1e6:.1f} MB, " if s.get("size") is not None else ""
    lines = [f"{s['name']}  ({size}{s['format']})"]
    algos = ", ".join(f"{a} ({n})" for a, n in s["modules_per_algorithm"].items()) or "none"
    lines.append(f"  algorithms:  {algos}")
    if s["features"]:
        lines.append(f"  features:    {', '.join(s['features'])}")
    kinds = ", ".join(f"{n} {k}" for k, n in s["layer_kinds"].items())
    lines.append(f"  modules:     {s['modules']} ({kinds})")
    lines.append(f"  rank:        {_range(s['rank'])}    alpha: {_range(s['alpha'])}")
    parts = ", ".join(f"{PART_NAMES.get(p, p)} ({n})" for p, n in s["parts"].items())
    lines.append(f"  targets:     {parts or '-'}")
    lines.append(f"  key style:   {', '.join(f'{k} ({n})' for k, n in s['key_styles'].items()) or '-'}")
    lines.append(f"  base model:  {FAMILY_NAMES[s['base_model']]} ({s['base_model_reason']})")
    for label, value in scale_facts(s):
        lines.append(f"  {label + ':':<12} {value}")
    for name, e in s["embeddings"].items():
        lines.append(f"  embedding:   {name} ({e['vectors']} vectors: {', '.join(e['tensors'])})")
    if s["unknown_keys"]:
        lines.append(f"  unknown keys: {len(s['unknown_keys'])}")
        for u in s["unknown_keys"][:10]:
            lines.append(f"    {u['key']}: {u['reason']}")
        if len(s["unknown_keys"]) > 10:
            lines.append(f"    ... and {len(s['unknown_keys']) - 10} more")
    t = s["training"]
    if t:
        lines.append("  training:")
        for k, v in t.items():
            if k == "top_tags":
                v = ", ".join(f"{tag} ({c})" for tag, c in v)
            lines.append(f"    {k.replace('_', ' ')}: {v}")
    return "\n".join(lines)


def format_resolution(report: dict) -> str:
    """Plain-text form of :meth:`Resolution.report`."""
    lines = [f"  on {FAMILY_NAMES.get(report['model_family'], report['model_family'])}: {report['verdict']} ({report['summary']})"]
    for part, r in report["parts"].items():
        matched = sum(r["matched"].values())
        lines.append(f"    {PART_NAMES.get(part, part)}: {matched} matched, {len(r['unmatched'])} unmatched, {len(r['mismatched'])} do not fit")
        if r["matched"]:
            lines.append("      per block: " + " ".join(f"{b}:{n}" for b, n in r["matched"].items()))
        for k in r["unmatched"][:10]:
            lines.append(f"      unmatched: {k}")
        if len(r["unmatched"]) > 10:
            lines.append(f"      ... and {len(r['unmatched']) - 10} more unmatched")
        for m in r["mismatched"][:10]:
            lines.append(f"      does not fit: {m['key']}: {m['reason']}")
        if len(r["mismatched"]) > 10:
            lines.append(f"      ... and {len(r['mismatched']) - 10} more that do not fit")
    return "\n".join(lines)
