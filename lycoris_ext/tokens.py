"""Prompt tokens: ``<lora:name:te:unet:dyn>`` and named arguments, into plain values.

The WebUI hands over each token's ``:``-separated items; this turns them into
a :class:`TokenSpec`. Accepted, in any order after the name:

- positional: ``te``, ``unet`` (defaults to ``te``), ``dyn``;
- named: ``te=``, ``unet=``, ``dyn=``, ``lbw=`` (alias ``w=``; preset name or
  list), ``x=``, ``start=``, ``stop=``, ``step=A-B``, ``hr=``, ``hrte=``,
  ``hrunet=``;
- a multiplier may be a curve of ``weight@step`` keyframes (``0@0,1@0.5``);
- names may be quoted: ``<lora:"a:b":1>``;
- a block-weight preset or list in a positional slot (``<lora:name:1:MIDD>``)
  is taken as ``lbw=``, a kindness LBW does not offer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Union

from .curves import Curve, is_curve_text, parse_weight

Weight = Union[float, Curve]

#: The extra-network names whose tokens this project reads: ``lora``, and the
#: aliases ``lyco`` (the old LyCORIS extension) and ``loractl`` (sd-webui-loractl).
TOKEN_KINDS = ("lora", "lyco", "loractl")

NAMED = {"te", "unet", "dyn", "lbw", "w", "x", "start", "stop", "step", "hr", "hrte", "hrunet", "lbwe"}


class TokenError(ValueError):
    """A token that cannot be read; the message quotes the token."""


@dataclass
class TokenSpec:
    name: str
    te: Weight = 1.0
    unet: Weight = 1.0
    dyn: int | None = None
    lbw: str | None = None
    x: float | None = None
    start: int | None = None
    stop: int | None = None
    hr_te: Weight | None = None
    hr_unet: Weight | None = None
    warnings: list[str] = field(default_factory=list)
    raw: str = ""

    def multipliers(self, hires: bool = False) -> tuple[Weight, Weight]:
        """``(te, unet)`` for the first pass, or for the hires pass (its own if given)."""
        if hires:
            return (self.hr_te if self.hr_te is not None else self.te,
                    self.hr_unet if self.hr_unet is not None else self.unet)
        return self.te, self.unet


def _join_quoted(items: list) -> list:
    """Re-join a quoted name the WebUI split at its colons."""
    first = items[0]
    if not isinstance(first, str) or first[:1] not in ('"', "'"):
        return items
    q = first[0]
    if len(first) >= 2 and first.endswith(q):
        return [first[1:-1], *items[1:]]
    parts = [first]
    for i in range(1, len(items)):
        parts.append(str(items[i]))
        if parts[-1].endswith(q):
            return [":".join(parts)[1:-1], *items[i + 1:]]
    raise TokenError(f"unclosed quote in name {':'.join(map(str, items))!r}")


def _looks_like_blocks(v: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][\w.+-]*", v)) or ("," in v and not is_curve_text(v))


def _int(v: str, what: str, raw: str) -> int:
    try:
        f = float(v)
    except ValueError:
        raise TokenError(f"{what}={v!r} is not a number in {raw}") from None
    if f != int(f):
        raise TokenError(f"{what}={v!r} must be a whole step number in {raw}")
    return int(f)


def _weight(v, what: str, raw: str) -> Weight:
    try:
        return parse_weight(v)
    except ValueError as e:
        raise TokenError(f"{what}={v!r} in {raw}: {e}") from None


def parse_token(items, default_multiplier: float = 1.0) -> TokenSpec:
    """Read one token's items (as the WebUI splits them) into a :class:`TokenSpec`."""
    items = list(items)
    raw = "<lora:" + ":".join(str(i) for i in items) + ">"
    if not items or items[0] in ("", None):
        raise TokenError(f"no network name in {raw}")
    items = _join_quoted(items)
    name = str(items[0]).strip()
    if not name:
        raise TokenError(f"no network name in {raw}")
    spec = TokenSpec(name, raw=raw)
    positional: list = []
    named: dict[str, str] = {}
    for item in items[1:]:
        if isinstance(item, str) and "=" in item:
            k, _, v = item.partition("=")
            k = k.strip()
            if k not in NAMED:
                spec.warnings.append(f"unknown argument '{k}' in {raw} ignored")
                continue
            named["lbw" if k == "w" else k] = v.strip()
        else:
            positional.append(item)

    slots = ["te", "unet", "dyn"]
    for item in positional:
        v = item.strip() if isinstance(item, str) else item
        if v == "":
            if slots:
                slots.pop(0)
            continue
        if isinstance(v, str) and _looks_like_blocks(v) and "lbw" not in named:
            named["lbw"] = v
            continue
        if not slots:
            spec.warnings.append(f"extra value {v!r} in {raw} ignored")
            continue
        named.setdefault(slots.pop(0), v)

    te = _weight(named["te"], "te", raw) if "te" in named else default_multiplier
    spec.te = te
    spec.unet = _weight(named["unet"], "unet", raw) if "unet" in named else te
    if "dyn" in named:
        spec.dyn = _int(named["dyn"], "dyn", raw)
    if "lbw" in named and named["lbw"]:
        spec.lbw = named["lbw"]
    if "lbwe" in named:
        spec.warnings.append(f"lbwe= (LBW's elemental weights) is not supported; ignored in {raw}")
    if "x" in named:
        try:
            spec.x = float(named["x"])
        except ValueError:
            raise TokenError(f"x={named['x']!r} is not a number in {raw}") from None
    if "step" in named:
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", named["step"])
        if not m:
            raise TokenError(f"step={named['step']!r} must be A-B (two step numbers) in {raw}")
        spec.start, spec.stop = int(m[1]), int(m[2])
    else:
        if "start" in named:
            spec.start = _int(named["start"], "start", raw)
        if "stop" in named:
            spec.stop = _int(named["stop"], "stop", raw)
    if "hr" in named:
        spec.hr_te = spec.hr_unet = _weight(named["hr"], "hr", raw)
    if "hrte" in named:
        spec.hr_te = _weight(named["hrte"], "hrte", raw)
    if "hrunet" in named:
        spec.hr_unet = _weight(named["hrunet"], "hrunet", raw)
    return spec


_TOKEN = re.compile(r"<(" + "|".join(TOKEN_KINDS) + r"):((?:\"[^\"]*\"|'[^']*'|[^>])*)>")

#: A network named by its short hash: ``@`` and 12 to 64 hex digits (what a
#: card inserts when no name fits), or ``#`` and the digits (older prompts;
#: the WebUI's comments, on by default, cut a prompt at ``#``).
HASH_MARK = "@"
HASH_NAME = re.compile(r"[@#][0-9a-fA-F]{12,64}")


def token_safe(name: str) -> bool:
    """Whether a name can be written in a prompt token as it is: the WebUI's
    tokens end at the first ``>``, its comments (on by default) drop
    everything from ``#``, a name with ``:`` needs a quote character it lacks,
    and a name that reads as a short hash would be taken for one."""
    if not name or ">" in name or "#" in name or HASH_NAME.fullmatch(name):
        return False
    if ":" in name or name[:1] in "\"'":
        return '"' not in name or "'" not in name
    return True


def quote_name(name: str) -> str:
    """A token-safe name as written in a token (quoted when it holds ``:``)."""
    if ":" not in name and name[:1] not in "\"'":
        return name
    q = '"' if '"' not in name else "'"
    return f"{q}{name}{q}"


def _tokens(prompt: str):
    """``(match, name as written, name, items after the name)`` of every token.

    Items are split at every ``:`` as the WebUI splits them, a quoted name
    joined again; a token whose quote never closes has no name (None).
    """
    for m in _TOKEN.finditer(prompt):
        items = m[2].split(":")
        try:
            joined = _join_quoted(list(items))
        except TokenError:
            yield m, None, None, items
            continue
        rest = joined[1:]
        yield m, ":".join(items[: len(items) - len(rest)]), joined[0], rest


def find_tokens(prompt: str) -> list[tuple[str, list[str], tuple[int, int]]]:
    """``(kind, items, span)`` of every lora/lyco/loractl token in a prompt text."""
    return [(m[1], m[2].split(":"), m.span()) for m, *_ in _tokens(prompt)]


def strip_tokens(prompt: str) -> tuple[str, list[list[str]]]:
    """The prompt without lora/lyco/loractl tokens, and the tokens' items."""
    found = []

    def repl(m):
        found.append(m[2].split(":"))
        return ""

    return _TOKEN.sub(repl, prompt), found


def rename_tokens(prompt: str, new_name: Callable[[str], str | None]) -> str:
    """Every token whose ``new_name(name)`` is a name (not None) renamed to it, the rest as written."""
    out, pos = [], 0
    for m, _, name, rest in _tokens(prompt):
        new = new_name(name) if name is not None else None
        if new is None or new == name:
            continue
        out.append(prompt[pos: m.start()] + f"<{m[1]}:" + ":".join([quote_name(new), *rest]) + ">")
        pos = m.end()
    return "".join(out) + prompt[pos:]


def rewrite_token(prompt: str, name: str | None = None, *, new_name: str | None = None,
                  weights: tuple | None = None, named: dict | None = None, append_if_missing: bool = True) -> str:
    """Edit the first lora/lyco/loractl token (of ``name`` when given) of a prompt.

    ``new_name`` renames it; ``weights`` replaces the positional multipliers
    (``(w,)`` or ``(te, unet)``); ``named`` sets or (with value None) removes
    named arguments. Without such a token, one is appended (for the X/Y/Z
    plot axes), unless ``append_if_missing`` is false.
    """
    for m, written, spec_name, rest in _tokens(prompt):
        if spec_name is None or (name is not None and spec_name != name):
            continue
        head = [quote_name(new_name) if new_name is not None else written]
        positional = [i for i in rest if "=" not in i]
        keyed = [i for i in rest if "=" in i]
        if weights is not None:
            positional = [f"{float(w):g}" for w in weights] + positional[len(weights):] if len(positional) > len(weights) else [f"{float(w):g}" for w in weights]
            keyed = [i for i in keyed if i.partition("=")[0].strip() not in ("te", "unet")]
        for k, v in (named or {}).items():
            keyed = [i for i in keyed if i.partition("=")[0].strip() not in ({k, "w"} if k == "lbw" else {k})]
            if v is not None:
                keyed.append(f"{k}={v}")
        body = ":".join(head + positional + keyed)
        return prompt[: m.start()] + f"<{m[1]}:{body}>" + prompt[m.end():]
    if not append_if_missing:
        return prompt
    target = new_name if new_name is not None else name
    if target is None:
        return prompt
    ws = [f"{float(w):g}" for w in (weights or (1.0,))]
    keyed = [f"{k}={v}" for k, v in (named or {}).items() if v is not None]
    token = "<lora:" + ":".join([quote_name(target), *ws, *keyed]) + ">"
    return f"{prompt} {token}" if prompt else token
