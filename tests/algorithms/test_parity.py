"""Parity with lycoris-lora 4.1.3's module forward, for every algorithm and option.

Each case builds a network with the library itself (random, non-zero
parameters), saves it with the library's ``save_weights``, loads the file with
``lycoris_ext.load_network`` and compares ``apply`` with the weight the
library's forward uses, on a Linear, a 1x1 and a 3x3 Conv2d, at m = 1, 0.5,
-1 and 0. float32, max relative error 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import lycoris_ext
from support.lycoris_ref import (
    ThreeLayers,
    locon_reference,
    make_network,
    original_params,
    reference_weight,
    rel_err,
)

TOL = 1e-5
MULTIPLIERS = (1.0, 0.5, -1.0, 0.0)


@dataclass(frozen=True)
class Case:
    id: str
    kwargs: dict
    #: suffixes the saved file must contain (proves the option was exercised)
    expect: frozenset = field(default_factory=frozenset)
    #: suffixes the saved file must not contain
    absent: frozenset = field(default_factory=frozenset)
    dims: dict = field(default_factory=dict)


def C(id, expect=(), absent=(), dims=None, **kwargs):
    return Case(id, kwargs, frozenset(expect), frozenset(absent), dims or {})


CASES = [
    C("lora", algo="lora", expect={"lora_up.weight", "lora_down.weight", "alpha"}, absent={"lora_mid.weight"}),
    C("lora-rs", algo="lora", rs_lora=True),
    C("lora-scalar", algo="lora", use_scalar=True),
    C("lora-alpha-rank", algo="lora", dims=dict(linear_alpha=8, conv_alpha=4)),
    C("locon-tucker", algo="lora", use_tucker=True, expect={"lora_mid.weight"}),
    C("dora-out", algo="lora", dora_wd=True, expect={"dora_scale"}),
    C("dora-in", algo="lora", dora_wd=True, wd_on_output=False, expect={"dora_scale"}),
    C("locon-tucker-dora", algo="lora", use_tucker=True, dora_wd=True, expect={"lora_mid.weight", "dora_scale"}),
    C("loha", algo="loha", expect={"hada_w1_a", "hada_w2_b"}, absent={"hada_t1"}),
    # rank 16 x 16 > 64: the change is added in row chunks, not as one product
    C("loha-rank16", algo="loha", dims=dict(linear_dim=16, linear_alpha=8, conv_dim=12, conv_alpha=6)),
    C("loha-tucker", algo="loha", use_tucker=True, expect={"hada_t1", "hada_t2"}),
    C("loha-dora", algo="loha", dora_wd=True, expect={"dora_scale"}),
    C("loha-dora-in", algo="loha", dora_wd=True, wd_on_output=False, expect={"dora_scale"}),
    C("lokr-factor8", algo="lokr", factor=8, expect={"lokr_w1", "lokr_w2_a", "lokr_w2_b"}),
    C("lokr-factor4", algo="lokr", factor=4, expect={"lokr_w1", "lokr_w2_a"}),
    C("lokr-factor-1", algo="lokr", factor=-1, dims=dict(linear_dim=4, conv_dim=2), expect={"lokr_w1", "lokr_w2_a"}),
    C("lokr-unbalanced", algo="lokr", factor=8, unbalanced_factorization=True, expect={"lokr_w1"}),
    C("lokr-decompose-both", algo="lokr", factor=-1, decompose_both=True, dims=dict(linear_dim=4, conv_dim=2),
      expect={"lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b"}),
    C("lokr-full-matrix", algo="lokr", factor=8, full_matrix=True, expect={"lokr_w1", "lokr_w2"},
      absent={"lokr_w2_a", "lokr_w1_a"}),
    C("lokr-tucker", algo="lokr", factor=4, use_tucker=True, expect={"lokr_t2"}),
    C("lokr-dora", algo="lokr", factor=8, dora_wd=True, expect={"dora_scale"}),
    C("ia3-out", algo="ia3", expect={"weight", "on_input"}),
    C("ia3-in", algo="ia3", train_on_input=True, expect={"weight", "on_input"}),
    C("full", algo="full", expect={"diff", "diff_b"}),
    C("norm", algo="lora", train_norm=True, expect={"w_norm", "b_norm"}),
    C("glora", algo="glora", expect={"a1.weight", "a2.weight", "b1.weight", "b2.weight"}),
    C("oft", algo="diag-oft", constraint=1e-3, expect={"oft_blocks"}, absent={"rescale"}),
    C("oft-unconstrained", algo="diag-oft", expect={"oft_blocks"}),
    C("oft-rescale", algo="diag-oft", rescaled=True, expect={"oft_blocks", "rescale"}),
    C("boft", algo="boft", expect={"oft_blocks"}, absent={"rescale"}),
    C("boft-rescale", algo="boft", rescaled=True, constraint=1e-2, expect={"oft_blocks", "rescale"}),
]

_built: dict[str, tuple] = {}


def built(case: Case, tmp_path_factory):
    """(library network, our Network) for a case, built once per session."""
    if case.id not in _built:
        torch.manual_seed(0)
        net = make_network(ThreeLayers(), **case.dims, **case.kwargs)
        path = tmp_path_factory.mktemp("parity") / f"{case.id}.safetensors"
        net.save_weights(str(path), torch.float32, {"ss_network_module": case.kwargs["algo"]})
        _built[case.id] = (net, lycoris_ext.load_network(path))
    return _built[case.id]


def expected(adapter, lora, multiplier, w):
    """What the core must produce: the forward at m, or W + m (W'(1) - W)."""
    ref_w, ref_b = reference_weight(lora, multiplier)
    not_identity_at_zero = adapter.magnitude is not None or getattr(adapter, "rescale", None) is not None
    if not_identity_at_zero:
        ref1, _ = reference_weight(lora, 1.0)
        ref_w = w + multiplier * (ref1 - w)
    return ref_w, ref_b


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity(case, multiplier, tmp_path_factory):
    net, ours = built(case, tmp_path_factory)
    suffixes = {k.split(".", 1)[1] for a in ours.modules.values() for k, _ in a._entries.values()}
    assert case.expect <= suffixes, f"option not exercised: {case.expect - suffixes} missing from {suffixes}"
    assert not (case.absent & suffixes)
    assert not ours.unknown
    assert len(net.loras) == len(ours.modules) >= 3
    for lora in net.loras:
        adapter = ours.modules[lora.lora_name]
        w, b = original_params(lora)
        new_w, new_b = adapter.apply(w, b, multiplier)
        if multiplier == 0:
            assert torch.equal(new_w, w)
            assert (new_b is None and b is None) or torch.equal(new_b, b)
            continue
        ref_w, ref_b = expected(adapter, lora, multiplier, w)
        # The change must be real, or the comparison proves nothing.
        assert rel_err(ref_w, w) > 1e-2, f"{lora.lora_name}: reference change is negligible"
        assert rel_err(new_w, ref_w) <= TOL, f"{lora.lora_name} ({adapter.algorithm}) at m={multiplier}"
        if ref_b is not None:
            assert rel_err(new_b, ref_b) <= TOL
        elif b is not None:
            assert torch.equal(new_b, b)


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
def test_dylora_files_are_locon(multiplier, tmp_path_factory):
    """DyLoRA saves a 2-D lora_up for conv layers; its effect is LoCon's forward."""
    torch.manual_seed(0)
    net = make_network(ThreeLayers(), algo="dylora", block_size=2)
    path = tmp_path_factory.mktemp("dylora") / "dylora.safetensors"
    net.save_weights(str(path), torch.float32, {})
    ours = lycoris_ext.load_network(path)
    sd = net.state_dict()
    conv_seen = False
    for lora in net.loras:
        key = lora.lora_name
        up, down, alpha = sd[f"{key}.lora_up.weight"], sd[f"{key}.lora_down.weight"], sd[f"{key}.alpha"]
        conv_seen |= up.dim() == 2 and down.dim() == 4
        org = lora.org_module[0]
        ref = locon_reference(org, up, down, alpha)
        w, b = original_params(lora)
        ref_w, _ = reference_weight(ref, multiplier)
        adapter = ours.modules[key]
        assert "dylora" in adapter.features or up.dim() == down.dim()
        new_w, _ = adapter.apply(w, b, multiplier)
        if multiplier == 0:
            assert torch.equal(new_w, w)
        else:
            assert rel_err(ref_w, w) > 1e-2
            assert rel_err(new_w, ref_w) <= TOL
    assert conv_seen


def test_dyn_uses_first_ranks(tmp_path_factory):
    """dyn=N keeps the first N ranks and the file's gamma (A1111's definition)."""
    net, ours = built(CASES[0], tmp_path_factory)
    lora = net.loras[0]
    adapter = ours.modules[lora.lora_name]
    w, _ = original_params(lora)
    up = adapter.param("lora_up.weight")
    down = adapter.param("lora_down.weight")
    want = w + adapter.alpha / adapter.rank * (up[:, :3] @ down[:3]).reshape(w.shape)
    got, _ = adapter.truncated(3).apply(w)
    assert rel_err(got, want) <= TOL
    assert adapter.truncated(None) is adapter and adapter.truncated(99) is adapter


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_files_and_weights_compute_in_float32(dtype, tmp_path_factory):
    """An fp16/bf16 file on an fp16/bf16 weight: computed in float32, cast once."""
    torch.manual_seed(0)
    net = make_network(ThreeLayers(), algo="loha")
    path = tmp_path_factory.mktemp("half") / "half.safetensors"
    net.save_weights(str(path), dtype, {})
    ours = lycoris_ext.load_network(path)
    for key, adapter in ours.modules.items():
        lora = next(l for l in net.loras if l.lora_name == key)
        w, _ = original_params(lora)
        w_half = w.to(dtype)
        got, _ = adapter.apply(w_half, None, 0.7)
        assert got.dtype == dtype
        w1a, w1b, w2a, w2b = (adapter._entries[s][1].double() for s in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        delta = (w1a @ w1b.reshape(w1b.shape[0], -1)) * (w2a @ w2b.reshape(w2b.shape[0], -1))
        change = 0.7 * adapter.scale * delta.reshape(w.shape)
        exact = w_half.double() + change
        want = exact.float().to(dtype)  # the exact value, rounded to the weight's dtype
        # float32 arithmetic is within ~1e-7 of the size of its terms of exact,
        # so it rounds the same way except where exact sits near a midpoint
        off = got != want
        mid = (got.double() + want.double()) / 2
        # the size of the terms float32 sums (they may cancel)
        mag = (w1a.abs() @ w1b.abs().reshape(w1b.shape[0], -1)) * (w2a.abs() @ w2b.abs().reshape(w2b.shape[0], -1))
        size = w_half.double().abs() + 0.7 * adapter.scale * mag.reshape(w.shape)
        assert ((exact - mid).abs() <= 1e-6 * size)[off].all()
        assert off.float().mean() < 1e-3


def test_apply_does_not_modify_inputs(tmp_path_factory):
    net, ours = built(CASES[0], tmp_path_factory)
    for lora in net.loras:
        w, b = original_params(lora)
        w0, b0 = w.clone(), b.clone()
        ours.modules[lora.lora_name].apply(w, b, 1.0)
        assert torch.equal(w, w0) and torch.equal(b, b0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_repeated_calls_give_the_same_result(case, tmp_path_factory):
    """Deltas are scaled in place where they are fresh tensors; a stored
    tensor (full's ``diff``, norm's ``w_norm``) must never be scaled with them."""
    net, ours = built(case, tmp_path_factory)
    for lora in net.loras:
        adapter = ours.modules[lora.lora_name]
        w, b = original_params(lora)
        first = [adapter.apply(w, b, m) for m in (1.0, 0.5, -1.0)]
        again = [adapter.apply(w, b, m) for m in (0.5, -1.0, 1.0)]
        for (w1, b1), (w2, b2) in zip(first, again[2:] + again[:2]):
            assert torch.equal(w1, w2), lora.lora_name
            assert (b1 is None and b2 is None) or torch.equal(b1, b2)


@pytest.mark.parametrize("case", [c for c in CASES if c.kwargs["algo"] in ("loha", "lokr")], ids=lambda c: c.id)
def test_changes_added_in_row_chunks(case, tmp_path_factory, monkeypatch):
    """LoHa and LoKr add their change a few rows at a time; with chunks of a
    single row unit the result is still the reference's, and equals the
    whole change computed at once."""
    from lycoris_ext import functional

    net, ours = built(case, tmp_path_factory)
    monkeypatch.setattr(functional, "ROW_CHUNK_BYTES", 1)
    for lora in net.loras:
        adapter = ours.modules[lora.lora_name]
        w, b = original_params(lora)
        for m in (1.0, -0.5):
            new_w, _ = adapter.apply(w, b, m)
            assert rel_err(new_w, expected(adapter, lora, m, w)[0]) <= TOL, lora.lora_name
            whole = w + adapter.delta(w, m)[0]
            assert rel_err(new_w, whole) <= 1e-6
            if adapter.algorithm == "lokr" and adapter.magnitude is None:
                assert torch.equal(new_w, whole)  # kron is exact element by element


def test_loha_paths(tmp_path):
    """Small LoHa ranks are one low-rank product; larger ones are not."""
    from lycoris_ext.algorithms.loha import KHATRI_RAO_MAX_RANK

    for dims, as_product in ((dict(linear_dim=8, conv_dim=4), True), (dict(linear_dim=16, conv_dim=12), False)):
        torch.manual_seed(0)
        net = make_network(ThreeLayers(), algo="loha", **dims)
        net.save_weights(str(tmp_path / "l.safetensors"), torch.float32, {})
        ours = lycoris_ext.load_network(tmp_path / "l.safetensors")
        for a in ours.modules.values():
            assert (a.lowrank() is not None) == (a.product_rank <= KHATRI_RAO_MAX_RANK) == as_product


def test_row_chunks_follow_the_device():
    """Small chunks on a CPU (cache-sized); on other devices whole layers of
    SDXL's size in one piece (each chunk costs kernel launches there)."""
    import math

    from lycoris_ext import functional

    for device, budget in (("cpu", functional.ROW_CHUNK_BYTES), ("meta", functional.ROW_CHUNK_BYTES_GPU)):
        target = torch.zeros(10240, 1280, device=device)
        calls = []

        def block(i, j):
            calls.append((i, j))
            return torch.ones(j - i, 1280, device=device)

        functional.add_by_rows(target, 1, block, 0.5)
        assert len(calls) == math.ceil(10240 / (budget // (4 * 1280)))
        assert calls[0][0] == 0 and calls[-1][1] == 10240
        assert all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
        if device == "cpu":
            assert torch.equal(target, torch.full_like(target, 0.5))
    assert len(calls) == 1
