#!/usr/bin/env python
"""Runtime benchmark: what switching networks costs, against A1111's method and the floor.

Real-size SD1.5 / SDXL module trees (A1111 names, random weights; float32 on
CPU, float16 on CUDA) and four networks shaped like real ones:

    lora   LoRA rank 32, alpha 16, kohya's default targets
    locon  LoCon rank 16 / conv rank 8 (default targets + the UNet's convs)
    loha   LoHa rank 8 / conv rank 4 (same targets as locon)
    lokr   LoKr factor 8, rank 8 (default targets)

Scenarios (each a timed transition of the wanted set, median of --repeat
after --warmup rounds, the runtime and the baseline on the same tree in the
same process, one after the other):

    first apply        {}                    -> {lora}
    change multiplier  {lora, locon, loha}   -> lora at 0.6 (and back)
    add a fourth       {lora, locon, loha}   -> + lokr
    remove one         {lora, locon, loha, lokr} -> - lokr
    switch the set     {lora, locon}         -> {loha, lokr}
    restore all        {lora, locon, loha}   -> {}

Baseline: bench/baseline.py (A1111 v1.10: restore every backed-up weight and
recompute every active network's delta on every change). Floor: one
read + write of exactly the bytes the transition must change, a chunked
``dst.copy_(src)`` through 1 GiB buffers on the same device. Bypass: the
forward of every layer the rank-32 LoRA hooks, with realistic activations,
with and without the hooks.

Memory: ``kept`` is ``Runtime.kept_bytes`` after the transition, checked
equal to the bytes of every tensor the wanted set changes; ``peak`` is the
transient process peak above the RSS before the transition (``VmHWM`` reset
through ``/proc/self/clear_refs``; CUDA: the allocator's peak).

SDXL in float32 (13.5 GB of weights, 13 GB touched by the networks) cannot
hold the model, the originals and the baseline's backups in 24 GB, so on a
CPU without that much memory ``--sdxl-subset small`` (the default there)
leaves UNet ``input_blocks.7-8`` and ``output_blocks.0-2`` unallocated (meta)
and targets only the allocated layers: both text encoders, the middle block
and every other UNet block stay. ``--sdxl-subset full`` builds all of it.

    python bench/bench_runtime.py --model sd15
    python bench/bench_runtime.py --model both --json bench/results.json
    python bench/bench_runtime.py --quick          # shrunk trees, smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from baseline import A1111Baseline  # noqa: E402
from lycoris_ext.files import RawFile  # noqa: E402
from lycoris_ext.network import build_network  # noqa: E402
from lycoris_ext.resolve import resolve  # noqa: E402
from lycoris_ext.resolve.inventory import FAMILY_OF, a1111_rows  # noqa: E402
from lycoris_ext.resolve.tree import A1111, ModelTree  # noqa: E402
from lycoris_ext.runtime import Runtime, Use  # noqa: E402
from lycoris_ext.runtime.params import nbytes, weight_view  # noqa: E402
from lycoris_ext.samples import default_targets, sample_network  # noqa: E402
from lycoris_ext.synthetic import build_part, materialize  # noqa: E402

MB = 1e6
GIB = 1 << 30

# name -> (algorithm, rank, conv_rank or None, alpha, conv targets, seed)
NETWORKS = {
    "lora": ("lora", 32, None, 16.0, False, 1),
    "locon": ("lora", 16, 8, 8.0, True, 2),
    "loha": ("loha", 8, 4, 4.0, True, 3),
    "lokr": ("lokr", 8, None, 8.0, False, 4),
}

THREE = (("lora", 1.0), ("locon", 1.0), ("loha", 1.0))
THREE_M = (("lora", 0.6), ("locon", 1.0), ("loha", 1.0))
FOUR = THREE + (("lokr", 1.0),)
SW_A = (("lora", 1.0), ("locon", 1.0))
SW_B = (("loha", 1.0), ("lokr", 1.0))

# (start state, [(next state, scenario label or None for an untimed step)])
CYCLES = [
    ((), [((("lora", 1.0),), "first apply (1 LoRA)"), ((), None)]),
    (THREE, [(THREE_M, "change 1 multiplier (3 active)"), (THREE, "change 1 multiplier (3 active)")]),
    (THREE, [(FOUR, "add a 4th (3 active)"), (THREE, "remove 1 of 4")]),
    (SW_A, [(SW_B, "switch set (2 for 2)"), (SW_A, None)]),
    (THREE, [((), "restore all (3 active)"), (THREE, None)]),
]
SCENARIOS = ["first apply (1 LoRA)", "change 1 multiplier (3 active)", "add a 4th (3 active)",
             "remove 1 of 4", "switch set (2 for 2)", "restore all (3 active)"]
# The targets: speed-up over the baseline for these.
SPEEDUP_TARGETS = {"change 1 multiplier (3 active)": 3.0, "add a 4th (3 active)": 3.0, "remove 1 of 4": 3.0}
FLOOR_TARGETS = {"first apply (1 LoRA)": 2.0}
BYPASS_TARGET = 0.15

SDXL_SMALL_SKIP = {"unet": ("input_blocks.7", "input_blocks.8", "output_blocks.0", "output_blocks.1", "output_blocks.2")}


# --------------------------------------------------------------- utilities
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def proc_status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class MemProbe:
    """Peak memory above the level at ``start()``: CUDA allocator or process RSS."""

    def __init__(self, device):
        self.device = device
        self.rss_ok = reset_hwm() and "VmHWM" in proc_status()

    def start(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            reset_hwm()
            self.base = proc_status().get("VmRSS", 0)

    def peak(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if not self.rss_ok:
            return None
        return proc_status()["VmHWM"] - self.base


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x):
    if x is None or x != x:
        return "-"
    return f"{x:.4f}" if x < 10 else f"{x:.2f}"


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process)."""
    t = os.times()
    mine = t.user + t.system
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), mine
    except (OSError, ValueError):
        return float("nan"), mine


def others_cpu(c0, c1, wall: float) -> float:
    """Share of one CPU that other processes used during ``wall`` seconds (contention).

    Two clock ticks are forgiven: /proc/stat counts in ticks, so a short step
    would otherwise look contended by one tick of a daemon.
    """
    used = (c1[0] - c0[0]) - (c1[1] - c0[1]) - 2.0 / os.sysconf("SC_CLK_TCK")
    return max(0.0, used) / wall if wall > 0 else 0.0


QUIET = 0.1  # a sample is "quiet" when others used less than this share of one CPU


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ------------------------------------------------------------------ models
def _fill_partial(mod: nn.Module, prefix: str, skip: tuple[str, ...], dtype, device, seed: list[int]) -> None:
    """``materialize`` every submodule of ``mod`` except those under ``skip``."""
    if prefix in skip:
        return
    if not any(s.startswith(prefix + ".") for s in skip) and prefix:
        materialize(mod, dtype, device, seed[0])
        seed[0] += 1
        return
    own = [n for n, p in mod._parameters.items() if p is not None]
    if own:
        holder = nn.Module()
        for n in own:
            holder.register_parameter(n, mod._parameters[n])
        materialize(holder, dtype, device, seed[0])
        seed[0] += 1
        for n in own:
            mod._parameters[n] = holder._parameters[n]
    for name, child in mod.named_children():
        _fill_partial(child, f"{prefix}.{name}" if prefix else name, skip, dtype, device, seed)


def build(model: str, shrink: int, dtype, device, skip: dict[str, tuple[str, ...]]):
    """``(parts, tree)`` like ``synthetic.build_tree``, leaving ``skip`` modules on meta."""
    parts = {}
    for i, (part, rows) in enumerate(a1111_rows(model).items()):
        root = build_part(rows, shrink)
        if skip.get(part):
            _fill_partial(root, "", tuple(skip[part]), dtype, device, [1000 * i])
        else:
            materialize(root, dtype, device, i)
        parts[part] = root
    return parts, ModelTree(parts, A1111, FAMILY_OF[model])


def allocated(target) -> bool:
    return not getattr(target.module, target.param).is_meta


def make_networks(tree, dtype_file):
    nets, info = {}, {}
    for name, (algo, rank, conv_rank, alpha, conv, seed) in NETWORKS.items():
        targets = [t for t in default_targets(tree, conv=conv) if allocated(t)]
        sd = sample_network(tree, algo, rank=rank, conv_rank=conv_rank, seed=seed, targets=targets, alpha=alpha, dtype=dtype_file)
        net = build_network(RawFile(f"{name}.safetensors", sd, {}))
        nets[name] = net
        info[name] = {"algorithm": algo, "rank": rank, "conv_rank": conv_rank, "alpha": alpha,
                      "modules": len(net), "file_MB": net.nbytes / MB}
    return nets, info


# ------------------------------------------------------------------ floors
class Floor:
    """Read + write of N bytes on the device: chunked copies through two buffers."""

    def __init__(self, device, dtype, max_bytes: int, cap: int = GIB):
        self.device, self.dtype = device, dtype
        esize = torch.empty((), dtype=dtype).element_size()
        n = max(1, min(cap, max_bytes) // esize)
        self.src = torch.empty(n, dtype=dtype, device=device).fill_(1.0)
        self.dst = torch.empty(n, dtype=dtype, device=device).fill_(0.0)
        self.esize = esize
        for _ in range(3):  # new pages are slow for a while on some VMs
            self.dst.copy_(self.src)
        sync(device)

    def _copy(self, nbytes_):
        left = nbytes_ // self.esize
        while left > 0:
            k = min(left, self.src.numel())
            self.dst[:k].copy_(self.src[:k])
            left -= k

    def quiet(self):
        if self.device.type == "cpu":
            wait_quiet(10.0)

    def copy_time(self, nbytes_: int, reps: int) -> float:
        if nbytes_ == 0:
            return 0.0
        self._copy(nbytes_)
        ts = []
        for _ in range(reps):
            self.quiet()
            sync(self.device)
            t0 = time.perf_counter()
            self._copy(nbytes_)
            sync(self.device)
            ts.append(time.perf_counter() - t0)
        return median(ts)

    def lowrank_time(self, layers, reps: int) -> float:
        """``W + up @ down`` per layer, written into the buffer (one read, one write, the products)."""
        def run():
            off = 0
            for w, up, down in layers:
                n = w.numel()
                if off + n > self.dst.numel():
                    off = 0
                torch.addmm(w.reshape(w.shape[0], -1), up, down, out=self.dst[off:off + n].view(w.shape[0], -1))
                off += n
        run()
        ts = []
        for _ in range(reps):
            self.quiet()
            sync(self.device)
            t0 = time.perf_counter()
            run()
            sync(self.device)
            ts.append(time.perf_counter() - t0)
        return median(ts)

    def fresh_clone_time(self, tensors, reps: int) -> float:
        """Clone ``tensors`` into newly allocated memory (what keeping originals costs at least)."""
        ts = []
        for _ in range(reps + 1):
            gc.collect()
            self.quiet()
            sync(self.device)
            t0 = time.perf_counter()
            copies = [t.clone() for t in tensors]
            sync(self.device)
            ts.append(time.perf_counter() - t0)
            del copies
        return median(ts[1:])

    def close(self):
        self.src = self.dst = None


# ----------------------------------------------------------- state helpers
class States:
    """What each wanted set changes: per target, the (network, multiplier) list."""

    def __init__(self, tree, nets):
        self.tree = tree
        self.nets = nets
        self.matches = {name: resolve(net, tree).matches for name, net in nets.items()}
        self.targets = {}
        for ms in self.matches.values():
            for m in ms:
                self.targets[m.target.id] = m.target

    def layers(self, state) -> dict[tuple, tuple]:
        out: dict[tuple, list] = {}
        for name, mult in state:
            for m in self.matches[name]:
                out.setdefault(m.target.id, []).append((name, mult))
        return {k: tuple(v) for k, v in out.items()}

    def bytes_of(self, tids) -> int:
        return sum(nbytes(weight_view(self.targets[t])) for t in tids)

    def changed(self, a, b) -> set:
        la, lb = self.layers(a), self.layers(b)
        return {t for t in set(la) | set(lb) if la.get(t) != lb.get(t)}

    def checksum(self) -> dict[tuple, int]:
        """Exact bit checksums of every tensor any network targets."""
        out = {}
        for tid, t in self.targets.items():
            w = weight_view(t).detach()
            iv = {4: torch.int32, 2: torch.int16}[w.element_size()]
            out[tid] = int(w.contiguous().view(iv).sum(dtype=torch.int64))
        return out


class Engine:
    """The runtime or the baseline, behind one ``go(state)``."""

    def __init__(self, kind, tree, nets):
        self.kind, self.nets = kind, nets
        self.impl = Runtime(tree, mode="merge") if kind == "ours" else A1111Baseline(tree)
        self.last_rebuilt = None

    def go(self, state):
        if self.kind == "ours":
            rep = self.impl.set([Use(self.nets[n], te=m, unet=m) for n, m in state])
            self.last_rebuilt = rep.rebuilt
        else:
            self.last_rebuilt = self.impl.set([(self.nets[n], m) for n, m in state])

    @property
    def kept_bytes(self):
        return self.impl.kept_bytes

    def close(self):
        self.go(())
        self.impl.forget()


def sample_tids(tids, k=4):
    tids = sorted(tids, key=repr)
    if len(tids) <= k:
        return tids
    step = len(tids) / k
    return [tids[int(i * step)] for i in range(k)]


def wait_quiet(max_wait: float, window: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until other processes leave the CPUs alone; returns the wait."""
    t_start = time.perf_counter()
    while True:
        c0 = cpu_seconds()
        time.sleep(window)
        if others_cpu(c0, cpu_seconds(), window) < QUIET or time.perf_counter() - t_start >= max_wait:
            return time.perf_counter() - t_start


def run_engine(kind, tree, nets, states, device, warmup, repeat, snaps, log, max_wait=30.0, extra_rounds=None):
    """Every cycle for one engine; returns {scenario: [samples]}.

    Each timed step waits for a quiet machine first (at most ``max_wait`` s);
    a cycle runs more rounds (at most ``extra_rounds``) while some of its
    scenarios have fewer than ``repeat`` samples during which other processes
    stayed off the CPUs. Every sample is kept, with its contention.
    """
    extra_rounds = 2 * repeat if extra_rounds is None else extra_rounds
    eng = Engine(kind, tree, nets)
    mem = MemProbe(device)
    res: dict[str, list] = {s: [] for s in SCENARIOS}
    for start, steps in CYCLES:
        eng.go(start)
        cur = start
        labels = {lb for _, lb in steps if lb is not None}
        r = 0
        while True:
            quiet = {lb: sum(1 for x in res[lb] if x["others_cpu"] < QUIET) for lb in labels}
            if r >= warmup + repeat and (min(quiet.values()) >= repeat or r >= warmup + repeat + extra_rounds):
                break
            for si, (nxt, label) in enumerate(steps):
                gc.collect()
                waited = wait_quiet(max_wait) if (label is not None and r >= warmup and device.type == "cpu") else 0.0
                sync(device)
                mem.start()
                la = loadavg()
                c0 = cpu_seconds()
                t0 = time.perf_counter()
                eng.go(nxt)
                sync(device)
                dt = time.perf_counter() - t0
                oc = others_cpu(c0, cpu_seconds(), dt)
                peak = mem.peak()
                if label is not None and r >= warmup:
                    changed = states.changed(cur, nxt)
                    in_state = set(states.layers(nxt))
                    res[label].append({
                        "seconds": dt, "peak_extra_bytes": peak, "kept_bytes": eng.kept_bytes,
                        "state_bytes": states.bytes_of(in_state), "touched_bytes": states.bytes_of(changed),
                        "touched_layers": len(changed), "rebuilt": eng.last_rebuilt, "loadavg": la, "others_cpu": oc,
                        "waited_s": waited,
                    })
                    # Every round gives the same weights: compare ours and the baseline on a few layers.
                    key = (label, si)
                    vals = {t: weight_view(states.targets[t]).detach().float().clone() for t in sample_tids(changed)}
                    if kind == "ours":
                        snaps[key] = vals
                    elif key in snaps:
                        errs = [float((v - snaps[key][t]).abs().max() / snaps[key][t].abs().max().clamp_min(1e-30))
                                for t, v in vals.items()]
                        res[label][-1]["max_rel_diff_vs_ours"] = max(errs) if errs else 0.0
                    del vals
                cur = nxt
            r += 1
        log(f"  {kind}: cycle from {[n for n, _ in start] or '{}'} done, {r} rounds")
    eng.close()
    del eng
    gc.collect()
    return res


def summary(samples):
    """Median of the quiet samples when there are at least 2 of them, else of all."""
    q = [x["seconds"] for x in samples if x["others_cpu"] < QUIET]
    return median(q) if len(q) >= 2 else median([x["seconds"] for x in samples])


# ------------------------------------------------------------------ bypass
def _level(model: str, path: str) -> int:
    levels = 4 if model == "sd15" else 3
    m = re.match(r"input_blocks\.(\d+)\.", path)
    if m:
        return max(0, (int(m.group(1)) - 1) // 3)
    m = re.match(r"output_blocks\.(\d+)\.", path)
    if m:
        return levels - 1 - int(m.group(1)) // 3
    if path.startswith("middle_block"):
        return levels - 1
    return 0


def activation(model, target, batch, latent):
    """(shape, group) of a realistic input of the target's layer at ``latent`` x ``latent``."""
    mod = target.module
    if target.part != "unet":
        return (batch, 77, mod.in_features), target.part
    lvl = _level(model, target.path)
    side = max(1, latent >> lvl)
    group = f"unet L{lvl} ({side}x{side})"
    if isinstance(mod, nn.Conv2d):
        return (batch, mod.in_channels, side, side), group
    if re.search(r"attn2\.to_[kv]$", target.path):
        return (batch, 77, mod.in_features), group
    return (batch, side * side, mod.in_features), group


def bench_bypass(model, tree, nets, device, dtype, warmup, repeat, batch, latent, log):
    net = nets["lora"]
    rt = Runtime(tree, mode="bypass")
    rt.set([Use(net)])
    hooked = [rt.tree.by_id[t] for t in rt._hooks]
    merged = rt.layers()["merged"]
    rt.restore()
    inputs, calls = {}, []
    g = torch.Generator(device="cpu").manual_seed(0)
    for t in hooked:
        shape, group = activation(model, t, batch, latent)
        if shape not in inputs:
            inputs[shape] = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
        calls.append((t.module, inputs[shape], group))
    groups = sorted({c[2] for c in calls})

    cuda = device.type == "cuda"

    @torch.no_grad()
    def sweep():
        """(seconds for every call, seconds per group). On CUDA the groups come
        from a second pass that synchronizes after each call; the total from a
        pass that does not."""
        per = dict.fromkeys(groups, 0.0)
        sync(device)
        t_all = time.perf_counter()
        for mod, x, grp in calls:
            t0 = time.perf_counter()
            mod(x)
            if cuda:
                sync(device)
            per[grp] += time.perf_counter() - t0
        sync(device)
        total = time.perf_counter() - t_all
        if cuda:
            t_all = time.perf_counter()
            for mod, x, _ in calls:
                mod(x)
            sync(device)
            total = time.perf_counter() - t_all
        return total, per

    on, off, on_g, off_g = [], [], {g_: [] for g_ in groups}, {g_: [] for g_ in groups}
    contention = []
    r = 0
    while r < warmup + repeat or (sum(c < QUIET for c in contention) < repeat and r < warmup + 2 * repeat):
        if r >= warmup and device.type == "cpu":
            wait_quiet(30.0)
        rt.set([Use(net)])
        c0 = cpu_seconds()
        t_on, p_on = sweep()
        rt.restore()
        t_off, p_off = sweep()
        oc = others_cpu(c0, cpu_seconds(), t_on + t_off)
        if r >= warmup:
            contention.append(oc)
            on.append(t_on)
            off.append(t_off)
            for g_ in groups:
                on_g[g_].append(p_on[g_])
                off_g[g_].append(p_off[g_])
        log(f"  bypass round {r}: hooks {t_on:.3f} s, plain {t_off:.3f} s (others used {oc:.2f} CPU)")
        r += 1
    quiet_rounds = [i for i, c in enumerate(contention) if c < QUIET]
    if len(quiet_rounds) >= 2:  # the quiet rounds only, as for the scenarios
        on, off = [on[i] for i in quiet_rounds], [off[i] for i in quiet_rounds]
        on_g = {g_: [v[i] for i in quiet_rounds] for g_, v in on_g.items()}
        off_g = {g_: [v[i] for i in quiet_rounds] for g_, v in off_g.items()}
    rt.forget()
    out = {
        "hooked_layers": len(hooked), "merged_layers_in_bypass": merged, "batch": batch, "latent": latent,
        "with_hooks_s": median(on), "without_s": median(off),
        "extra": median(on) / median(off) - 1, "samples_with": on, "samples_without": off, "others_cpu": contention,
        "quiet_share": sum(c < QUIET for c in contention) / max(1, len(contention)), "quiet_rounds": len(quiet_rounds),
        "groups": {g_: {"layers": sum(1 for c in calls if c[2] == g_), "with_hooks_s": median(on_g[g_]),
                        "without_s": median(off_g[g_]), "extra": median(on_g[g_]) / median(off_g[g_]) - 1}
                   for g_ in groups},
    }
    return out


# -------------------------------------------------------------------- main
def bench_model(model, args, device, dtype, log):
    out = {"model": model}
    reset_hwm()
    shrink = 4 if args.quick else 1
    subset = args.sdxl_subset
    if model == "sdxl" and subset == "auto":
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        subset = "full" if (shrink > 1 or device.type == "cuda" or ram > 48 * GIB) else "small"
    skip = SDXL_SMALL_SKIP if (model == "sdxl" and subset == "small") else {}
    out["subset"] = {"mode": subset if model == "sdxl" else "full", "unallocated": {k: list(v) for k, v in skip.items()}}

    t0 = time.perf_counter()
    parts, tree = build(model, shrink, dtype, device, skip)
    n_all = sum(p.numel() for m in parts.values() for p in m.parameters())
    n_real = sum(p.numel() for m in parts.values() for p in m.parameters() if not p.is_meta)
    esize = torch.empty((), dtype=dtype).element_size()
    out["build"] = {"shrink": shrink, "dtype": str(dtype), "params_M": n_all / 1e6, "allocated_params_M": n_real / 1e6,
                    "allocated_MB": n_real * esize / MB, "seconds": time.perf_counter() - t0}
    log(f"[{model}] built in {out['build']['seconds']:.1f} s: {n_real / 1e6:.0f}M of {n_all / 1e6:.0f}M parameters allocated "
        f"({n_real * esize / 1e9:.2f} GB {dtype})")

    nets, info = make_networks(tree, torch.float16)
    states = States(tree, nets)
    for name in nets:
        info[name]["layers"] = len(states.matches[name])
        info[name]["touched_MB"] = states.bytes_of({m.target.id for m in states.matches[name]}) / MB
    t0 = time.perf_counter()
    resolve(nets["lora"], tree)
    out["resolve_lora_s"] = time.perf_counter() - t0
    out["networks"] = info
    for name, i in info.items():
        log(f"[{model}] {name}: {i['modules']} modules, {i['layers']} layers, touches {i['touched_MB']:.0f} MB, file {i['file_MB']:.1f} MB (fp16)")

    check0 = states.checksum()

    # Floors: bytes each scenario changes (every transition of one label changes the same bytes).
    max_touch = states.bytes_of(set(states.targets))
    floor = Floor(device, dtype, max_touch)
    lora_layers = []
    for m in states.matches["lora"]:
        w = weight_view(m.target).detach()
        up, down = m.adapter.lowrank(device)
        lora_layers.append((w, up.to(dtype), down.to(dtype)))
    out["floor_lowrank_lora_s"] = floor.lowrank_time(lora_layers, args.repeat)
    out["fresh_clone_lora_s"] = floor.fresh_clone_time([w for w, _, _ in lora_layers], args.repeat)
    del lora_layers
    floors, rows_bytes = {}, {}
    for start, steps in CYCLES:
        cur = start
        for nxt, label in steps:
            if label is not None and label not in floors:
                rows_bytes[label] = states.bytes_of(states.changed(cur, nxt))
                floors[label] = floor.copy_time(rows_bytes[label], args.repeat)
            cur = nxt
    out["floors"] = floors
    biggest = max(floors, key=lambda k: floors[k])
    out["copy_GBps"] = rows_bytes[biggest] / floors[biggest] / 1e9
    floor.close()
    del floor
    gc.collect()
    log(f"[{model}] floors measured ({out['copy_GBps']:.1f} GB/s read+write copy); low-rank products of the LoRA into a buffer: "
        f"{out['floor_lowrank_lora_s']:.3f} s")

    snaps: dict = {}
    t0 = time.perf_counter()
    ours = run_engine("ours", tree, nets, states, device, args.warmup, args.repeat, snaps, log)
    out["ours_total_s"] = time.perf_counter() - t0
    out["restored_exact_after_ours"] = states.checksum() == check0
    t0 = time.perf_counter()
    base = run_engine("baseline", tree, nets, states, device, args.warmup, args.baseline_repeat or args.repeat, snaps, log)
    out["baseline_total_s"] = time.perf_counter() - t0
    out["restored_exact_after_baseline"] = states.checksum() == check0
    snaps.clear()

    rows = {}
    for label in SCENARIOS:
        o, b = ours[label], base[label]
        to, tb = summary(o), summary(b)
        peaks = [s["peak_extra_bytes"] for s in o if s["peak_extra_bytes"] is not None]
        bpeaks = [s["peak_extra_bytes"] for s in b if s["peak_extra_bytes"] is not None]
        rows[label] = {
            "ours_s": to, "baseline_s": tb, "speedup": tb / to, "floor_s": floors[label], "ours_over_floor": to / floors[label] if floors[label] else None,
            "kept_bytes": o[-1]["kept_bytes"], "state_bytes": o[-1]["state_bytes"],
            "kept_equals_touched": all(s["kept_bytes"] == s["state_bytes"] for s in o),
            "touched_bytes": o[-1]["touched_bytes"], "touched_layers": o[-1]["touched_layers"],
            "rebuilt": sorted({s["rebuilt"] for s in o}), "baseline_rewritten": sorted({s["rebuilt"] for s in b}),
            "baseline_kept_bytes": b[-1]["kept_bytes"],
            "ours_peak_extra_bytes": max(peaks) if peaks else None, "baseline_peak_extra_bytes": max(bpeaks) if bpeaks else None,
            "max_rel_diff_vs_ours": max((s.get("max_rel_diff_vs_ours", 0.0) for s in b), default=None),
            "ours_samples": [s["seconds"] for s in o], "baseline_samples": [s["seconds"] for s in b],
            "loadavg": [s["loadavg"] for s in o + b],
            "ours_others_cpu": [s["others_cpu"] for s in o], "baseline_others_cpu": [s["others_cpu"] for s in b],
            "quiet_share": sum(s["others_cpu"] < QUIET for s in o + b) / len(o + b),
            "quiet_samples": [sum(s["others_cpu"] < QUIET for s in o), sum(s["others_cpu"] < QUIET for s in b)],
        }
    out["scenarios"] = rows
    if not args.no_bypass:
        latent = (64 if model == "sd15" else 128) // (4 if args.quick else 1)
        out["bypass"] = bench_bypass(model, tree, nets, device, dtype, args.warmup, args.repeat, args.batch, latent, log)
    del states, nets, tree, parts
    gc.collect()
    hwm = proc_status().get("VmHWM")
    out["peak_rss_bytes"] = hwm if hwm is not None else maxrss_bytes()
    if device.type == "cuda":
        out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def print_report(r, log):
    m = r["model"]
    hdr = (f"{'scenario':32s} | {'ours s':>8s} | {'baseline s':>10s} | {'speed-up':>8s} | {'floor s':>8s} | {'ours/floor':>10s} | "
           f"{'kept MB':>8s} | {'touched MB':>10s} | {'base kept MB':>12s} | {'peak+ MB':>8s} | {'rebuilt':>7s} | {'quiet':>5s}")
    print()
    sub = r["subset"]
    extra = f", unallocated: {sub['unallocated']}" if sub["unallocated"] else ""
    print(f"== {m}: {r['build']['allocated_params_M']:.0f}M params allocated ({r['build']['allocated_MB'] / 1e3:.2f} GB {r['build']['dtype']}), "
          f"shrink {r['build']['shrink']}{extra}")
    print(hdr)
    print("-" * len(hdr))
    for label, s in r["scenarios"].items():
        peak = s["ours_peak_extra_bytes"]
        print(f"{label:32s} | {fmt_s(s['ours_s']):>8s} | {fmt_s(s['baseline_s']):>10s} | {s['speedup']:7.1f}x | {fmt_s(s['floor_s']):>8s} | "
              f"{(s['ours_over_floor'] or float('nan')):9.2f}x | {s['kept_bytes'] / MB:8.0f} | {s['touched_bytes'] / MB:10.0f} | "
              f"{s['baseline_kept_bytes'] / MB:12.0f} | {'-' if peak is None else f'{peak / MB:8.0f}':>8s} | {','.join(map(str, s['rebuilt'])):>7s} | "
              f"{s['quiet_share'] * 100:4.0f}%" + ("  (!)" if min(s["quiet_samples"]) < 2 else ""))
    fa = r["scenarios"]["first apply (1 LoRA)"]
    print(f"floor: one read+write pass at {r['copy_GBps']:.1f} GB/s (chunked copy through 1 GiB buffers)")
    print(f"first apply: the LoRA's rank-32 products alone (W + up @ down for each of its layers, written into a buffer: "
          f"one read, one write, the products) take {r['floor_lowrank_lora_s']:.3f} s here; ours {fa['ours_s']:.3f} s is "
          f"{fa['ours_s'] / r['floor_lowrank_lora_s']:.2f}x that; cloning its weights into fresh memory {r['fresh_clone_lora_s']:.3f} s; "
          f"resolving it {r['resolve_lora_s']:.3f} s")
    ok_kept = all(s["kept_equals_touched"] for s in r["scenarios"].values())
    diffs = [s["max_rel_diff_vs_ours"] for s in r["scenarios"].values() if s["max_rel_diff_vs_ours"] is not None]
    print(f"kept == bytes of touched tensors after every transition: {ok_kept}; weights bit-exact after restore: "
          f"ours {r['restored_exact_after_ours']}, baseline {r['restored_exact_after_baseline']}; "
          f"max rel. difference ours vs baseline: {max(diffs) if diffs else float('nan'):.1e}")
    b = r.get("bypass")
    if b:
        print(f"bypass, 1 LoRA rank 32: forward of the {b['hooked_layers']} hooked layers (batch {b['batch']}, latent {b['latent']}): "
              f"{b['without_s']:.4f} s plain, {b['with_hooks_s']:.4f} s hooked: {b['extra'] * 100:+.1f}% "
              f"({b['merged_layers_in_bypass']} packed layers merged, not hooked; quiet {b['quiet_share'] * 100:.0f}%"
              f"{'' if b['quiet_rounds'] >= 2 else ' (!)'})")
        for g, v in b["groups"].items():
            print(f"    {g:24s} {v['layers']:4d} layers  {v['without_s']:.4f} s -> {v['with_hooks_s']:.4f} s  {v['extra'] * 100:+.1f}%")
    print(f"quiet: share of timed samples during which other processes used < {QUIET:.0%} of a CPU; medians are over the quiet "
          f"samples (all samples where fewer than 2 were quiet: marked (!), not to be trusted)")
    print(f"peak RSS of this model's run: {r['peak_rss_bytes'] / 1e9:.2f} GB; ours {r['ours_total_s']:.0f} s, baseline {r['baseline_total_s']:.0f} s in all")


def targets_report(r):
    lines = []
    sc = r["scenarios"]
    for label, need in SPEEDUP_TARGETS.items():
        s = sc[label]
        lines.append((f"{r['model']}: {label}: >= {need:.0f}x faster than baseline", s["speedup"] >= need, f"{s['speedup']:.1f}x"))
    for label, need in FLOOR_TARGETS.items():
        s = sc[label]
        lines.append((f"{r['model']}: {label}: within {need:.0f}x of the floor", s["ours_over_floor"] <= need, f"{s['ours_over_floor']:.2f}x"))
    fa = sc["first apply (1 LoRA)"]
    lines.append((f"{r['model']}: (not a target) first apply within 2x of its rank-32 products alone", fa["ours_s"] <= 2 * r["floor_lowrank_lora_s"],
                  f"{fa['ours_s'] / r['floor_lowrank_lora_s']:.2f}x"))
    ok = all(s["kept_equals_touched"] for s in sc.values())
    kept = sc["change 1 multiplier (3 active)"]
    lines.append((f"{r['model']}: kept originals == bytes of touched parameters", ok,
                  f"{kept['kept_bytes']} B kept vs {kept['state_bytes']} B touched (3 active)"))
    if r.get("bypass"):
        b = r["bypass"]
        lines.append((f"{r['model']}: bypass, 1 rank-32 LoRA: < {BYPASS_TARGET * 100:.0f}% extra on patched layers", b["extra"] < BYPASS_TARGET,
                      f"{b['extra'] * 100:+.1f}%"))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["sd15", "sdxl", "both"], default="sd15")
    ap.add_argument("--quick", action="store_true", help="shrunk trees (widths / 4), latents / 4, 2 repeats: a smoke test; its ratios mean nothing")
    ap.add_argument("--repeat", type=int, default=None, help="timed repetitions per scenario (default 5, quick 2)")
    ap.add_argument("--baseline-repeat", type=int, default=None, help="timed repetitions of the baseline (default: --repeat)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--batch", type=int, default=1, help="batch of the bypass forward")
    ap.add_argument("--sdxl-subset", choices=["auto", "small", "full"], default="auto")
    ap.add_argument("--no-bypass", action="store_true")
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "dtype": str(dtype), "repeat": args.repeat, "warmup": args.warmup,
           "quick": args.quick, "loadavg_start": loadavg()}
    log(f"torch {env['torch']} on {device} ({env['device_name']}), {threads} threads, {dtype}, repeat {args.repeat}")
    results = []
    models = ["sd15", "sdxl"] if args.model == "both" else [args.model]
    with torch.no_grad():
        for model in models:
            r = bench_model(model, args, device, dtype, log)
            results.append(r)
            print_report(r, log)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print()
    print("targets:" + (" (--quick: shrunk layers make every ratio meaningless; shown only to exercise the code)" if args.quick else ""))
    verdicts = []
    for r in results:
        for name, ok, value in targets_report(r):
            verdicts.append({"target": name, "met": bool(ok), "value": value})
            print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    env["loadavg_end"] = loadavg()
    env["total_s"] = time.perf_counter() - t_start
    env["peak_rss_bytes"] = maxrss_bytes()
    print(f"total {env['total_s']:.0f} s; process peak RSS {env['peak_rss_bytes'] / 1e9:.2f} GB; "
          f"load average {env['loadavg_start']} -> {env['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": results, "targets": verdicts}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
