"""``python -m lycoris_ext demo``: the whole path on a built-in model, no WebUI, no download.

1. builds an SD1.5-layout model (A1111's module names, widths shrunk) with
   random weights;
2. writes sample network files of every algorithm for it (kohya key style);
3. inspects each file and resolves it against the model;
4. applies sets of networks through the runtime (merge and bypass), changes
   multipliers, adds, removes, switches, and restores, checking the results
   (merge = per-module apply, bypass = merge, restore = original bit for bit).
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
from safetensors.torch import save_file

from .network import load_network
from .parts import UNET
from .resolve import resolve
from .runtime import BYPASS, MERGE, Runtime, Use
from .runtime.params import weight_view
from .samples import sample_network
from .summary import summarize
from .synthetic import build_tree

SAMPLES = [
    # name, algorithm, rank, conv rank
    ("sample_lora", "lora", 8, None),
    ("sample_locon", "lora", 8, 4),
    ("sample_dora", "dora", 8, None),
    ("sample_loha", "loha", 4, 2),
    ("sample_lokr", "lokr", 4, None),
    ("sample_ia3", "ia3", 1, None),
    ("sample_full", "full", 1, None),
    ("sample_oft", "oft", 4, None),
    ("sample_glora", "glora", 4, None),
]


def _snapshot(parts):
    return {f"{p}.{n}": t.detach().clone() for p, m in parts.items() for n, t in m.state_dict().items()}


def _unchanged(parts, snap) -> bool:
    return all(torch.equal(t, snap[f"{p}.{n}"]) for p, m in parts.items() for n, t in m.state_dict().items())


def run_demo(out_dir: str | None = None, quick: bool = False) -> int:
    shrink = 16 if quick else 8
    t0 = time.perf_counter()
    parts, tree = build_tree("sd15", shrink=shrink)
    n_params = sum(p.numel() for m in parts.values() for p in m.parameters())
    print(f"model: SD1.5 layout with A1111's names, widths / {shrink}: {n_params / 1e6:.1f}M parameters, "
          f"{len(tree)} layers a network can change ({time.perf_counter() - t0:.1f} s)")
    out_dir = out_dir or tempfile.mkdtemp(prefix="lycoris_ext_demo_")
    os.makedirs(out_dir, exist_ok=True)

    nets = {}
    print(f"\nsample networks in {out_dir}:")
    for i, (name, algo, rank, conv) in enumerate(SAMPLES):
        path = os.path.join(out_dir, f"{name}.safetensors")
        save_file(sample_network(tree, algo, rank=rank, conv_rank=conv, seed=i), path,
                  {"ss_output_name": name, "ss_network_module": f"lycoris.kohya ({algo})", "ss_base_model_version": "sd_v1"})
        net = load_network(path)
        s = summarize(net)
        res = resolve(net, tree)
        nets[name] = net
        rank_s = "-" if not s["rank"] else f"{s['rank']['min']}..{s['rank']['max']}"
        print(f"  {name:14s} {', '.join(s['algorithms']):6s} {s['modules']:4d} modules  rank {rank_s:6s} "
              f"{os.path.getsize(path) / 1e6:6.2f} MB  -> {res.verdict} ({res.summary()})")

    snap = _snapshot(parts)
    rt = Runtime(tree, mode=MERGE)
    checks: list[tuple[str, bool]] = []
    print("\nruntime (merge mode):")
    steps = [
        ("first apply: lora", [Use(nets["sample_lora"], 0.8, 0.8)]),
        ("three networks", [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_loha"], 0.6, 0.6), Use(nets["sample_lokr"], 0.5, 0.5)]),
        ("change one multiplier", [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_loha"], 0.3, 0.3), Use(nets["sample_lokr"], 0.5, 0.5)]),
        ("same set again", [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_loha"], 0.3, 0.3), Use(nets["sample_lokr"], 0.5, 0.5)]),
        ("add a fourth (dora)", [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_loha"], 0.3, 0.3), Use(nets["sample_lokr"], 0.5, 0.5), Use(nets["sample_dora"], 1, 1)]),
        ("remove one", [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_lokr"], 0.5, 0.5), Use(nets["sample_dora"], 1, 1)]),
        ("switch the whole set", [Use(nets[n], 0.7, 0.7) for n in ("sample_ia3", "sample_full", "sample_oft", "sample_glora", "sample_locon")]),
    ]
    for label, uses in steps:
        rep = rt.set(uses)
        print(f"  {label:24s} {rep.rebuilt:4d} layers rebuilt in {rep.seconds * 1000:7.1f} ms, originals kept {rt.kept_bytes / 1e6:6.2f} MB")
    # merge = per-module apply, for one network alone
    rt.set([Use(nets["sample_loha"], 0.9, 0.9)])
    worst = 0.0
    for m in rt.resolution(nets["sample_loha"]).matches:
        w0 = snap[f"{m.target.part}.{m.target.path}.weight"]
        want, _ = m.adapter.apply(w0, None, 0.9)
        worst = max(worst, float((weight_view(m.target) - want).abs().max() / want.abs().max()))
    checks.append((f"merge equals per-module apply (max rel. error {worst:.1e})", worst <= 1e-5))

    # bypass = merge on the layers' outputs
    uses = [Use(nets["sample_lora"], 0.8, 0.8), Use(nets["sample_dora"], 1, 1), Use(nets["sample_oft"], 0.5, 0.5)]
    rt.set(uses, mode=MERGE)
    probes = [m.target for m in rt.resolution(nets["sample_dora"]).matches if m.target.kind == "linear"][:30]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 7, t.module.in_features, generator=g) for t in probes]
    with torch.no_grad():
        merged = [t.module(x) for t, x in zip(probes, xs)]
        rt.set(uses, mode=BYPASS)
        bypassed = [t.module(x) for t, x in zip(probes, xs)]
    err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(bypassed, merged))
    print(f"\nbypass mode: {rt.layers()['hooked']} layers hooked, weights untouched; "
          f"max rel. difference to merge {err:.1e}")
    checks.append((f"bypass equals merge (max rel. error {err:.1e})", err <= 1e-5))

    # a step schedule: the UNet's part active from step 2 to 4 (the text
    # encoder's part stays on, as in LBW, so the probe is a UNet layer)
    rt.set([Use(nets["sample_lora"], 1, 1, start=2, stop=5)], step=0, mode="auto")
    probe = next(m.target for m in rt.resolution(nets["sample_lora"]).matches
                 if m.target.part == UNET and m.target.kind == "linear")
    x = torch.randn(2, 7, probe.module.in_features, generator=g)
    with torch.no_grad():
        base = probe.module(x)
        active = []
        for s in range(7):
            rt.step(s)
            active.append(not torch.equal(probe.module(x), base))
    print(f"schedule start=2 stop=5 ({rt.effective_mode}): active at steps {[s for s, a in enumerate(active) if a]}")
    checks.append(("schedule switches at steps 2 and 5", active == [False, False, True, True, True, False, False]))

    rep = rt.restore()
    ok = _unchanged(parts, snap)
    print(f"\nrestore: {rep.rebuilt} layers in {rep.seconds * 1000:.1f} ms, originals kept now {rt.kept_bytes} bytes")
    checks.append(("restore gives the original weights bit for bit", ok and rt.kept_bytes == 0))
    print("\nchecks:")
    for label, passed in checks:
        print(f"  [{'ok' if passed else 'FAILED'}] {label}")
    return 0 if all(p for _, p in checks) else 1
