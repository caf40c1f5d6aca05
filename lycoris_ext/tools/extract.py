"""``extract``: a LoRA/LoCon from the difference of two checkpoints (text
encoders and UNet), by a per-layer SVD, with the same report as ``convert``.

Both checkpoints are read tensor by tensor; layers whose weights are equal
(or differ by at most ``min_diff``) are left out.
"""

from __future__ import annotations

import os
import time

import torch

from ..errors import NetworkFileError
from .checkpoint import Checkpoint, Layout, check_output, parse_dtype, target_slice, write_safetensors
from .convert import Collector, check_rank, kohya_metadata
from .lowrank import conv_kernel, factor_dense
from .progress import make

META_KEY = "lycoris_ext.extract"


@torch.no_grad()
def extract(base, tuned, output, rank: int | None = None, energy: float | None = None, conv_rank: int | None = None,
            dtype: str = "fp16", min_diff: float = 0.0, progress=False) -> dict:
    t0 = time.perf_counter()
    output = check_output(output)
    check_rank(output, rank, energy, conv_rank)
    dt = parse_dtype(dtype or "fp16", output)
    if not (min_diff >= 0):
        raise NetworkFileError(output, None, f"--min-diff must be 0 or more, not {min_diff!r}")
    with Checkpoint(base) as a, Checkpoint(tuned) as b:
        la, lb = Layout(a), Layout(b)
        if la.family != lb.family:
            raise NetworkFileError(b.path, None, f"is {lb.family.upper()} but {a.path} is {la.family.upper()}: "
                                   "extract needs two checkpoints of the same base model")
        tree = la.tree
        groups: dict[str, list] = {}
        for t in tree.targets:
            if t.kind in ("linear", "conv"):
                groups.setdefault(la.key(t.part, t.path, t.param), []).append(t)
        col = Collector(tree, dt)
        skipped = 0
        bar = make(progress, len(groups), "extract")
        try:
            for key, ts in groups.items():
                if key not in b.entries:
                    raise NetworkFileError(b.path, key, f"missing: {a.path} has it")
                if a.entries[key].shape != b.entries[key].shape:
                    raise NetworkFileError(b.path, key, f"has shape {b.entries[key].shape} but {a.path} has {a.entries[key].shape}")
                wa, wb = a.read(key), b.read(key)
                for t in ts:
                    dw = target_slice(wb, t).float() - target_slice(wa, t).float()
                    if dw.numel() == 0 or float(dw.abs().max()) <= min_diff:
                        skipped += 1
                        continue
                    if not bool(torch.isfinite(dw).all()):
                        raise NetworkFileError(b.path, key, "the difference has NaN or Inf values")
                    shape = tuple(dw.shape)
                    r = conv_rank if (conv_rank is not None and conv_kernel(shape)) else rank
                    col.add(t, factor_dense(dw, shape, r, energy, dt), shape)
                del wa, wb
                bar.update(1, key)
        finally:
            bar.close()
    if not col.tensors:
        raise NetworkFileError(b.path, None, f"no layer differs from {a.path}{f' by more than {min_diff}' if min_diff else ''}; nothing to extract")
    summary = col.summary()
    record = {"base": os.path.basename(a.path), "tuned": os.path.basename(b.path), "rank": rank, "energy": energy,
              "conv_rank": conv_rank, "dtype": dtype, "relative_error": summary["relative_error"]}
    md = kohya_metadata(la.family, col.ranks, col.conv,
                        {META_KEY: record, "ss_output_name": os.path.splitext(os.path.basename(output))[0]})
    write_safetensors(output, col.tensors, md)
    return {"output": output, "family": la.family, "base": a.path, "tuned": b.path, **summary,
            "layers_unchanged": skipped, "rank": rank, "energy": energy, "conv_rank": conv_rank, "dtype": dtype,
            "seconds": round(time.perf_counter() - t0, 3), "layers": col.layers}
