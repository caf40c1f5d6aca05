"""A model as the resolver sees it: its weight-carrying layers, their blocks,
and every name a file may use for each of them.

Built from the model's own module tree (``named_modules()``), or from an
inventory of rows with the same facts (names, classes, parameter shapes),
so the resolver can be tested on real-size layouts without allocating them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch.nn as nn

from ..storage import logical_shape
from ..parts import KOHYA_PREFIXES, TE, TE1, TE2, UNET, is_text
from .names import BASE, diffusers_to_ldm, hf_forms, ldm_block, ldm_to_diffusers, openclip_to_hf

A1111 = "a1111"
DIFFUSERS = "diffusers"
FAMILIES = ("sd1", "sd2", "sdxl")

# LBW's block lists (see resolve.lbw): the UNet blocks of each family.
SD_BLOCKS = ("BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12)))
SDXL_BLOCKS = ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9)))


@dataclass(frozen=True)
class Target:
    """One weight a network can change: a layer, or a slice of a packed one."""

    part: str
    path: str
    kind: str  # "linear" | "conv" | "norm"
    block: str
    shape: tuple[int, ...]
    param: str = "weight"
    bias: str | None = None
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    transposed: bool = False
    module: nn.Module | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def id(self) -> tuple:
        return (self.part, self.path, self.param, self.rows, self.cols)

    @property
    def label(self) -> str:
        """``unet:input_blocks.4.1.proj_in`` (with ``[q]`` etc. for slices)."""
        s = f"{self.part}:{self.path}"
        if self.param != "weight":
            s += f".{self.param}"
        if self.rows is not None:
            s += f"[{self.rows[0]}:{self.rows[1]}]"
        if self.cols is not None:
            s += f"[:, {self.cols[0]}:{self.cols[1]}]"
        return s

    def with_cols(self, start: int, stop: int) -> "Target":
        return dataclasses.replace(self, cols=(start, stop), shape=(self.shape[0], stop - start, *self.shape[2:]))


Row = tuple[str, str, Mapping[str, tuple[int, ...]], nn.Module | None]  # path, class, params, module


def _rows_of(root: nn.Module) -> list[Row]:
    rows = []
    for path, mod in root.named_modules():
        params = {n: logical_shape(p) for n, p in mod._parameters.items() if p is not None}
        rows.append((path, type(mod).__name__, params, mod))
    return rows


def u(path: str) -> str:
    """The underscored form kohya-style keys use."""
    return path.replace(".", "_")


def _kind(cls: str, params: Mapping[str, tuple[int, ...]]) -> str | None:
    w = params.get("weight")
    if w is None or "Embedding" in cls:
        return None
    if len(w) == 2:
        return "linear"
    if len(w) in (3, 4, 5):
        return "conv"
    if len(w) == 1 and "Norm" in cls:
        return "norm"
    return None


class ModelTree:
    """The targets of a model made of named parts.

    ``parts`` maps part names to root modules: ``{"te": ..., "unet": ...}``
    for SD1/SD2, ``{"te1": ..., "te2": ..., "unet": ...}`` for SDXL.
    ``naming`` is :data:`A1111` (the WebUI's ldm UNet with HF or OpenCLIP
    text encoders) or :data:`DIFFUSERS` (``UNet2DConditionModel`` with
    ``CLIPTextModel``/``CLIPTextModelWithProjection``).
    """

    def __init__(self, parts: Mapping[str, nn.Module], naming: str = A1111, family: str | None = None):
        self._init({p: _rows_of(m) for p, m in parts.items()}, naming, family)

    @classmethod
    def from_rows(cls, parts: Mapping[str, Iterable[Row]], naming: str = A1111, family: str | None = None) -> "ModelTree":
        tree = cls.__new__(cls)
        tree._init({p: list(r) for p, r in parts.items()}, naming, family)
        return tree

    # ------------------------------------------------------------ building
    def _init(self, rows: dict[str, list[Row]], naming: str, family: str | None) -> None:
        if naming not in (A1111, DIFFUSERS):
            raise ValueError(f"naming must be '{A1111}' or '{DIFFUSERS}', not {naming!r}")
        self.naming = naming
        self.parts = tuple(rows)
        self.targets: list[Target] = []
        self._underscored: dict[str, dict[str, Target | None]] = {}
        self._dotted: dict[str, dict[str, Target | None]] = {}
        self.ambiguous: dict[str, set[str]] = {}
        #: Every spelling of each target's path, preferred first (see :meth:`key_for`).
        self.forms: dict[tuple, tuple[str, ...]] = {}
        self._unet_paths: dict[tuple, tuple[str | None, str | None]] = {}
        for part, prows in rows.items():
            self._underscored[part] = {}
            self._dotted[part] = {}
            if is_text(part):
                self._add_text_encoder(part, prows)
            else:
                self._add_unet(part, prows)
        self.family = family or self._detect_family(rows)
        self.by_id = {t.id: t for t in self.targets}

    def _register(self, target: Target, forms: Iterable[str | None]) -> None:
        self.targets.append(target)
        forms = tuple(dict.fromkeys(f for f in forms if f))
        self.forms[target.id] = forms
        for form in forms:
            for table, alias in ((self._dotted[target.part], form), (self._underscored[target.part], u(form))):
                if alias not in table:
                    table[alias] = target
                elif table[alias] is not None and table[alias].id != target.id:
                    table[alias] = None  # two layers share this spelling: never guess
                    self.ambiguous.setdefault(target.part, set()).add(alias)

    def _add_unet(self, part: str, rows: list[Row]) -> None:
        paths = {r[0] for r in rows}
        up_attn = {int(m[1]) for p in paths if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", p))}
        for path, cls, params, mod in rows:
            kind = _kind(cls, params)
            if kind is None:
                continue
            if self.naming == A1111:
                ldm, diff = path, ldm_to_diffusers(path)
            else:
                diff, ldm = path, diffusers_to_ldm(path, lambda i: i in up_attn)
            bias = "bias" if "bias" in params else None
            t = Target(part, path, kind, ldm_block(ldm), params["weight"], bias=bias, module=mod)
            self._unet_paths[t.id] = (ldm, diff)
            self._register(t, (ldm, diff))

    def _add_text_encoder(self, part: str, rows: list[Row]) -> None:
        openclip = any(".resblocks." in p or p.startswith("transformer.resblocks") for p, *_ in rows)
        for path, cls, params, mod in rows:
            if openclip:
                inner = path[len("model."):] if path.startswith("model.") else path
                hf = openclip_to_hf(inner)
                if "in_proj_weight" in params:
                    self._add_packed_attention(part, path, hf, params, mod)
                    continue
                if "text_projection" in params and len(params["text_projection"]) == 2:
                    w, p = params["text_projection"]
                    # OpenCLIP applies x @ P; as a Linear, P is stored transposed.
                    t = Target(part, path, "linear", BASE, (p, w), param="text_projection", transposed=True, module=mod)
                    self._register(t, (*hf_forms("text_projection"), f"{path}.text_projection"))
            else:
                hf = path[len("transformer."):] if path.startswith("transformer.") else path
            kind = _kind(cls, params)
            if kind is None:
                continue
            bias = "bias" if "bias" in params else None
            t = Target(part, path, kind, BASE, params["weight"], bias=bias, module=mod)
            self._register(t, (*(hf_forms(hf) if hf else ()), path))

    def _add_packed_attention(self, part, path, hf, params, mod) -> None:
        rows3, width = params["in_proj_weight"]
        d = rows3 // 3
        bias = "in_proj_bias" if "in_proj_bias" in params else None
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            t = Target(part, path, "linear", BASE, (d, width), param="in_proj_weight", bias=bias,
                       rows=(i * d, (i + 1) * d), module=mod)
            forms = hf_forms(f"{hf}.{name}") if hf else []
            self._register(t, (*forms, f"{path}_{name}"))

    def _detect_family(self, rows: dict[str, list[Row]]) -> str:
        for path, cls, params, _ in rows.get(UNET, ()):
            if re.search(r"attn2\.to_k$", path) and "weight" in params:
                return {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(params["weight"][1], "unknown")
        if TE2 in rows:
            return "sdxl"
        te = rows.get(TE) or rows.get(TE1) or ()
        if any("resblocks" in p for p, *_ in te):
            return "sd2"
        return "sd1" if te else "unknown"

    # ------------------------------------------------------------- lookups
    @property
    def blocks(self) -> tuple[str, ...]:
        """The block IDs of this model's family (LBW's full list)."""
        return SDXL_BLOCKS if self.family == "sdxl" else SD_BLOCKS

    def key_for(self, target: Target) -> str:
        """The module key kohya's trainer writes for ``target``.

        SD1/SD2 UNet keys use diffusers paths, SDXL UNet keys ldm paths; text
        encoders use transformers' CLIP paths. (Packed q/k/v slices get their
        ``q_proj``/``k_proj``/``v_proj`` names.)
        """
        forms = self.forms[target.id]
        if target.part == UNET:
            ldm, diff = self._unet_paths[target.id]
            body = ldm if (self.family == "sdxl" or diff is None) else diff
            return KOHYA_PREFIXES[UNET] + u(body or forms[0])
        prefix = KOHYA_PREFIXES.get(target.part, f"lora_{target.part}_")
        hf = next((f for f in forms if f.startswith("text_model.") or f == "text_projection"), forms[0])
        return prefix + u(hf)

    def lookup(self, part: str, body: str, dotted: bool) -> Target | None:
        """The target ``body`` names in ``part`` (None if none, or ambiguous)."""
        if part not in self._dotted:
            return None
        if dotted:
            for form in _dotted_variants(body):
                t = self._dotted[part].get(form)
                if t is not None:
                    return t
            body = u(body)
        for form in _underscored_variants(body):
            t = self._underscored[part].get(form)
            if t is not None:
                return t
        return None

    def __len__(self) -> int:
        return len(self.targets)


_PROCESSOR_TE = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}


def _dotted_variants(body: str) -> list[str]:
    """Old diffusers spellings of the same layer (attention processors), and
    ComfyUI's ``transformer.`` in front of a text encoder's HF path."""
    out = [body]
    if body.startswith("transformer."):
        out.append(body[len("transformer."):])
    b = body.replace(".processor.", ".")
    if b.endswith(".to_out"):
        b += ".0"
    if b != body:
        out.append(b)
    m = re.match(r"(.*\.self_attn)\.(to_q|to_k|to_v|to_out)$", body.replace(".processor.", "."))
    if m:
        out.append(f"{m[1]}.{_PROCESSOR_TE[m[2]]}")
    return out


def _underscored_variants(body: str) -> list[str]:
    out = [body]
    if body.startswith("transformer_"):
        out.append(body[len("transformer_"):])
    if "text_model_text_model" in body:
        out.append(body.replace("text_model_text_model", "text_model"))
    return out
