"""The few places that touch a model's parameters: read a target, write it back.

A target may be a whole weight, rows of a packed ``in_proj_weight``, the
first input channels of an inpainting ``conv_in``, or a parameter stored
transposed (OpenCLIP's ``text_projection``); these helpers give a view of
exactly the tensor the adapters see, so nothing around it is read or written.
"""

from __future__ import annotations

import torch

from ..resolve.tree import Target


def _param(target: Target, name: str) -> torch.Tensor:
    p = getattr(target.module, name, None)
    if p is None:
        raise RuntimeError(f"{target.label}: the module has no parameter '{name}'")
    return p.data if isinstance(p, torch.nn.Parameter) else p


def weight_view(target: Target) -> torch.Tensor:
    """A view of the target's weight in the adapters' layout (writes go through)."""
    w = _param(target, target.param)
    if target.rows is not None:
        w = w[target.rows[0]:target.rows[1]]
    if target.cols is not None:
        w = w[:, target.cols[0]:target.cols[1]]
    if target.transposed:
        w = w.t()
    return w


def bias_view(target: Target) -> torch.Tensor | None:
    if target.bias is None or target.transposed or target.cols is not None:
        return None
    b = getattr(target.module, target.bias, None)
    if b is None:
        return None
    b = b.data if isinstance(b, torch.nn.Parameter) else b
    if target.rows is not None:
        b = b[target.rows[0]:target.rows[1]]
    return b


def nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def sole_owner(t: torch.Tensor) -> bool:
    """Whether nothing but ``t`` itself refers to its storage (no other
    tensor, view or state dict shares it), as far as torch can tell."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return False
    try:
        storage = t.untyped_storage()
        # the tensor's own reference plus the storage object asked here
        return storage.nbytes() == nbytes(t) and count(storage._cdata) == 2
    except Exception:  # a tensor subclass without plain storage
        return False


def swap_original(target: Target, name: str | None, orig: torch.Tensor | None) -> torch.Tensor | None:
    """Give the parameter ``name`` back its kept original by handing it
    ``orig`` as its tensor (no copy), when that is the same as copying: the
    target is the whole parameter, ``orig`` has its exact dtype, device,
    layout and kind (inference tensor or not), and nothing else shares the
    live tensor's storage (a host's cached state dict, views, a flat buffer).
    The parameter object stays; only its ``.data`` changes, as a device move
    would. Returns the tensor the parameter held (now nobody else's), or None
    (and changes nothing) when the caller must copy."""
    if name is None or orig is None or target.rows is not None or target.cols is not None or target.transposed:
        return None
    p = getattr(target.module, name, None)
    if not isinstance(p, torch.nn.Parameter):
        return None
    if (p.dtype != orig.dtype or p.device != orig.device or p.shape != orig.shape or p.stride() != orig.stride()
            or p.storage_offset() != 0 or orig.storage_offset() != 0 or not p.is_contiguous()
            or p.is_inference() != orig.is_inference() or type(p.data) is not torch.Tensor
            or type(orig) is not torch.Tensor):
        return None
    if not sole_owner(p) or not sole_owner(orig):
        return None
    held = p.data
    p.data = orig
    return held
