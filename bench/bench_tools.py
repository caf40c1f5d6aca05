#!/usr/bin/env python
"""Network tools benchmark: bake, convert and extract on real-size checkpoints,
against the obvious method, in the same run.

Checkpoints: real-size SD1.5 / SDXL in A1111's single-file layout (the
packaged inventories' UNet and text encoders, random weights, float16 as
checkpoints are shared; no VAE), written once to --workdir tensor by tensor.
Networks (float16, as trainers save them): ``lora`` LoRA rank 32 alpha 16 on
kohya's default targets; ``lokr`` LoKr factor 8 rank 8 on the same layers.

Tasks (each method in its own fresh process, one after the other, so neither
sees the other's memory; time is wall time, peak is the process's VmHWM
above its RSS just before the work, i.e. after imports):

    bake      the checkpoint + lora at 0.8 + lokr at 0.5 -> fp16 checkpoint
    convert   lora (rank 32) -> rank 16 (a resize), and lokr -> rank 16
    extract   base and the baked checkpoint -> rank 32 LoRA

The obvious method (what merge/resize/extract scripts usually do): the whole
checkpoint(s) in memory (``safetensors.torch.load_file``), each layer's change
as a float32 dense delta from ``Adapter.delta`` (and ``W + dW`` cast back),
``torch.linalg.svd`` of the dense change, ``save_file`` of the whole dict.
Ours: :mod:`lycoris_ext.tools` (tensor by tensor; the runtime's merge; SVD
through QR of the factors when the change is low-rank).

On this machine (2 cores, shared) a dense SVD of a large layer takes seconds
(SD1.5's 264 LoRA layers: about 20 minutes for the obvious resize), so
convert and extract run on networks over every Nth of the default targets
(``--svd-every``: 8 on SD1.5, 16 on SDXL), both methods on the same layers;
extract still reads both whole checkpoints. bake always runs on the whole
checkpoint with networks on every default target.

    python bench/bench_tools.py --model sd15
    python bench/bench_tools.py --model both --json bench/results/tools.json
    python bench/bench_tools.py --quick        # widths / 8: a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402

GB = 1e9


# --------------------------------------------------------------- memory
def proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# --------------------------------------------------------------- inputs
def write_checkpoint(path: str, model: str, shrink: int, seed: int = 0) -> int:
    """A random float16 checkpoint in A1111's layout, one tensor at a time."""
    from lycoris_ext.resolve.inventory import FAMILY_OF, a1111_rows
    from lycoris_ext.tools.checkpoint import LAYOUTS, SafetensorsWriter

    _, prefixes = LAYOUTS[FAMILY_OF[model]]
    entries = {}
    for part, rows in a1111_rows(model).items():
        for p, _cls, params, _ in rows:
            for name, shape in params.items():
                if shrink > 1:
                    shape = tuple(d // shrink if (d >= 64 and d % shrink == 0) else d for d in shape)
                entries[f"{prefixes[part]}{p}.{name}" if p else f"{prefixes[part]}{name}"] = (torch.float16, tuple(shape))
    g = torch.Generator().manual_seed(seed)
    total = 0
    with SafetensorsWriter(path, entries) as w:
        for k, (dt, shape) in entries.items():
            fan = math.prod(shape[1:]) if len(shape) > 1 else 1
            t = (torch.randn(shape, generator=g) / math.sqrt(max(1, fan))).to(dt)
            w.write(k, t)
            total += t.numel() * 2
        w.commit()
    return total


def write_networks(folder: str, model: str, shrink: int, subset: int) -> dict[str, str]:
    """``lora``/``lokr`` on every default target; ``*_sub`` on every ``subset``-th."""
    from lycoris_ext.tools.checkpoint import Checkpoint, Layout, write_safetensors
    from lycoris_ext.samples import default_targets, sample_network

    with Checkpoint(os.path.join(folder, "base.safetensors")) as ck:
        tree = Layout(ck).tree
    targets = default_targets(tree)
    out = {}
    for name, algo, rank, every in (("lora", "lora", 32, 1), ("lokr", "lokr", 8, 1),
                                    ("lora_sub", "lora", 32, subset), ("lokr_sub", "lokr", 8, subset)):
        sd = sample_network(tree, algo, rank=rank, seed=len(out), alpha=16 if algo == "lora" else None,
                            targets=targets[::every], dtype=torch.float16)
        p = os.path.join(folder, f"{name}.safetensors")
        write_safetensors(p, sd)
        out[name] = p
    return out


# --------------------------------------------------------------- the obvious method
def _wanted(tree, specs):
    from lycoris_ext.tools.specs import check_fit, contributions, load_specs

    loaded = load_specs(specs)
    _, resolutions = check_fit(loaded, tree)
    targets = {m.target.id: m.target for r in resolutions for m in r.matches}
    return targets, contributions(tree, [x.use for x in loaded])


@torch.no_grad()
def obvious_bake(ckpt: str, specs, out: str) -> None:
    from safetensors.torch import load_file, save_file

    from lycoris_ext.tools.checkpoint import Checkpoint, Layout, target_slice

    with Checkpoint(ckpt) as ck:
        layout = Layout(ck)
    sd = load_file(ckpt)
    targets, want = _wanted(layout.tree, specs)
    for tid, contribs in want.items():
        t = targets[tid]
        view = target_slice(sd[layout.key(t.part, t.path, t.param)], t)
        w32 = view.float()
        dw = sum(c.adapter.delta(w32, c.multiplier)[0].reshape(w32.shape) for c in contribs)
        view.copy_((w32 + dw).to(view.dtype))
    save_file(sd, out)


def _svd_factors(dw: torch.Tensor, rank: int, dtype=torch.float16):
    m = dw.shape[0]
    u, s, vh = torch.linalg.svd(dw.reshape(m, -1).float(), full_matrices=False)
    r = min(rank, s.numel())
    return (u[:, :r] * s[:r]).to(dtype), vh[:r].to(dtype)


@torch.no_grad()
def obvious_convert(ckpt: str, specs, out: str, rank: int) -> None:
    from safetensors.torch import save_file

    from lycoris_ext.tools.checkpoint import Checkpoint, Layout

    with Checkpoint(ckpt) as ck:
        layout = Layout(ck)
    tree = layout.tree
    targets, want = _wanted(tree, specs)
    sd = {}
    for tid, contribs in want.items():
        t = targets[tid]
        w32 = torch.zeros(t.shape)
        dw = sum(c.adapter.delta(w32, c.multiplier)[0].reshape(w32.shape) for c in contribs)
        up, down = _svd_factors(dw, rank)
        key = tree.key_for(t)
        sd[f"{key}.lora_up.weight"] = up.reshape(t.shape[0], -1, *[1] * (len(t.shape) - 2)).contiguous()
        sd[f"{key}.lora_down.weight"] = down.reshape(up.shape[1], *t.shape[1:]).contiguous()
        sd[f"{key}.alpha"] = torch.tensor(float(up.shape[1]))
    save_file(sd, out)


@torch.no_grad()
def obvious_extract(base: str, tuned: str, out: str, rank: int) -> None:
    from safetensors.torch import load_file, save_file

    from lycoris_ext.tools.checkpoint import Checkpoint, Layout, target_slice

    with Checkpoint(base) as ck:
        layout = Layout(ck)
    a, b = load_file(base), load_file(tuned)
    sd = {}
    for t in layout.tree.targets:
        if t.kind not in ("linear", "conv"):
            continue
        k = layout.key(t.part, t.path, t.param)
        dw = target_slice(b[k], t).float() - target_slice(a[k], t).float()
        if not bool(dw.any()):
            continue
        up, down = _svd_factors(dw, rank)
        key = layout.tree.key_for(t)
        sd[f"{key}.lora_up.weight"] = up.reshape(t.shape[0], -1, *[1] * (len(t.shape) - 2)).contiguous()
        sd[f"{key}.lora_down.weight"] = down.reshape(up.shape[1], *t.shape[1:]).contiguous()
        sd[f"{key}.alpha"] = torch.tensor(float(up.shape[1]))
    save_file(sd, out)


# --------------------------------------------------------------- one measurement (child process)
def run_one(task: str, method: str, folder: str, nets: dict, out: str) -> dict:
    from lycoris_ext import tools

    ck = os.path.join(folder, "base.safetensors")
    baked = os.path.join(folder, "baked.safetensors")
    reset_hwm()
    rss0 = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    report = {}
    if task == "bake":
        specs = [nets["lora"] + ":0.8", nets["lokr"] + ":0.5"]
        if method == "ours":
            r = tools.bake(ck, specs, out)
            report = {"layers": r["layers_changed"]}
        else:
            obvious_bake(ck, specs, out)
    elif task.startswith("convert"):
        net = nets[task.split(":")[1]]
        if method == "ours":
            r = tools.convert([net], out, rank=16, base=ck)
            report = {"relative_error": r["relative_error"], "layers": r["layers_written"]}
        else:
            obvious_convert(ck, [net], out, 16)
    elif task.startswith("extract"):
        tuned = baked if task == "extract" else os.path.join(folder, "baked_sub.safetensors")
        if method == "ours":
            r = tools.extract(ck, tuned, out, rank=32)
            report = {"relative_error": r["relative_error"], "layers": r["layers_written"]}
        else:
            obvious_extract(ck, tuned, out, 32)
    seconds = time.perf_counter() - t0
    st = proc_status()
    return {"task": task, "method": method, "seconds": seconds, "peak_bytes": st["VmHWM"] - rss0,
            "rss_before": rss0, "hwm": st["VmHWM"], "out_bytes": os.path.getsize(out), **report}


def child(args) -> None:
    nets = json.loads(args.nets)
    torch.set_num_threads(args.threads)
    if args.limit_gb:
        # a failed allocation instead of the OOM killer (which may pick another process)
        import resource

        lim = int(args.limit_gb * GB)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    t0 = time.perf_counter()
    try:
        res = run_one(args.task, args.method, args.folder, nets, args.out)
    except (MemoryError, RuntimeError, OSError) as e:
        st = proc_status()
        res = {"task": args.task, "method": args.method, "failed": f"{type(e).__name__}: {str(e)[:200]}",
               "seconds": time.perf_counter() - t0, "hwm": st["VmHWM"], "peak_bytes": None,
               "limit_bytes": int(args.limit_gb * GB) if args.limit_gb else None}
        if os.path.exists(args.out):
            os.remove(args.out)
    print("RESULT " + json.dumps(res))


def measure(task, method, folder, nets, threads, limit_gb=None) -> dict:
    out = os.path.join(folder, f"out_{task.replace(':', '_')}_{method}.safetensors")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--task", task, "--method", method,
           "--folder", folder, "--nets", json.dumps(nets), "--out", out, "--threads", str(threads)]
    if limit_gb:
        cmd += ["--limit-gb", str(limit_gb)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"{task}/{method} failed:\n{p.stderr[-3000:]}")
    res = json.loads(line[len("RESULT "):])
    res["out_path"] = out if os.path.exists(out) else None
    return res


def compare_outputs(a: str, b: str) -> float:
    """Largest |difference| between two checkpoints (ours vs the obvious bake)."""
    from lycoris_ext.tools.checkpoint import Checkpoint

    worst = 0.0
    with Checkpoint(a) as x, Checkpoint(b) as y:
        for k in x.keys():
            tx, ty = x.read(k), y.read(k)
            if tx.is_floating_point():
                worst = max(worst, float((tx.float() - ty.float()).abs().max()) if tx.numel() else 0.0)
    return worst


def bench_model(model: str, args) -> dict:
    shrink = 8 if args.quick else 1
    folder = os.path.join(args.workdir, f"{model}{'_quick' if args.quick else ''}")
    os.makedirs(folder, exist_ok=True)
    ck = os.path.join(folder, "base.safetensors")
    subset = args.svd_every or {"sd15": 8, "sdxl": 16}[model]
    if not os.path.exists(ck):
        print(f"[{model}] writing a random checkpoint ...", flush=True)
        write_checkpoint(ck, model, shrink)
    nets = write_networks(folder, model, shrink, subset)
    ck_bytes = os.path.getsize(ck)
    from lycoris_ext import tools

    # the tuned checkpoints extract starts from (made with our bake; not timed)
    baked = os.path.join(folder, "baked.safetensors")
    tasks = args.tasks.split(",") if args.tasks else ["bake", "convert:lora", "convert:lokr", "extract"]
    if "extract" in tasks and subset == 1:
        tools.bake(ck, [nets["lora"] + ":0.8", nets["lokr"] + ":0.5"], baked)
    if "extract" in tasks and subset > 1:
        tools.bake(ck, [nets["lora_sub"] + ":0.8"], os.path.join(folder, "baked_sub.safetensors"))
    sub = "_sub" if subset > 1 else ""
    tasks = [t if t == "bake" else t + sub for t in tasks]
    rows = []
    for task in tasks:
        for method in ("ours", "obvious"):
            print(f"[{model}] {task} {method} ...", flush=True)
            limit = args.limit_gb if method == "obvious" else None
            rows.append(measure(task, method, folder, nets, args.threads, limit))
            print("ROW " + json.dumps({k: v for k, v in rows[-1].items() if k != "out_path"}), flush=True)
    diff = None
    if tasks[0] == "bake" and rows[0]["out_path"] and rows[1]["out_path"]:
        diff = compare_outputs(rows[0]["out_path"], rows[1]["out_path"])
    for r in rows:
        path = r.pop("out_path")
        if path and not args.keep:
            os.remove(path)
    if not args.keep:
        for p in [baked, os.path.join(folder, "baked_sub.safetensors")]:
            if os.path.exists(p):
                os.remove(p)
    return {"model": model, "checkpoint_bytes": ck_bytes, "subset_every": subset,
            "network_bytes": {k: os.path.getsize(v) for k, v in nets.items()},
            "bake_max_abs_diff_ours_vs_obvious": diff, "rows": rows}


def print_table(res: dict) -> None:
    print(f"\n{res['model']}: checkpoint {res['checkpoint_bytes'] / GB:.2f} GB (fp16, no VAE)"
          + (f"; convert/extract on every {res['subset_every']}th of the default layers" if res["subset_every"] > 1 else ""))
    print(f"{'task':<18} {'ours s':>8} {'obvious s':>10} {'speed-up':>9} {'ours peak GB':>13} {'obvious peak GB':>16} {'mem ratio':>10}  notes")
    rows = res["rows"]
    for i in range(0, len(rows), 2):
        o, b = rows[i], rows[i + 1]
        note = f"rel. error {o['relative_error']:.2e}" if "relative_error" in o else ""
        if b.get("failed"):
            print(f"{o['task']:<18} {o['seconds']:8.1f} {'failed':>10} {'':>9} {o['peak_bytes'] / GB:13.2f} "
                  f"{'> %.1f GB' % (b['limit_bytes'] / GB) if b.get('limit_bytes') else 'failed':>16} {'':>10}  {note}; obvious: {b['failed']}")
            continue
        print(f"{o['task']:<18} {o['seconds']:8.1f} {b['seconds']:10.1f} {b['seconds'] / o['seconds']:8.1f}x "
              f"{o['peak_bytes'] / GB:13.2f} {b['peak_bytes'] / GB:16.2f} {b['peak_bytes'] / max(1, o['peak_bytes']):9.1f}x  {note}")
    if res.get("bake_max_abs_diff_ours_vs_obvious") is not None:
        print(f"bake: largest |ours - obvious| = {res['bake_max_abs_diff_ours_vs_obvious']:.3g} (fp16 rounding of different sums)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("sd15", "sdxl", "both"), default="sd15")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lycoris_bench_tools"))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--svd-every", type=int, default=None,
                    help="convert/extract on every Nth default target (default 8 for SD1.5, 16 for SDXL; 1: all)")
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of bake,convert:lora,convert:lokr,extract")
    ap.add_argument("--limit-gb", type=float, default=None,
                    help="address-space limit of the obvious method's process (a MemoryError instead of the OOM killer)")
    ap.add_argument("--json", default=None)
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--nets", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(args.threads)
    models = ("sd15", "sdxl") if args.model == "both" else (args.model,)
    results = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
                           "torch": torch.__version__, "load_before": os.getloadavg()}, "models": []}
    for m in models:
        res = bench_model(m, args)
        results["models"].append(res)
        print_table(res)
    results["machine"]["load_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
