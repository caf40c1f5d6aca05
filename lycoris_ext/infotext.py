"""Infotext: ``Lora hashes`` in exactly the WebUI's format, and pasting it back.

The built-in writes ``name: shorthash`` pairs joined by ``", "``, the name as
written in the prompt with ``:`` and ``,`` removed, the short hash the first
12 hex digits of the file's hash. Other tools (Civitai) read this field.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from .library import quote_name
from .tokens import TOKEN_KINDS

_REMOVE = str.maketrans("", "", ":,")


def clean_name(name: str) -> str:
    return name.translate(_REMOVE)


def format_hashes(pairs: Mapping[str, str]) -> str:
    """``{mentioned name: shorthash}`` -> ``"a: 0123456789ab, b: ba9876543210"``."""
    return ", ".join(f"{clean_name(k)}: {v}" for k, v in pairs.items())


def parse_hashes(text: str) -> dict[str, str]:
    """The inverse of :func:`format_hashes`; entries without a colon are skipped."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        name, sep, h = part.partition(":")
        if sep and name.strip() and h.strip():
            out[name.strip()] = h.strip()
    return out


_TOKEN_NAME = re.compile(r"<(" + "|".join(TOKEN_KINDS) + r"):(\"[^\"]*\"|'[^']*'|[^:>]+)(?=[:>])")


def remap_prompt(prompt: str, hashes: Mapping[str, str], lookup: Callable[[str], str | None]) -> str:
    """Rename networks in a pasted prompt to the local files with the same hash.

    ``lookup(shorthash)`` returns the local name to use, or None to keep the
    prompt's name.
    """

    def repl(m):
        kind, name = m[1], m[2]
        bare = name[1:-1] if name[:1] in "\"'" and len(name) >= 2 else name
        h = hashes.get(clean_name(bare)) or hashes.get(bare)
        local = lookup(h) if h else None
        if not local or local == bare:
            return m[0]
        return f"<{kind}:{quote_name(local)}"

    return _TOKEN_NAME.sub(repl, prompt)
