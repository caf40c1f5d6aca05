"""Bad input: every failure is a NetworkFileError naming the file and the key."""

from __future__ import annotations

import os
import pickle
import struct

import pytest
import torch

import lycoris_ext
from lycoris_ext import NetworkFileError
from support.files import lora_tensors, write_network, write_raw_safetensors


def raises(path, *fragments, key=None):
    """Load ``path`` and check the error names the file, the key and the reason."""
    with pytest.raises(NetworkFileError) as info:
        lycoris_ext.load_network(path)
    msg = str(info.value)
    assert os.fspath(path) in msg
    if key is not None:
        assert key in msg
        assert info.value.key == key
    for frag in fragments:
        assert frag in msg, msg
    return info.value


def test_good_file_loads(tmp_path):
    p = write_network(tmp_path / "ok.safetensors", lora_tensors(), {"ss_output_name": "ok"})
    net = lycoris_ext.load_network(p)
    assert net.algorithms == ["lora"]
    assert list(net.modules) == ["lora_unet_x"]
    assert net.metadata == {"ss_output_name": "ok"}
    assert net.modules["lora_unet_x"].scale == 0.5


def test_empty_file(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    raises(p, "empty")


def test_truncated_file(tmp_path):
    good = write_network(tmp_path / "good.safetensors", lora_tensors())
    data = open(good, "rb").read()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(data[: len(data) - 40])
    err = raises(p, "outside the file", "truncated")
    assert err.key is not None  # the tensor whose bytes are missing is named


def test_shorter_than_length_prefix(tmp_path):
    p = tmp_path / "tiny.safetensors"
    p.write_bytes(b"\x01\x02\x03")
    raises(p, "truncated")


def test_header_length_beyond_file(tmp_path):
    p = tmp_path / "lying.safetensors"
    p.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    raises(p, "truncated or corrupt")


def test_header_not_json(tmp_path):
    p = write_raw_safetensors(tmp_path / "nojson.safetensors", b"{not json at all")
    raises(p, "not valid JSON")


def test_header_not_utf8(tmp_path):
    p = write_raw_safetensors(tmp_path / "bytes.safetensors", b"\xff\xfe\x00garbage")
    raises(p, "not UTF-8")


def test_header_not_object(tmp_path):
    p = write_raw_safetensors(tmp_path / "list.safetensors", b"[1, 2]")
    raises(p, "not a JSON object")


def test_duplicate_header_keys(tmp_path):
    h = b'{"a.lora_up.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a.lora_up.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    p = write_raw_safetensors(tmp_path / "dup.safetensors", h, b"\0" * 4)
    raises(p, "duplicate key")


def test_declared_size_beyond_data(tmp_path):
    # A billion-element tensor declared in a tiny file: refused from the header alone.
    h = {"x.lora_up.weight": {"dtype": "F32", "shape": [1000000, 1000], "data_offsets": [0, 4000000000]}}
    p = write_raw_safetensors(tmp_path / "huge.safetensors", h, b"\0" * 16)
    raises(p, "outside the file", key="x.lora_up.weight")


def test_shape_and_size_disagree(tmp_path):
    h = {"x.lora_up.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}
    p = write_raw_safetensors(tmp_path / "lie.safetensors", h, b"\0" * 16)
    raises(p, "needs 64 bytes", key="x.lora_up.weight")


def test_overlapping_ranges(tmp_path):
    h = {
        "x.lora_up.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "x.lora_down.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]},
    }
    p = write_raw_safetensors(tmp_path / "overlap.safetensors", h, b"\0" * 24)
    raises(p, "overlaps")


def test_unknown_dtype(tmp_path):
    h = {"x.alpha": {"dtype": "Q4", "shape": [], "data_offsets": [0, 1]}}
    p = write_raw_safetensors(tmp_path / "dtype.safetensors", h, b"\0")
    raises(p, "unknown dtype", key="x.alpha")


def test_metadata_not_strings(tmp_path):
    h = {"__metadata__": {"ss_network_dim": 4}, "x.alpha": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}
    p = write_raw_safetensors(tmp_path / "meta.safetensors", h, b"\0" * 4)
    raises(p, "not a string", key="__metadata__.ss_network_dim")


def test_no_tensors(tmp_path):
    p = write_raw_safetensors(tmp_path / "none.safetensors", {"__metadata__": {"a": "b"}})
    raises(p, "no tensors")


def test_rank_mismatch(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.lora_down.weight"] = torch.randn(3, 16)
    p = write_network(tmp_path / "rank.safetensors", t)
    raises(p, "ranks", key="lora_unet_x.lora_up.weight")


def test_up_with_kernel(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.lora_up.weight"] = torch.randn(8, 4, 3, 3)
    p = write_network(tmp_path / "upk.safetensors", t)
    raises(p, "expected (out, rank)", key="lora_unet_x.lora_up.weight")


def test_integer_weights(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.lora_up.weight"] = torch.ones(8, 4, dtype=torch.int32)
    p = write_network(tmp_path / "int.safetensors", t)
    raises(p, "torch.int32", "floating point", key="lora_unet_x.lora_up.weight")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values(tmp_path, bad):
    t = lora_tensors()
    t["lora_unet_x.lora_down.weight"][1, 2] = bad
    p = write_network(tmp_path / "nan.safetensors", t)
    raises(p, "NaN or Inf", "module 'lora_unet_x'", key="lora_unet_x.lora_down.weight")


def test_non_finite_alpha(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.alpha"] = torch.tensor(float("nan"))
    p = write_network(tmp_path / "nanalpha.safetensors", t)
    raises(p, "lora_unet_x", key="lora_unet_x.alpha")


def test_matrix_where_scalar_belongs(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.alpha"] = torch.ones(2, 2)
    p = write_network(tmp_path / "alpha.safetensors", t)
    raises(p, "single number", key="lora_unet_x.alpha")


def test_scalar_where_matrix_belongs(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.lora_up.weight"] = torch.tensor(1.0)
    p = write_network(tmp_path / "scalar.safetensors", t)
    raises(p, "dimensions", key="lora_unet_x.lora_up.weight")


@pytest.mark.parametrize("alpha", [torch.tensor(2, dtype=torch.int64), torch.tensor(2.0, dtype=torch.float16),
                                   torch.tensor([2.0]), torch.tensor(2.0, dtype=torch.bfloat16)])
def test_alpha_any_dtype(tmp_path, alpha):
    t = lora_tensors()
    t["lora_unet_x.alpha"] = alpha
    net = lycoris_ext.load_network(write_network(tmp_path / "a.safetensors", t))
    assert net.modules["lora_unet_x"].scale == 0.5


@pytest.mark.parametrize("alpha", [None, 0.0])
def test_alpha_missing_or_zero_means_gamma_one(tmp_path, alpha):
    t = lora_tensors()
    if alpha is None:
        del t["lora_unet_x.alpha"]
    else:
        t["lora_unet_x.alpha"] = torch.tensor(alpha)
    net = lycoris_ext.load_network(write_network(tmp_path / "a.safetensors", t))
    assert net.modules["lora_unet_x"].scale == 1.0


@pytest.mark.parametrize(
    "tensors, key, fragment",
    [
        ({"m.hada_w1_a": torch.ones(8, 4), "m.hada_w1_b": torch.ones(3, 16), "m.hada_w2_a": torch.ones(8, 4), "m.hada_w2_b": torch.ones(4, 16)}, "m.hada_w1_b", "ranks"),
        ({"m.hada_w1_a": torch.ones(8, 4), "m.hada_w1_b": torch.ones(4, 16), "m.hada_w2_a": torch.ones(6, 4), "m.hada_w2_b": torch.ones(4, 16)}, "m.hada_w2_a", "halves"),
        ({"m.lokr_w1_a": torch.ones(4, 2), "m.lokr_w1_b": torch.ones(3, 4), "m.lokr_w2": torch.ones(4, 4)}, "m.lokr_w1_b", "ranks"),
        ({"m.lokr_w1": torch.ones(4, 4), "m.lokr_w2_a": torch.ones(4, 2), "m.lokr_t2": torch.ones(3, 3, 3, 3), "m.lokr_w2_b": torch.ones(2, 4)}, "m.lokr_t2", "does not join"),
        ({"m.oft_blocks": torch.ones(4, 3, 2)}, "m.oft_blocks", "square"),
        ({"m.oft_blocks": torch.ones(2, 4, 3, 3)}, "m.oft_blocks", "even size"),
        ({"m.a1.weight": torch.ones(16, 4), "m.a2.weight": torch.ones(3, 16), "m.b1.weight": torch.ones(8, 4), "m.b2.weight": torch.ones(4, 16)}, "m.b2.weight", "do not join"),
        ({"m.diff": torch.ones(8, 16), "m.diff_b": torch.ones(4)}, "m.diff_b", "output rows"),
        ({"m.w_norm": torch.ones(8), "m.b_norm": torch.ones(4)}, "m.b_norm", "shape"),
        ({"m.weight": torch.ones(2, 8), "m.on_input": torch.tensor(0)}, "m.weight", "one value per channel"),
        ({"m.lora_up.weight": torch.ones(8, 4), "m.lora_down.weight": torch.ones(4, 16), "m.dora_scale": torch.ones(2, 8)}, "m.dora_scale", "expected (out, 1"),
        ({"m.lora_up.weight": torch.ones(8, 4), "m.lora_down.weight": torch.ones(4, 16), "m.hada_w1_a": torch.ones(8, 4)}, "m", "several algorithms"),
    ],
    ids=["loha-rank", "loha-halves", "lokr-rank", "lokr-tucker", "oft-square", "boft-even", "glora", "full-bias", "norm", "ia3", "dora", "mixed"],
)
def test_impossible_shapes(tmp_path, tensors, key, fragment):
    p = write_network(tmp_path / "bad.safetensors", tensors)
    raises(p, fragment, key=key)


def test_missing_partner(tmp_path):
    t = lora_tensors()
    del t["lora_unet_x.lora_down.weight"]
    p = write_network(tmp_path / "half.safetensors", t)
    raises(p, "missing 'lora_down.weight'")


def test_unknown_suffixes_are_reported(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.mystery"] = torch.ones(3)
    t["lora_unet_y.alpha"] = torch.tensor(1.0)
    net = lycoris_ext.load_network(write_network(tmp_path / "extra.safetensors", t))
    reported = {u.key: u.reason for u in net.unknown}
    assert "unknown suffix 'mystery'" in reported["lora_unet_x.mystery"]
    assert "no algorithm" in reported["lora_unet_y.alpha"]
    assert list(net.modules) == ["lora_unet_x"]


def test_unused_known_suffix_is_reported(tmp_path):
    t = lora_tensors()
    t["lora_unet_x.hada_t1"] = torch.ones(4, 4, 3, 3)
    t["lora_unet_x.rescale"] = torch.ones(8, 1)
    net = lycoris_ext.load_network(write_network(tmp_path / "mix.safetensors", t))
    assert sorted((u.key, u.reason) for u in net.unknown) == [
        ("lora_unet_x.hada_t1", "not used by lora"),
        ("lora_unet_x.rescale", "not used by lora"),
    ]
    t = lora_tensors()
    t["lora_unet_x.on_input"] = torch.tensor(1)  # claims IA3 as well
    raises(write_network(tmp_path / "mix2.safetensors", t), "several algorithms (lora, ia3)", key="lora_unet_x")


def test_bundled_embeddings(tmp_path):
    t = lora_tensors()
    t["bundle_emb.mychar.string_to_param.*"] = torch.randn(2, 768)
    t["bundle_emb.xlchar.clip_l"] = torch.randn(1, 768)
    t["bundle_emb.xlchar.clip_g"] = torch.randn(1, 1280)
    net = lycoris_ext.load_network(write_network(tmp_path / "emb.safetensors", t))
    assert sorted(net.embeddings) == ["mychar", "xlchar"]
    assert set(net.embeddings["xlchar"]) == {"clip_l", "clip_g"}
    assert not net.unknown


def test_unsupported_extension(tmp_path):
    p = tmp_path / "net.bin"
    p.write_bytes(b"\0" * 16)
    raises(p, "unsupported file type '.bin'")


def test_missing_file(tmp_path):
    raises(tmp_path / "nope.safetensors", "no such file")


def test_weights_only_pickle_loads(tmp_path):
    p = tmp_path / "net.pt"
    torch.save(lora_tensors(), p)
    net = lycoris_ext.load_network(p)
    assert net.format == "pickle" and net.algorithms == ["lora"]


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    p = tmp_path / "evil.pt"
    t = lora_tensors()
    t["lora_unet_x.extra"] = _Payload()
    with open(p, "wb") as f:
        pickle.dump(t, f)
    raises(p, "refused")
    assert not marker.exists()
    p2 = tmp_path / "evil2.ckpt"
    torch.save({"state_dict": {"x": _Payload()}}, p2)
    raises(p2, "refused")
    assert not marker.exists()


def test_corrupt_pickle(tmp_path):
    p = tmp_path / "junk.ckpt"
    p.write_bytes(b"PK\x03\x04 this is not a zip")
    raises(p, "pickle")


def test_error_is_a_valueerror_and_public():
    assert issubclass(lycoris_ext.NetworkFileError, ValueError)
