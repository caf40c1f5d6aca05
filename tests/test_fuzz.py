"""Hostile files: every outcome is a loaded network or a NetworkFileError that
names the file; no other exception, no allocation from a declared size before
it is checked, and a model that is never left changed by a failure.

CI runs ``FUZZ_CASES`` mutations (default 1500) and ``FUZZ_EXAMPLES``
hypothesis examples (default 300); set them higher for a long local run.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext import NetworkApplyError, NetworkFileError
from lycoris_ext.runtime import Runtime, Use
from support.files import write_raw_safetensors
from support.lycoris_ref import ThreeLayers, make_network
from support.models import same_as, snapshot

CASES = int(os.environ.get("FUZZ_CASES", "1500"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
ALGOS = [
    dict(algo="lora"), dict(algo="lora", use_tucker=True), dict(algo="lora", dora_wd=True), dict(algo="loha"),
    dict(algo="loha", use_tucker=True), dict(algo="lokr", factor=8), dict(algo="lokr", factor=4, use_tucker=True),
    dict(algo="ia3"), dict(algo="full"), dict(algo="glora"), dict(algo="diag-oft", rescaled=True), dict(algo="boft"),
    dict(algo="lora", train_norm=True),
]
DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "Q4", ""]


def check_load(path):
    """Load; the only failure allowed is NetworkFileError naming the file."""
    try:
        return lycoris_ext.load_network(path)
    except NetworkFileError as e:
        assert os.fspath(path) in str(e)
        return None


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Real files written by lycoris-lora 4.1.3, one per algorithm, and their model."""
    d = tmp_path_factory.mktemp("seeds")
    torch.manual_seed(0)
    model = ThreeLayers(64, 32)
    files = []
    for i, kw in enumerate(ALGOS):
        net = make_network(ThreeLayers(64, 32), seed=i, linear_dim=4, conv_dim=2, **kw)
        p = d / f"seed{i}.safetensors"
        net.save_weights(str(p), torch.float32, {"ss_output_name": f"seed{i}"})
        files.append(p.read_bytes())
    return model, files


def _split(raw: bytes):
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    header, data = _split(raw)
    keys = [k for k in header if k != "__metadata__"]
    kind = rng.randrange(12)
    if kind == 0:  # truncate anywhere
        return raw[: rng.randrange(len(raw))]
    if kind == 1:  # flip bytes anywhere (header or data)
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:  # lie about a shape
        k = rng.choice(keys)
        shape = header[k]["shape"]
        header[k]["shape"] = [rng.choice([0, 1, 2, 3, 7, 10**9, 2**40]) for _ in range(rng.randint(0, 5))] if rng.random() < 0.5 else shape[::-1]
        return _join(header, data)
    if kind == 3:  # lie about offsets
        k = rng.choice(keys)
        b, e = header[k]["data_offsets"]
        header[k]["data_offsets"] = rng.choice([[b, e + 4], [b - 4, e], [e, b], [0, 2**62], [b, b], [-1, e]])
        return _join(header, data)
    if kind == 4:  # lie about a dtype
        k = rng.choice(keys)
        header[k]["dtype"] = rng.choice(DTYPES)
        return _join(header, data)
    if kind == 5:  # enormous or non-text metadata
        header["__metadata__"] = rng.choice([{"x": "a" * (1 << 20)}, {"x": 5}, ["a"], {"\udcff": "x"} if False else {"k": "\u0000\u2028"}])
        return _join(header, data)
    if kind == 6:  # duplicate a key in the JSON text
        k = rng.choice(keys)
        h = json.dumps(header)
        entry = json.dumps(header[k])
        h = h[:-1] + f', {json.dumps(k)}: {entry}' + "}"
        hb = h.encode()
        return struct.pack("<Q", len(hb)) + hb + data
    if kind == 7:  # NaN / Inf in a float tensor
        k = rng.choice([k for k in keys if header[k]["dtype"] == "F32"] or keys)
        b, e = header[k]["data_offsets"]
        if e - b >= 4:
            pos = b + 4 * rng.randrange((e - b) // 4)
            data = data[:pos] + struct.pack("<f", rng.choice([float("nan"), float("inf"), -float("inf")])) + data[pos + 4:]
        return _join(header, data)
    if kind == 8:  # drop a tensor
        del header[rng.choice(keys)]
        return _join(header, data)
    if kind == 9:  # rename a key's suffix into another algorithm's
        k = rng.choice(keys)
        mod, _, _suffix = k.partition(".")
        header[f"{mod}.{rng.choice(['lora_up.weight', 'hada_w1_a', 'lokr_w1', 'oft_blocks', 'diff', 'on_input', 'w_norm', 'a1.weight', 'alpha', 'zzz'])}"] = header.pop(k)
        return _join(header, data)
    if kind == 10:  # header length prefix lies
        return struct.pack("<Q", rng.choice([0, 1, 7, len(raw), 2**63])) + raw[8:]
    # garbage header text
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return struct.pack("<Q", len(junk)) + junk + data


def test_mutated_lycoris_files(seeds, tmp_path):
    """Seeded mutations of real files: loaded or refused cleanly, never a model change on failure."""
    model, files = seeds
    from lycoris_ext.resolve.tree import ModelTree

    tree = ModelTree({"unet": model}, naming="diffusers")
    rng = random.Random(20261122)
    snap = snapshot({"unet": model})
    loaded = refused = applied = 0
    path = tmp_path / "m.safetensors"
    for i in range(CASES):
        path.write_bytes(_mutate(rng, rng.choice(files)))
        net = check_load(path)
        if net is None:
            refused += 1
            continue
        loaded += 1
        rt = Runtime(tree)
        try:
            rt.set([Use(net, 1.0, 1.0)])
            applied += 1
        except NetworkApplyError:
            assert same_as({"unet": model}, snap) == []
        rt.restore()
        assert same_as({"unet": model}, snap) == []
    assert refused > CASES // 4 and loaded > 0
    print(f"fuzz: {CASES} mutated files, {refused} refused, {loaded} loaded, {applied} applied")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    entries=st.dictionaries(
        st.text(min_size=0, max_size=30),
        st.fixed_dictionaries({
            "dtype": st.sampled_from(DTYPES),
            "shape": st.lists(st.integers(min_value=-2, max_value=2**45), max_size=5),
            "data_offsets": st.lists(st.integers(min_value=-5, max_value=2**50), min_size=0, max_size=3),
        }),
        max_size=6,
    ),
    data=st.binary(max_size=256),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers()), max_size=3)),
)
def test_arbitrary_headers(tmp_path, entries, data, metadata):
    """Any header over a tiny file: refused or loaded, without allocating what it declares."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    p = write_raw_safetensors(tmp_path / "h.safetensors", header, data)
    tracemalloc.start()
    try:
        check_load(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_billions_declared_in_a_tiny_file(tmp_path):
    h = {"m.lora_up.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]},
         "m.lora_down.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    p = write_raw_safetensors(tmp_path / "big.safetensors", h, b"\0" * 8)
    tracemalloc.start()
    try:
        with pytest.raises(NetworkFileError):
            lycoris_ext.load_network(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("seed", range(6))
def test_shapes_that_do_not_fit_each_other(seeds, tmp_path, seed):
    """Every algorithm's tensors replaced by random shapes: refused or reported, never applied wrongly."""
    model, files = seeds
    from lycoris_ext.resolve.tree import ModelTree

    tree = ModelTree({"unet": model}, naming="diffusers")
    rng = random.Random(seed)
    snap = snapshot({"unet": model})
    for raw in files:
        header, _ = _split(raw)
        tensors = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            shape = v["shape"]
            if rng.random() < 0.3 and shape:
                shape = [max(1, d + rng.choice([-1, 1, 3])) for d in shape] if rng.random() < 0.7 else shape[:-1] or [2]
            tensors[k] = torch.randn(shape) if v["dtype"].startswith("F") else torch.ones(shape, dtype=torch.int64)
        p = tmp_path / "s.safetensors"
        save_file(tensors, str(p))
        net = check_load(p)
        if net is None:
            continue
        rt = Runtime(tree)
        res = rt.resolution(net)
        try:
            rt.set([Use(net, 1, 1)])
        except NetworkApplyError:
            pass
        # whatever applied fits its target: restoring gives the original back
        rt.restore()
        assert same_as({"unet": model}, snap) == []
        assert len(res.matches) + len(res.unmatched) + len(res.mismatched) == len(net.modules)
