#!/usr/bin/env python
"""What switching networks costs in a real WebUI, driven through its HTTP API.

A client, as a user's script would be: every measured call is a
``POST /sdapi/v1/txt2img`` (64x64, 1 step, fixed seed, so the network work
stands out) whose prompt carries the wanted set as ``<lora:name:mult>``
tokens. The same scenarios run against the host's own Lora (the built-in,
this extension disabled) and against this extension, one after the other in
one run, beside the floor of each scenario measured on the same machine in
the same run; memory is the server process's (``/proc/<pid>/status``),
and with this extension also what it uses apart from its allocator's free
pages (``VmRSS`` minus the ``free`` bytes ``GET /lycoris/v1/memory``
reports for the allocator), which the allocator gives back and takes again
on its own from one call to the next.

Scenarios (each a real change of the wanted set unless said; A-D are four
network files):

    no network          none -> none, same prompt (the WebUI's cached conds: the base line, T0)
    first apply         none -> A
    same set again      A,B,C,D -> A,B,C,D (nothing changes)
    change multiplier   A:1,B,C <-> A:0.5,B,C (both directions)
    add a fourth        A,B,C -> A,B,C,D
    remove one          A,B,C,D -> A,B,C
    switch the set      A,B <-> C,D (both directions)
    back to none        A,B,C -> none

Each scenario's figure is the median of ``--repeats`` calls minus T0's
median. The first apply comes right after a change back to none, so it
starts from the state any quick switch leaves (this extension gives freed
memory back once no change came for 10 s; a first apply after that is
measured once per phase, at the end, after the idle memory reading). Rounds go round-robin (one cycle of every transition per round), so
a slow drift of the machine hits every scenario alike. Pixels are checked:
the same set gives the same image, back to none gives the plain image,
different sets give different images.

The floor of a scenario is what any method must do on this machine: copy
the touched weights once (float32 read + write) and add the low-rank
products of every active network into them, one ``addmm_`` per layer over
the networks' concatenated factors (float32, ready), with shapes read from
the files' headers. It needs torch in the client's Python (``--floor-python``
runs it in another one, e.g. the WebUI's venv). It is measured twice:
between the calls of each phase (a helper process runs a warm-up round and a
timed one of a scenario's floor right after each measured change of it,
while the server waits; the ratios use the last phase's median), and alone
after the phases (a warm-up round, then the median of ``--floor-repeats``),
shown beside it. On a shared machine whose speed drifts over minutes, the
floor taken in the same minutes as the calls is the one to compare with
(``--no-floor-between``: the floor alone only).

Two ways to run it:

* ``--webui DIR --python PY [--server-args ...]``: the script starts the
  server twice (``launch.py --nowebui --api``; first with
  ``--disable-extra-extensions`` for the built-in, then with every extension
  on), waits for its API, measures and stops it. The pid it starts is the
  server (``launch.py`` runs the WebUI in its own process).
* ``--url URL --pid PID --label NAME``: measure a server already running
  (one phase; write ``--json`` and combine phases with ``--compare a.json b.json``).

    python bench/bench_host.py --webui /work/hosts/a1111 --python /work/hosts/venv/bin/python \\
        --server-args "--skip-torch-cuda-test --use-cpu all --no-half --ckpt models/Stable-diffusion/sd15.safetensors" \\
        --networks A B C D --repeats 5 --json bench/results/host.json

The allocator: on Linux the WebUIs' webui.sh preloads tcmalloc when it is
installed, and so does this script (``--allocator auto``, the default;
``system`` for glibc's malloc). Under glibc the UNet's large per-call
temporaries come from fresh pages, and how many depends on the heap's
history, which is what the earlier glibc runs measured as a cost of having
networks active (bench/README.md, "The allocator").

Only the standard library is needed for the client itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import signal
import statistics
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

SCENARIOS = [
    "first apply (none -> A)",
    "same set again (ABCD -> ABCD)",
    "change one multiplier (A:1 <-> A:0.5, with B, C)",
    "add a fourth (ABC -> ABCD)",
    "remove one (ABCD -> ABC)",
    "switch the set (AB <-> CD)",
    "back to none (ABC -> none)",
]
T0 = "no network (same prompt)"
#: The text encoder on a new prompt (the negative prompt's conditioning cached).
ENCODE = "new prompt, no network (text encoder runs)"
#: What any method pays on top of the floor when the wanted set changes: the
#: WebUI encodes the prompt and the negative prompt again (A1111's conditioning
#: cache, which Forge and reForge keep, has the prompt's network tokens in the
#: key of both; the text encoder's weights changed), whichever extension
#: answers the tokens. Measured as a call whose prompt and negative prompt are
#: both new, with no network.
ENCODE_BOTH = "new prompt and negative prompt, no network (text encoder runs twice)"

# ranks of the active sets each scenario must end with: for the floor
FLOOR_SETS = {
    "first apply (none -> A)": ["A"],
    "same set again (ABCD -> ABCD)": None,
    "change one multiplier (A:1 <-> A:0.5, with B, C)": ["A", "B", "C"],
    "add a fourth (ABC -> ABCD)": ["A", "B", "C", "D"],
    "remove one (ABCD -> ABC)": ["A", "B", "C"],
    "switch the set (AB <-> CD)": ["C", "D"],
    "back to none (ABC -> none)": [],
}


# ------------------------------------------------------------------ client
def http(url, data=None, timeout=3600):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


def pixels_digest(png: bytes) -> str:
    """A digest of a PNG's image data only (its text chunks carry the prompt)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, data, head = 8, b"", b""
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind, chunk = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            head = chunk
        elif kind == b"IDAT":
            data += chunk
        elif kind == b"IEND":
            break
    return hashlib.md5(head + zlib.decompress(data)).hexdigest()[:12]


def proc_memory(pid) -> dict | None:
    if not pid:
        return None
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        return None
    return out


def extension_memory(url) -> dict | None:
    """What this extension says it holds (``GET /lycoris/v1/memory``), or None
    (the host's own Lora, or an extension without the route)."""
    try:
        got = http(url.rstrip("/") + "/lycoris/v1/memory", timeout=30)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return got if isinstance(got, dict) and "originals" in got else None


def median_reading(readings: list) -> dict | None:
    """The reading with the median VmRSS (None when none was read)."""
    got = sorted((r for r in readings if r), key=lambda r: r["VmRSS"])
    return got[len(got) // 2] if got else None


def wait_for(api, seconds, proc=None) -> list:
    t0 = time.time()
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before its API answered")
        try:
            return http(api + "/sd-models", timeout=10)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if time.time() - t0 > seconds:
                raise
            time.sleep(2)


def measure(url, pid, names, token, repeats, label, steps=1, size=64, seed=1234, prompt="a cat", idle=12.0,
            floor_probe=None):
    """One phase: every scenario against the server at ``url`` (and, with
    ``floor_probe``, each scenario's floor right after each of its changes)."""
    api = url.rstrip("/") + "/sdapi/v1"
    A, B, C, D = names
    calls = []

    def call(nets, tag=None, words=prompt, negative=""):
        text = words + "".join(" " + token.format(name=n, mult=m) for n, m in nets)
        payload = {"prompt": text, "negative_prompt": negative, "seed": seed, "steps": steps, "width": size, "height": size,
                   "sampler_name": "Euler", "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
                   "send_images": True, "save_images": False}
        t = time.perf_counter()
        try:
            r = http(api + "/txt2img", payload)
        except urllib.error.HTTPError as e:  # the server's error, e.g. NaNs: noted, the run goes on
            detail = e.read().decode(errors="replace")[:300]
            calls.append({"tag": tag, "prompt": text, "seconds": None, "error": f"HTTP {e.code}: {detail}"})
            print(f"  call failed ({tag}: {text}): HTTP {e.code} {detail}", flush=True)
            return None, None
        dt = time.perf_counter() - t
        import base64

        digest = pixels_digest(base64.b64decode(r["images"][0].split(",", 1)[-1]))
        calls.append({"tag": tag, "prompt": text, "seconds": dt, "pixels": digest})
        return dt, digest

    none, sA = [], [(A, 1)]
    sABC, sABC05 = [(A, 1), (B, 1), (C, 1)], [(A, 0.5), (B, 1), (C, 1)]
    sABCD, sAB, sCD = [(A, 1), (B, 1), (C, 1), (D, 1)], [(A, 1), (B, 1)], [(C, 1), (D, 1)]
    memory = {}
    readings = []

    def reading():
        r = proc_memory(pid)
        own = extension_memory(url)
        if r is not None and own is not None:
            r["extension"] = own
            alloc = own.get("allocator")
            if alloc and alloc.get("unmapped") is not None:
                # what the process uses: its allocator's free pages are the
                # host's, given back and taken again on its own (only where
                # the allocator counts the pages it gave back apart: glibc's
                # free bytes include those, which are not resident)
                r["in_use"] = r["VmRSS"] - alloc["free"]
        return r

    for _ in range(5):
        call(none, "warm-up")
        readings.append(reading())
    # the median of the last three: tcmalloc gives some free pages back now
    # and then, so one reading may sit up to the host's free space (0.2 GiB)
    # below the rest
    memory["before any network"] = base = median_reading(readings[2:])
    if base and any("in_use" in r for r in readings if r):
        # in use: the largest reading (the host's heap touches the pages it
        # took over its first calls, and a release of free pages leaves it)
        base["in_use"] = max(r["in_use"] for r in readings if r and "in_use" in r)
    plain_readings = memory["plain calls (no network), during the rounds"] = []
    cold = {"first apply after start": call(sA, "cold")[0] or float("nan")}
    cold["first A -> A,B,C,D (B, C, D read)"] = call(sABCD, "cold")[0] or float("nan")
    memory["A,B,C,D active (first time)"] = reading()
    call(none, "cold")
    memory["back to none (first time)"] = reading()
    for s in (sABC, sABC05, sABCD, sAB, sCD, none, sA, none):  # every transition once, untimed
        call(s, "warm-up")

    res: dict[str, list] = {}

    again: dict[str, list] = {}
    between: dict[str, list] = {}  # the floor, measured between the calls

    def add(name, nets, words=prompt, negative=""):
        dt, digest = call(nets, name, words, negative)
        if dt is not None:
            res.setdefault(name, []).append((dt, digest))
        # the same set once more: computes with the same weights and changes nothing,
        # so the difference is the change itself (whatever these weights cost the UNet)
        dt2, _ = call(nets, "again", words, negative)
        if dt2 is not None:
            again.setdefault(name, []).append(dt2)
        if floor_probe is not None and FLOOR_SETS.get(name) is not None:
            between.setdefault(name, []).append(floor_probe(name))

    for _ in range(repeats):
        add(T0, none)
        plain_readings.append(reading())  # the host's own drift, no network active
        add(ENCODE, none, prompt + " again")
        add(ENCODE_BOTH, none, prompt + " once more", "blurry")
        # back to none right before (a change): the first apply starts from the
        # state a quick switch leaves, however long the plain calls above took
        # (after 10 s without a change the extension gives freed memory back;
        # that case is measured once at the end)
        call([(B, 1)], "setup")
        call(none, "setup")
        add(SCENARIOS[0], sA)
        call(none, "setup")
        call(sABCD, "setup")
        add(SCENARIOS[1], sABCD)
        call(sABC, "setup")
        add(SCENARIOS[2], sABC05)
        add(SCENARIOS[2], sABC)
        add(SCENARIOS[3], sABCD)
        memory.setdefault("A,B,C,D active", reading())
        add(SCENARIOS[4], sABC)
        add(SCENARIOS[6], none)
        memory.setdefault("back to none", reading())
        call(sAB, "setup")
        add(SCENARIOS[5], sCD)
        add(SCENARIOS[5], sAB)
        call(none, "setup")
    memory["end (no network)"] = reading()
    if idle:
        time.sleep(idle)  # this extension gives freed originals back once idle (10 s by default)
        memory[f"end, after {idle:g} s idle"] = reading()
        # what a user who paused pays: the originals' memory is taken afresh
        cold[f"first apply after {idle:g} s idle (memory given back)"] = call(sA, "idle")[0] or float("nan")
        cold[f"first apply after {idle:g} s idle: the same set again"] = call(sA, "idle")[0] or float("nan")

    for name in [T0, ENCODE, ENCODE_BOTH, *SCENARIOS]:
        res.setdefault(name, [])
    digests = lambda name: {d for _, d in res[name]}  # noqa: E731
    plain = digests(T0)
    checks = {
        "no network gives one image": len(plain) == 1,
        "back to none gives the plain image": digests(SCENARIOS[6]) <= plain,
        "A gives one image, not the plain one": len(digests(SCENARIOS[0])) == 1 and not digests(SCENARIOS[0]) & plain,
        "the same set again gives the same image": len(digests(SCENARIOS[1])) == 1
        and digests(SCENARIOS[1]) == {d for _, d in res[SCENARIOS[3]]},
        "A,B,C,D differs from A,B,C": not digests(SCENARIOS[3]) & digests(SCENARIOS[4]),
        "A,B differs from C,D": len(digests(SCENARIOS[5])) == 2,
        "A at 0.5 differs from A at 1": len(digests(SCENARIOS[2])) == 2,
    }
    t0 = statistics.median(dt for dt, _ in res[T0]) if res[T0] else float("nan")
    table = {}
    for name, v in res.items():
        ts = [dt for dt, _ in v] or [float("nan")]
        base = again.get(name) or [float("nan")]
        table[name] = {"median": statistics.median(ts), "minus_T0": statistics.median(ts) - t0,
                       "minus_again": statistics.median(ts) - statistics.median(base), "again": base,
                       "min": min(ts), "max": max(ts), "all": ts}
    checks["every call answered"] = all(c.get("seconds") is not None for c in calls)
    out = {"label": label, "url": url, "token": token, "networks": list(names), "repeats": repeats, "T0": t0,
           "table": table, "cold": cold, "memory": memory, "checks": checks, "calls": calls}
    if between:
        out["floor_between"] = {name: statistics.median(v) for name, v in between.items()}
        out["floor_between_samples"] = between
    return out


# ------------------------------------------------------------------ floor
def header_shapes(path) -> dict:
    """``{module: (up shape, down shape)}`` of a kohya LoRA file, from its header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    out = {}
    for key, info in head.items():
        if key == "__metadata__":
            continue
        for part in ("lora_up.weight", "lora_down.weight"):
            if key.endswith("." + part):
                out.setdefault(key[: -len(part) - 1], {})[part] = tuple(info["shape"])
    return {k: (v["lora_up.weight"], v["lora_down.weight"]) for k, v in out.items() if len(v) == 2}


class Floor:
    """The floor of each scenario on this machine (needs torch): the touched
    weights (shapes from the files' headers, float32, random) and, per
    active set, the networks' concatenated float32 factors, ready. ``once``
    times one round of a scenario: every touched weight copied from its
    original, then ``addmm_`` of the active factors into it."""

    def __init__(self, files: dict, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.shapes = {name: header_shapes(path) for name, path in files.items()}
        self.layers = sorted(set().union(*[set(s) for s in self.shapes.values()]))
        self.gen = torch.Generator().manual_seed(0)
        self.weight_shape = {}
        for mod in self.layers:
            up, down = next(self.shapes[n][mod] for n in self.shapes if mod in self.shapes[n])
            self.weight_shape[mod] = (up[0], int(torch.tensor(down[1:]).prod()))
        self.live = {m: torch.randn(s, generator=self.gen) * 0.02 for m, s in self.weight_shape.items()}
        self.orig = {m: w.clone() for m, w in self.live.items()}
        self.touched = sum(w.numel() * 4 for w in self.orig.values())
        self._factors: dict[tuple, dict] = {}

    def factors(self, active) -> dict:
        key = tuple(n for n in active if n in self.shapes)
        if key not in self._factors:
            torch, g, out = self.torch, self.gen, {}
            for m in self.layers:
                ups, downs = [], []
                for n in key:
                    if m in self.shapes[n]:
                        up, down = self.shapes[n][m]
                        ups.append(torch.randn(up[0], up[1], generator=g) * 0.01)
                        downs.append(torch.randn(down[0], self.weight_shape[m][1], generator=g) * 0.01)
                if ups:
                    out[m] = (torch.cat(ups, 1), torch.cat(downs, 0))
            self._factors[key] = out
        return self._factors[key]

    def once(self, scenario: str) -> float:
        f = self.factors(FLOOR_SETS[scenario])
        t = time.perf_counter()
        for m, w in self.live.items():
            w.copy_(self.orig[m])
            if m in f:
                w.addmm_(*f[m])
        return time.perf_counter() - t


def floor_times(files: dict, repeats: int = 5, threads: int | None = None) -> dict:
    """Seconds of the floor of each scenario on this machine, measured alone
    (one warm-up round, then the median of ``repeats``)."""
    fl = Floor(files, threads)
    result = {"touched_bytes": fl.touched, "layers": len(fl.layers)}
    for scenario, active in FLOOR_SETS.items():
        if active is None:
            result[scenario] = 0.0
            continue
        result[scenario] = statistics.median([fl.once(scenario) for _ in range(repeats + 1)][1:])
    return result


def floor_serve(files: dict) -> None:
    """The floor as a helper process: a JSON line with the touched bytes once
    every scenario ran a warm-up round, then, per scenario name read from
    stdin, a warm-up round and a timed one, whose seconds are written back.

    The warm-up matters: after the server's call this process's weights are
    out of the caches and its threads asleep, and a round then took up to
    twice the time of the next one (0.62 against 0.31 s here); the floor is
    what the work costs warm, as measured alone."""
    fl = Floor(files)
    for scenario, active in FLOOR_SETS.items():
        if active is not None:
            fl.once(scenario)
    print(json.dumps({"touched_bytes": fl.touched, "layers": len(fl.layers)}), flush=True)
    for line in sys.stdin:
        fl.once(line.strip())
        print(json.dumps(fl.once(line.strip())), flush=True)


def floor_command(python: str, mode: str, lora_dir: str, networks, *extra) -> list[str]:
    """This script in ``python`` as the floor's helper (``mode``: --floor-only, --floor-serve)."""
    return [python, os.path.abspath(__file__), mode, "--lora-dir", lora_dir, "--networks", *networks, *extra]


class FloorProbe:
    """The floor measured between a phase's calls: a helper process
    (:func:`floor_serve`, in ``python``) asked for a scenario's floor (a
    warm-up round, then a timed one) right after each measured change, while
    the server waits for the next call. The machine's speed drifts over
    minutes on a shared host, so a floor measured alone before or after the
    phase can be 10-20% off the speed the server had; this one is taken in
    the same minutes."""

    def __init__(self, python: str, lora_dir: str, networks):
        cmd = floor_command(python, "--floor-serve", lora_dir, networks)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the floor helper ended before it was ready: {' '.join(cmd)}")
        self.info = json.loads(line)

    def __call__(self, scenario: str) -> float:
        self.proc.stdin.write(scenario + "\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(60)


# ------------------------------------------------------------------ server
#: webui.sh's search for tcmalloc (A1111, Forge and reForge alike): the first
#: library ``ldconfig -p`` lists that matches, in this order.
TCMALLOC_PATTERNS = (r"libtcmalloc(_minimal|)\.so\.\d", r"libtcmalloc\.so\.\d")


def find_tcmalloc() -> str | None:
    """The library webui.sh would preload on this Linux (None when there is none)."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                                 env=dict(os.environ, PATH="/sbin:/usr/sbin:" + os.environ.get("PATH", ""))).stdout
    except OSError:
        return None
    for pattern in TCMALLOC_PATTERNS:
        for line in listing.splitlines():
            if re.search(pattern, line) and "=>" in line:
                return line.split("=>", 1)[1].strip()
    return None


def allocator_env(choice: str) -> tuple[dict, str]:
    """(extra environment, what it is) for ``--allocator``: ``auto`` preloads
    tcmalloc when installed, as the WebUIs' own webui.sh does on Linux;
    ``system`` runs the C library's malloc; anything else is a library path."""
    if choice == "system":
        return {}, "system malloc"
    path = find_tcmalloc() if choice == "auto" else choice
    if not path:
        return {}, "system malloc (no tcmalloc installed)"
    return {"LD_PRELOAD": path}, path


def start_server(webui, python, args, port, builtin_only, log, env_extra=None):
    cmd = [python, "launch.py", "--nowebui", "--api", "--port", str(port), *args]
    if builtin_only:
        cmd.append("--disable-extra-extensions")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen(cmd, cwd=webui, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop_server(proc) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------------ report
def _table(phases, floor, key, scenarios, encode=None) -> list[str]:
    """The last phase over the floor (and the first phase over the last when
    there are two). ``encode``: seconds the WebUI's re-encoding of the
    prompts takes when the set changes (measured, paid by any method): two
    more ratios, the change without it over the floor
    (``shared/PERFORMANCE.md``'s measure), and the change over floor + encode."""
    names = [p["label"] for p in phases]
    last = names[-1][:10]
    head = f"{'scenario':52}" + "".join(f"{n[:14]:>15}" for n in names) + (f"{'floor':>10}" if floor else "")
    if floor:
        head += f"{last + '/floor':>18}" + (f"{names[0][:8] + '/' + names[1][:8]:>20}" if len(phases) == 2 else "")
        if encode is not None:
            head += f"{'(' + last + '-enc)/floor':>26}{last + '/(floor+enc)':>26}"
    lines = [head, "-" * len(head)]
    for s in scenarios:
        row = f"{s:52}" + "".join(f"{p['table'][s].get(key, float('nan')):15.3f}" for p in phases)
        if floor:
            row += f"{floor[s]:10.3f}"
            ours = phases[-1]["table"][s].get(key, float("nan"))
            row += f"{ours / floor[s]:17.2f}x" if floor[s] > 0 else f"{'-':>18}"
            if len(phases) == 2:
                theirs = phases[0]["table"][s].get(key, float("nan"))
                row += f"{theirs / ours:19.2f}x" if ours > 0.005 else f"{'-':>20}"
            if encode is not None and floor[s] > 0:
                row += f"{(ours - encode) / floor[s]:25.2f}x{ours / (floor[s] + encode):25.2f}x"
            elif encode is not None:
                row += f"{'-':>26}{'-':>26}"
        lines.append(row)
    return lines


def _floors(phases, alone, scenarios, encode) -> list[str]:
    """Where the floor was measured: between each phase's calls (the one the
    ratios above use, of the last phase) and alone after the phases."""
    names = [p["label"] for p in phases]
    n = max((len(v) for v in phases[-1].get("floor_between_samples", {}).values()), default=0)
    lines = [f"floor: measured between each phase's calls (a warm-up round and a timed one right after each change, median of {n}; "
             "the ratios above use the last phase's)" + (", and alone after the phases" if alone else "")]
    head = f"{'scenario':52}" + "".join(f"{'floor ' + n_[:8]:>15}" for n_ in names)
    if alone:
        head += f"{'floor alone':>13}" + (f"{'(' + names[-1][:10] + '-enc)/alone':>26}" if encode else "")
    lines += [head, "-" * len(head)]
    for s in scenarios:
        row = f"{s:52}" + "".join(f"{p.get('floor_between', {}).get(s, float('nan')):15.3f}" for p in phases)
        if alone:
            row += f"{alone[s]:13.3f}"
            if encode and alone[s] > 0:
                row += f"{(phases[-1]['table'][s]['minus_again'] - encode) / alone[s]:25.2f}x"
        lines.append(row)
    return lines


def phase_floor(phase: dict, floor: dict | None) -> dict | None:
    """The floor to compare ``phase`` with: the one measured between its calls
    where it has one (scenarios that change nothing: 0), else ``floor``."""
    between = phase.get("floor_between")
    if not between:
        return floor
    out = dict(floor or {})
    out.update({s: 0.0 for s, active in FLOOR_SETS.items() if active is None})
    out.update(between)
    return out


def report(phases: list[dict], floor: dict | None) -> str:
    lines = []
    changes = [s for s in SCENARIOS if s != SCENARIOS[1]]
    alone, floor = floor, phase_floor(phases[-1], floor)
    if all("minus_again" in p["table"][SCENARIOS[0]] for p in phases):
        enc = [p["table"].get(ENCODE, {}).get("minus_again") for p in phases]
        both = [p["table"].get(ENCODE_BOTH, {}).get("minus_again") for p in phases]
        # runs before ENCODE_BOTH was measured: the prompt's encoding alone
        paid = both if all(e is not None for e in both) else enc
        lines.append("the change itself: seconds per call minus the next call with the same set (medians)")
        lines += _table(phases, floor, "minus_again", changes, encode=paid[-1] or None)
        if floor is not alone:
            lines += _floors(phases, alone, changes, paid[-1])
        if all(e is not None for e in both):
            lines.append("enc: a new prompt and negative prompt with no network (the WebUI encodes both again whenever "
                         "the set changes, whichever method applies it): "
                         + ", ".join(f"{p['label']} {e:.3f} s" for p, e in zip(phases, both)))
        if all(e is not None for e in enc):
            lines.append(("enc: " if paid is enc else "") + "a new prompt alone with no network (the text encoder runs once): "
                         + ", ".join(f"{p['label']} {e:.3f} s" for p, e in zip(phases, enc)))
        lines.append("")
    lines.append("seconds per call minus T0, a call with no network and the same prompt (medians; T0: "
                 + ", ".join(f"{p['label']} {p['T0']:.3f} s" for p in phases) + ")")
    lines += _table(phases, floor, "minus_T0", SCENARIOS)
    lines.append("")
    for p in phases:
        cold = ", ".join(f"{k} {v:.2f} s" for k, v in p["cold"].items())
        lines.append(f"{p['label']}: cold {cold}")
    lines.append("")
    touched = (alone or floor or {}).get("touched_bytes") or next(
        (p["floor_touched_bytes"] for p in phases if p.get("floor_touched_bytes")), None)
    lines.append("server memory, VmRSS (growth over 'before any network'" + (f"; touched originals {touched / 2**30:.2f} GiB" if touched else "") + "):")
    for p in phases:
        mem = p["memory"]
        base = (mem.get("before any network") or {}).get("VmRSS")
        if not base:
            lines.append(f"  {p['label']}: no /proc figures (give --pid)")
            continue
        base_use = (mem.get("before any network") or {}).get("in_use")
        for k, v in mem.items():
            if isinstance(v, list):  # readings after plain calls: the host's own drift
                got = [r for r in v if r]
                if got:
                    lines.append(f"  {p['label']:14} {k}: VmRSS {_span([r['VmRSS'] - base for r in got])}"
                                 + (f", the host's part of what is in use {_span([_host_part(r, base_use) for r in got])}"
                                    if base_use and all("in_use" in r for r in got) else ""))
                continue
            if not v:
                continue
            grow = v["VmRSS"] - base
            ratio = f"  {grow / touched:5.2f}x touched" if touched and k != "before any network" else ""
            lines.append(f"  {p['label']:14} {k:32} {v['VmRSS'] / 2**30:7.2f} GiB  +{grow / 2**30:5.2f} GiB{ratio}  (peak {v['VmHWM'] / 2**30:.2f} GiB)")
            own = v.get("extension")
            if own:
                held = own["originals"] + own["pooled"] + own["networks"]
                mine = f" = {held / touched:.2f}x touched" if touched else ""
                lines.append(f"  {'':14} {'  the extension holds':32} {held / 2**30:7.2f} GiB{mine}: originals {own['originals'] / 2**30:.2f},"
                             f" pooled {own['pooled'] / 2**30:.2f}, network files {own['networks'] / 2**30:.2f} GiB")
            if base_use and "in_use" in v and k != "before any network":
                use = v["in_use"] - base_use
                ratio = f" = {use / touched:.2f}x touched" if touched else ""
                lines.append(f"  {'':14} {'  in use (VmRSS - allocator free)':32} +{use / 2**30:5.2f} GiB{ratio}; the host's part"
                             f" {_host_part(v, base_use) / 2**30:+.2f} GiB")
    lines.append("")
    for p in phases:
        if p.get("allocator"):
            lines.append(f"{p['label']}: allocator {p['allocator']}")
    for p in phases:
        bad = [k for k, ok in p["checks"].items() if not ok]
        lines.append(f"{p['label']}: pixel checks " + ("all passed" if not bad else "FAILED: " + "; ".join(bad)))
    return "\n".join(lines)


def _host_part(r: dict, base_use: int) -> int:
    """Of what a reading's process uses beyond the baseline, the bytes that
    are not the extension's (its originals, pooled buffers and files)."""
    own = r["extension"]
    return r["in_use"] - base_use - (own["originals"] + own["pooled"] + own["networks"])


def _span(values: list) -> str:
    return f"{min(values) / 2**30:+.2f} to {max(values) / 2**30:+.2f} GiB"


def load_avg() -> str:
    try:
        return open("/proc/loadavg").read().split(" ")[:3].__str__()
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--webui", help="the WebUI's folder: start the server for each phase")
    ap.add_argument("--python", default=sys.executable, help="the WebUI's Python (with --webui)")
    ap.add_argument("--server-args", default="", help="more arguments for launch.py (one string)")
    ap.add_argument("--port", type=int, default=7861)
    ap.add_argument("--phases", default="builtin,extension", help="with --webui: which phases, in order")
    ap.add_argument("--url", default=None, help="a running server (one phase)")
    ap.add_argument("--pid", type=int, default=None, help="the running server's pid (memory)")
    ap.add_argument("--label", default="server")
    ap.add_argument("--lora-dir", default=None, help="where A-D are (for the floor); default <webui>/models/Lora")
    ap.add_argument("--networks", nargs=4, default=["A", "B", "C", "D"], metavar="NAME")
    ap.add_argument("--token", default="<lora:{name}:{mult}>")
    ap.add_argument("--repeats", type=int, default=9,
                    help="rounds; with 5, single figures moved by 0.1-0.3x of their floor from one run to the next")
    ap.add_argument("--idle", type=float, default=12.0, help="seconds to wait before the last memory reading")
    ap.add_argument("--floor-repeats", type=int, default=5)
    ap.add_argument("--floor-python", default=None, help="measure the floor with this Python (needs torch)")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--start-timeout", type=float, default=900)
    ap.add_argument("--allocator", default="auto",
                    help="with --webui: 'auto' preloads tcmalloc when installed, as webui.sh does (default); "
                         "'system' the C library's malloc; or a library path to preload")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare", nargs="+", default=None, help="print the report of saved phases (JSON files)")
    ap.add_argument("--no-floor-between", action="store_true",
                    help="measure the floor alone after the phases only, not between the calls")
    ap.add_argument("--floor-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--floor-serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    lora_dir = a.lora_dir or (os.path.join(a.webui, "models", "Lora") if a.webui else None)
    files = {n: os.path.join(lora_dir, f"{n}.safetensors") for n in a.networks} if lora_dir else {}
    files = {k: v for k, v in zip("ABCD", files.values())} if files else {}

    if a.floor_only:
        print(json.dumps(floor_times(files, a.floor_repeats)))
        return 0
    if a.floor_serve:
        floor_serve(files)
        return 0
    if a.compare:
        saved = [json.load(open(p)) for p in a.compare]
        phases = [ph for s in saved for ph in s.get("phases", [s])]
        floor = next((s.get("floor") for s in saved if s.get("floor")), None)
        print(report(phases, floor))
        return 0

    def floor():
        if a.no_floor or not files:
            return None
        if a.floor_python:
            out = subprocess.run(floor_command(a.floor_python, "--floor-only", lora_dir, a.networks,
                                               "--floor-repeats", str(a.floor_repeats)),
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])
        return floor_times(files, a.floor_repeats)

    started = time.time()
    phases, loads = [], {"start": load_avg()}
    probe = None
    if files and not a.no_floor and not a.no_floor_between:
        probe = FloorProbe(a.floor_python or sys.executable, lora_dir, a.networks)
        print(f"floor helper ready after {time.time() - started:.0f} s", flush=True)

    def run_phase(url, pid, label):
        phase = measure(url, pid, a.networks, a.token, a.repeats, label, idle=a.idle, floor_probe=probe)
        if probe is not None:
            phase["floor_touched_bytes"] = probe.info["touched_bytes"]
        phases.append(phase)
        loads[label] = load_avg()

    env_extra, allocator = allocator_env(a.allocator) if a.webui else ({}, None)
    if a.webui:
        print(f"allocator: {allocator}", flush=True)
        log_path = os.path.abspath((a.json or "bench_host") + ".server.log")
        for phase in [p.strip() for p in a.phases.split(",") if p.strip()]:
            with open(log_path, "a") as log:
                log.write(f"\n===== {phase} =====\n")
                log.flush()
                proc = start_server(a.webui, a.python, shlex.split(a.server_args), a.port, phase == "builtin", log,
                                    env_extra)
                try:
                    url = f"http://127.0.0.1:{a.port}"
                    wait_for(url + "/sdapi/v1", a.start_timeout, proc)
                    print(f"{phase}: server pid {proc.pid} up after {time.time() - started:.0f} s; load {load_avg()}", flush=True)
                    run_phase(url, proc.pid, phase)
                    phases[-1]["allocator"] = allocator
                    if a.json:  # each phase is kept as soon as it is measured
                        with open(a.json, "w") as f:
                            json.dump({"phases": phases, "floor": None, "load": loads}, f, indent=1)
                finally:
                    stop_server(proc)
    else:
        url = a.url or f"http://127.0.0.1:{a.port}"
        wait_for(url.rstrip("/") + "/sdapi/v1", a.start_timeout)
        run_phase(url, a.pid, a.label)
    if probe is not None:
        probe.close()  # its memory back before the floor alone
    fl = floor()
    loads["end"] = load_avg()
    text = report(phases, fl)
    print(text)
    print(f"\nload average: {loads}; {time.time() - started:.0f} s in all")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"phases": phases, "floor": fl, "load": loads, "report": text}, f, indent=1)
        print(f"wrote {a.json}")
    return 0 if all(all(p["checks"].values()) for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
