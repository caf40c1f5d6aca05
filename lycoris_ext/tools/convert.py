"""``convert``: any network, or a weighted sum of networks with block weights,
as one kohya-format LoRA/LoCon file (no Tucker), by a per-layer SVD of the
exact change. With a lower rank this is ``resize``, for every algorithm.

The change of each layer is the runtime's: its wanted set (multipliers, block
weights, ``dyn``) and its merge helpers (:func:`runtime.merge.split` for the
low-rank factors, :func:`runtime.merge.dense_sum` for everything else, each
through ``Adapter.add_into``). Changes that depend on the model's weights
(OFT, BOFT, DoRA, IA3, GLoRA) need the base checkpoint. Norm layers are
written as ``w_norm``/``b_norm`` (exact); bias changes of other layers have no
place in a LoRA file and are dropped, and counted in the error.
"""

from __future__ import annotations

import json
import math
import os
import time

import torch

from ..errors import NetworkFileError
from ..resolve.family import detect_family
from ..runtime.merge import FactorCache, dense_sum, split
from .checkpoint import Checkpoint, Layout, bias_slice, check_output, parse_dtype, target_slice, write_safetensors
from .lowrank import conv_kernel, factor_dense, factor_lowrank
from .progress import make
from .specs import check_fit, contributions, load_specs

META_KEY = "lycoris_ext.convert"
MODELS = {"sd15": "sd1", "sd2": "sd2", "sdxl": "sdxl"}
BASE_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def check_rank(output: str, rank, energy, conv_rank) -> None:
    """Ranks and energy in range, else one error naming the output."""
    if (rank is None) == (energy is None):
        raise NetworkFileError(output, None, "give exactly one of --rank and --energy")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise NetworkFileError(output, None, f"--rank must be a whole number of at least 1, not {rank!r}")
    if conv_rank is not None and (not isinstance(conv_rank, int) or isinstance(conv_rank, bool) or conv_rank < 1):
        raise NetworkFileError(output, None, f"--conv-rank must be a whole number of at least 1, not {conv_rank!r}")
    if energy is not None and not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise NetworkFileError(output, None, f"--energy must be a fraction in (0, 1], not {energy!r}")


def kohya_metadata(family: str, ranks: list[int], conv: list[int], extra: dict) -> dict[str, str]:
    dim = max(ranks, default=0)
    md = {"ss_network_module": "networks.lora", "ss_network_dim": str(dim), "ss_network_alpha": str(dim),
          "ss_base_model_version": BASE_VERSION.get(family, "")}
    if conv:
        md["ss_network_args"] = json.dumps({"conv_dim": str(max(conv)), "conv_alpha": str(max(conv))})
    md.update({k: json.dumps(v) if not isinstance(v, str) else v for k, v in extra.items()})
    return md


class Collector:
    """Factored layers -> kohya tensors, a per-layer report and the totals."""

    def __init__(self, tree, dtype: torch.dtype):
        self.tree = tree
        self.dtype = dtype
        self.tensors: dict[str, torch.Tensor] = {}
        self.layers: list[dict] = []
        self.err2 = 0.0
        self.norm2 = 0.0
        self.ranks: list[int] = []
        self.conv: list[int] = []
        self.dropped_bias = 0

    def key(self, target) -> str:
        base = self.tree.by_id.get((target.part, target.path, target.param, target.rows, None), target)
        return self.tree.key_for(base)

    def add(self, target, f, shape, bias_norm: float = 0.0) -> None:
        key = self.key(target)
        self.err2 += f.error ** 2 + bias_norm ** 2
        self.norm2 += f.norm ** 2 + bias_norm ** 2
        if bias_norm:
            self.dropped_bias += 1
        row = {"key": key, "layer": target.label, "shape": list(shape), "rank": f.rank, "full_rank": f.full_rank,
               "energy": f.energy, "relative_error": _rel(f.error, f.norm)}
        if bias_norm:
            row["bias_dropped"] = True
            row["relative_error_with_bias"] = _rel(math.sqrt(f.error ** 2 + bias_norm ** 2), math.sqrt(f.norm ** 2 + bias_norm ** 2))
        self.layers.append(row)
        if f.rank == 0:
            return
        self.tensors[f"{key}.lora_up.weight"] = f.up
        self.tensors[f"{key}.lora_down.weight"] = f.down
        self.tensors[f"{key}.alpha"] = torch.tensor(float(f.rank), dtype=self.dtype)
        self.ranks.append(f.rank)
        if conv_kernel(shape):
            self.conv.append(f.rank)

    def add_norm(self, target, dw: torch.Tensor, db: torch.Tensor | None) -> None:
        key = self.key(target)
        w = dw.to(self.dtype)
        b = (db if db is not None else torch.zeros_like(dw)).to(self.dtype)
        err2 = float((dw - w.float()).norm() ** 2) + (float((db - b.float()).norm() ** 2) if db is not None else 0.0)
        n2 = float(dw.norm() ** 2) + (float(db.norm() ** 2) if db is not None else 0.0)
        self.err2 += err2
        self.norm2 += n2
        self.layers.append({"key": key, "layer": target.label, "shape": list(dw.shape), "rank": None, "full_rank": None,
                            "energy": 1.0, "relative_error": _rel(math.sqrt(err2), math.sqrt(n2)), "written_as": "norm"})
        if n2 == 0:
            return
        self.tensors[f"{key}.w_norm"] = w
        self.tensors[f"{key}.b_norm"] = b

    def summary(self) -> dict:
        return {"relative_error": _rel(math.sqrt(self.err2), math.sqrt(self.norm2)),
                "layers_written": sum(1 for r in self.layers if r["rank"] != 0),
                "rank_max": max(self.ranks, default=0), "conv_rank_max": max(self.conv, default=0),
                "bias_changes_dropped": self.dropped_bias}


def _rel(err: float, norm: float) -> float:
    return 0.0 if norm == 0 else err / norm


def _tree_for(loaded, base: str | None, model: str | None):
    if base is not None:
        ck = Checkpoint(base)
        return ck, Layout(ck)
    from ..resolve.inventory import model_tree

    if model is None:
        fam, why = detect_family(loaded[0].network)
        model = {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}.get(fam)
        if model is None:
            raise NetworkFileError(loaded[0].spec.path, None,
                                   f"cannot tell its base model ({why}); give --model sd15|sd2|sdxl or --base CHECKPOINT")
    if model not in MODELS:
        raise NetworkFileError(loaded[0].spec.path, None, f"unknown --model '{model}' (sd15, sd2 or sdxl)")
    return None, type("L", (), {"tree": model_tree(model), "family": MODELS[model]})()


@torch.no_grad()
def convert(networks, output, rank: int | None = None, energy: float | None = None, conv_rank: int | None = None,
            dtype: str = "fp16", base: str | None = None, model: str | None = None, progress=False) -> dict:
    """Write ``networks`` (spec strings, dicts or NetSpecs; weights and block
    weights as in a prompt) as one LoRA/LoCon at ``rank`` (or ``energy``).
    Returns the report (``relative_error`` overall and per layer)."""
    t0 = time.perf_counter()
    output = check_output(output)
    check_rank(output, rank, energy, conv_rank)
    dt = parse_dtype(dtype or "fp16", output)
    loaded = load_specs(networks)
    ck, layout = _tree_for(loaded, base, model)
    try:
        tree = layout.tree
        fits, resolutions = check_fit(loaded, tree, base)
        want = contributions(tree, [x.use for x in loaded])
        targets = {m.target.id: m.target for r in resolutions for m in r.matches}
        path_of = {x.use.label: x.spec.path for x in loaded}
        if ck is None:
            for contribs in want.values():
                for c in contribs:
                    if c.adapter.reads_weight:
                        raise NetworkFileError(path_of[c.network], c.key, f"the change of {c.adapter.algorithm}"
                                               f"{' with DoRA' if c.adapter.magnitude is not None else ''} depends on the "
                                               "model's weights: give the base checkpoint (--base)")
        pos = {t.id: i for i, t in enumerate(tree.targets)}
        order = sorted(want, key=lambda tid: pos.get(tid, pos.get((*tid[:4], None), 0)))
        col = Collector(tree, dt)
        bar = make(progress, len(order), "convert")
        try:
            for tid in order:
                t, contribs = targets[tid], want[tid]
                try:
                    # each adapter serves one layer: its float32 copies live only while it is used
                    _one(t, contribs, ck, layout, FactorCache(), col, rank, energy, conv_rank, dt)
                except NetworkFileError:
                    raise
                except Exception as e:
                    c = getattr(e, "contribution", None) or contribs[0]
                    raise NetworkFileError(path_of.get(c.network), c.key, f"cannot compute the change of {t.label}: "
                                           f"{type(e).__name__}: {e}") from e
                finally:
                    for c in contribs:
                        c.adapter.drop_device_cache()
                bar.update(1, t.label)
        finally:
            bar.close()
    finally:
        if ck is not None:
            ck.close()
    if not col.tensors:
        raise NetworkFileError(loaded[0].spec.path, None, "the networks change no layer (all weights 0?); nothing to write")
    summary = col.summary()
    record = {"networks": [x.record() for x in loaded], "rank": rank, "energy": energy, "conv_rank": conv_rank,
              "dtype": dtype, "relative_error": summary["relative_error"]}
    md = kohya_metadata(layout.family, col.ranks, col.conv,
                        {META_KEY: record, "ss_output_name": os.path.splitext(os.path.basename(output))[0]})
    write_safetensors(output, col.tensors, md)
    return {"output": output, "family": layout.family, "networks": [{**x.record(), **f} for x, f in zip(loaded, fits)],
            **summary, "rank": rank, "energy": energy, "conv_rank": conv_rank, "dtype": dtype,
            "seconds": round(time.perf_counter() - t0, 3), "layers": col.layers}


def _one(t, contribs, ck, layout, factors, col: Collector, rank, energy, conv_rank, dt) -> None:
    w32 = b32 = None
    if ck is not None and any(c.adapter.reads_weight for c in contribs):
        wkey = layout.key(t.part, t.path, t.param)
        w32 = target_slice(ck.read(wkey), t).float()
        bkey = layout.key(t.part, t.path, t.bias) if t.bias is not None else None
        b = bias_slice(ck.read(bkey), t) if bkey in ck.entries else None
        b32 = None if b is None else b.float()
    if w32 is None:
        w32 = torch.zeros(t.shape)
        if bias_slice(torch.zeros(0), t) is not None:  # a bias the runtime would change
            b32 = torch.zeros(t.shape[0])
    up, down, dense = split(contribs, factors, w32.device)
    shape = tuple(w32.shape)
    db = None
    if dense:
        dw, db = dense_sum(dense, w32, b32)
        if up is not None:
            dw.view(shape[0], -1).addmm_(up, down)
    if t.kind == "norm" or len(shape) == 1:
        col.add_norm(t, dw if dense else torch.zeros(shape), db)
        return
    r = conv_rank if (conv_rank is not None and conv_kernel(shape)) else rank
    if dense:
        f = factor_dense(dw, shape, r, energy, dt)
    else:
        f = factor_lowrank(up, down, shape, r, energy, dt)
    col.add(t, f, shape, bias_norm=0.0 if db is None else float(db.norm()))
