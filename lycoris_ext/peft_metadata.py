"""PEFT adapter metadata: the scale of LoRA (and PEFT LoKr) modules that carry no ``.alpha``.

diffusers' ``save_lora_weights(..., unet_lora_adapter_metadata=...)`` (what
diffusers-based trainers call) stores each part's ``LoraConfig`` in the
safetensors header under ``lora_adapter_metadata``: one JSON object whose keys
are the config's fields prefixed by the part (``unet.lora_alpha``,
``unet.r``, ``text_encoder_2.use_rslora``, ...). A model's own
``save_lora_adapter`` writes the same fields without a prefix. Its loader
gives each module

    scale = alpha / r            (alpha / sqrt(r) with use_rslora)

where ``r`` and ``alpha`` come from ``rank_pattern`` / ``alpha_pattern`` when
a pattern matches the end of the module's name (PEFT's ``get_pattern_key``:
the first key, in the file's order, for which
``re.match(rf"(.*\\.)?({key})$", name)`` holds), else from ``r`` /
``lora_alpha``. An ``.alpha`` tensor of a module wins over the metadata.
PEFT's LoKr (``peft_type`` "LOKR", keys ``lokr_w1``...) is scaled the same
way with its ``alpha`` field (``alpha / r``, also when its factors are whole
matrices, where LyCORIS would use 1).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from .errors import NetworkFileError

METADATA_KEY = "lora_adapter_metadata"
_FIELDS = ("r", "lora_alpha", "alpha", "use_rslora", "rank_pattern", "alpha_pattern", "peft_type")
#: PEFT's adapter type -> (this project's algorithm, the config field holding alpha)
_TYPES = {"LORA": ("lora", "lora_alpha"), "LOKR": ("lokr", "alpha")}

MAX_PATTERN = 500
# A repeated group that itself repeats, e.g. ``(a+)+``: exponential backtracking.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)\s*[*+{]")

#: Where a module's scale came from (``Adapter.scale_source``).
SOURCE_TENSOR = "alpha tensor"
SOURCE_METADATA = "adapter metadata"
SOURCE_DEFAULT = "default"


@dataclass(frozen=True)
class PartConfig:
    """The scale-relevant fields of one part's ``LoraConfig``."""

    prefix: str | None
    #: PEFT's ``peft_type`` ("LORA" when the file does not say)
    peft_type: str = "LORA"
    r: int | None = None
    lora_alpha: float | None = None
    use_rslora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    def rank_alpha(self, name: str) -> tuple[int | None, float | None]:
        """``(r, alpha)`` PEFT gives the module ``name`` (relative to the part)."""
        r = self.rank_pattern.get(pattern_key(self.rank_pattern, name), self.r)
        alpha = self.alpha_pattern.get(pattern_key(self.alpha_pattern, name), self.lora_alpha)
        return r, alpha

    def scale(self, name: str) -> tuple[int | None, float | None, float | None]:
        """``(r, alpha, scale)``; scale is None where the config lacks r or alpha."""
        r, alpha = self.rank_alpha(name)
        if r is None or alpha is None or r <= 0:
            return r, alpha, None
        return r, alpha, (alpha / math.sqrt(r) if self.use_rslora else alpha / r)

    @property
    def algorithm(self) -> str | None:
        """The algorithm whose modules this config scales (None: a type this project does not read)."""
        return _TYPES.get(self.peft_type, (None, None))[0]

    def describe(self) -> dict:
        d = {"r": self.r, "lora_alpha": self.lora_alpha, "use_rslora": self.use_rslora}
        if self.peft_type != "LORA":
            d["peft_type"] = self.peft_type
        if self.rank_pattern:
            d["rank_pattern"] = dict(self.rank_pattern)
        if self.alpha_pattern:
            d["alpha_pattern"] = dict(self.alpha_pattern)
        return d


def pattern_key(patterns: dict, name: str) -> str | None:
    """The first pattern (a regular expression) matching the end of ``name``
    at a dot boundary, as PEFT's ``get_pattern_key`` finds it."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_adapter_metadata(metadata: dict[str, str], path: str | None = None) -> dict[str | None, PartConfig]:
    """Part prefix (None for an unprefixed config) -> :class:`PartConfig`.

    Empty when the file has no ``lora_adapter_metadata``. A value that is not
    what ``LoraConfig`` would accept raises :class:`NetworkFileError` naming
    the file and the field.
    """
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    where = f"__metadata__.{METADATA_KEY}"
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise NetworkFileError(path, where, f"is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise NetworkFileError(path, where, "is not a JSON object")
    fields: dict[str | None, dict] = {}
    for k, v in data.items():
        prefix, _, name = k.rpartition(".")
        if name in _FIELDS:
            fields.setdefault(prefix or None, {})[name] = (k, v)
    out: dict[str | None, PartConfig] = {}
    for prefix, f in fields.items():
        def bad(name: str, what: str):
            k, v = f[name]
            return NetworkFileError(path, f"{where}: {k}", f"is {json.dumps(v)[:80]}, {what}")

        kw: dict = {}
        if "peft_type" in f and f["peft_type"][1] is not None:
            if not isinstance(f["peft_type"][1], str):
                raise bad("peft_type", "not a string")
            kw["peft_type"] = f["peft_type"][1]
        alpha_field = _TYPES.get(kw.get("peft_type", "LORA"), (None, "lora_alpha"))[1]
        if "r" in f and f["r"][1] is not None:
            v = f["r"][1]
            if not (_number(v) and v > 0 and float(v).is_integer()):
                raise bad("r", "not a positive whole number")
            kw["r"] = int(v)
        if alpha_field in f and f[alpha_field][1] is not None:
            if not _number(f[alpha_field][1]):
                raise bad(alpha_field, "not a number")
            kw["lora_alpha"] = float(f[alpha_field][1])
        if "use_rslora" in f and f["use_rslora"][1] is not None:
            if not isinstance(f["use_rslora"][1], bool):
                raise bad("use_rslora", "not true or false")
            kw["use_rslora"] = f["use_rslora"][1]
        for name, rank in (("rank_pattern", True), ("alpha_pattern", False)):
            if name not in f or f[name][1] is None:
                continue
            pat = f[name][1]
            if not isinstance(pat, dict):
                raise bad(name, "not an object of module patterns")
            for p, v in pat.items():
                ok = _number(v) and (not rank or (v > 0 and float(v).is_integer()))
                if not ok:
                    raise NetworkFileError(path, f"{where}: {f[name][0]}", f"gives '{p}' the value {json.dumps(v)[:40]}, "
                                           f"not {'a positive whole number' if rank else 'a number'}")
                if len(p) > MAX_PATTERN or _NESTED_REPEAT.search(p):
                    # a file must not be able to stall the loader with catastrophic backtracking
                    raise NetworkFileError(path, f"{where}: {f[name][0]}", f"pattern '{p[:80]}' is longer than {MAX_PATTERN} "
                                           "characters or repeats a repeated group; refused")
                try:
                    re.compile(rf"(.*\.)?({p})$")
                except re.error as e:
                    raise NetworkFileError(path, f"{where}: {f[name][0]}", f"pattern '{p}' is not a valid regular expression ({e})") from None
            kw[name] = {p: (int(v) if rank else float(v)) for p, v in pat.items()}
        out[prefix] = PartConfig(prefix, **kw)
    return out


def config_for(configs: dict[str | None, PartConfig], module_key: str) -> tuple[PartConfig | None, str]:
    """The config that applies to a module key of the file, and the module's
    name within that part (what PEFT's patterns are matched against)."""
    head, dot, rest = module_key.partition(".")
    if dot and head in configs:
        return configs[head], rest
    if None in configs:
        return configs[None], module_key
    return None, module_key


def apply_adapter_metadata(modules: dict, metadata: dict[str, str], path: str | None = None) -> dict[str | None, PartConfig]:
    """Give every LoRA module without an ``.alpha`` tensor the scale diffusers'
    loader gives it; returns the parsed configs (empty without metadata)."""
    configs = parse_adapter_metadata(metadata, path)
    if not configs:
        return configs
    for key, adapter in modules.items():
        if adapter.scale_source != SOURCE_DEFAULT:
            continue
        cfg, name = config_for(configs, key)
        if cfg is None or cfg.algorithm != adapter.algorithm:
            continue
        r, alpha, scale = cfg.scale(name)
        if scale is None:
            continue
        # LoRA's rank is its tensors'; PEFT's LoKr uses whole factors when r is
        # large for the layer, and only its decomposed factors show r.
        file_rank = adapter.full_rank if adapter.algorithm == "lora" else adapter.rank
        if file_rank is not None and r != file_rank:
            where = f"{cfg.prefix}.rank_pattern" if pattern_key(cfg.rank_pattern, name) is not None else f"{cfg.prefix}.r"
            if cfg.prefix is None:
                where = where.split(".", 1)[1]
            suffix = "lora_down.weight" if adapter.algorithm == "lora" else None
            raise adapter.error(suffix, f"has {file_rank} ranks but {METADATA_KEY} gives "
                                f"module '{key}' rank {r} ({where}); diffusers cannot load this file either")
        adapter.set_scale(alpha, scale, SOURCE_METADATA)
    return configs
