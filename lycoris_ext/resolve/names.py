"""Translations between the naming schemes of the same layers.

Every function here maps a *real module path of a model* (dotted, as
``named_modules()`` gives it) to the path the same layer has in another
scheme. They are applied to the model's own names, never to a file's
underscored keys, so no underscore ever has to be guessed back into a dot.

Schemes:

- ``ldm``: the UNet of A1111/CompVis/sgm (``input_blocks.4.1.proj_in``); SD1,
  SD2 and SDXL share its layout rules.
- ``diffusers``: ``UNet2DConditionModel`` (``down_blocks.1.attentions.0.proj_in``).
- ``hf``: transformers' ``CLIPTextModel`` (``text_model.encoder.layers.0.self_attn.q_proj``).
- ``openclip``: OpenCLIP's text tower as A1111 holds it
  (``transformer.resblocks.0.attn`` with a packed ``in_proj_weight``).
"""

from __future__ import annotations

import re
from typing import Callable

# ResBlock children: ldm name -> diffusers name.
RESNET_LDM_TO_DIFFUSERS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
RESNET_DIFFUSERS_TO_LDM = {v: k for k, v in RESNET_LDM_TO_DIFFUSERS.items()}

# Layers outside the three block lists.
TOP_LDM_TO_DIFFUSERS = {
    "input_blocks.0.0": "conv_in",
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}
TOP_DIFFUSERS_TO_LDM = {v: k for k, v in TOP_LDM_TO_DIFFUSERS.items()}


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _split_rest(rest: list[str]) -> str:
    return ".".join(rest)


def ldm_to_diffusers(path: str) -> str | None:
    """``input_blocks.4.1.proj_in`` -> ``down_blocks.1.attentions.0.proj_in``.

    Upsamplers and downsamplers are recognised by their own child names
    (``conv`` directly under an output block, ``op`` under an input block),
    so no class information is needed.
    """
    for ldm, diff in TOP_LDM_TO_DIFFUSERS.items():
        if path == ldm or path.startswith(ldm + "."):
            return diff + path[len(ldm):]
    parts = path.split(".")
    if parts[0] == "middle_block" and len(parts) >= 2 and parts[1].isdigit():
        k, rest = int(parts[1]), _split_rest(parts[2:])
        if k == 1:
            return _join("mid_block.attentions.0", rest)
        if k in (0, 2):
            return _join(f"mid_block.resnets.{k // 2}", RESNET_LDM_TO_DIFFUSERS.get(rest, rest))
        return None
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    block, n, k = parts[0], int(parts[1]), int(parts[2])
    rest = _split_rest(parts[3:])
    if block == "input_blocks" and n >= 1:
        i, j = (n - 1) // 3, (n - 1) % 3
        if k == 0 and (rest == "op" or rest.startswith("op.")):
            return _join(f"down_blocks.{n // 3 - 1}.downsamplers.0.conv", rest[2:].lstrip("."))
        if k == 0:
            return _join(f"down_blocks.{i}.resnets.{j}", RESNET_LDM_TO_DIFFUSERS.get(rest, rest))
        if k == 1:
            return _join(f"down_blocks.{i}.attentions.{j}", rest)
        return None
    if block == "output_blocks":
        i, j = n // 3, n % 3
        if k == 0:
            return _join(f"up_blocks.{i}.resnets.{j}", RESNET_LDM_TO_DIFFUSERS.get(rest, rest))
        if rest == "conv" or rest.startswith("conv."):
            return _join(f"up_blocks.{i}.upsamplers.0", rest)
        if k == 1:
            return _join(f"up_blocks.{i}.attentions.{j}", rest)
    return None


_DOWN = re.compile(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)(?:\.(.*))?$")
_UP = re.compile(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)(?:\.(.*))?$")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)(?:\.(.*))?$")


def diffusers_to_ldm(path: str, up_block_has_attention: Callable[[int], bool]) -> str | None:
    """``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in``.

    ``up_block_has_attention(i)`` tells where the upsampler of up block ``i``
    sits (``output_blocks.{3i+2}.2`` after an attention, else ``.1``); the
    caller answers it from the model's own tree.
    """
    for diff, ldm in TOP_DIFFUSERS_TO_LDM.items():
        if path == diff or path.startswith(diff + "."):
            return ldm + path[len(diff):]
    m = _DOWN.match(path)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4] or ""
        if kind == "downsamplers":
            return _join(f"input_blocks.{3 * i + 3}.0.op", rest[len("conv"):].lstrip(".") if rest.startswith("conv") else rest)
        n = 3 * i + j + 1
        if kind == "resnets":
            return _join(f"input_blocks.{n}.0", RESNET_DIFFUSERS_TO_LDM.get(rest, rest))
        return _join(f"input_blocks.{n}.1", rest)
    m = _MID.match(path)
    if m:
        kind, j, rest = m[1], int(m[2]), m[3] or ""
        if kind == "attentions":
            return _join("middle_block.1", rest)
        return _join(f"middle_block.{2 * j}", RESNET_DIFFUSERS_TO_LDM.get(rest, rest))
    m = _UP.match(path)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4] or ""
        if kind == "upsamplers":
            k = 2 if up_block_has_attention(i) else 1
            return _join(f"output_blocks.{3 * i + 2}.{k}", rest)
        n = 3 * i + j
        if kind == "resnets":
            return _join(f"output_blocks.{n}.0", RESNET_DIFFUSERS_TO_LDM.get(rest, rest))
        return _join(f"output_blocks.{n}.1", rest)
    return None


def ldm_block(ldm_path: str | None) -> str:
    """Block ID of a UNet layer from its ldm path: ``IN04``, ``M00``, ``OUT08``.

    Layers outside the three block lists (time embedding, label embedding,
    ``out``) are ``OTHER``: per-block weights leave them at 1, as LBW does.
    """
    if not ldm_path:
        return OTHER
    parts = ldm_path.split(".")
    if parts[0] == "input_blocks" and len(parts) > 1 and parts[1].isdigit():
        return f"IN{int(parts[1]):02d}"
    if parts[0] == "middle_block":
        return "M00"
    if parts[0] == "output_blocks" and len(parts) > 1 and parts[1].isdigit():
        return f"OUT{int(parts[1]):02d}"
    return OTHER


BASE = "BASE"
OTHER = "OTHER"

# OpenCLIP resblock children -> HF CLIP encoder-layer children.
_OPENCLIP_LAYER = {
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_RESBLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)$")


def openclip_to_hf(path: str) -> str | None:
    """``transformer.resblocks.3.mlp.c_fc`` -> ``text_model.encoder.layers.3.mlp.fc1``.

    ``path`` is inside the OpenCLIP ``CLIP`` module. The packed attention
    (``...attn``) is handled by the caller, which splits it into q/k/v.
    """
    if path == "ln_final":
        return "text_model.final_layer_norm"
    if path == "token_embedding":
        return "text_model.embeddings.token_embedding"
    m = _RESBLOCK.match(path)
    if m and m[2] in _OPENCLIP_LAYER:
        return f"text_model.encoder.layers.{m[1]}.{_OPENCLIP_LAYER[m[2]]}"
    if m and m[2] == "attn":
        return f"text_model.encoder.layers.{m[1]}.self_attn"
    return None


def hf_forms(hf_path: str) -> list[str]:
    """Both spellings of an HF CLIP path: with and without ``text_model.``.

    transformers 5.6 removed ``CLIPTextModel.text_model``, so files made
    with it say ``encoder.layers.0...`` where older ones say
    ``text_model.encoder.layers.0...``.
    """
    if hf_path.startswith("text_model."):
        return [hf_path, hf_path[len("text_model."):]]
    return [hf_path, "text_model." + hf_path]
