"""A loaded network file: metadata, one adapter per module, bundled embeddings."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import torch

from .algorithms import ALGORITHMS, Adapter, Entry, build_adapter
from .errors import NetworkFileError
from .files import RawFile, read_network_file
from .keys import is_peft_spelling, split_bundle_key, split_key
from .peft_metadata import METADATA_KEY, SOURCE_DEFAULT, PartConfig, apply_adapter_metadata


#: Header keys of trainers whose diffusers/PEFT-style files fold alpha into
#: ``lora_B`` (scale 1 is their trained strength): OneTrainer.
FOLDS_ALPHA = ("ot_branch", "ot_revision")


@dataclass(frozen=True)
class UnknownKey:
    """A key no algorithm consumed, and why."""

    key: str
    reason: str


@dataclass
class Network:
    """Everything a network file holds, interpreted.

    ``modules`` maps each module key of the file (as written there) to its
    :class:`~lycoris_ext.algorithms.Adapter`. Nothing here refers to a model:
    matching keys to layers is the resolve layer's work.
    """

    path: str
    metadata: dict[str, str]
    modules: dict[str, Adapter]
    embeddings: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    unknown: list[UnknownKey] = field(default_factory=list)
    format: str = "safetensors"
    #: Part prefix (None: unprefixed) -> the scale fields of its PEFT
    #: ``lora_adapter_metadata``; empty when the file has none.
    adapter_metadata: dict[str | None, PartConfig] = field(default_factory=dict)

    @property
    def scale_sources(self) -> dict[str, int]:
        """How many modules got their scale from each source ("alpha tensor",
        "adapter metadata", "default"); algorithms without alpha not counted."""
        return dict(Counter(a.scale_source for a in self.modules.values() if a.scale_source is not None))

    @property
    def warnings(self) -> list[str]:
        """Facts a user should know before trusting the strength."""
        out = []
        if any(k in self.metadata for k in FOLDS_ALPHA):
            return out
        peft = [k for k, a in self.modules.items()
                if a.algorithm == "lora" and a.scale_source == SOURCE_DEFAULT and any(map(is_peft_spelling, a.raw_keys()))]
        if peft:
            out.append(
                f"{len(peft)} diffusers/PEFT-style LoRA modules have neither an .alpha tensor nor {METADATA_KEY} "
                "in the header: applied at scale 1 (alpha = rank), as diffusers loads them; a file trained with "
                "lora_alpha != r (or rsLoRA) was saved without its scale and may act stronger or weaker than trained"
            )
        return out

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def algorithms(self) -> list[str]:
        present = {a.algorithm for a in self.modules.values()}
        return [a for a in ALGORITHMS if a in present]

    @property
    def features(self) -> list[str]:
        return sorted({f for a in self.modules.values() for f in a.features})

    @property
    def nbytes(self) -> int:
        emb = sum(t.numel() * t.element_size() for e in self.embeddings.values() for t in e.values())
        return sum(a.nbytes for a in self.modules.values()) + emb

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"<Network {self.name}: {len(self.modules)} modules, {'/'.join(self.algorithms) or 'no algorithm'}>"


def build_network(raw: RawFile) -> Network:
    """Interpret the tensors of a file (see :func:`load_network`)."""
    groups: dict[str, dict[str, Entry]] = {}
    unknown: list[UnknownKey] = []
    embeddings: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in raw.tensors.items():
        bundle = split_bundle_key(key)
        if bundle is not None:
            name, tail = bundle
            if not name or not tail:
                unknown.append(UnknownKey(key, "malformed bundled-embedding key"))
                continue
            embeddings.setdefault(name, {})[tail] = tensor
            continue
        module, suffix, raw_suffix = split_key(key)
        if suffix is None:
            unknown.append(UnknownKey(key, f"unknown suffix '{raw_suffix}'"))
            continue
        group = groups.setdefault(module, {})
        if suffix in group:
            raise NetworkFileError(raw.path, key, f"duplicates '{group[suffix][0]}' (both are '{suffix}' of module '{module}')")
        group[suffix] = (key, tensor)

    modules: dict[str, Adapter] = {}
    for module, entries in groups.items():
        adapter = build_adapter(module, entries, raw.path)
        if adapter is None:
            for suffix, (key, _) in entries.items():
                unknown.append(UnknownKey(key, "no algorithm uses this module's keys"))
            continue
        used = adapter.consumed()
        for suffix, (key, _) in entries.items():
            if suffix not in used:
                unknown.append(UnknownKey(key, f"not used by {adapter.algorithm}"))
        modules[module] = adapter
    configs = apply_adapter_metadata(modules, raw.metadata, raw.path)
    for name, tensors in embeddings.items():
        for tail, t in tensors.items():
            if not t.is_floating_point() or not bool(torch.isfinite(t.float()).all()):
                raise NetworkFileError(raw.path, f"bundle_emb.{name}.{tail}", "bundled embedding is not a finite floating-point tensor")
    return Network(raw.path, raw.metadata, modules, embeddings, unknown, raw.format, configs)


def load_network(path: str | os.PathLike) -> Network:
    """Read a network file and build one adapter per module.

    Raises :class:`~lycoris_ext.NetworkFileError` (naming the file and key)
    for anything that cannot be read or has impossible tensors.
    """
    return build_network(read_network_file(path))
