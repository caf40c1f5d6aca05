"""DoRA from PEFT (``lora_magnitude_vector``): equal to PEFT at multiplier 1,
and the convention at other multipliers.

At multiplier 1 the merged weight is PEFT's ``m * (W + s B A) / ||W + s B A||``
(rows of a Linear, output channels of a conv, whose magnitude PEFT stores as
``(1, out, 1, 1)``). At multiplier ``k`` this project (like LyCORIS and A1111's
built-in) scales the whole change, ``W + k (W'(1) - W)``; PEFT/diffusers
(``fuse_lora(lora_scale=k)``, ``set_adapters(weights=k)``) scale the update inside
the norm, ``m * (W + k s B A) / ||W + k s B A||``. Both are tested here.
"""

from __future__ import annotations

import pytest
import torch

import lycoris_ext
from peft_support import TE_TARGETS, UNET_ATTN, compare, diffusers_weights, original_weights, our_weights, write_diffusers_file

TOL = 1e-5
TE = dict(r=4, lora_alpha=4, use_dora=True, target_modules=TE_TARGETS)
# PEFT's own keys with convs; the training scripts' converted keys on attention
# only (diffusers' loader reads a converted file's `.lora.down` keys only when
# its first key is one: a conv's `lora_A` first leaves them unread)
VARIANTS = {
    "peft-keys": (False, {"unet": dict(r=4, lora_alpha=8, use_dora=True, target_modules=UNET_ATTN + ["conv1", "proj_in"]), "text_encoder": TE}),
    "diffusers-keys": (True, {"unet": dict(r=4, lora_alpha=8, use_dora=True, target_modules=UNET_ATTN), "text_encoder": TE}),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def dora(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("dora")
    convert, configs = VARIANTS[request.param]
    w = write_diffusers_file(d, "sd15", configs, convert=convert, magnitude_noise=0.1)
    return w, lycoris_ext.load_network(w.path)


def test_magnitudes_read_per_output(dora):
    _, net = dora
    assert net.features == ["dora"] and not net.unknown
    assert all(a.magnitude is not None and a.magnitude_on_out for a in net.modules.values())
    conv = net.modules.get("unet.down_blocks.0.resnets.0.conv1")
    if conv is not None:
        assert tuple(conv.magnitude.shape) == (1, 16, 1, 1)


def test_multiplier_one_equals_peft(dora):
    w, net = dora
    orig = original_weights("sd15")
    err, changed = compare(our_weights(net, "sd15"), w.trained, orig)
    assert changed == len(net.modules) and err < TOL, f"max |ours - PEFT| = {err:.3g}"


def test_multiplier_one_equals_diffusers_loader_on_the_unet(dora):
    """diffusers 0.42.1 loads the text encoder's DoRA through transformers'
    ``load_adapter``, which leaves ``lora_magnitude_vector`` at its fresh
    initialisation; the UNet's are loaded, so compare there."""
    w, net = dora
    orig = original_weights("sd15")
    ours, theirs = our_weights(net, "sd15"), diffusers_weights(w.path, "sd15")
    unet = lambda d: {k: v for k, v in d.items() if k.startswith("unet.")}  # noqa: E731
    err, changed = compare(unet(ours), unet(theirs), unet(orig))
    assert changed == sum(k.startswith("unet.") for k in net.modules) and err < TOL


@pytest.mark.parametrize("k", [0.5, 1.5])
def test_other_multipliers_scale_the_whole_change(dora, k):
    w, net = dora
    orig = original_weights("sd15")
    at_one = our_weights(net, "sd15")
    ours = our_weights(net, "sd15", k)
    for name, w0 in orig.items():
        want = w0 + k * (at_one[name] - w0)
        assert (ours[name] - want).abs().max().item() < TOL, name
    # PEFT's convention differs: the update is scaled inside the norm
    theirs = diffusers_weights(w.path, "sd15", k)
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    a = net.modules[key]
    W = orig[key + ".weight"]
    up, down = (a.param(s) for s in ("lora_up.weight", "lora_down.weight"))
    merged = W + k * a.scale * up @ down
    peft = a.magnitude.reshape(-1, 1) * merged / merged.norm(dim=1, keepdim=True)
    assert (theirs[key + ".weight"] - peft).abs().max().item() < TOL
    assert (theirs[key + ".weight"] - ours[key + ".weight"]).abs().max().item() > 100 * TOL
