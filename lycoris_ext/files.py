"""Safe reading of network files.

Only two doors lead in: safetensors (header checked by us before the library
maps a single byte) and weights-only pickles. Everything that comes out is a
plain ``dict[str, Tensor]`` plus a ``dict[str, str]`` of metadata; every
failure is a :class:`NetworkFileError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field

import torch

from .errors import NetworkFileError
from .mapping import anonymous

SAFETENSORS_EXTENSIONS = (".safetensors",)
PICKLE_EXTENSIONS = (".pt", ".ckpt")
NETWORK_EXTENSIONS = SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS

# Bytes per element of every dtype the safetensors format defines.
_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
# The safetensors library refuses larger headers too; we refuse them before
# reading them into memory.
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_METADATA_VALUE = 16 * 1024 * 1024


@dataclass
class RawFile:
    """What a network file holds, before any interpretation."""

    path: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = "safetensors"


def _reject_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key '{k}'")
        out[k] = v
    return out


def read_safetensors_header(path: str) -> tuple[dict, dict[str, str], int]:
    """Parse and validate a safetensors header.

    Returns ``(tensor_entries, metadata, data_start)``. Every declared range
    is checked against the real file size, so a tiny file that declares a
    billion-element tensor is refused before anything is allocated.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                if size == 0:
                    raise NetworkFileError(path, None, "the file is empty")
                raise NetworkFileError(path, None, "truncated file: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise NetworkFileError(
                    path, None,
                    f"truncated or corrupt file: header declares {n} bytes but the file has {size - 8} after the length",
                )
            if n > MAX_HEADER_BYTES:
                raise NetworkFileError(path, None, f"header of {n} bytes is larger than the {MAX_HEADER_BYTES} allowed")
            raw = f.read(n)
    except OSError as e:
        raise NetworkFileError(path, None, f"cannot read file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NetworkFileError(path, None, "header is not UTF-8 text (corrupt or not a safetensors file)") from None
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicates)
    except ValueError as e:
        raise NetworkFileError(path, None, f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise NetworkFileError(path, None, "header is not a JSON object")

    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict):
        raise NetworkFileError(path, "__metadata__", "metadata is not a JSON object")
    metadata: dict[str, str] = {}
    for k, v in metadata_raw.items():
        if not isinstance(v, str):
            raise NetworkFileError(path, f"__metadata__.{k}", "metadata value is not a string")
        if len(v) > MAX_METADATA_VALUE:
            raise NetworkFileError(path, f"__metadata__.{k}", f"metadata value of {len(v)} characters is too large")
        metadata[k] = v

    data_start = 8 + n
    data_len = size - data_start
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict):
            raise NetworkFileError(path, key, "header entry is not an object")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if dtype not in _ITEMSIZE:
            raise NetworkFileError(path, key, f"unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise NetworkFileError(path, key, f"invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
        ):
            raise NetworkFileError(path, key, f"invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise NetworkFileError(
                path, key,
                f"data range [{begin}, {end}) lies outside the file's {data_len} data bytes (truncated or lying header)",
            )
        expected = math.prod(shape) * _ITEMSIZE[dtype]
        if end - begin != expected:
            raise NetworkFileError(
                path, key,
                f"shape {shape} of {dtype} needs {expected} bytes but the header gives {end - begin}",
            )
        spans.append((begin, end, key))
    spans.sort()
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise NetworkFileError(path, k1, f"data range overlaps the one of '{k0}'")
    return header, metadata, data_start


_TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "U16": getattr(torch, "uint16", None), "U32": getattr(torch, "uint32", None), "U64": getattr(torch, "uint64", None),
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
    "F8_E8M0": getattr(torch, "float8_e8m0fnu", None), "BOOL": torch.uint8,
}


def _read_safetensors(path: str) -> RawFile:
    """The file opened with ``safetensors.safe_open`` (its own validation, the
    metadata as a dict of strings), after our header check; the tensors are
    views of one read of the validated data section.

    ``safe_open(...).get_tensor`` is not used: with torch tensors it leaves
    about 56 bytes behind per call (safetensors 0.8, measured), which a
    WebUI loading networks all day would accumulate.
    """
    header, metadata, data_start = read_safetensors_header(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            keys = set(f.keys())
            metadata = dict(f.metadata() or {})
    except (SafetensorError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise NetworkFileError(path, None, f"safetensors cannot open the file: {e}") from None
    if keys != set(header):
        raise NetworkFileError(path, None, "safetensors reads other tensors than the header lists")
    try:
        with open(path, "rb") as f:
            # read straight into the buffer the tensors view (bytearray(f.read())
            # held the data twice while it was copied), a mapping of its own
            # where the system gives one (the host's heap is left to the host)
            size = max(0, os.fstat(f.fileno()).st_size - data_start)
            data = anonymous(size) or bytearray(size)
            f.seek(data_start)
            size = f.readinto(data) or 0
    except OSError as e:
        raise NetworkFileError(path, None, f"cannot read file: {e.strerror or e}") from None
    tensors: dict[str, torch.Tensor] = {}
    for key, entry in header.items():
        dtype = _TORCH_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise NetworkFileError(path, key, f"dtype {entry['dtype']} is not supported by this torch")
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = math.prod(shape)
        if end > size:
            raise NetworkFileError(path, key, "truncated file: the tensor's data is missing")
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(data, dtype=dtype, count=count, offset=begin).reshape(shape)
        if entry["dtype"] == "BOOL":
            t = t != 0
        tensors[key] = t
    return RawFile(path, tensors, metadata, "safetensors")


def _read_pickle(path: str) -> RawFile:
    if os.path.getsize(path) == 0:
        raise NetworkFileError(path, None, "the file is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear error
        import pickle

        if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
            raise NetworkFileError(
                path, None,
                "refused: this pickle needs arbitrary code to load (only plain tensors are accepted); "
                "convert it to .safetensors",
            ) from None
        raise NetworkFileError(path, None, f"corrupt or unreadable pickle: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise NetworkFileError(path, None, f"expected a dict of tensors, found {type(obj).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise NetworkFileError(path, repr(k), "key is not a string")
        if isinstance(v, torch.Tensor):
            tensors[k] = v
        elif isinstance(v, (str, int, float, bool)):
            metadata[k] = str(v)
        else:
            raise NetworkFileError(path, k, f"value is a {type(v).__name__}, not a tensor")
    return RawFile(path, tensors, metadata, "pickle")


def read_network_file(path: str | os.PathLike) -> RawFile:
    """Read every tensor and the metadata of a network file.

    ``.safetensors`` is read through our header check and ``safe_open``;
    ``.pt``/``.ckpt`` only with ``torch.load(weights_only=True)``. Anything
    else is refused.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise NetworkFileError(path, None, "no such file")
    if ext in SAFETENSORS_EXTENSIONS:
        raw = _read_safetensors(path)
    elif ext in PICKLE_EXTENSIONS:
        raw = _read_pickle(path)
    else:
        raise NetworkFileError(
            path, None, f"unsupported file type '{ext}' (use .safetensors; .pt/.ckpt are read weights-only)"
        )
    if not raw.tensors:
        raise NetworkFileError(path, None, "the file holds no tensors")
    return raw


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Only the metadata of a file (cheap: the tensors are not read)."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() in SAFETENSORS_EXTENSIONS:
        return read_safetensors_header(path)[1]
    return {}


def _sha256_stream(f, start: int = 0, blocksize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    f.seek(start)
    for chunk in iter(lambda: f.read(blocksize), b""):
        h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the whole file, hex (the WebUI's 'lora/' hash)."""
    with open(path, "rb") as f:
        return _sha256_stream(f)


def addnet_hash(path: str | os.PathLike) -> str:
    """sha256 of a safetensors file's data section (the additional-networks hash)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise NetworkFileError(path, None, "truncated file: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        return _sha256_stream(f, 8 + n)
