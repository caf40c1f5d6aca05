"""Going back hands the kept original to the parameter instead of copying it
(same Parameter object, bit-identical, one full-size copy saved), but only
where that is exactly a copy: whole parameters whose storage nothing else
shares. Slices of packed weights, storages a host still holds (a cached state
dict) and kept originals of another dtype or device are copied back."""

from __future__ import annotations

import torch

from lycoris_ext.runtime import Runtime, Use
from support.models import same_as, small_model, snapshot, write_full_with_bias, write_sample


def _params(parts):
    return {f"{p}.{n}": t for p, m in parts.items() for n, t in m.named_parameters()}


def _touched(rt, net):
    res = rt.resolution(net)
    return {f"{m.target.part}.{m.target.path}.{m.target.param}" for m in res.matches}


def test_whole_parameters_get_their_original_back_without_a_copy(tmp_path):
    parts, tree = small_model("sd15", shrink=16)
    net = write_full_with_bias(tmp_path / "full.safetensors", tree, seed=3)
    snap = snapshot(parts)
    params = _params(parts)
    objects = {k: id(p) for k, p in params.items()}
    rt = Runtime(tree, trim_delay=None)
    rt.set([Use(net, 1.0, 1.0)])
    merged_ptrs = {k: p.data_ptr() for k, p in params.items()}
    touched = _touched(rt, net)
    kept = {k: rt._orig_w[tid].data_ptr() for tid in rt._orig_w for k in [_label(rt, tid)]}
    assert touched and same_as(parts, snap) != []
    rt.restore()
    assert same_as(parts, snap) == []  # bit for bit
    assert {k: id(p) for k, p in _params(parts).items()} == objects  # the same Parameter objects
    for k, p in params.items():
        if k in touched:
            assert p.data_ptr() == kept[k], f"{k}: the kept original should now be the weight"
        elif not k.endswith(".bias"):
            assert p.data_ptr() == merged_ptrs[k], f"{k}: untouched, never replaced"
    assert rt.kept_bytes == 0


def _label(rt, tid):
    t = rt.tree.by_id[tid]
    return f"{t.part}.{t.path}.{t.param}"


def test_a_storage_someone_else_holds_is_copied_back_in_place(tmp_path):
    parts, tree = small_model("sd15", shrink=16)
    net = write_sample(tmp_path / "lora.safetensors", tree, "lora", rank=4, seed=1)
    held = {p: m.state_dict() for p, m in parts.items()}  # a host's cached state dict shares the storages
    originals = {p: {k: v.clone() for k, v in sd.items()} for p, sd in held.items()}
    ptrs = {k: p.data_ptr() for k, p in _params(parts).items()}
    rt = Runtime(tree, trim_delay=None)
    rt.set([Use(net, 1.0, 1.0)])
    rt.restore()
    assert {k: p.data_ptr() for k, p in _params(parts).items()} == ptrs  # written in place, not swapped
    for p, sd in held.items():  # so the holder sees the originals again, not the merged weights
        for k, v in sd.items():
            assert torch.equal(v, originals[p][k]), f"{p}.{k}"


def test_slices_of_packed_weights_are_copied_back(tmp_path):
    parts, tree = small_model("sdxl", shrink=16)
    net = write_sample(tmp_path / "lora.safetensors", tree, "lora", rank=4, seed=2)
    snap = snapshot(parts)
    rt = Runtime(tree, trim_delay=None)
    rt.set([Use(net, 1.0, 1.0)])
    res = rt.resolution(net)
    sliced = {f"{m.target.part}.{m.target.path}.{m.target.param}" for m in res.matches if m.target.rows is not None}
    assert sliced, "the tiny SDXL has packed in_proj targets"
    ptrs = {k: p.data_ptr() for k, p in _params(parts).items() if k in sliced}
    rt.restore()
    assert same_as(parts, snap) == []
    assert {k: p.data_ptr() for k, p in _params(parts).items() if k in sliced} == ptrs


def test_originals_kept_in_another_dtype_or_inference_mode(tmp_path):
    # Forge loads its weights as inference tensors and the runtime writes inside inference mode
    with torch.inference_mode():
        parts, tree = small_model("sd15", shrink=16)
    net = write_sample(tmp_path / "lora.safetensors", tree, "lora", rank=4, seed=4)
    snap = snapshot(parts)
    rt = Runtime(tree, trim_delay=None)
    with torch.inference_mode():
        rt.set([Use(net, 1.0, 1.0)])
        rt.restore()
    assert same_as(parts, snap) == []
    assert all(p.is_inference() for p in _params(parts).values())
    # a kept original laid out differently from the live weight is copied, never swapped in
    parts2, tree2 = small_model("sd15", shrink=16)
    snap2 = snapshot(parts2)
    rt2 = Runtime(tree2, trim_delay=None)
    rt2.set([Use(net, 1.0, 1.0)])
    ptrs = {k: p.data_ptr() for k, p in _params(parts2).items()}
    for tid, orig in list(rt2._orig_w.items()):
        if orig.dim() == 2:
            rt2._orig_w[tid] = orig.t().contiguous().t()  # same values, column-major
    rt2.restore()
    assert same_as(parts2, snap2) == []
    assert {k: p.data_ptr() for k, p in _params(parts2).items() if _params(parts2)[k].dim() == 2} == \
        {k: v for k, v in ptrs.items() if _params(parts2)[k].dim() == 2}


def test_going_back_and_forth_stays_exact(tmp_path):
    parts, tree = small_model("sd15", shrink=16)
    a = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=4, seed=5)
    b = write_sample(tmp_path / "b.safetensors", tree, "loha", rank=4, seed=6)
    snap = snapshot(parts)
    rt = Runtime(tree, trim_delay=None)
    rt.set([Use(a, 1.0, 1.0), Use(b, 0.5, 0.5)])
    first = snapshot(parts)
    for _ in range(3):
        rt.restore()
        assert same_as(parts, snap) == []
        rt.set([Use(a, 1.0, 1.0), Use(b, 0.5, 0.5)])
        assert same_as(parts, first) == []  # the same set gives the same bits after swaps
    rt.restore()
    assert same_as(parts, snap) == []


def test_ordinary_weights_written_under_inference_mode_are_handed_back(tmp_path):
    # reForge: its weights are ordinary tensors, the host runs the extension under inference mode
    parts, tree = small_model("sd15", shrink=16)
    net = write_sample(tmp_path / "lora.safetensors", tree, "lora", rank=4, seed=7)
    snap = snapshot(parts)
    params = _params(parts)
    rt = Runtime(tree, trim_delay=None)
    with torch.inference_mode():
        rt.set([Use(net, 1.0, 1.0)])
        kept = {_label(rt, tid): t for tid, t in rt._orig_w.items()}
        assert not any(t.is_inference() for t in kept.values())  # kept as the same kind as the weights
        ptrs = {k: t.data_ptr() for k, t in kept.items()}
        del kept
        rt.restore()
    assert same_as(parts, snap) == []
    assert all(params[k].data_ptr() == ptr for k, ptr in ptrs.items())
    assert not any(p.is_inference() for p in params.values())
    # and they stay usable outside inference mode (training tools, hosts without it)
    rt.set([Use(net, 1.0, 1.0)])
    rt.restore()
    assert same_as(parts, snap) == []
