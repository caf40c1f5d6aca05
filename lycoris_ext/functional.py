"""Pure math of every algorithm: functions of float32 tensors, no I/O, no model.

Shapes follow torch's layer layouts: a Linear weight is ``(out, in)``, a
Conv2d weight ``(out, in, kh, kw)``. "Rows" are output channels, "columns"
input channels.
"""

from __future__ import annotations

import torch

# LyCORIS adds this to the norm before dividing (its weight_decompose).
DORA_EPS = torch.finfo(torch.float32).eps
# LyCORIS's Cayley constraint adds this to the norm of Q.
OFT_NORM_EPS = 1e-8


def flat(t: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` -> ``(n, prod(...))``."""
    return t.reshape(t.shape[0], -1)


def tucker_down(mid: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """Fold a Tucker core into the down factor.

    ``mid`` is ``(r_up, r_down, *k)`` and ``down`` ``(r_down, in)``; the result
    ``(r_up, in * prod(k))`` makes ``up @ result`` the full Tucker rebuild, so
    a Tucker LoCon is still one low-rank product.
    """
    m = torch.einsum("i j ..., j c -> i c ...", mid, flat(down))
    return flat(m)


def tucker3(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """``sum_ij core[i,j,...] wa[i,p] wb[j,q]`` -> ``(p, q, ...)``.

    The rank-first Tucker layout LoHa and LoKr store (``wa`` is ``(r, out)``,
    ``wb`` is ``(r, in)``).
    """
    return torch.einsum("i j ..., i p, j q -> p q ...", core, wa, wb)


def hadamard(w1a, w1b, w2a, w2b) -> torch.Tensor:
    """LoHa: ``(w1a @ w1b) * (w2a @ w2b)`` on flattened factors."""
    return (flat(w1a) @ flat(w1b)).mul_(flat(w2a) @ flat(w2b))


def khatri_rao(w1a, w1b, w2a, w2b) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, D)`` with ``U @ D == hadamard(w1a, w1b, w2a, w2b)``.

    ``U[:, j*r2 + k] = w1a[:, j] * w2a[:, k]`` and ``D[j*r2 + k] = w1b[j] * w2b[k]``:
    rank ``r1 * r2``, so a LoHa of small rank joins the one matrix product of
    the low-rank networks instead of building two full-size products.
    """
    a1, b1, a2, b2 = flat(w1a), flat(w1b), flat(w2a), flat(w2b)
    up = (a1[:, :, None] * a2[:, None, :]).reshape(a1.shape[0], -1)
    down = (b1[:, None, :] * b2[None, :, :]).reshape(-1, b1.shape[1])
    return up, down


def kron(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """LoKr: ``kron(w1, w2)`` with ``w2`` flattened to ``(c, d * prod(k))``.

    Reshaping the ``(a*c, b*d*prod(k))`` result to ``(out, in, *k)`` is exact
    because the kernel axes are innermost in both layouts.
    """
    return torch.kron(w1, flat(w2))


#: Rows of a change computed at a time by :func:`add_by_rows` on a CPU: about
#: 1 MiB of float32, so the temporaries stay in cache instead of a full-size
#: copy (measured: 2x faster than whole-layer temporaries on SDXL's layers).
ROW_CHUNK_BYTES = 1 << 20
#: The same on a GPU, where each chunk costs kernel launches and a full-size
#: temporary is cheap: large enough for most layers in one piece, while
#: still bounding the transient memory.
ROW_CHUNK_BYTES_GPU = 64 << 20


def add_by_rows(target: torch.Tensor, unit_rows: int, block, multiplier: float = 1.0) -> None:
    """``target += multiplier * D`` where ``block(i, j)`` gives rows
    ``i * unit_rows`` to ``j * unit_rows`` of ``D`` as a new float32 tensor.

    ``target`` is 2-D. Each chunk is scaled and added in place, so the change
    is never held whole.
    """
    units = target.shape[0] // unit_rows
    budget = ROW_CHUNK_BYTES if target.device.type == "cpu" else ROW_CHUNK_BYTES_GPU
    per = max(1, budget // max(1, 4 * target.shape[1] * unit_rows))
    for i in range(0, units, per):
        j = min(units, i + per)
        t = block(i, j)
        if multiplier != 1:
            t.mul_(multiplier)
        target[i * unit_rows:j * unit_rows].add_(t.reshape(-1, target.shape[1]))


def cayley(blocks: torch.Tensor, constraint: float = 0.0) -> torch.Tensor:
    """Orthogonal blocks from free parameters: ``R = (I + Q)(I - Q)^-1``.

    ``Q`` is the skew part of ``blocks`` (any leading batch axes). With a
    positive ``constraint`` the Frobenius norm of the whole ``Q`` (all blocks
    together) is clipped to it, as LyCORIS does.
    """
    q = blocks - blocks.transpose(-1, -2)
    if constraint > 0:
        norm = torch.linalg.norm(q) + OFT_NORM_EPS
        if norm > constraint:
            q = q * (constraint / norm)
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    return (eye + q) @ torch.linalg.inv(eye - q)


def rotate_rows_blockwise(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Diag-OFT: each block of ``b`` output rows becomes ``R^T @ rows``.

    ``r`` is ``(n, b, b)`` with ``n * b == out``; works on any trailing shape
    (a bias is a weight with no trailing axes).
    """
    n, b, _ = r.shape
    w = weight.reshape(n, b, *weight.shape[1:])
    return torch.einsum("k n m, k n ... -> k m ...", r, w).reshape(weight.shape)


def butterfly(weight: torch.Tensor, r: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
    """BOFT: ``m`` butterfly stages of block rotations applied to the rows.

    ``r`` is ``(m, n, b, b)``. Stage ``i`` mixes rows ``2**i * b/2`` apart. A
    multiplier interpolates every stage towards the identity, as the
    reference does.
    """
    stages, _, b, _ = r.shape
    half = b // 2
    eye = torch.eye(b, dtype=r.dtype, device=r.device)
    x = weight
    for i in range(stages):
        blk = r[i]
        if multiplier != 1:
            blk = blk * multiplier + (1 - multiplier) * eye
        k = (2**i) * half
        x = x.unflatten(0, (-1, 2, k)).transpose(1, 2).flatten(0, 2).unflatten(0, (-1, b))
        x = torch.einsum("b i j, b j ... -> b i ...", blk, x)
        x = x.flatten(0, 1).unflatten(0, (-1, k, 2)).transpose(1, 2).flatten(0, 2)
    return x


def column_norm(weight: torch.Tensor) -> torch.Tensor:
    """Norm of each input column over (out, *k): shape ``(1, in, 1...)``."""
    w = weight.transpose(0, 1)
    n = w.reshape(w.shape[0], -1).norm(dim=1)
    return n.reshape(1, -1, *[1] * (weight.dim() - 2))


def row_norm(weight: torch.Tensor) -> torch.Tensor:
    """Norm of each output row: shape ``(out, 1...)``."""
    n = weight.reshape(weight.shape[0], -1).norm(dim=1)
    return n.reshape(-1, *[1] * (weight.dim() - 1))


def dora(merged: torch.Tensor, magnitude: torch.Tensor, on_out: bool) -> torch.Tensor:
    """DoRA: rescale the merged weight so each row (or column) has ``magnitude``."""
    norm = row_norm(merged) if on_out else column_norm(merged)
    return merged * (magnitude / (norm + DORA_EPS))


def channel_scale(weight: torch.Tensor, scale: torch.Tensor, on_input: bool) -> torch.Tensor:
    """``weight`` with its input columns (or output rows) multiplied by ``scale``."""
    if on_input:
        return weight * scale.reshape(1, -1, *[1] * (weight.dim() - 2))
    return weight * scale.reshape(-1, *[1] * (weight.dim() - 1))


def glora(weight, a_in, a_out, b_up, b_down) -> torch.Tensor:
    """GLoRA: ``W A + B`` with ``A = a_in @ a_out`` acting on the input axis.

    ``a_in`` is ``(in, r)``, ``a_out`` ``(r, in)``, ``b_up`` ``(out, r)``,
    ``b_down`` ``(r, in * prod(k))``. ``W A`` goes through the rank, never
    through an ``(in, in)`` matrix.
    """
    wa = torch.einsum("o i ..., i r -> o r ...", weight, flat(a_in))
    wa = torch.einsum("o r ..., r i -> o i ...", wa, flat(a_out))
    wb = (flat(b_up) @ flat(b_down)).reshape(weight.shape)
    return wa + wb
