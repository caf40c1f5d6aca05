"""Reference facts for the resolve tests, written independently of lycoris_ext.resolve.

Everything here is derived from the published layouts (keys.md section 8, the
A1111 inventories) by hand, so the tests compare the package against an
independent statement of the same facts rather than against itself:

- :func:`ref_targets` enumerates the weight-carrying layers of an inventory
  straight from its rows (path, class, parameter shapes);
- :func:`ref_ldm_to_diffusers` / :func:`ref_diffusers_to_ldm` and
  :func:`ref_openclip_to_hf` are table-driven re-statements of the name
  mappings;
- :func:`ref_block` is LBW's block rule;
- :data:`BLOCK_COUNTS` are the per-block target counts, counted by hand from
  the architectures (ResBlock = 5 layers, +1 with a skip connection;
  transformer block = 3 norms + 8 attention Linears + 2 feed-forward Linears;
  SpatialTransformer = norm + proj_in + proj_out + its blocks; ...).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch
from safetensors.torch import save_file

from lycoris_ext.resolve.inventory import a1111_rows

MODELS = ("sd15", "sd2", "sdxl")
NAMINGS = ("a1111", "diffusers")
FAMILY = {"sd15": "sd1", "sd2": "sd2", "sdxl": "sdxl"}
TE_PARTS = {"sd15": ("te",), "sd2": ("te",), "sdxl": ("te1", "te2")}

# --------------------------------------------------------------------------- blocks

SD_UNET_BLOCKS = {
    # Counted by hand (see module docstring). SD1 and SD2 share the layout.
    "IN00": 1,                       # conv_in
    "IN01": 21, "IN02": 21,          # ResBlock (5) + SpatialTransformer depth 1 (16)
    "IN03": 1,                       # downsampler op
    "IN04": 22, "IN05": 21,          # 320->640 ResBlock has a skip connection
    "IN06": 1,
    "IN07": 22, "IN08": 21,
    "IN09": 1,
    "IN10": 5, "IN11": 5,            # ResBlock only
    "M00": 26,                       # 2 ResBlocks + transformer
    "OUT00": 6, "OUT01": 6, "OUT02": 7,  # ResBlock with skip (+ upsampler conv in OUT02)
    "OUT03": 22, "OUT04": 22, "OUT05": 23,
    "OUT06": 22, "OUT07": 22, "OUT08": 23,
    "OUT09": 22, "OUT10": 22, "OUT11": 22,
    "OTHER": 4,                      # time_embed.0/.2, out.0/.2
}
SDXL_UNET_BLOCKS = {
    "IN00": 1,
    "IN01": 5, "IN02": 5,            # ResBlocks without attention
    "IN03": 1,
    "IN04": 35, "IN05": 34,          # ResBlock (+skip) + transformer depth 2 (3 + 2*13)
    "IN06": 1,
    "IN07": 139, "IN08": 138,        # depth 10 (3 + 10*13 = 133)
    "M00": 143,                      # 2 ResBlocks (10) + depth 10
    "OUT00": 139, "OUT01": 139, "OUT02": 140,
    "OUT03": 35, "OUT04": 35, "OUT05": 36,
    "OUT06": 6, "OUT07": 6, "OUT08": 6,
    "OTHER": 6,                      # + label_emb.0.0/.2
}
BLOCK_COUNTS = {
    "sd15": {"unet": SD_UNET_BLOCKS, "te": {"BASE": 12 * 8 + 1}},
    # OpenCLIP-H: 24 resblocks x (q, k, v slices, out_proj, ln_1, ln_2, c_fc, c_proj) + ln_final + text_projection
    "sd2": {"unet": SD_UNET_BLOCKS, "te": {"BASE": 24 * 8 + 2}},
    "sdxl": {"unet": SDXL_UNET_BLOCKS, "te1": {"BASE": 12 * 8 + 1}, "te2": {"BASE": 32 * 8 + 2}},
}


def ref_block(ldm_path: str | None) -> str:
    """LBW's rule: input_blocks.N -> INnn, middle_block -> M00, output_blocks.N -> OUTnn."""
    if ldm_path is None:
        return "OTHER"
    m = re.match(r"(input_blocks|output_blocks)\.(\d+)(\.|$)", ldm_path)
    if m:
        return ("IN" if m[1] == "input_blocks" else "OUT") + f"{int(m[2]):02d}"
    if ldm_path == "middle_block" or ldm_path.startswith("middle_block."):
        return "M00"
    return "OTHER"


# ------------------------------------------------------------------ name mapping

_RES = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
        ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")]
_TOP = [("input_blocks.0.0", "conv_in"), ("time_embed.0", "time_embedding.linear_1"),
        ("time_embed.2", "time_embedding.linear_2"), ("label_emb.0.0", "add_embedding.linear_1"),
        ("label_emb.0.2", "add_embedding.linear_2"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")]


def up_blocks_with_attention(family: str) -> set[int]:
    return {0, 1} if family == "sdxl" else {1, 2, 3}


def _res_child(rest: str, to_diffusers: bool) -> str:
    table = dict(_RES) if to_diffusers else {d: l for l, d in _RES}
    return table.get(rest, rest)


def ref_ldm_to_diffusers(path: str, family: str) -> str | None:
    """Weight-carrying ldm/sgm UNet path -> UNet2DConditionModel path (keys.md 8.1)."""
    for ldm, diff in _TOP:
        if path == ldm or path.startswith(ldm + "."):
            return diff + path[len(ldm):]
    m = re.fullmatch(r"input_blocks\.(\d+)\.0\.op", path)
    if m:
        return f"down_blocks.{int(m[1]) // 3 - 1}.downsamplers.0.conv"
    m = re.fullmatch(r"output_blocks\.(\d+)\.(\d+)\.conv", path)
    if m and (int(m[1]) % 3 == 2):
        i = int(m[1]) // 3
        k = 2 if i in up_blocks_with_attention(family) else 1
        if int(m[2]) == k:
            return f"up_blocks.{i}.upsamplers.0.conv"
    m = re.fullmatch(r"input_blocks\.(\d+)\.([01])\.(.+)", path)
    if m:
        n = int(m[1])
        i, j = (n - 1) // 3, (n - 1) % 3
        if m[2] == "0":
            return f"down_blocks.{i}.resnets.{j}.{_res_child(m[3], True)}"
        return f"down_blocks.{i}.attentions.{j}.{m[3]}"
    m = re.fullmatch(r"middle_block\.([012])\.(.+)", path)
    if m:
        if m[1] == "1":
            return f"mid_block.attentions.0.{m[2]}"
        return f"mid_block.resnets.{int(m[1]) // 2}.{_res_child(m[2], True)}"
    m = re.fullmatch(r"output_blocks\.(\d+)\.([01])\.(.+)", path)
    if m:
        n = int(m[1])
        i, j = n // 3, n % 3
        if m[2] == "0":
            return f"up_blocks.{i}.resnets.{j}.{_res_child(m[3], True)}"
        return f"up_blocks.{i}.attentions.{j}.{m[3]}"
    return None


def ref_diffusers_to_ldm(path: str, family: str) -> str | None:
    for ldm, diff in _TOP:
        if path == diff or path.startswith(diff + "."):
            return ldm + path[len(diff):]
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", path)
    if m:
        return f"input_blocks.{3 * int(m[1]) + 3}.0.op"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", path)
    if m:
        i = int(m[1])
        return f"output_blocks.{3 * i + 2}.{2 if i in up_blocks_with_attention(family) else 1}.conv"
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", path)
    if m:
        n = 3 * int(m[1]) + int(m[3]) + 1
        if m[2] == "resnets":
            return f"input_blocks.{n}.0.{_res_child(m[4], False)}"
        return f"input_blocks.{n}.1.{m[4]}"
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", path)
    if m:
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{2 * int(m[2])}.{_res_child(m[3], False)}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", path)
    if m:
        n = 3 * int(m[1]) + int(m[3])
        if m[2] == "resnets":
            return f"output_blocks.{n}.0.{_res_child(m[4], False)}"
        return f"output_blocks.{n}.1.{m[4]}"
    return None


_OPENCLIP = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def ref_openclip_to_hf(inner: str) -> str | None:
    """OpenCLIP text tower path (inside ``model``) -> HF CLIP path (keys.md 8.4)."""
    if inner == "ln_final":
        return "text_model.final_layer_norm"
    m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", inner)
    if m and m[2] in _OPENCLIP:
        return f"text_model.encoder.layers.{m[1]}.{_OPENCLIP[m[2]]}"
    return None


# ------------------------------------------------------------------- targets

@dataclass(frozen=True)
class RefTarget:
    """One weight a network can change, from the inventory alone."""

    part: str
    a1111_path: str          # module path as A1111 names it
    param: str               # weight / in_proj_weight / text_projection
    rows: tuple | None
    kind: str                # linear / conv / norm
    shape: tuple             # the weight (or slice) a delta must fit, as a Linear/Conv weight
    ldm: str | None = None   # UNet: ldm path
    diff: str | None = None  # UNet: diffusers path
    hf: str | None = None    # text encoders: HF CLIP path with text_model.
    model: str = ""

    @property
    def block(self) -> str:
        return ref_block(self.ldm) if self.part == "unet" else "BASE"

    def tree_id(self, naming: str) -> tuple:
        """The id the package's Target should have for this layer."""
        if naming == "a1111":
            return (self.part, self.a1111_path, self.param, self.rows, None)
        path = self.diff if self.part == "unet" else self.hf
        return (self.part, path, "weight", None, None)

    @property
    def hf5(self) -> str:
        """The transformers >= 5.6 CLIPTextModel spelling (no ``text_model.``)."""
        return self.hf[len("text_model."):] if self.hf.startswith("text_model.") else self.hf


def _kind(cls: str, w: tuple) -> str | None:
    if "Embedding" in cls:
        return None
    if len(w) == 2:
        return "linear"
    if len(w) == 4:
        return "conv"
    if len(w) == 1 and "Norm" in cls:
        return "norm"
    return None


_CACHE: dict = {}


def ref_targets(model: str) -> list[RefTarget]:
    """Every weight-carrying layer of an inventory (packed q/k/v as three slices)."""
    if model in _CACHE:
        return _CACHE[model]
    fam = FAMILY[model]
    out: list[RefTarget] = []
    for part, rows in a1111_rows(model).items():
        for path, cls, params, _ in rows:
            if part == "unet":
                if "weight" in params and (k := _kind(cls, params["weight"])):
                    out.append(RefTarget(part, path, "weight", None, k, tuple(params["weight"]),
                                         ldm=path, diff=ref_ldm_to_diffusers(path, fam), model=model))
                continue
            if path.startswith("transformer."):  # HF CLIP under A1111's wrapper
                if "weight" in params and (k := _kind(cls, params["weight"])):
                    out.append(RefTarget(part, path, "weight", None, k, tuple(params["weight"]),
                                         hf=path[len("transformer."):], model=model))
                continue
            inner = path[len("model."):] if path.startswith("model.") else path
            if "in_proj_weight" in params:
                d3, width = params["in_proj_weight"]
                d = d3 // 3
                i_layer = re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn", inner)[1]
                base = f"text_model.encoder.layers.{i_layer}.self_attn"
                for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
                    out.append(RefTarget(part, path, "in_proj_weight", (i * d, (i + 1) * d), "linear", (d, width),
                                         hf=f"{base}.{name}", model=model))
                continue
            if "text_projection" in params:
                w, p = params["text_projection"]
                out.append(RefTarget(part, path, "text_projection", None, "linear", (p, w), hf="text_projection", model=model))
            if "weight" in params and (k := _kind(cls, params["weight"])):
                out.append(RefTarget(part, path, "weight", None, k, tuple(params["weight"]),
                                     hf=ref_openclip_to_hf(inner), model=model))
    _CACHE[model] = out
    return out


def block_counts(targets) -> dict[str, dict[str, int]]:
    """{part: {block: count}} of RefTargets (or package Targets)."""
    out: dict[str, Counter] = {}
    for t in targets:
        out.setdefault(t.part, Counter())[t.block] += 1
    return {p: dict(c) for p, c in out.items()}


# ------------------------------------------------------------------ tensors

def lora_factors(shape: tuple, rank: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down) of a rank-``rank`` LoRA for a weight of ``shape`` (kohya layout)."""
    out, inp, *k = shape
    g = torch.Generator().manual_seed(hash(shape) % (2**31))
    if k:
        return torch.randn(out, rank, 1, 1, generator=g) * 0.01, torch.randn(rank, inp, *k, generator=g) * 0.01
    return torch.randn(out, rank, generator=g) * 0.01, torch.randn(rank, inp, generator=g) * 0.01


SUFFIXES = {
    # flavour -> (up suffix, down suffix, alpha suffix or None)
    "kohya": (".lora_up.weight", ".lora_down.weight", ".alpha"),
    "peft": (".lora_B.weight", ".lora_A.weight", None),
    "lora.up": (".lora.up.weight", ".lora.down.weight", None),
    "lora_linear_layer": (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight", None),
    "processor": ("_lora.up.weight", "_lora.down.weight", None),
}


def module_tensors(module_key: str, t: RefTarget, flavour: str = "kohya") -> dict[str, torch.Tensor]:
    """The file tensors of one module: LoRA on Linear/Conv, w_norm/b_norm on norms, oft_blocks for OFT."""
    if t.kind == "norm":
        n = t.shape[0]
        return {f"{module_key}.w_norm": torch.full((n,), 0.01), f"{module_key}.b_norm": torch.full((n,), -0.01)}
    if flavour == "oft":
        out = t.shape[0]
        b = 2 if out % 2 == 0 else 1
        return {f"{module_key}.oft_blocks": torch.randn(out // b, b, b) * 0.01, f"{module_key}.alpha": torch.tensor(1e-3)}
    up_s, down_s, alpha_s = SUFFIXES[flavour]
    up, down = lora_factors(t.shape)
    sd = {f"{module_key}{up_s}": up, f"{module_key}{down_s}": down}
    if alpha_s:
        sd[f"{module_key}{alpha_s}"] = torch.tensor(1.0)
    return sd


def write(path, tensors: dict, metadata: dict | None = None) -> str:
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return str(path)


def u(path: str) -> str:
    return path.replace(".", "_")
