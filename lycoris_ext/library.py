"""The network folders: which files exist, their names, aliases, hashes and base models.

A token names a network by its file stem (``<lora:style:1>``), its path
relative to a network folder (``<lora:sub/style:1>``, which makes two files
with the same stem in different folders both usable) or its alias (the
``ss_output_name`` the trainer wrote). Lookups only ever match entries found
by the folder scan, so a name from a prompt can never reach a path outside
the network folders.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .errors import NetworkFileError
from .files import NETWORK_EXTENSIONS, SAFETENSORS_EXTENSIONS, addnet_hash, file_sha256, read_safetensors_header
from .resolve.family import family_from_header
from .tokens import HASH_MARK, HASH_NAME, token_safe

# Aliases that would shadow common words in prompts (as in A1111).
FORBIDDEN_ALIASES = {"none"}

@dataclass
class NetworkEntry:
    """One network file in a network folder."""

    path: str
    root: str
    stem: str
    relpath: str  # relative to its root, '/'-separated, without extension
    name: str = ""  # unique name: the stem, or the relative path when stems collide
    mtime: float = 0.0
    size: int = 0
    _metadata: dict | None = field(default=None, repr=False)
    _header: dict | None = field(default=None, repr=False)
    _family: tuple[str, str] | None = field(default=None, repr=False)
    hash: str = ""
    error: str | None = None

    @property
    def is_safetensors(self) -> bool:
        return self.path.lower().endswith(SAFETENSORS_EXTENSIONS)

    def changed_on_disk(self) -> bool:
        """The file was rewritten or removed since the folder scan."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_mtime, st.st_size) != (self.mtime, self.size)

    def _read_header(self) -> None:
        if self._metadata is not None:
            return
        self._metadata, self._header = {}, {}
        if not self.is_safetensors:
            return
        try:
            self._header, self._metadata, _ = read_safetensors_header(self.path)
        except NetworkFileError as e:
            self.error = str(e)

    @property
    def metadata(self) -> dict[str, str]:
        self._read_header()
        return self._metadata

    @property
    def alias(self) -> str:
        alias = self.metadata.get("ss_output_name") or self.stem
        return str(alias).strip() or self.stem

    @property
    def family(self) -> str:
        """sd1, sd2, sdxl or unknown, from the header's shapes, keys and metadata."""
        if self._family is None:
            self._read_header()
            self._family = family_from_header(self._header or {}, self._metadata or {})
        return self._family[0]

    @property
    def family_reason(self) -> str:
        self.family
        return self._family[1]

    @property
    def shorthash(self) -> str:
        return self.hash[:12]


class NetworkLibrary:
    """An index of the network files under some folders (subfolders included).

    ``hasher(entry)`` computes a file's hash when first needed (the WebUI's
    cached ``sha256`` in the extension; the additional-networks hash of
    safetensors files and the file sha256 of pickles otherwise).
    """

    def __init__(self, roots: Iterable[str], hasher: Callable[[NetworkEntry], str] | None = None):
        self.roots = [os.path.abspath(r) for r in roots if r]
        self._hasher = hasher or default_hash
        self._lock = threading.RLock()
        self.entries: dict[str, NetworkEntry] = {}
        self._by_key: dict[str, NetworkEntry] = {}
        self._by_hash: dict[str, NetworkEntry] = {}
        self.refresh()

    # ------------------------------------------------------------ scanning
    def refresh(self) -> list[NetworkEntry]:
        with self._lock:
            old = {e.path: e for e in self.entries.values()}
            found: list[NetworkEntry] = []
            seen = set()
            for root in self.roots:
                if not os.path.isdir(root):
                    continue
                for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                    dirnames.sort()
                    for fn in sorted(filenames):
                        if not fn.lower().endswith(NETWORK_EXTENSIONS):
                            continue
                        path = os.path.join(dirpath, fn)
                        real = os.path.realpath(path)
                        if real in seen:
                            continue
                        seen.add(real)
                        try:
                            st = os.stat(path)
                        except OSError:
                            continue
                        prev = old.get(path)
                        if prev is not None and prev.mtime == st.st_mtime and prev.size == st.st_size:
                            found.append(prev)
                            continue
                        rel = os.path.relpath(path, root).replace(os.sep, "/")
                        stem = os.path.splitext(fn)[0]
                        found.append(NetworkEntry(path, root, stem, os.path.splitext(rel)[0], mtime=st.st_mtime, size=st.st_size))
            self._index(found)
            return list(self.entries.values())

    def _index(self, found: list[NetworkEntry]) -> None:
        stems: dict[str, int] = {}
        for e in found:
            stems[e.stem] = stems.get(e.stem, 0) + 1
        self.entries = {}
        for e in found:
            e.name = e.stem if stems[e.stem] == 1 else e.relpath
            if e.name in self.entries:  # same relative path under two roots
                e.name = f"{os.path.basename(e.root)}/{e.relpath}"
            self.entries[e.name] = e
        # A unique name always resolves; then relative paths, then aliases,
        # each only when unambiguous and never shadowing an earlier key.
        by_key: dict[str, NetworkEntry] = {e.name: e for e in found}
        relpaths = Counter(e.relpath for e in found)
        for e in found:
            if relpaths[e.relpath] == 1:
                by_key.setdefault(e.relpath, e)
        aliases = Counter(e.alias for e in found)
        for e in found:
            if aliases[e.alias] == 1 and e.alias.lower() not in FORBIDDEN_ALIASES:
                by_key.setdefault(e.alias, e)
        self._by_key = by_key
        self._by_hash = {e.shorthash: e for e in found if e.hash}

    # ------------------------------------------------------------- lookups
    def find(self, token_name: str) -> NetworkEntry | None:
        """The entry a prompt's name means (unique name, relative path, stem,
        alias, or ``@`` (or ``#``) and the short hash)."""
        if not token_name or "\x00" in token_name:
            return None
        with self._lock:
            e = self._by_key.get(token_name)
            if e is None and "\\" in token_name:
                e = self._by_key.get(token_name.replace("\\", "/"))
        if e is None and HASH_NAME.fullmatch(token_name):
            return self.find_by_shorthash(token_name[1:].lower())
        return e

    def find_by_shorthash(self, shorthash: str) -> NetworkEntry | None:
        with self._lock:
            e = self._by_hash.get(shorthash.lower())
            if e is None:
                # hashes are computed lazily; look at the files we have not hashed yet
                for cand in self.entries.values():
                    if not cand.hash and self.ensure_hash(cand).startswith(shorthash.lower()):
                        return cand
            return e

    def ensure_hash(self, entry: NetworkEntry) -> str:
        if not entry.hash:
            meta_hash = entry.metadata.get("sshs_model_hash", "") if entry.is_safetensors else ""
            try:
                entry.hash = (meta_hash or self._hasher(entry) or "").lower()
            except OSError as e:
                entry.error = str(e)
                entry.hash = ""
            if entry.hash:
                self._by_hash[entry.shorthash] = entry
        return entry.hash

    def display_name(self, entry: NetworkEntry, prefer_alias: bool = True) -> str:
        """The name a card inserts: the alias when it is unambiguous, else the
        unique name; ``@`` and the short hash when neither fits in a token."""
        names = ([entry.alias] if prefer_alias and self._by_key.get(entry.alias) is entry else []) + [entry.name]
        for n in names:
            if token_safe(n):
                return n
        return HASH_MARK + self.ensure_hash(entry)[:12]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(list(self.entries.values()))


def default_hash(entry: NetworkEntry) -> str:
    """A1111's hash of a network file: addnet hash for safetensors, file sha256 otherwise."""
    return addnet_hash(entry.path) if entry.is_safetensors else file_sha256(entry.path)
