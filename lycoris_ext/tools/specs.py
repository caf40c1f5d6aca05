"""Which networks, at which weights: ``NET[:te[:unet]][:lbw=...][:dyn=N]`` on the
command line, or the same fields from the API, into the runtime's :class:`Use`.

The items after the file name are a prompt token's (``<lora:name:...>``), read
by the same parser; only what is static makes sense in a file (no schedules,
no curves, no hires weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import NetworkFileError
from ..files import file_sha256
from ..network import Network, load_network
from ..resolve import resolve
from ..resolve.lbw import BlockSpecError, parse_block_weights
from ..resolve.tree import ModelTree
from ..runtime import Runtime, Use
from ..runtime.merge import Contribution
from ..tokens import TokenError, parse_token


@dataclass
class NetSpec:
    path: str
    te: float = 1.0
    unet: float = 1.0
    lbw: str | None = None
    x: float | None = None
    dyn: int | None = None

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def split_spec(text: str) -> tuple[str, list[str]]:
    """``(path, items)``: the longest prefix naming an existing file is the path
    (so paths with colons work), the rest its ``:``-separated items."""
    text = str(text)
    if os.path.isfile(text):
        return text, []
    cut = [i for i, ch in enumerate(text) if ch == ":"]
    for i in reversed(cut):
        if os.path.isfile(text[:i]):
            return text[:i], text[i + 1:].split(":")
    # no such file: the error names what looks like the file part
    head = text.split(":", 1)[0] if not (len(text) > 1 and text[1] == ":") else text
    return head, text[len(head) + 1:].split(":") if len(text) > len(head) else []


def parse_spec(text: str) -> NetSpec:
    path, items = split_spec(text)
    try:
        tok = parse_token(["_", *items])
    except TokenError as e:
        raise NetworkFileError(path, None, f"in '{text}': {e}") from None
    if tok.start is not None or tok.stop is not None or tok.hr_te is not None or tok.hr_unet is not None:
        raise NetworkFileError(path, None, f"in '{text}': step schedules and hires weights do not apply to a file")
    for w in (tok.te, tok.unet):
        if not isinstance(w, (int, float)):
            raise NetworkFileError(path, None, f"in '{text}': a weight curve does not apply to a file; give a number")
    return NetSpec(path, float(tok.te), float(tok.unet), tok.lbw, tok.x, tok.dyn)


def as_spec(item) -> NetSpec:
    """A :class:`NetSpec` from a spec string, a NetSpec, or a dict of its fields."""
    if isinstance(item, NetSpec):
        return item
    if isinstance(item, str):
        return parse_spec(item)
    if isinstance(item, dict):
        fields = {k: item[k] for k in ("path", "te", "unet", "lbw", "x", "dyn") if item.get(k) is not None}
        if "path" not in fields:
            raise NetworkFileError(None, None, "a network needs a 'path'")
        if "weight" in item and item["weight"] is not None:
            fields.setdefault("te", item["weight"])
            fields.setdefault("unet", item["weight"])
        if "te" in fields and "unet" not in fields:
            fields["unet"] = fields["te"]
        try:
            return NetSpec(**{**fields, "te": float(fields.get("te", 1.0)), "unet": float(fields.get("unet", 1.0))})
        except (TypeError, ValueError) as e:
            raise NetworkFileError(fields["path"], None, f"bad weight: {e}") from None
    raise TypeError(f"not a network spec: {item!r}")


@dataclass
class Loaded:
    spec: NetSpec
    network: Network
    use: Use
    sha256: str

    def record(self) -> dict:
        """What the output's metadata says about this network."""
        d = {"name": self.spec.name, "file": os.path.basename(self.spec.path), "sha256": self.sha256,
             "shorthash": self.sha256[:12], "te": self.spec.te, "unet": self.spec.unet}
        if self.spec.lbw:
            d["lbw"] = self.spec.lbw
        if self.spec.x is not None:
            d["x"] = self.spec.x
        if self.spec.dyn is not None:
            d["dyn"] = self.spec.dyn
        return d


def load_specs(items) -> list[Loaded]:
    """Load each network once per spec; bad files raise :class:`NetworkFileError`."""
    out = []
    seen = set()
    for item in items:
        spec = as_spec(item)
        net = load_network(spec.path)
        blocks = None
        if spec.lbw:
            try:
                blocks = parse_block_weights(spec.lbw, x=spec.x if spec.x is not None else 1.0)
            except BlockSpecError as e:
                raise NetworkFileError(spec.path, None, f"lbw={spec.lbw}: {e}") from None
        name = spec.name
        while name in seen:  # the same file twice is allowed: two contributions
            name += "'"
        seen.add(name)
        use = Use(net, spec.te, spec.unet, dyn=spec.dyn, blocks=blocks, name=name)
        out.append(Loaded(spec, net, use, file_sha256(spec.path)))
    if not out:
        raise NetworkFileError(None, None, "no network given")
    return out


def check_fit(loaded: list[Loaded], tree: ModelTree, model_path: str | None = None):
    """Refuse networks made for another base model (or fitting no layer);
    return ``(summaries, resolutions)``, one each per network."""
    from ..resolve import OTHER_MODEL
    from ..resolve.family import FAMILY_NAMES

    out, resolutions = [], []
    for item in loaded:
        res = resolve(item.network, tree)
        resolutions.append(res)
        if not res.applicable:
            where = f" {model_path}" if model_path else ""
            model = FAMILY_NAMES.get(tree.family, tree.family)
            why = (f"made for {FAMILY_NAMES.get(res.file_family, res.file_family)} ({res.family_reason}), "
                   f"the model{where} is {model}") if res.verdict == OTHER_MODEL else f"does not fit the model{where}: {res.summary()}"
            raise NetworkFileError(item.spec.path, None, why)
        out.append({"name": item.use.label, "verdict": res.verdict, "summary": res.summary(),
                    "unmatched": len(res.unmatched), "mismatched": len(res.mismatched)})
    return out, resolutions


def contributions(tree: ModelTree, uses) -> dict[tuple, list[Contribution]]:
    """Per target id, the contributions the runtime would merge for ``uses``
    (its multipliers, block weights and ``dyn``), in its order."""
    # The runtime's own computation of the wanted set (no model is touched:
    # the tree may have no modules).
    want, _ = Runtime(tree).contributions(tuple(uses))
    return want
