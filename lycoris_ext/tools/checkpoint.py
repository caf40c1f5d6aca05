"""Single-file checkpoints in A1111's (ldm) layout, read and written one tensor at a time.

Reading: a ``.safetensors`` header is validated by :func:`files.read_safetensors_header`
(offsets against the real file size) and each tensor is read with its own
``readinto`` when asked for, so holding a 7 GB checkpoint costs one tensor of
memory. ``.ckpt``/``.pt`` load weights-only, memory-mapped.

Writing: :class:`SafetensorsWriter` writes the header first (every shape and
dtype is known before any data) and then each tensor in order, into a
temporary file beside the output that replaces it only when complete, so a
failure leaves no output (or the old one untouched).

Layouts: the parts of SD1.x, SD2.x and SDXL checkpoints and the
:class:`~lycoris_ext.resolve.tree.ModelTree` of their keys (classes from the
packaged inventories, shapes from the file), so the resolver and the runtime's
merge see the same targets as in a loaded model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from ..errors import NetworkFileError
from ..files import PICKLE_EXTENSIONS, SAFETENSORS_EXTENSIONS, read_safetensors_header
from ..parts import TE, TE1, TE2, UNET
from ..resolve.tree import A1111, ModelTree, Row
from ..runtime.params import bias_view, weight_view

UNET_PREFIX = "model.diffusion_model."

#: family -> inventory name and ``{part: key prefix}``
LAYOUTS = {
    "sd1": ("sd15", {UNET: UNET_PREFIX, TE: "cond_stage_model."}),
    "sd2": ("sd2", {UNET: UNET_PREFIX, TE: "cond_stage_model."}),
    "sdxl": ("sdxl", {UNET: UNET_PREFIX, TE1: "conditioner.embedders.0.", TE2: "conditioner.embedders.1."}),
}
FAMILY_TITLES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}

_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH = {v: k for k, v in _ST_DTYPES.items()}
_TORCH.update({"F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None)})

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_dtype(name: str | None, path: str | None = None) -> torch.dtype | None:
    """``fp16``/``bf16``/``fp32`` (or None: keep each tensor's own)."""
    if name is None or name == "":
        return None
    if name not in DTYPES:
        raise NetworkFileError(path, None, f"unknown dtype '{name}' (choose from {', '.join(DTYPES)})")
    return DTYPES[name]


@dataclass(frozen=True)
class Entry:
    dtype: torch.dtype
    shape: tuple[int, ...]


class Checkpoint:
    """A checkpoint file opened for reading tensor by tensor."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise NetworkFileError(self.path, None, "no such file")
        ext = os.path.splitext(self.path)[1].lower()
        self._file = None
        self._pickled: dict[str, torch.Tensor] | None = None
        self.metadata: dict[str, str] = {}
        if ext in SAFETENSORS_EXTENSIONS:
            header, self.metadata, self._start = read_safetensors_header(self.path)
            self._header = header
            self.entries = {}
            for k, e in header.items():
                dt = _TORCH.get(e["dtype"])
                if dt is None:
                    raise NetworkFileError(self.path, k, f"dtype {e['dtype']} is not supported")
                self.entries[k] = Entry(dt, tuple(e["shape"]))
            try:
                self._file = open(self.path, "rb")
            except OSError as e:
                raise NetworkFileError(self.path, None, f"cannot read file: {e.strerror or e}") from None
        elif ext in PICKLE_EXTENSIONS:
            self._pickled = _load_pickle(self.path)
            self.entries = {k: Entry(v.dtype, tuple(v.shape)) for k, v in self._pickled.items()}
        else:
            raise NetworkFileError(self.path, None, f"unsupported file type '{ext}' (use .safetensors, .ckpt or .pt)")
        if not self.entries:
            raise NetworkFileError(self.path, None, "the file holds no tensors")

    def keys(self) -> list[str]:
        return list(self.entries)

    def read(self, key: str) -> torch.Tensor:
        """The tensor ``key`` (a fresh tensor of its own memory)."""
        if self._pickled is not None:
            return self._pickled[key].clone()
        e = self._header[key]
        begin, end = e["data_offsets"]
        buf = bytearray(end - begin)
        try:
            self._file.seek(self._start + begin)
            got = self._file.readinto(buf)
        except OSError as err:
            raise NetworkFileError(self.path, key, f"cannot read: {err.strerror or err}") from None
        if got != len(buf):
            raise NetworkFileError(self.path, key, "truncated file: the tensor's data is missing")
        entry = self.entries[key]
        if not buf:
            return torch.empty(entry.shape, dtype=entry.dtype)
        dt = torch.uint8 if entry.dtype == torch.bool else entry.dtype
        t = torch.frombuffer(buf, dtype=dt).reshape(entry.shape)
        return t != 0 if entry.dtype == torch.bool else t

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pickled = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _load_pickle(path: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear error
        if "weights_only" in str(e) or type(e).__name__ == "UnpicklingError":
            raise NetworkFileError(path, None, "refused: this pickle needs arbitrary code to load; convert it to .safetensors") from None
        raise NetworkFileError(path, None, f"corrupt or unreadable checkpoint: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise NetworkFileError(path, None, f"expected a dict of tensors, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------ layouts
def detect_layout(ckpt: Checkpoint) -> str:
    """``sd1``, ``sd2`` or ``sdxl`` from the key layout (never from widths)."""
    keys = ckpt.entries
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if not has(UNET_PREFIX):
        hint = ""
        if has("unet.") or has("down_blocks.") or has("input_blocks."):
            hint = " (it looks like a diffusers or UNet-only file)"
        elif has("lora_") or any(".lora_" in k or ".hada_" in k for k in keys):
            hint = " (it looks like a network file, not a checkpoint)"
        raise NetworkFileError(ckpt.path, None, "unknown checkpoint layout: no 'model.diffusion_model.' keys; "
                               f"expected an A1111 single-file SD1.x, SD2.x or SDXL checkpoint{hint}")
    if has("conditioner.embedders.1.model."):
        return "sdxl"
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    raise NetworkFileError(ckpt.path, None, "unknown checkpoint layout: a UNet but no text encoder A1111 knows "
                           "('cond_stage_model.' or 'conditioner.embedders.'); expected an SD1.x, SD2.x or SDXL checkpoint")


def _guess_class(path: str, params) -> str:
    last = path.rsplit(".", 1)[-1]
    w = params.get("weight")
    if "embedding" in last:
        return "Embedding"
    if w is not None and len(w) == 1 and ("norm" in last or last.startswith("ln_")):
        return "LayerNorm"
    if w is not None and len(w) == 2:
        return "Linear"
    if w is not None and len(w) >= 3:
        return "Conv2d"
    return "Module"


def layout_rows(ckpt: Checkpoint, family: str) -> tuple[dict[str, list[Row]], dict[str, str]]:
    """``({part: rows}, {part: prefix})``: the checkpoint's modules as tree rows."""
    from ..resolve.inventory import a1111_rows

    model, prefixes = LAYOUTS[family]
    classes = {part: {p: c for p, c, *_ in rows} for part, rows in a1111_rows(model).items()}
    parts: dict[str, list[Row]] = {}
    for part, prefix in prefixes.items():
        modules: dict[str, dict[str, tuple[int, ...]]] = {}
        for k, e in ckpt.entries.items():
            if not k.startswith(prefix):
                continue
            path, _, param = k[len(prefix):].rpartition(".")
            modules.setdefault(path, {})[param] = e.shape
        if not modules:
            raise NetworkFileError(ckpt.path, None, f"unknown checkpoint layout: no '{prefix}' keys for the "
                                   f"{FAMILY_TITLES[family]} {'UNet' if part == 'unet' else 'text encoder'}")
        known = classes.get(part, {})
        parts[part] = [(p, known.get(p) or _guess_class(p, params), params, None) for p, params in modules.items()]
    return parts, prefixes


class Layout:
    """A checkpoint's family, its key prefixes and the tree of its targets."""

    def __init__(self, ckpt: Checkpoint):
        self.family = detect_layout(ckpt)
        rows, self.prefixes = layout_rows(ckpt, self.family)
        self.tree = ModelTree.from_rows(rows, A1111, self.family)

    def key(self, part: str, path: str, param: str) -> str:
        return f"{self.prefixes[part]}{path}.{param}" if path else f"{self.prefixes[part]}{param}"


def _holding(target, **tensors):
    """``target`` on a stand-in module holding checkpoint tensors, so the
    runtime's own views (:mod:`runtime.params`) pick the same slice."""
    return dataclasses.replace(target, module=SimpleNamespace(**tensors))


def target_slice(t: torch.Tensor, target) -> torch.Tensor:
    """The part of a parameter a target covers, in the adapters' layout (a view)."""
    return weight_view(_holding(target, **{target.param: t}))


def bias_slice(b: torch.Tensor | None, target) -> torch.Tensor | None:
    """The target's part of its bias ``b`` (a view), or None where the runtime
    leaves the bias alone (transposed parameters, input-column slices)."""
    if b is None or target.bias is None:
        return None
    return bias_view(_holding(target, **{target.bias: b}))


# ------------------------------------------------------------------ writing
def check_output(path: str | os.PathLike) -> str:
    """Refuse an output path that cannot be written, before any work."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in SAFETENSORS_EXTENSIONS:
        raise NetworkFileError(path, None, "the output must be a .safetensors file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise NetworkFileError(path, None, f"the folder {folder} does not exist")
    if os.path.isdir(path):
        raise NetworkFileError(path, None, "is a folder")
    if not os.access(folder, os.W_OK):
        raise NetworkFileError(path, None, f"the folder {folder} is not writable")
    return path


class SafetensorsWriter:
    """Write a safetensors file tensor by tensor, atomically.

    ``entries`` (key -> (dtype, shape)) fixes the header and the order;
    :meth:`write` must then be called once per key in that order. The file
    appears at ``path`` only on :meth:`commit`; :meth:`abort` (or leaving a
    ``with`` block by an exception) removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, entries: dict[str, tuple[torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = check_output(path)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._order = []
        for k, (dtype, shape) in entries.items():
            if dtype not in _ST_DTYPES:
                raise NetworkFileError(self.path, k, f"cannot write {dtype}")
            n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[k] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            self._order.append((k, dtype, tuple(shape), n))
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(self.path) + "-", dir=folder)
        self._f = os.fdopen(fd, "wb")
        self._next = 0
        try:
            self._f.write(struct.pack("<Q", len(raw)))
            self._f.write(raw)
        except BaseException:
            self.abort()
            raise

    def write(self, key: str, t: torch.Tensor) -> None:
        k, dtype, shape, n = self._order[self._next]
        if key != k or t.dtype != dtype or tuple(t.shape) != shape:
            raise RuntimeError(f"writer expected {k} {dtype} {shape}, got {key} {t.dtype} {tuple(t.shape)}")
        self._next += 1
        if n:
            t = t.detach().contiguous().reshape(-1)
            self._f.write(memoryview(t.view(torch.uint8).numpy()))

    def commit(self) -> None:
        if self._next != len(self._order):
            raise RuntimeError(f"writer: {len(self._order) - self._next} tensors were not written")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        if self._tmp is not None and os.path.exists(self._tmp):
            os.remove(self._tmp)
        self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None or self._tmp is not None:
            self.abort()


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A whole (small) state dict, atomically."""
    with SafetensorsWriter(path, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, metadata) as w:
        for k, v in tensors.items():
            w.write(k, v)
        w.commit()
