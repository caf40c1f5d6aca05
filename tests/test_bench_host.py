"""bench/bench_host.py's floor and report, on tiny kohya files (no server)."""

import os
import sys

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_host  # noqa: E402

# module -> (out, in): two linear layers and a 1x1 conv
MODULES = {"lora_unet_a": (6, 4), "lora_unet_b": (3, 5), "lora_te_c": (4, (2, 1, 1))}


@pytest.fixture
def files(tmp_path):
    out = {}
    for i, name in enumerate("ABCD"):
        sd = {}
        for j, (mod, (o, inp)) in enumerate(MODULES.items()):
            if name == "D" and j == 2:
                continue  # D leaves one layer alone
            rank = 2 + i % 2
            shape = (rank, *inp) if isinstance(inp, tuple) else (rank, inp)
            sd[f"{mod}.lora_down.weight"] = torch.randn(shape, dtype=torch.float16)
            sd[f"{mod}.lora_up.weight"] = torch.randn((o, rank, *([1, 1] if isinstance(inp, tuple) else [])), dtype=torch.float16)
            sd[f"{mod}.alpha"] = torch.tensor(1.0)
        path = tmp_path / f"{name}.safetensors"
        save_file(sd, str(path))
        out[name] = str(path)
    return out


def test_the_floor_copies_then_adds_every_active_product(files):
    fl = bench_host.Floor(files)
    assert fl.layers == sorted(MODULES)
    assert fl.touched == 4 * (6 * 4 + 3 * 5 + 4 * 2)
    scenario = "add a fourth (ABC -> ABCD)"
    assert fl.once(scenario) > 0
    up, down = fl.factors(bench_host.FLOOR_SETS[scenario])["lora_unet_a"]
    assert up.shape == (6, 2 + 3 + 2 + 3) and down.shape == (10, 4)  # four networks' ranks, concatenated
    assert torch.equal(fl.live["lora_unet_a"], torch.addmm(fl.orig["lora_unet_a"], up, down))
    # D has no factors for the conv: three networks there
    assert fl.factors(bench_host.FLOOR_SETS[scenario])["lora_te_c"][0].shape == (4, 2 + 3 + 2)
    fl.once("back to none (ABC -> none)")
    assert all(torch.equal(fl.live[m], fl.orig[m]) for m in MODULES)
    times = bench_host.floor_times(files, repeats=2)
    assert times["same set again (ABCD -> ABCD)"] == 0.0 and times["first apply (none -> A)"] > 0
    assert times["touched_bytes"] == fl.touched and times["layers"] == 3


def test_the_floor_helper_answers_each_scenario(files):
    probe = bench_host.FloorProbe(sys.executable, os.path.dirname(files["A"]), list("ABCD"))
    try:
        assert probe.info == {"touched_bytes": 4 * (6 * 4 + 3 * 5 + 4 * 2), "layers": 3}
        for scenario, active in bench_host.FLOOR_SETS.items():
            if active is not None:
                assert probe(scenario) > 0
    finally:
        probe.close()
    assert probe.proc.returncode == 0


def _phase(label, change, again, between=None):
    table = {}
    for s in bench_host.SCENARIOS + [bench_host.T0, bench_host.ENCODE, bench_host.ENCODE_BOTH]:
        c = change.get(s, 0.0)
        table[s] = {"median": 1 + c, "minus_T0": c, "minus_again": c - again, "again": [1.0]}
    phase = {"label": label, "T0": 1.0, "table": table, "cold": {}, "memory": {}, "checks": {"ok": True}}
    if between:
        phase["floor_between"] = between
        phase["floor_between_samples"] = {s: [v] * 3 for s, v in between.items()}
    return phase


def test_the_report_compares_with_the_floor_of_the_same_minutes():
    first = bench_host.SCENARIOS[0]
    enc = 0.2
    change = {first: 0.6, bench_host.ENCODE_BOTH: enc, bench_host.ENCODE: 0.1}
    between = {s: 0.32 for s, a in bench_host.FLOOR_SETS.items() if a is not None}
    alone = {s: (0.0 if a is None else 0.25) for s, a in bench_host.FLOOR_SETS.items()}
    alone.update(touched_bytes=1 << 30, layers=3)
    phase = _phase("extension", change, 0.0, between)
    floor = bench_host.phase_floor(phase, alone)
    assert floor[first] == 0.32 and floor[bench_host.SCENARIOS[1]] == 0.0 and floor["touched_bytes"] == 1 << 30
    text = bench_host.report([phase], alone)
    row = next(line for line in text.splitlines() if line.startswith(first))
    assert f"{(0.6 - enc) / 0.32:.2f}x" in row  # (change - enc) / the floor between the calls
    assert "alone after the phases" in text
    alone_row = [line for line in text.splitlines() if line.startswith(first)][1]
    assert f"{(0.6 - enc) / 0.25:.2f}x" in alone_row  # and over the floor measured alone, beside it
    # without a floor between the calls, the floor alone is the one
    assert bench_host.phase_floor(_phase("extension", change, 0.0), alone) is alone


def test_the_report_gives_what_the_process_uses_beside_its_rss():
    G = 1 << 30
    alone = {s: 0.25 for s in bench_host.FLOOR_SETS}
    alone.update(touched_bytes=G, layers=3)
    own = lambda originals, pooled: {"originals": originals, "pooled": pooled, "networks": G // 10}  # noqa: E731
    phase = _phase("extension", {}, 0.0)
    phase["memory"] = {
        "before any network": {"VmRSS": 5 * G, "VmHWM": 5 * G, "in_use": 4 * G, "extension": own(0, 0)},
        # the allocator took 0.2 GiB of free pages again: RSS 1.3x, in use 1.1x
        "A,B,C,D active": {"VmRSS": 6 * G + 3 * G // 10, "VmHWM": 7 * G, "in_use": 5 * G + G // 10, "extension": own(G, 0)},
        "plain calls (no network), during the rounds": [
            {"VmRSS": 5 * G + G // 10, "VmHWM": 7 * G, "in_use": 4 * G + G // 10, "extension": own(0, 0)},
            {"VmRSS": 6 * G + G // 5, "VmHWM": 7 * G, "in_use": 5 * G + G // 10, "extension": own(0, G)},
        ],
    }
    text = bench_host.report([phase], alone)
    assert "1.30x touched" in text  # the server's RSS, as before
    use = next(line for line in text.splitlines() if "in use (VmRSS - allocator free)" in line)
    assert "+ 1.10 GiB = 1.10x touched" in use and "the host's part +0.00 GiB" in use
    plain = next(line for line in text.splitlines() if "plain calls" in line)
    assert "VmRSS +0.10 to +1.20 GiB" in plain and "the host's part of what is in use +0.00 to +0.00 GiB" in plain
