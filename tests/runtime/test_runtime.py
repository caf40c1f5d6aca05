"""The runtime on small models with the real module names.

Merge equals the core's per-module apply; bypass equals merge; restore is
bit-exact after long random sequences; only touched tensors are kept or
written; failures leave the model as it was; schedules switch at the right
steps.
"""

from __future__ import annotations

import random

import pytest
import torch

from lycoris_ext import NetworkApplyError
from lycoris_ext.resolve.lbw import parse_block_weights
from lycoris_ext.runtime import AUTO, BYPASS, MERGE, Runtime, Use
from lycoris_ext.runtime.params import bias_view, weight_view
from support.models import same_as, small_model, snapshot, write_full_with_bias, write_norm_network, write_sample

ALGOS = ["lora", "loha", "lokr", "dora", "ia3", "full", "oft", "glora"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    parts, tree = small_model("sd15", shrink=16)
    d = tmp_path_factory.mktemp("nets")
    nets = {a: write_sample(d / f"{a}.safetensors", tree, a, rank=4, seed=i, conv_rank=2 if a in ("lora", "loha") else None)
            for i, a in enumerate(ALGOS)}
    nets["norm"] = write_norm_network(d / "norm.safetensors", tree, seed=11)
    nets["fullbias"] = write_full_with_bias(d / "fullbias.safetensors", tree, seed=12)
    return parts, tree, nets


@pytest.fixture
def fresh(world):
    """The world's model, restored to its original weights after the test."""
    parts, tree, nets = world
    snap = snapshot(parts)
    runtimes = []

    def make(**kw):
        rt = Runtime(tree, **kw)
        runtimes.append(rt)
        return rt

    yield parts, tree, nets, make, snap
    for rt in runtimes:
        rt.restore()
    assert same_as(parts, snap) == []


def expected_weights(runtime, uses, step=None):
    """Independent recompute: originals + sum of each adapter's own delta."""
    out = {}
    for use in uses:
        res = runtime.resolution(use.network)
        if not res.applicable:
            continue
        for m in res.matches:
            mult = use.part_multiplier(m.target.part, step) * use.block_weight(m.target.block)
            if mult == 0:
                continue
            ad = m.adapter.truncated(use.dyn)
            out.setdefault(m.target.id, (m.target, []))[1].append((ad, mult))
    return out


def check_merged(runtime, snap_views, uses, step=None, rtol=2e-6):
    for tid, (target, contribs) in expected_weights(runtime, uses, step).items():
        w0, b0 = snap_views[tid]
        w32 = w0.float()
        b32 = None if b0 is None else b0.float()
        dw = sum(ad.delta(w32, m, b32)[0] for ad, m in contribs)
        want = (w32 + dw).to(w0.dtype)
        got = weight_view(target)
        err = (got.float() - want.float()).abs().max() / want.float().abs().max()
        assert err <= rtol, f"{target.label}: {err}"


def views(tree):
    return {t.id: (weight_view(t).clone(), None if bias_view(t) is None else bias_view(t).clone()) for t in tree.targets}


@pytest.mark.parametrize("algo", ALGOS + ["norm", "fullbias"])
def test_merge_equals_apply(fresh, algo):
    parts, tree, nets, make, snap = fresh
    rt = make()
    net = nets[algo]
    for m in (1.0, 0.6, -0.8):
        rep = rt.set([Use(net, m, m)])
        assert rep.networks[0].skipped is None and rep.networks[0].layers == len(net.modules)
        res = rt.resolution(net)
        for match in res.matches:
            w0 = snap[f"{match.target.part}.{match.target.path}.weight"] if match.target.param == "weight" else None
            if w0 is None:
                continue
            b_key = f"{match.target.part}.{match.target.path}.bias"
            b0 = snap.get(b_key)
            want_w, want_b = match.adapter.apply(w0, b0, m)
            got_w = weight_view(match.target)
            assert (got_w - want_w).abs().max() <= 2e-6 * want_w.abs().max(), match.key
            if want_b is not None:
                assert (bias_view(match.target) - want_b).abs().max() <= 2e-6 * want_b.abs().max().clamp_min(1e-6)


def test_several_networks_sum(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    before = views(tree)
    uses = [Use(nets["lora"], 0.7, 0.9), Use(nets["loha"], 0.4, -0.5), Use(nets["dora"], 1.0, 0.8), Use(nets["oft"], 0.5, 0.5)]
    rt.set(uses)
    check_merged(rt, before, uses)


def test_same_set_again_does_nothing(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    uses = [Use(nets["lora"], 0.7, 0.9), Use(nets["lokr"], 0.4, 0.5)]
    rt.set(uses)
    assert rt.set(list(uses)).rebuilt == 0
    # a change of one multiplier rebuilds only that network's layers
    n_te = sum(1 for m in rt.resolution(nets["lokr"]).matches if m.target.part == "te")
    assert rt.set([uses[0], Use(nets["lokr"], 0.3, 0.5)]).rebuilt == n_te


def _held(net) -> int:
    """Float32 copies an adapter (or its dyn= truncations) keeps of its tensors."""
    return sum(len(a._device_cache) + sum(len(t._device_cache) for t in a.__dict__.get("_truncations", {}).values())
               for a in net.modules.values())


def _drop_all(nets) -> None:
    """Forget what other tests' direct calls (apply, delta) left in the adapters."""
    for net in nets.values():
        for a in net.modules.values():
            a.drop_device_cache()


def test_loha_joins_the_low_rank_product_without_being_kept(fresh):
    """A small LoHa is written in the same addmm as the LoRA (rank r1*r2),
    and its larger factors are rebuilt per change, not kept."""
    parts, tree, nets, make, snap = fresh
    rt = make()
    before = views(tree)
    uses = [Use(nets["lora"], 0.7, 0.9), Use(nets["loha"], 0.5, 0.5)]
    _drop_all(nets)
    rt.set(uses)
    assert len(rt._factors) == 0 and _held(nets["loha"]) == 0
    check_merged(rt, before, uses)
    assert all(m.adapter.lowrank() is not None for m in rt.resolution(nets["loha"]).matches)
    for m in rt.resolution(nets["loha"]).matches:
        m.adapter.drop_device_cache()


def test_no_float32_copies_of_factors_are_kept(fresh):
    """While networks are active, nothing but the originals is kept: the
    factors are converted from the file's tensors per layer as it is rebuilt
    (on the CPU not even a copy in the file's dtype)."""
    parts, tree, nets, make, snap = fresh
    rt = make()
    _drop_all(nets)
    rt.set([Use(nets["lora"], 1, 1, dyn=2), Use(nets["loha"], 1, 1), Use(nets["lokr"], 0.5, 1), Use(nets["dora"], 1, 1)])
    assert all(_held(nets[a]) == 0 for a in ("lora", "loha", "lokr", "dora"))
    assert len(rt._factors) == 0
    rt.set([Use(nets["loha"], 0.5, 0.5)])
    rt.set([Use(nets["lora"], 1, 1, start=2)], step=0)  # wanted but not active yet
    rt.restore()
    assert all(_held(nets[a]) == 0 for a in ("lora", "loha", "lokr", "dora"))


def _old_split(contribs, device="cpu"):
    """The factors as the runtime built them before they were streamed: float32
    ``lowrank()`` of each adapter (kept), times the multiplier, concatenated."""
    ups, downs = [], []
    for adapter, m in contribs:
        up, down = adapter.lowrank(device)
        ups.append(up if m == 1 else up * m)
        downs.append(down)
        adapter.drop_device_cache()
    return (ups[0], downs[0]) if len(ups) == 1 else (torch.cat(ups, 1), torch.cat(downs, 0))


@pytest.mark.parametrize("dyn", [None, 1, 3])
def test_streamed_factors_are_the_same_bits(fresh, dyn):
    """Converting the file's factors per layer gives exactly the float32
    factors kept before, so the merged weights do not change by a bit."""
    from lycoris_ext.runtime.merge import Contribution, FactorCache, combine, split

    parts, tree, nets, make, snap = fresh
    rt = make()
    mults = [1.0, 0.7, -1.3, 1 / 3]
    by_target = {}
    for i, algo in enumerate(["lora", "loha", "lora", "loha"]):
        for m in rt.resolution(nets[algo]).matches:
            ad = m.adapter.truncated(dyn) if dyn is not None else m.adapter
            by_target.setdefault(m.target.id, (m.target, []))[1].append((ad, mults[i]))
    checked = 0
    for target, contribs in by_target.values():
        cs = [Contribution(f"n{i}", "k", ad, m) for i, (ad, m) in enumerate(contribs)]
        up, down, dense = split(cs, FactorCache(), "cpu")
        assert not dense
        want_up, want_down = _old_split(contribs)
        assert up.is_contiguous() and down.is_contiguous()
        assert torch.equal(up, want_up) and torch.equal(down, want_down), target.label
        w = weight_view(target).float()
        got, _ = combine(w, None, cs, FactorCache())
        want = w.clone(memory_format=torch.contiguous_format)
        want.view(want_up.shape[0], -1).addmm_(want_up, want_down)
        assert torch.equal(got, want), target.label
        checked += 1
    assert checked > 10


def test_order_of_changes_does_not_matter(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    a, b, c = Use(nets["lora"], 0.7, 0.7), Use(nets["loha"], 0.5, 0.5), Use(nets["glora"], 1, 1)
    rt.set([a, b, c])
    direct = snapshot(parts)
    rt.restore()
    rt.set([c])
    rt.set([a, c])
    rt.set([b])
    rt.set([a, b, c])
    assert same_as(parts, direct) == []


def test_only_touched_tensors_are_kept_and_written(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    ptrs = {f"{p}.{n}": t.data_ptr() for p, m in parts.items() for n, t in m.named_parameters()}
    rt.set([Use(nets["fullbias"], 1.0, 1.0)])
    res = rt.resolution(nets["fullbias"])
    touched = {f"{m.target.part}.{m.target.path}.weight" for m in res.matches} | {f"{m.target.part}.{m.target.path}.bias" for m in res.matches}
    changed = set(same_as(parts, snap))
    assert changed == touched
    assert rt.kept_bytes == sum(snap[k].numel() * snap[k].element_size() for k in touched)
    # parameters were written in place: no tensor was replaced
    assert ptrs == {f"{p}.{n}": t.data_ptr() for p, m in parts.items() for n, t in m.named_parameters()}
    rt.restore()
    assert rt.kept_bytes == 0


def test_te_only_and_unet_only(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    rt.set([Use(nets["lora"], 1.0, 0.0)])
    assert all(k.startswith("te.") for k in same_as(parts, snap))
    rt.set([Use(nets["lora"], 0.0, 1.0)])
    assert all(k.startswith("unet.") for k in same_as(parts, snap))


def _random_use(rng, nets, names):
    net = nets[rng.choice(names)]
    te = rng.choice([0.0, 1.0, 0.5, -0.7, round(rng.uniform(-1.5, 1.5), 2)])
    unet = rng.choice([te, 1.0, 0.3, round(rng.uniform(-1.5, 1.5), 2)])
    dyn = rng.choice([None, None, None, 1, 2, 3])
    blocks = None
    if rng.random() < 0.25:
        blocks = parse_block_weights(rng.choice(["MIDD", "OUTS", "ALL0.5", "1,0,1,0,1,1,1,1,1,0,0,1,1,1,1,1,1"]))
    start = stop = None
    if rng.random() < 0.2:
        start, stop = rng.choice([(None, 3), (2, None), (1, 4)])
    return Use(net, te, unet, dyn=dyn, blocks=blocks, start=start, stop=stop)


def test_random_sequence_restores_bit_exact(fresh):
    """200 random changes in every mode; weights always equal an independent
    recompute from the originals; the final restore gives the originals bit
    for bit."""
    parts, tree, nets, make, snap = fresh
    rt = make()
    rng = random.Random(1234)
    names = sorted(nets)
    before = views(tree)
    for i in range(200):
        uses = [_random_use(rng, nets, names) for _ in range(rng.randint(0, 3))]
        mode = rng.choice([MERGE, MERGE, BYPASS, AUTO])
        step = rng.choice([None, 0, 1, 2, 3, 5])
        rt.set(uses, step=step, mode=mode)
        if rng.random() < 0.3:
            step = rng.randint(0, 6)
            rt.step(step)
        if rt.effective_mode == MERGE and i % 5 == 0:
            check_merged(rt, before, uses, step=rt._step)
        elif rt.effective_mode == BYPASS:
            # weights of hooked layers stay original
            hooked = {tid for tid, s in rt._state.items() if s == "hooked"}
            for tid in list(hooked)[:20]:
                assert torch.equal(weight_view(tree.by_id[tid]), before[tid][0])
    rt.restore()
    assert same_as(parts, snap) == []
    assert rt.kept_bytes == 0 and not rt._hooks


def _outputs(tree, targets, inputs):
    out = {}
    with torch.no_grad():
        for t in targets:
            out[t.id] = t.module(inputs[t.id])
    return out


def _inputs(targets, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = {}
    for t in targets:
        m = t.module
        if isinstance(m, torch.nn.Linear):
            xs[t.id] = torch.randn(2, 5, m.in_features, generator=g)
        elif isinstance(m, torch.nn.Conv2d):
            xs[t.id] = torch.randn(1, m.in_channels, 6, 6, generator=g)
        elif isinstance(m, torch.nn.LayerNorm):
            xs[t.id] = torch.randn(2, 5, *m.normalized_shape, generator=g)
        elif isinstance(m, torch.nn.GroupNorm):
            xs[t.id] = torch.randn(1, m.num_channels, 4, 4, generator=g)
    return xs


@pytest.mark.parametrize("combo", [["lora"], ["dora"], ["loha", "lokr"], ["ia3", "full", "oft"], ["glora", "lora"], ["norm"], ["fullbias"]])
def test_bypass_equals_merge(fresh, combo):
    parts, tree, nets, make, snap = fresh
    rt = make()
    uses = [Use(nets[a], 0.8, 0.6, dyn=3 if a == "lora" else None) for a in combo]
    targets = [m.target for u in uses for m in rt.resolution(u.network).matches if m.target.module is not None]
    targets = [t for t in {t.id: t for t in targets}.values() if t.param == "weight"]
    xs = _inputs(targets)
    rt.set(uses, mode=MERGE)
    merged = _outputs(tree, targets, xs)
    rt.set(uses, mode=BYPASS)
    hooked = rt.layers()["hooked"]
    assert hooked == len(targets)
    assert same_as(parts, snap) == []  # bypass never writes a weight
    bypassed = _outputs(tree, targets, xs)
    for tid, y in merged.items():
        err = (bypassed[tid] - y).abs().max() / y.abs().max()
        assert err <= 1e-5, tree.by_id[tid].label
    rt.set(uses, mode=MERGE)
    assert not rt._hooks
    assert _outputs(tree, targets, xs).keys() == merged.keys()


def test_schedule_steps(fresh):
    parts, tree, nets, make, snap = fresh
    for mode in (MERGE, BYPASS, AUTO):
        rt = make(mode=mode)
        use = Use(nets["lora"], 1.0, 1.0, start=2, stop=5)
        rt.set([use], step=0)
        assert rt.effective_mode == (MERGE if mode == MERGE else BYPASS)
        probe = next(m.target for m in rt.resolution(nets["lora"]).matches if m.target.part == "unet" and m.target.kind == "linear")
        x = torch.randn(1, 3, probe.module.in_features)
        base = probe.module(x)
        active = []
        for s in range(8):
            rt.step(s)
            active.append(not torch.equal(probe.module(x), base))
        assert active == [False, False, True, True, True, False, False, False], mode
        rt.restore()


def test_step_only_rebuilds_scheduled_network(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make(mode=MERGE)
    late = Use(nets["lora"], 1, 1, start=3)
    rt.set([Use(nets["loha"], 1, 1), late], step=0)
    # the layers whose multiplier differs between step 0 and step 3
    n = sum(1 for m in rt.resolution(nets["lora"]).matches
            if late.part_multiplier(m.target.part, 0) != late.part_multiplier(m.target.part, 3))
    assert n > 0
    assert rt.step(1) is None or rt.last_report.rebuilt == 0
    assert rt.step(3).rebuilt == n


def test_failure_leaves_model_as_it_was(fresh, monkeypatch):
    parts, tree, nets, make, snap = fresh
    rt = make()
    rt.set([Use(nets["lora"], 0.5, 0.5)])
    before = snapshot(parts)
    kept = rt.kept_bytes
    adapters = [m.adapter for m in rt.resolution(nets["loha"]).matches]
    victim = adapters[len(adapters) // 2]
    calls = {"n": 0}

    def boom(*a, **k):
        calls["n"] += 1
        raise torch.cuda.OutOfMemoryError("simulated out of memory") if hasattr(torch.cuda, "OutOfMemoryError") else RuntimeError("oom")

    monkeypatch.setattr(victim, "delta", boom)
    monkeypatch.setattr(victim, "add_into", boom)
    monkeypatch.setattr(victim, "lowrank", boom)  # a LoHa of small rank is one low-rank product
    with pytest.raises(NetworkApplyError) as info:
        rt.set([Use(nets["lora"], 0.9, 0.9), Use(nets["loha"], 1, 1)])
    assert calls["n"] == 1
    assert nets["loha"].name in str(info.value) and victim.key in str(info.value)
    assert same_as(parts, before) == []
    assert rt.kept_bytes == kept
    monkeypatch.undo()
    rt.set([Use(nets["lora"], 0.9, 0.9), Use(nets["loha"], 1, 1)])
    rt.restore()
    assert same_as(parts, snap) == []


def test_failure_in_bypass_rolls_back(fresh, monkeypatch):
    parts, tree, nets, make, snap = fresh
    rt = make(mode=BYPASS)
    rt.set([Use(nets["oft"], 1, 1)])
    state = dict(rt._state)
    victim = rt.resolution(nets["ia3"]).matches[-1].adapter
    monkeypatch.setattr(victim, "delta", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bad")))
    with pytest.raises(NetworkApplyError):
        rt.set([Use(nets["ia3"], 1, 1)])
    assert rt._state == state and set(rt._hooks) == {t for t, s in state.items() if s == "hooked"}


def test_dyn_in_both_modes(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    use = Use(nets["lora"], 1, 1, dyn=2)
    target = next(m for m in rt.resolution(nets["lora"]).matches if m.target.kind == "linear" and m.target.part == "unet")
    w0 = weight_view(target.target).clone()
    rt.set([use])
    up, down = target.adapter.param("lora_up.weight"), target.adapter.param("lora_down.weight")
    want = w0 + target.adapter.scale * (up[:, :2] @ down[:2])
    assert torch.allclose(weight_view(target.target), want, atol=1e-6)
    x = torch.randn(2, w0.shape[1])
    y_merge = target.target.module(x)
    rt.set([use], mode=BYPASS)
    assert torch.allclose(target.target.module(x), y_merge, atol=1e-5)


def test_other_base_model_is_reported_not_applied(tmp_path):
    parts, tree = small_model("sdxl", shrink=32)
    from lycoris_ext.resolve.inventory import model_tree
    from support.models import write_sample as ws
    sd1_net = ws(tmp_path / "sd1.safetensors", model_tree("sd15"), "lora", rank=2)
    snap = snapshot(parts)
    rt = Runtime(tree)
    rep = rt.set([Use(sd1_net, 1, 1)])
    assert rep.networks[0].skipped and "another base model" in rep.networks[0].skipped
    assert same_as(parts, snap) == []


def test_block_weights_and_warning(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    bw = parse_block_weights("MIDD")  # 17 values: IN00, IN03, ... not named -> 0
    rep = rt.set([Use(nets["lora"], 1, 1, blocks=bw)])
    changed = {k.rsplit(".", 1)[0] for k in same_as(parts, snap)}
    res = rt.resolution(nets["lora"])
    for m in res.matches:
        name = f"{m.target.part}.{m.target.path}"
        assert (name in changed) == (bw[m.target.block] != 0 if m.target.block != "OTHER" else True), name
    assert any("switch off" in w for w in rep.networks[0].warnings)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_weights(dtype, tmp_path):
    parts, tree = small_model("sd15", shrink=32, dtype=dtype)
    net = write_sample(tmp_path / "l.safetensors", tree, "loha", rank=2)
    snap = snapshot(parts)
    rt = Runtime(tree)
    rt.set([Use(net, 0.8, 0.8)])
    for m in rt.resolution(net).matches:
        w0 = snap[f"{m.target.part}.{m.target.path}.weight"]
        want, _ = m.adapter.apply(w0, None, 0.8)
        assert torch.equal(weight_view(m.target), want)
    rt.restore()
    assert same_as(parts, snap) == []


def test_float8_weights_keep_every_network(tmp_path):
    """A1111 v1.10 keeps only the last network on fp8 weights (#15995); here
    every network survives and removing one recomputes from the exact original."""
    parts, tree = small_model("sd15", shrink=32)
    for m in parts.values():
        for p in m.parameters():
            if p.dim() >= 2:
                p.data = p.data.to(torch.float8_e4m3fn)
    a = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=2, seed=1)
    b = write_sample(tmp_path / "b.safetensors", tree, "lora", rank=2, seed=2)
    snap = snapshot(parts)
    rt = Runtime(tree)
    rt.set([Use(a, 1, 1), Use(b, 1, 1)])
    for m in rt.resolution(a).matches[:40]:
        mb = next(x for x in rt.resolution(b).matches if x.target.id == m.target.id)
        w0 = snap[f"{m.target.part}.{m.target.path}.weight"].float()
        want = (w0 + m.adapter.delta(w0)[0] + mb.adapter.delta(w0)[0]).to(torch.float8_e4m3fn)
        assert torch.equal(weight_view(m.target).view(torch.uint8), want.view(torch.uint8))
    rt.set([Use(a, 1, 1)])
    for m in rt.resolution(a).matches[:40]:
        w0 = snap[f"{m.target.part}.{m.target.path}.weight"].float()
        want = (w0 + m.adapter.delta(w0)[0]).to(torch.float8_e4m3fn)
        assert torch.equal(weight_view(m.target).view(torch.uint8), want.view(torch.uint8))
    rt.restore()
    assert same_as(parts, snap) == []


def test_packed_attention_partial_qkv(tmp_path):
    """A file with only q and v of OpenCLIP attentions changes just those rows."""
    parts, tree = small_model("sd2", shrink=16)
    packed = [t for t in tree.targets if t.param == "in_proj_weight"]
    mhas = sorted({t.path for t in packed})[:3]
    chosen = [t for t in packed if t.path in mhas and t.rows[0] != t.shape[0]]  # q (rows 0..d) and v (2d..3d)
    assert len(chosen) == 6
    net = write_sample(tmp_path / "qv.safetensors", tree, "lora", rank=2, targets=chosen)
    assert sorted({k.rsplit("_", 2)[-2] for k in net.modules}) == ["q", "v"]
    snap = snapshot(parts)
    rt = Runtime(tree)
    rep = rt.set([Use(net, 1, 1)])
    assert rep.networks[0].layers == 6 and rt.resolution(net).verdict == "fits"
    for path in mhas:
        mod = chosen[[t.path for t in chosen].index(path)].module
        key = next(k for k in snap if k.endswith(f"{path}.in_proj_weight"))
        d = mod.in_proj_weight.shape[0] // 3
        changed = [not torch.equal(mod.in_proj_weight[i * d:(i + 1) * d], snap[key][i * d:(i + 1) * d]) for i in range(3)]
        assert changed == [True, False, True], path
    assert rt.kept_bytes == sum(t.shape[0] * t.shape[1] * 4 for t in chosen)
    rt.restore()
    assert same_as(parts, snap) == []


def test_forget_after_model_reload(fresh):
    parts, tree, nets, make, snap = fresh
    rt = make()
    rt.set([Use(nets["lora"], 1, 1)])
    # the WebUI loads another checkpoint into the same modules
    with torch.no_grad():
        for m in parts.values():
            for p in m.parameters():
                p.copy_(torch.full_like(p, 0.25))
    loaded = snapshot(parts)
    rt.forget()
    assert same_as(parts, loaded) == [] and rt.kept_bytes == 0 and not rt._applied
    with torch.no_grad():  # put the world back for the other tests
        for p_name, m in parts.items():
            for n, p in m.named_parameters():
                p.copy_(snap[f"{p_name}.{n}"])
