"""Weights a host keeps quantized are never written: hooks, or a clear "not applied".

Forge may store a layer's weight as GGUF (a ``Parameter`` subclass over
packed bytes whose ``shape`` is the logical one), as bitsandbytes 4-bit
(packed bytes, logical shape in ``quant_state.shape``), or as fp8 with a
per-layer ``scale_weight`` multiplied in at every call. Its quantized linear
layers keep no ``in_features``/``out_features``. The stand-ins below copy
those facts (``backend/operations_gguf.py``, ``operations_bnb.py``,
``operations.py`` of Forge main): a change that does not read the weight
goes through a forward hook and equals the same change merged into a float
copy of the dequantized weight; one that reads it is reported, per network,
as not applied, and those layers compute as before.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lycoris_ext.resolve.tree import A1111, ModelTree
from lycoris_ext.runtime import MERGE, Runtime, Use
from lycoris_ext.storage import logical_shape, packed_storage
from support.models import same_as, small_model, snapshot, write_sample


class _Q8:
    """Per-row int8 with a float scale, stored as uint8 (a GGUF Q8_0-like block)."""

    @staticmethod
    def quantize(w: torch.Tensor):
        scale = w.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
        q = torch.round(w / scale).clamp(-127, 127).to(torch.int16) + 128
        # two bytes of block header per row: the raw tensor's shape is not the weight's
        return torch.cat([torch.zeros(w.shape[0], 2, dtype=torch.uint8), q.to(torch.uint8)], 1), scale

    @staticmethod
    def dequantize(data: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (data[:, 2:].to(torch.float32) - 128) * scale


class FakeGGUF(nn.Parameter):
    """Like Forge's ``ParameterGGUF``: packed bytes, ``shape`` the logical one."""

    def __new__(cls, data, real_shape, scale):
        return super().__new__(cls, data, requires_grad=False)

    def __init__(self, data, real_shape, scale):
        self.gguf_cls = _Q8
        self.real_shape = torch.Size(real_shape)
        self.scale = scale

    @property
    def shape(self):
        return self.real_shape


class GGUFLinear(nn.Module):
    """Like ``ForgeOperationsGGUF.Linear``: no feature counts, dequantizes in forward."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None):
        super().__init__()
        data, scale = _Q8.quantize(w.detach().float())
        self.weight = FakeGGUF(data, tuple(w.shape), scale)
        self.bias = None if b is None else nn.Parameter(b.detach().clone(), requires_grad=False)

    def dequantized(self) -> torch.Tensor:
        return _Q8.dequantize(self.weight.data, self.weight.scale)

    def forward(self, x):
        return F.linear(x, self.dequantized().to(x.dtype), self.bias)


class Params4bitLike(nn.Parameter):
    """Like bitsandbytes' ``Params4bit``: packed uint8 [n/2, 1], logical shape in quant_state."""

    def __new__(cls, w):
        q = torch.zeros((w.numel() + 1) // 2, 1, dtype=torch.uint8)
        return super().__new__(cls, q, requires_grad=False)

    def __init__(self, w):
        self.quant_state = types.SimpleNamespace(shape=torch.Size(w.shape))
        self.kept = w.detach().clone()  # the stand-in "dequantizes" exactly


class NF4Linear(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.weight = Params4bitLike(w)
        self.bias = None if b is None else nn.Parameter(b.detach().clone(), requires_grad=False)

    def dequantized(self):
        return self.weight.kept

    def forward(self, x):
        return F.linear(x, self.dequantized(), self.bias)


class ScaledFp8Linear(nn.Module):
    """Like ``ForgeOperations.Linear`` with ``scale_weight`` (fp8 "scaled" checkpoints)."""

    def __init__(self, w, b):
        super().__init__()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.scale_weight = torch.tensor(0.5)
        self.weight = nn.Parameter((w.detach() / 0.5).to(torch.float8_e4m3fn), requires_grad=False)
        self.bias = None if b is None else nn.Parameter(b.detach().clone(), requires_grad=False)

    def dequantized(self):
        return self.weight.float() * self.scale_weight

    def forward(self, x):
        return F.linear(x, self.dequantized(), self.bias)


KINDS = {"gguf": GGUFLinear, "nf4": NF4Linear, "fp8 scaled": ScaledFp8Linear}


def _swap(parts, cls, pick):
    """Replace the UNet's linear layers chosen by ``pick(path)`` with ``cls``;
    returns {path: (quantized module, plain float copy of its dequantized weight)}."""
    swapped = {}
    unet = parts["unet"]
    for path, mod in list(unet.named_modules()):
        if isinstance(mod, nn.Linear) and pick(path):
            q = cls(mod.weight, mod.bias)
            plain = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
            with torch.no_grad():
                plain.weight.copy_(q.dequantized())
                if mod.bias is not None:
                    plain.bias.copy_(mod.bias)
            parent, _, name = path.rpartition(".")
            setattr(unet.get_submodule(parent), name, q)
            swapped[path] = (q, plain)
    return swapped


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    _, tree = small_model("sd15", shrink=16)
    d = tmp_path_factory.mktemp("packed")
    return {a: write_sample(d / f"{a}.safetensors", tree, a, rank=4, seed=i) for i, a in enumerate(["lora", "lokr", "ia3", "dora"])}


def _raw(swapped):
    return {p: q.weight.data.clone() for p, (q, _) in swapped.items()}


def _changed(parts, snap, swapped, raw):
    """Float tensors changed since ``snap``; the quantized ones must not have changed at all."""
    for p, (q, _) in swapped.items():
        assert torch.equal(q.weight.data, raw[p]), p
    return [c for c in same_as(parts, snap) if not any(c == f"unet.{p}.weight" for p in swapped)]


def _model(kind):
    parts, _ = small_model("sd15", shrink=16)
    swapped = _swap(parts, KINDS[kind], lambda p: p.endswith(("attn1.to_q", "attn2.to_v", "ff.net.2")))
    assert swapped
    return parts, ModelTree(parts, A1111, "sd1"), swapped


def test_storage_facts():
    w = torch.randn(6, 4)
    plain = nn.Linear(4, 6)
    assert packed_storage(plain) is None
    fp8 = nn.Linear(4, 6)
    fp8.weight = nn.Parameter(fp8.weight.detach().to(torch.float8_e4m3fn), requires_grad=False)
    assert packed_storage(fp8) is None  # plain fp8 is written exactly (re-quantized from float32)
    g = GGUFLinear(w, None)
    assert logical_shape(g.weight) == (6, 4) and g.weight.data.shape != (6, 4)
    assert packed_storage(g) == "GGUF _Q8 (FakeGGUF)"
    n = NF4Linear(w, None)
    assert logical_shape(n.weight) == (6, 4) and tuple(n.weight.shape) == (12, 1)
    assert packed_storage(n).startswith("Params4bitLike")
    assert "scale_weight" in packed_storage(ScaledFp8Linear(w, None))


@pytest.mark.parametrize("kind", list(KINDS))
def test_lowrank_changes_go_through_hooks_and_equal_merging(nets, kind):
    parts, tree, swapped = _model(kind)
    snap, raw = snapshot(parts), _raw(swapped)
    rt = Runtime(tree, mode=MERGE)
    uses = [Use(nets["lora"], 0.8), Use(nets["lokr"], 0.6)]
    rep = rt.set(uses)
    assert not any(n.warnings for n in rep.networks), rep.networks
    # the quantized storage is untouched (hooked); float layers around it are merged
    assert _changed(parts, snap, swapped, raw)
    assert rt.layers()["hooked"] == len(swapped)
    # reference: the same uses merged into plain float layers holding the dequantized weights
    ref_parts, _ = small_model("sd15", shrink=16)
    for path, (_, plain) in swapped.items():
        parent, _, name = path.rpartition(".")
        setattr(ref_parts["unet"].get_submodule(parent), name, plain)
    ref = Runtime(ModelTree(ref_parts, A1111, "sd1"), mode=MERGE)
    ref.set(uses)
    g = torch.Generator().manual_seed(1)
    for path, (q, plain) in swapped.items():
        x = torch.randn(3, 5, plain.in_features, generator=g)
        torch.testing.assert_close(q(x), plain(x), rtol=1e-5, atol=1e-5)
    rt.set([])
    ref.set([])
    assert _changed(parts, snap, swapped, raw) == []
    assert all(not q._forward_hooks for q, _ in swapped.values())


@pytest.mark.parametrize("kind", ["gguf", "nf4"])
def test_changes_that_read_the_weight_are_reported_not_applied(nets, kind):
    parts, tree, swapped = _model(kind)
    snap, raw = snapshot(parts), _raw(swapped)
    rt = Runtime(tree, mode=MERGE)
    g = torch.Generator().manual_seed(2)
    xs = {p: torch.randn(2, q.dequantized().shape[1], generator=g) for p, (q, _) in swapped.items()}
    before = {p: q(xs[p]) for p, (q, _) in swapped.items()}
    for algo in ("ia3", "dora"):
        rep = rt.set([Use(nets[algo], 1.0)])
        (net,) = rep.networks
        hits = [w for w in net.warnings if w.startswith("not applied to")]
        assert len(hits) == 1, net.warnings
        touched = sum(1 for m in rt.resolution(nets[algo]).matches if m.target.path in swapped)
        assert hits[0].startswith(f"not applied to {touched} layer") and type(next(iter(swapped.values()))[0].weight).__name__ in hits[0]
        assert rt.layers()["hooked"] == 0 and rt.layers()["merged"] > 0  # the rest of the model got it
        for p, (q, _) in swapped.items():
            assert torch.equal(q(xs[p]), before[p])
    rt.set([])
    assert _changed(parts, snap, swapped, raw) == []


def test_host_swapping_quantized_objects_is_not_a_reload(nets):
    """Forge gives a GGUF layer new parameter objects at every ``.to()`` and
    casts its bias at the first forward; the same request afterwards must not
    merge again on top of the merged float layers (and restore stays exact)."""
    parts, tree, swapped = _model("gguf")
    snap, raw = snapshot(parts), _raw(swapped)
    rt = Runtime(tree, mode=MERGE)
    uses = [Use(nets["lora"], 0.8)]
    rt.set(uses)
    merged = snapshot(parts)
    for q, _ in swapped.values():
        w = q.weight
        q.weight = FakeGGUF(w.data.clone(), tuple(w.real_shape), w.scale)
        if q.bias is not None:
            q.bias = nn.Parameter(q.bias.detach().clone(), requires_grad=False)
    assert rt.set(uses).rebuilt == 0
    assert [c for c in same_as(parts, merged) if not any(f"unet.{p}." in c for p in swapped)] == []
    rt.set([])
    assert _changed(parts, snap, swapped, raw) == []
