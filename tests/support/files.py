"""Writers for test network files: well-formed ones and deliberately broken ones."""

from __future__ import annotations

import json
import struct

import torch
from safetensors.torch import save_file


def write_raw_safetensors(path, header, data: bytes = b"") -> str:
    """A safetensors file with exactly this header (dict or raw bytes) and data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(data)
    return str(path)


def lora_tensors(key="lora_unet_x", out=8, inp=16, rank=4, alpha=2.0, seed=0, conv=None):
    """One LoRA module's tensors (Linear, or Conv2d with kernel ``conv``)."""
    g = torch.Generator().manual_seed(seed)
    if conv:
        up = torch.randn(out, rank, 1, 1, generator=g)
        down = torch.randn(rank, inp, conv, conv, generator=g)
    else:
        up = torch.randn(out, rank, generator=g)
        down = torch.randn(rank, inp, generator=g)
    return {
        f"{key}.lora_up.weight": up,
        f"{key}.lora_down.weight": down,
        f"{key}.alpha": torch.tensor(alpha),
    }


def write_network(path, tensors: dict, metadata: dict | None = None) -> str:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return str(path)
