"""Soak: thousands of random prompt changes through the extension, as a long
WebUI session makes them. After every step the weights equal an independent
recomputation from the originals; at the end a restore gives the originals
bit for bit; kept originals and the cache stay within their bounds and
memory shows no growth trend. ``SOAK_STEPS`` sets the length (default
2000); README records a longer local run."""

from __future__ import annotations

import os
import random
import tracemalloc

import torch

STEPS = int(os.environ.get("SOAK_STEPS", "2000"))
ALGOS = ["lora", "loha", "lokr", "dora", "ia3", "oft", "glora", "full"]
CURVES = ["0@0,1@0.5", "1@0;0.2@1", "0.5@2,1@4"]


def _token(rng, names):
    name = rng.choice(names)
    parts = [name]
    kind = rng.random()
    if kind < 0.15:
        parts.append(rng.choice(CURVES))
    else:
        parts.append(f"{rng.choice([0, 0.3, 0.7, 1, -0.5, 1.2]):g}")
        if rng.random() < 0.3:
            parts.append(f"{rng.choice([0, 0.5, 1]):g}")
    if rng.random() < 0.2:
        parts.append(f"lbw={rng.choice(['MIDD', 'OUTS', 'INALL', 'ALL0.5', 'R'])}")
    if rng.random() < 0.15:
        parts.append(f"dyn={rng.choice([1, 2, 3])}")
    if rng.random() < 0.15:
        parts.append(rng.choice(["start=1", "stop=2", "step=1-3"]))
    return "<lora:" + ":".join(parts) + ">"


def _rss() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _expected_ok(rt, originals):
    """Merged layers = originals + each contribution's own delta; hooked/untouched = originals."""
    from lycoris_ext.runtime.params import weight_view

    for tid, target in rt.tree.by_id.items():
        cur = weight_view(target)
        orig = originals[tid]
        state = rt._state.get(tid)
        if state != "merged":
            assert torch.equal(cur, orig), (target.label, state)
            continue
        w32 = orig.float()
        dw = sum(c.adapter.delta(w32, c.multiplier)[0] for c in rt._applied[tid])
        want = (w32 + dw).to(orig.dtype)
        err = float((cur.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-12))
        assert err <= 5e-6, (target.label, err)


def test_soak(webui):
    from modules import extra_networks, shared

    from lycoris_ext.runtime.params import weight_view

    tree = webui.tree_for("sd15")
    from lycoris_ext.samples import default_targets

    targets = default_targets(tree, conv=True)
    for i, a in enumerate(ALGOS):
        # every network on its own fifth of the layers, overlapping the others
        webui.write(f"n{i}", a, seed=i, rank=2, targets=targets[i % 5::5] + targets[:6])
    webui.write("xl", family="sdxl", seed=99)
    w = webui.start()
    shared.opts.lycoris_cache_count = 4
    shared.opts.lycoris_cache_mb = 3
    w.ext.cache.resize(4, 3 << 20)
    names = [f"n{i}" for i in range(len(ALGOS))] + ["xl", "missing"]
    rng = random.Random(7)
    rt = w.ext.runtime()
    originals = {tid: weight_view(t).clone() for tid, t in rt.tree.by_id.items()}
    snap_all = {n: p.detach().clone() for n, p in w.model.named_parameters()}
    target_bytes = sum(t.numel() * t.element_size() for t in originals.values())
    broken = str(webui.lora_dir / "n1.safetensors")
    good_bytes = open(broken, "rb").read()
    trace = os.environ.get("SOAK_TRACE") == "1"  # Python-heap sampling: exact but ~20x slower
    if trace:
        tracemalloc.start()
    samples, peak_kept, peak_cache = [], 0, 0
    try:
        for step in range(STEPS):
            if step == STEPS // 2:  # a file goes bad in the middle of the session...
                with open(broken, "wb") as f:
                    f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage-header!!")
            if step == STEPS // 2 + 50:  # ...and is replaced again
                with open(broken, "wb") as f:
                    f.write(good_bytes)
            shared.opts.lycoris_mode = rng.choice(["merge", "merge", "bypass", "auto"])
            prompt = "x " + " ".join(_token(rng, names) for _ in range(rng.randint(0, 4)))
            p = w.a1111.make_txt2img(prompt=prompt, steps=4)
            p.all_prompts, p.all_negative_prompts = [prompt], [""]
            p.prompts, data = extra_networks.parse_prompts([prompt])
            p.negative_prompts, p.iteration, p.batch_size = [""], 0, 1
            p.extra_network_data = data
            extra_networks.activate(p, data)
            for s in sorted(rng.sample(range(4), rng.randint(0, 2))):
                rt.step(s, 4)
            _expected_ok(rt, originals)
            peak_kept = max(peak_kept, rt.kept_bytes)
            peak_cache = max(peak_cache, w.ext.cache.nbytes)
            assert rt.kept_bytes <= target_bytes
            assert len(w.ext.cache) <= 4
            assert w.ext.cache.nbytes <= (3 << 20) or len(w.ext.cache) == 1
            if step % max(1, STEPS // 20) == 0:
                samples.append(tracemalloc.get_traced_memory()[0] if trace else _rss())
        peak_py = tracemalloc.get_traced_memory()[1] if trace else max(samples)
    finally:
        if trace:
            tracemalloc.stop()
    # back to no networks: the original weights, bit for bit, nothing kept, no hook
    p = w.a1111.make_txt2img(prompt="x")
    p.all_prompts, p.prompts, p.all_negative_prompts, p.negative_prompts = ["x"], ["x"], [""], [""]
    extra_networks.activate(p, {})
    assert all(torch.equal(q.detach(), snap_all[n]) for n, q in w.model.named_parameters())
    assert rt.kept_bytes == 0 and not rt._hooks
    # no growth trend: after the caches filled (first quarter), the last quarter stays at the second's level
    q = max(1, len(samples) // 4)
    slack = (1 << 20) if trace else (24 << 20)
    assert max(samples[-q:]) <= 1.25 * max(samples[q:2 * q]) + slack, samples
    print(f"soak: {STEPS} prompt changes; peak originals kept {peak_kept / 1e6:.2f} MB of {target_bytes / 1e6:.2f} MB; "
          f"peak cache {peak_cache / 1e6:.2f} MB (bound 3.15 MB; one larger network alone may stay); "
          f"{'Python heap' if trace else 'process RSS'} peak {peak_py / 1e6:.1f} MB, first/last samples {samples[0] / 1e6:.1f}/{samples[-1] / 1e6:.1f} MB")
