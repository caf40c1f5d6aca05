"""Per-layer SVD of an exact change into kohya LoRA/LoCon factors, with the
error of what is written measured, not estimated.

A change given as low-rank factors (LoRA, LoCon, small LoHa, any sum of
them) is factored through QR of its factors (cost (m + n) R^2, in float64);
any other change by the SVD of the dense matrix (float32). The factors are
split as ``up = U sqrt(S)``, ``down = sqrt(S) V^T`` with ``alpha = rank``
(scale 1) and cast to the output dtype; the reported error is that of the
cast factors against the exact change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Factored:
    up: torch.Tensor          # (out, r) or (out, r, 1, 1)
    down: torch.Tensor        # (r, in) or (r, in, kh, kw)
    rank: int
    full_rank: int
    energy: float             # fraction of the change's squared norm kept by the rank
    error: float              # ||change - up @ down||_F, the written (cast) factors
    norm: float               # ||change||_F


def _numerical_rank(s: torch.Tensor, m: int, n: int) -> int:
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    tol = float(s[0]) * max(m, n) * torch.finfo(torch.float32).eps
    return int((s > tol).sum())


def choose_rank(s: torch.Tensor, full: int, rank: int | None, energy: float | None) -> int:
    """The rank kept: ``rank`` capped at the full rank, or the least rank whose
    singular values hold ``energy`` of the squared norm."""
    if full == 0:
        return 0
    if energy is not None:
        s2 = s[:full].double() ** 2
        cum = torch.cumsum(s2, 0) / s2.sum()
        r = int((cum < energy - 1e-12).sum()) + 1
        return min(r, full)
    return max(1, min(int(rank), full))


def _shape_factors(left, s, right, r, shape, dtype):
    root = s[:r].sqrt()
    up = (left[:, :r] * root).to(dtype)
    down = (root[:, None] * right[:r]).to(dtype)
    out, inp, *k = shape
    up = up.reshape(out, r, *([1] * len(k))).contiguous()
    down = down.reshape(r, inp, *k).contiguous()
    return up, down


def _gram_error(U: torch.Tensor, D: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> float:
    """``||U D - up down||_F`` without forming either product (float64)."""
    X = torch.cat([U.double(), -up.reshape(up.shape[0], -1).double()], 1)
    Y = torch.cat([D.double(), down.reshape(down.shape[0], -1).double()], 0)
    return math.sqrt(max(0.0, float(((X.T @ X) * (Y @ Y.T)).sum())))


def factor_lowrank(U: torch.Tensor, D: torch.Tensor, shape, rank: int | None, energy: float | None,
                   dtype: torch.dtype) -> Factored:
    """The change ``U @ D`` (``U`` (m, R), ``D`` (R, n)) at ``rank``/``energy``."""
    m, n = U.shape[0], D.shape[1]
    Qu, Ru = torch.linalg.qr(U.double())
    Qd, Rd = torch.linalg.qr(D.double().T)
    Uc, s, Vch = torch.linalg.svd(Ru @ Rd.T)
    full = _numerical_rank(s, m, n)
    norm = float(s.norm())
    r = choose_rank(s, full, rank, energy)
    if r == 0:
        return Factored(None, None, 0, 0, 1.0, 0.0, norm)
    left = Qu @ Uc
    right = Vch @ Qd.T
    up, down = _shape_factors(left, s, right, r, shape, dtype)
    kept = float((s[:r] ** 2).sum() / (s ** 2).sum())
    return Factored(up, down, r, full, kept, _gram_error(U, D, up, down), norm)


def factor_dense(dw: torch.Tensor, shape, rank: int | None, energy: float | None, dtype: torch.dtype) -> Factored:
    """A dense float32 change of ``shape`` at ``rank``/``energy``."""
    m = shape[0]
    mat = dw.reshape(m, -1).float()
    n = mat.shape[1]
    norm = float(mat.norm())
    if norm == 0.0:
        return Factored(None, None, 0, 0, 1.0, 0.0, 0.0)
    left, s, right = torch.linalg.svd(mat, full_matrices=False)
    full = _numerical_rank(s, m, n)
    r = choose_rank(s, full, rank, energy)
    up, down = _shape_factors(left, s, right, r, shape, dtype)
    kept = float((s[:r].double() ** 2).sum() / (s.double() ** 2).sum())
    err = float((mat - up.reshape(m, r).float() @ down.reshape(r, n).float()).norm())
    return Factored(up, down, r, full, kept, err, norm)


def conv_kernel(shape) -> bool:
    """Whether a weight is a convolution with a kernel larger than 1x1 (kohya's conv_dim applies)."""
    return len(shape) > 2 and math.prod(shape[2:]) > 1
