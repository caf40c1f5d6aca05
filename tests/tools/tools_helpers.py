"""Small real-named models saved as A1111 single-file checkpoints, sample
networks of every algorithm written for them, and an independent recompute of
the changes networks ask for."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from lycoris_ext.tools.checkpoint import LAYOUTS
from support.models import write_full_with_bias, write_norm_network, write_sample

ALGOS = ["lora", "loha", "lokr", "dora", "ia3", "full", "oft", "glora"]


def checkpoint_dict(parts, family: str) -> dict[str, torch.Tensor]:
    """The model's state dict with A1111's checkpoint prefixes (plus a VAE-like tensor)."""
    _, prefixes = LAYOUTS[family]
    sd = {}
    for part, mod in parts.items():
        for k, v in mod.state_dict().items():
            sd[prefixes[part] + k] = v.detach().clone().contiguous()
    g = torch.Generator().manual_seed(0)
    sd["first_stage_model.decoder.conv_out.weight"] = torch.randn(3, 8, 3, 3, generator=g).to(next(iter(sd.values())).dtype)
    return sd


def save_checkpoint(path, parts, family: str, metadata=None) -> str:
    save_file(checkpoint_dict(parts, family), str(path), metadata=metadata)
    return str(path)


def make_nets(tree, folder, algos=ALGOS, seed=0):
    nets = {}
    for i, a in enumerate(algos):
        p = folder / f"{a}.safetensors"
        write_sample(p, tree, a, rank=4, seed=seed + i, conv_rank=2 if a in ("lora", "loha") else None)
        nets[a] = str(p)
    write_norm_network(folder / "norm.safetensors", tree, seed=seed + 11)
    nets["norm"] = str(folder / "norm.safetensors")
    write_full_with_bias(folder / "fullbias.safetensors", tree, seed=seed + 12)
    nets["fullbias"] = str(folder / "fullbias.safetensors")
    return nets





def changes(tree, uses) -> dict[tuple, torch.Tensor]:
    """Independent recompute of each target's change for ``uses``: the sum of
    each adapter's own ``delta`` on the live model's weight (float32)."""
    from lycoris_ext.resolve import resolve
    from lycoris_ext.runtime.params import bias_view, weight_view

    out = {}
    for use in uses:
        res = resolve(use.network, tree)
        assert res.applicable, res.summary()
        for m in res.matches:
            mult = use.part_multiplier(m.target.part) * use.block_weight(m.target.block)
            if mult == 0:
                continue
            ad = m.adapter.truncated(use.dyn) if use.dyn is not None else m.adapter
            w32 = weight_view(m.target).float()
            b = bias_view(m.target)
            dw, _ = ad.delta(w32, mult, None if b is None else b.float())
            out[m.target.id] = out.get(m.target.id, 0) + dw.reshape(w32.shape)
    return out


def relative_error(got: dict, want: dict) -> float:
    """Frobenius norm of the difference over all targets, over that of ``want``."""
    num = den = 0.0
    for tid in set(got) | set(want):
        g = got.get(tid)
        w = want.get(tid)
        g = torch.zeros_like(w) if g is None else g
        w = torch.zeros_like(g) if w is None else w
        num += float((g.double() - w.double()).norm() ** 2)
        den += float(w.double().norm() ** 2)
    return (num / den) ** 0.5
