"""PEFT's LoKr (``LoKrConfig``) saved with diffusers' ``save_lora_weights``.

Keys ``unet.<path>.lokr_w1`` / ``lokr_w2`` (or their ``_a``/``_b`` factors),
no ``.alpha``; the header's ``lora_adapter_metadata`` has ``peft_type``
"LOKR", ``r``, ``alpha`` and the patterns. PEFT scales every LoKr module by
``alpha / r``, also when its factors are whole matrices (where LyCORIS uses
1). diffusers 0.42.1's pipeline loader refuses these files (no ``lora`` in
the keys), so the reference is the PEFT model that wrote the file.
"""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import lycoris_ext
from lycoris_ext import NetworkFileError
from lycoris_ext.peft_metadata import METADATA_KEY, SOURCE_METADATA
from peft_support import UNET_ATTN, compare, original_weights, our_weights, write_diffusers_file

TOL = 1e-5
CASES = {
    "whole-factors": dict(r=4, alpha=8),
    "decomposed": dict(r=1, alpha=3, decompose_both=True),
    "patterns": dict(r=4, alpha=2, decompose_factor=4, rank_pattern={"to_k": 2}, alpha_pattern={"attn2.to_v": 6}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lokr_at_peft_strength(tmp_path, case):
    w = write_diffusers_file(tmp_path, "sd15", {"unet": dict(target_modules=UNET_ATTN + ["conv1"], **CASES[case])}, convert=False, lokr=True)
    net = lycoris_ext.load_network(w.path)
    assert net.algorithms == ["lokr"] and not net.unknown
    assert net.scale_sources == {SOURCE_METADATA: len(net.modules)}
    assert net.adapter_metadata["unet"].peft_type == "LOKR"
    if case == "decomposed":
        assert all(a.rank == 1 for a in net.modules.values())
    orig = original_weights("sd15")
    at_one = our_weights(net, "sd15")
    err, changed = compare(at_one, w.trained, orig)
    assert changed == len(net.modules) and err < TOL, err
    # PEFT's multiplier (its scale times m) is linear, as ours is
    half = our_weights(net, "sd15", 0.5)
    assert max((half[k] - orig[k] - 0.5 * (at_one[k] - orig[k])).abs().max().item() for k in orig) < TOL


def test_lokr_rank_disagreeing_with_factors(tmp_path):
    w = write_diffusers_file(tmp_path, "sd15", {"unet": dict(target_modules=UNET_ATTN, **CASES["decomposed"])}, convert=False, lokr=True)
    with safe_open(str(w.path), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        md = dict(f.metadata())
    data = json.loads(md[METADATA_KEY])
    data["unet.r"] = 2
    save_file(sd, str(tmp_path / "bad.safetensors"), {**md, METADATA_KEY: json.dumps(data)})
    with pytest.raises(NetworkFileError, match="unet.r"):
        lycoris_ext.load_network(tmp_path / "bad.safetensors")


def test_inspect_names_the_lokr_config(tmp_path):
    from lycoris_ext.summary import format_summary, summarize

    w = write_diffusers_file(tmp_path, "sd15", {"unet": dict(target_modules=UNET_ATTN, **CASES["whole-factors"])}, convert=False, lokr=True)
    text = format_summary(summarize(lycoris_ext.load_network(w.path)))
    assert "adapter metadata: unet: LOKR, r 4, alpha 8" in text and "scale from:  adapter metadata (" in text
