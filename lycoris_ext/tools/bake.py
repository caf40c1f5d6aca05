"""``bake``: a checkpoint with networks merged in, exactly as merge mode writes them.

Tensor by tensor: each parameter is read, changed (when a network touches
it) and written before the next is read, so the peak memory is about the
largest tensor plus the networks. The change of each layer is computed by the
runtime's own code: its wanted set (multipliers, block weights, ``dyn``) and
:func:`runtime.merge.combine` from the original in the output dtype, as
``Runtime._merge`` does on a model loaded in that dtype, so the bits are the
ones a generation would use.
"""

from __future__ import annotations

import json
import os
import time

import torch

from ..errors import NetworkFileError
from ..runtime import threads
from ..runtime.merge import FactorCache, combine
from .checkpoint import Checkpoint, Layout, SafetensorsWriter, bias_slice, check_output, parse_dtype, target_slice
from .progress import make
from .specs import check_fit, contributions, load_specs

META_KEY = "lycoris_ext.bake"


def _cast(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return t.to(dtype) if (dtype is not None and t.is_floating_point() and t.dtype != dtype) else t


@torch.no_grad()
def merge_target(w: torch.Tensor, b: torch.Tensor | None, target, contribs, factors: FactorCache) -> None:
    """Write the networks' change of ``target`` into the parameter ``w`` (and
    its bias ``b``) in place, with the runtime's steps (``Runtime._merge``).

    Like the runtime's merges on a CPU (``threads.each``), each operation
    runs in this thread alone: a matrix product's bits may depend on how
    many threads share it (seen on an AMD EPYC with 2 threads: a conv
    layer's product differed in its last bits)."""
    with threads.serial(w.device):
        _merge_target(w, b, target, contribs, factors)


def _merge_target(w, b, target, contribs, factors) -> None:
    view = target_slice(w, target)
    bview = bias_slice(b, target)
    orig_w = view.detach().clone()
    bias_in = None if bview is None else bview.detach().clone()
    direct = view.dtype == torch.float32 and view.is_contiguous() and orig_w.data_ptr() != view.data_ptr()
    new_w, new_b = combine(orig_w, bias_in, contribs, factors, out=view if direct else None)
    if new_w is not None:
        view.copy_(new_w)
    if new_b is not None:
        bview.copy_(new_b)


def _merge_group(ck, layout, wkey, group, dt, loaded, pending) -> int:
    """Merge every target of the parameter ``wkey`` (one, or q/k/v slices);
    put the new weight and bias into ``pending``. Returns the layers merged."""
    w = _cast(ck.read(wkey), dt)  # a fresh tensor: changed in place
    bkey = next((layout.key(t.part, t.path, t.bias) for t, _ in group if t.bias is not None), None)
    b = _cast(ck.read(bkey), dt) if bkey in ck.entries else None
    for t, contribs in group:
        # Each adapter serves one layer: its float32 factors and copies live
        # only while that layer is merged (memory: one layer's worth).
        factors = FactorCache()
        try:
            merge_target(w, b, t, contribs, factors)
        except NetworkFileError:
            raise
        except Exception as e:
            c = getattr(e, "contribution", None) or contribs[0]
            path = next((x.spec.path for x in loaded if x.use.label == c.network), None)
            raise NetworkFileError(path, c.key, f"cannot merge into {t.label}: {type(e).__name__}: {e}") from e
        finally:
            for c in contribs:
                c.adapter.drop_device_cache()
    pending[wkey] = w
    if b is not None:
        pending[bkey] = b
    return len(group)


def bake(checkpoint, networks, output, dtype: str | None = None, progress=False) -> dict:
    """Merge ``networks`` (spec strings, dicts or NetSpecs) into ``checkpoint``;
    write ``output`` (safetensors, atomically). Returns the report."""
    t0 = time.perf_counter()
    output = check_output(output)
    dt = parse_dtype(dtype, output)
    with Checkpoint(checkpoint) as ck:
        layout = Layout(ck)
        loaded = load_specs(networks)
        fits, resolutions = check_fit(loaded, layout.tree, ck.path)
        want = contributions(layout.tree, [x.use for x in loaded])
        targets = {m.target.id: m.target for r in resolutions for m in r.matches}
        groups: dict[str, list] = {}
        bias_of: dict[str, str] = {}
        for tid, contribs in want.items():
            t = targets[tid]
            wkey = layout.key(t.part, t.path, t.param)
            groups.setdefault(wkey, []).append((t, contribs))
            if t.bias is not None:
                bias_of[layout.key(t.part, t.path, t.bias)] = wkey
        order = list(ck.keys())
        entries = {k: ((dt if (dt is not None and e.dtype.is_floating_point) else e.dtype), e.shape)
                   for k, e in ((k, ck.entries[k]) for k in order)}
        metadata = dict(ck.metadata)
        record = {"networks": [x.record() for x in loaded], "dtype": dtype or "as input",
                  "source": os.path.basename(ck.path), "family": layout.family}
        metadata[META_KEY] = json.dumps(record)
        bar = make(progress, len(order), "bake")
        pending: dict[str, torch.Tensor] = {}
        changed = 0
        try:
            with SafetensorsWriter(output, entries, metadata) as out:
                for k in order:
                    if k not in pending:
                        wkey = k if k in groups else bias_of.get(k)
                        if wkey is None:
                            pending[k] = _cast(ck.read(k), dt)
                        else:
                            changed += _merge_group(ck, layout, wkey, groups[wkey], dt, loaded, pending)
                    out.write(k, pending.pop(k))
                    bar.update(1, k)
                out.commit()
        finally:
            bar.close()
    return {
        "output": output, "checkpoint": os.fspath(checkpoint), "family": layout.family, "dtype": dtype or "as input",
        "networks": [{**x.record(), **f} for x, f in zip(loaded, fits)],
        "layers_changed": changed, "tensors": len(order), "seconds": round(time.perf_counter() - t0, 3),
    }
