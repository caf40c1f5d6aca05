"""Files written by diffusers' own ``save_lora_weights``, and the change
diffusers' own loader makes with them, on tiny models built from configs.

Training is skipped: each part is wrapped with PEFT's ``add_adapter`` (as the
diffusers training scripts do) with ``init_lora_weights=False`` so both
factors are random, and saved exactly as those scripts save
(``get_peft_model_state_dict``, optionally ``convert_state_dict_to_diffusers``,
the pipeline's ``save_lora_weights`` with ``*_lora_adapter_metadata`` from
``peft_config["default"].to_dict()``). Nothing is downloaded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
import logging
import warnings

import torch

warnings.filterwarnings("ignore")
logging.getLogger("diffusers").setLevel(logging.ERROR)

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin  # noqa: E402
from diffusers.utils import convert_state_dict_to_diffusers  # noqa: E402
from peft import LoKrConfig, LoraConfig  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

try:
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as hf_logging

    d_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
except Exception:  # pragma: no cover
    pass

from lycoris_ext.resolve import ModelTree  # noqa: E402
from lycoris_ext.runtime import Runtime, Use  # noqa: E402

# Small widths, SD1's and SDXL's kinds of blocks (attention, resnets with and
# without a skip, down/upsamplers), so convs and linears are both there.
SD_UNET = dict(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=24,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               attention_head_dim=4, norm_num_groups=8)
XL_UNET = dict(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=40,
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
               transformer_layers_per_block=(1, 2), attention_head_dim=4, norm_num_groups=8,
               use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
               projection_class_embeddings_input_dim=8 * 6 + 16)
_CLIP = dict(vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, num_attention_heads=4)

FAMILY = {"sd15": "sd1", "sdxl": "sdxl"}
# diffusers' component name -> this project's part name
PARTS = {"sd15": {"unet": "unet", "text_encoder": "te"},
         "sdxl": {"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}}
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
UNET_ATTN = ["to_q", "to_k", "to_v", "to_out.0"]


def build_models(model: str, seed: int = 0) -> dict[str, torch.nn.Module]:
    """diffusers component name -> a fresh small model (same weights for the same seed)."""
    torch.manual_seed(seed)
    if model == "sd15":
        return {"unet": UNet2DConditionModel(**SD_UNET),
                "text_encoder": CLIPTextModel(CLIPTextConfig(hidden_size=24, intermediate_size=32, num_hidden_layers=2, **_CLIP))}
    return {"unet": UNet2DConditionModel(**XL_UNET),
            "text_encoder": CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, **_CLIP)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                                                                         projection_dim=16, **_CLIP))}


class _Pipe:
    """The part of a pipeline diffusers' LoRA mixins need: the components."""

    hf_device_map = None

    def __init__(self, models):
        for k, v in models.items():
            setattr(self, k, v)
        self._models = models

    @property
    def components(self):
        return dict(self._models)


class SDPipe(_Pipe, StableDiffusionLoraLoaderMixin):
    pass


class XLPipe(_Pipe, StableDiffusionXLLoraLoaderMixin):
    pass


def pipe_class(model: str):
    return SDPipe if model == "sd15" else XLPipe


def write_diffusers_file(directory, model: str, configs: dict[str, dict], *, convert: bool | tuple = True,
                         seed: int = 1, metadata: bool = True, name: str = "lora.safetensors", magnitude_noise: float = 0.0,
                         lokr: bool = False):
    """Wrap each component named in ``configs`` (component -> LoraConfig kwargs)
    with PEFT, randomise, and save with the pipeline's ``save_lora_weights``;
    ``convert``: whether (or for which components) ``convert_state_dict_to_diffusers``
    renames the keys first; ``lokr``: PEFT's LoKr (``LoKrConfig``) instead of LoRA."""
    models = build_models(model)
    g = torch.Generator().manual_seed(seed)
    layers, metas = {}, {}
    for comp, kw in configs.items():
        m = models[comp]
        m.add_adapter(LoKrConfig(init_weights=False, **kw) if lokr else LoraConfig(init_lora_weights=False, **kw))
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "lora_" in n or "lokr_" in n:
                    # factors of the size real ones have after training
                    if "magnitude" in n:
                        p.mul_(1 + magnitude_noise * torch.randn(p.shape, generator=g))
                    else:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        sd = get_peft_model_state_dict(m)
        conv = convert if isinstance(convert, bool) else comp in convert
        layers[comp] = convert_state_dict_to_diffusers(sd) if conv else sd
        metas[comp] = m.peft_config["default"].to_dict()
    kwargs = {f"{c}_lora_layers": sd for c, sd in layers.items()}
    if metadata:
        kwargs.update({f"{c}_lora_adapter_metadata": md for c, md in metas.items()})
    pipe_class(model).save_lora_weights(str(directory), weight_name=name, **kwargs)
    return Written(directory / name, trained_weights(models))


@dataclass
class Written:
    path: object
    #: every weight of the PEFT-wrapped models that wrote the file, each
    #: adapter merged by PEFT itself (the trainer's own forward at strength 1)
    trained: dict[str, torch.Tensor]


def trained_weights(models) -> dict[str, torch.Tensor]:
    models = copy_models(models)
    for m in models.values():
        for mod in m.modules():
            if isinstance(mod, BaseTunerLayer):
                mod.merge()
    return _weights(models)


def _weights(models) -> dict[str, torch.Tensor]:
    out = {}
    for comp, m in models.items():
        for n, p in m.named_parameters():
            if "lora_" in n or "lokr_" in n:
                continue
            out[f"{comp}.{n.replace('.base_layer', '')}"] = p.detach().clone()
    return out


def original_weights(model: str) -> dict[str, torch.Tensor]:
    return _weights(build_models(model))


def diffusers_weights(path, model: str, multiplier: float = 1.0) -> dict[str, torch.Tensor]:
    """Every weight after diffusers' ``load_lora_weights`` and ``fuse_lora(lora_scale=multiplier)``."""
    models = build_models(model)
    pipe = pipe_class(model)(models)
    pipe.load_lora_weights(str(path), low_cpu_mem_usage=False)
    n = sum(isinstance(mod, BaseTunerLayer) for m in models.values() for mod in m.modules())
    assert n > 0, "diffusers loaded no LoRA layer"
    pipe.fuse_lora(components=list(models), lora_scale=multiplier)
    return _weights(models)


def our_weights(net, model: str, multiplier: float = 1.0, mode: str = "merge") -> dict[str, torch.Tensor]:
    """Every weight after this project merges ``net`` into the same fresh models."""
    models = build_models(model)
    parts = {PARTS[model][c]: m for c, m in models.items()}
    tree = ModelTree(parts, "diffusers", family=FAMILY[model])
    rt = Runtime(tree, mode=mode)
    rt.set([Use(net, te=multiplier, unet=multiplier)])
    return _weights(models)


def compare(ours, theirs, orig) -> tuple[float, int]:
    """``(max |ours - theirs|, number of weights diffusers changed)``."""
    assert ours.keys() == theirs.keys()
    err, changed = 0.0, 0
    for k, t in theirs.items():
        if not torch.equal(t, orig[k]):
            changed += 1
        err = max(err, (ours[k] - t).abs().max().item())
    return err, changed


def copy_models(models):
    return {k: copy.deepcopy(v) for k, v in models.items()}
