"""Infotext: ``Lora hashes`` in exactly the WebUI's format, and pasting it back.

The built-in writes ``name: shorthash`` pairs joined by ``", "``, the name as
written in the prompt with ``:`` and ``,`` removed, the short hash the first
12 hex digits of the file's hash. Other tools (Civitai) read this field.
"""

from __future__ import annotations

from typing import Callable, Mapping

from .tokens import rename_tokens

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


def remap_prompt(prompt: str, hashes: Mapping[str, str], lookup: Callable[[str], str | None]) -> str:
    """Rename networks in a pasted prompt to the local files with the same hash.

    ``lookup(shorthash)`` returns the local name to use, or None to keep the
    prompt's name.
    """

    def local(name: str):
        h = hashes.get(clean_name(name)) or hashes.get(name)
        return lookup(h) if h else None

    return rename_tokens(prompt, local)
