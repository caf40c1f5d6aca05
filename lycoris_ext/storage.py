"""How a host stores a layer's weight, where that is not a plain float tensor.

Forge (and hosts derived from it) may keep weights quantized: GGUF files
give a ``Parameter`` subclass over packed bytes whose ``shape`` is the
logical one; bitsandbytes 4-bit (NF4/FP4) gives packed bytes whose logical
shape lives in ``quant_state.shape``; fp8 checkpoints "scaled" per layer keep
a ``scale_weight`` the layer multiplies in at every call. None of these can
be written in place exactly by adding a change to the stored values, so the
runtime never writes them: a change that does not depend on the weight goes
through a forward hook, any other is reported as not applied.
"""

from __future__ import annotations

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def logical_shape(p: torch.Tensor) -> tuple[int, ...]:
    """The shape the layer computes with (not the packed storage's)."""
    qs = getattr(p, "quant_state", None)
    shape = getattr(qs, "shape", None)
    if shape is not None:
        return tuple(shape)
    return tuple(p.shape)


def packed_storage(module, name: str = "weight") -> str | None:
    """Why ``module.<name>`` cannot be written exactly in place, in words
    (e.g. ``"ParameterGGUF (torch.uint8)"``), or None for a plain float
    tensor (float8 included)."""
    p = getattr(module, name, None)
    if p is None or not isinstance(p, torch.Tensor):
        return None
    if type(p) not in _PLAIN or not p.dtype.is_floating_point:
        kind = getattr(getattr(p, "gguf_cls", None), "__name__", None)
        if kind:  # the packed bytes' dtype changes when Forge "bakes" them: name the format only
            return f"GGUF {kind} ({type(p).__name__})"
        return f"{type(p).__name__} ({str(p.dtype).removeprefix('torch.')})"
    if name == "weight" and getattr(module, "scale_weight", None) is not None:
        return f"{str(p.dtype).removeprefix('torch.')} with a per-layer scale_weight"
    return None
