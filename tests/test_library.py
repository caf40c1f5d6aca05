"""The network folders index and the bounded cache of loaded networks."""

from __future__ import annotations

import os
import time

import pytest
import torch

from lycoris_ext.files import addnet_hash, file_sha256
from lycoris_ext.library import NetworkLibrary
from lycoris_ext.runtime import NetworkCache
from support.files import lora_tensors, write_network


def _write(path, meta=None, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return write_network(path, lora_tensors(seed=seed), meta)


@pytest.fixture
def dirs(tmp_path):
    lora, lyco = tmp_path / "Lora", tmp_path / "LyCORIS"
    _write(str(lora / "style.safetensors"), {"ss_output_name": "my_style"})
    _write(str(lora / "sub" / "dup.safetensors"), seed=1)
    _write(str(lora / "other" / "dup.safetensors"), seed=2)
    _write(str(lyco / "lyco_only.safetensors"), {"ss_output_name": "none"}, seed=3)
    torch.save(lora_tensors(seed=4), str(lora / "old.pt"))
    (lora / "notes.txt").write_text("not a network")
    return str(lora), str(lyco)


def test_scan_names_and_lookups(dirs):
    lib = NetworkLibrary(dirs)
    assert sorted(lib.entries) == ["lyco_only", "old", "other/dup", "style", "sub/dup"]
    assert lib.find("style").name == "style"
    assert lib.find("my_style") is lib.find("style")  # alias from ss_output_name
    assert lib.find("sub/dup").path.endswith(os.path.join("sub", "dup.safetensors"))
    assert lib.find("other/dup") is not lib.find("sub/dup")
    assert lib.find("dup") is None  # two files share the stem: use the relative path
    assert lib.find("none") is None  # forbidden alias
    assert lib.find("lyco_only").root == os.path.abspath(dirs[1])
    assert lib.find("old").is_safetensors is False


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "..\\x", "a\x00b", "", "sub/../style", os.path.abspath(__file__)])
def test_names_never_reach_outside(dirs, name):
    lib = NetworkLibrary(dirs)
    assert lib.find(name) is None


def test_hashes_match_the_webui(dirs):
    lib = NetworkLibrary(dirs)
    e = lib.find("style")
    assert lib.ensure_hash(e) == addnet_hash(e.path)
    assert e.shorthash == e.hash[:12]
    pt = lib.find("old")
    assert lib.ensure_hash(pt) == file_sha256(pt.path)
    assert lib.find_by_shorthash(e.shorthash) is e
    assert lib.find_by_shorthash(pt.shorthash) is pt


def test_metadata_hash_is_trusted(tmp_path):
    _write(str(tmp_path / "L" / "a.safetensors"), {"sshs_model_hash": "ABCDEF0123456789"})
    lib = NetworkLibrary([str(tmp_path / "L")], hasher=lambda e: pytest.fail("must not hash"))
    assert lib.ensure_hash(lib.find("a")) == "abcdef0123456789"


def test_family_from_header_without_reading_tensors(dirs):
    lib = NetworkLibrary(dirs)
    assert lib.find("style").family == "unknown"  # tiny test tensors: no telling shapes, no metadata


def test_refresh_sees_new_and_changed_files(dirs):
    lib = NetworkLibrary(dirs)
    _write(os.path.join(dirs[0], "new.safetensors"))
    assert lib.find("new") is None
    lib.refresh()
    assert lib.find("new") is not None
    os.remove(os.path.join(dirs[0], "new.safetensors"))
    lib.refresh()
    assert lib.find("new") is None


def test_broken_file_is_listed_with_its_error(tmp_path):
    d = tmp_path / "L"
    d.mkdir()
    (d / "broken.safetensors").write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{bad")
    lib = NetworkLibrary([str(d)])
    e = lib.find("broken")
    assert e is not None and e.metadata == {} and "not valid JSON" in e.error


def test_cache_bounds_and_invalidation(tmp_path):
    paths = [_write(str(tmp_path / f"n{i}.safetensors"), seed=i) for i in range(4)]
    cache = NetworkCache(max_count=2)
    a = cache.get(paths[0])
    assert cache.get(paths[0]) is a and cache.loads == 1
    cache.get(paths[1])
    cache.get(paths[2])
    assert len(cache) == 2 and paths[0] not in cache  # least recently used went first
    cache.get(paths[1])
    cache.get(paths[3])
    assert list(cache._items) == [os.path.abspath(paths[1]), os.path.abspath(paths[3])]
    # a changed file is read again
    time.sleep(0.01)
    _write(paths[3], seed=9)
    os.utime(paths[3], ns=(time.time_ns(), time.time_ns() + 10**9))
    before = cache.loads
    cache.get(paths[3])
    assert cache.loads == before + 1
    # bytes bound
    one = cache.get(paths[0]).nbytes
    cache.resize(max_count=10, max_bytes=one)
    assert len(cache) == 1 and cache.nbytes <= one


def test_names_no_token_can_hold_use_the_hash(tmp_path):
    """'>' ends a token and '#' starts a WebUI comment: such names are written
    as '@' and the short hash; '#' and the hash (older prompts) still resolve,
    and a file really named like a hash wins over the hash reading."""
    from lycoris_ext.tokens import token_safe

    root = tmp_path / "L"
    _write(str(root / "style#2.safetensors"), seed=1)
    _write(str(root / "a>b.safetensors"), seed=2)
    _write(str(root / "plain.safetensors"), seed=3)
    lib = NetworkLibrary([str(root)])
    for stem in ("style#2", "a>b"):
        e = lib.find(stem)
        name = lib.display_name(e)
        assert name == "@" + lib.ensure_hash(e)[:12] and not token_safe(stem)
        assert lib.find(name) is e and lib.find("#" + e.shorthash) is e and lib.find(name.upper()) is e
    plain = lib.find("plain")
    assert lib.display_name(plain) == "plain"
    _write(str(root / ("@" + lib.ensure_hash(plain)[:12] + ".safetensors")), seed=4)
    lib.refresh()
    squatter = lib.find("@" + plain.shorthash)
    assert squatter is not None and squatter.stem.startswith("@") and not token_safe(squatter.stem)
