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
