"""Split a file's keys into (module key, algorithm suffix).

Kohya-style keys put the module in front of the first dot
(``lora_unet_x.lora_up.weight``); diffusers/PEFT keys are dotted paths
(``unet.down_blocks.0...to_q.lora_A.weight``). Matching known suffixes from
the end serves both; a key with no known suffix falls back to the first dot
and is reported as unknown, never dropped.
"""

from __future__ import annotations

from .algorithms import REGISTRY

# Other spellings of the same tensors (PEFT, diffusers, OneTrainer).
_ALIASES = {
    "lora_B.weight": "lora_up.weight",
    "lora_A.weight": "lora_down.weight",
    "lora.up.weight": "lora_up.weight",
    "lora.down.weight": "lora_down.weight",
    "lora_linear_layer.up.weight": "lora_up.weight",
    "lora_linear_layer.down.weight": "lora_down.weight",
    "lora_magnitude_vector": "dora_scale",
    "lora_magnitude_vector.weight": "dora_scale",
    # ai-toolkit's DoRA (kohya keys, one magnitude per output row, no alpha)
    "magnitude": "dora_scale",
}
# The old diffusers attention-processor form glues the suffix on with '_':
# ``attn1.processor.to_q_lora.up.weight`` is the ``to_q`` module's up.
_GLUED = {"_lora.up.weight": "lora_up.weight", "_lora.down.weight": "lora_down.weight"}

#: Spellings only diffusers/PEFT write (their files carry no ``.alpha``:
#: the scale is 1 unless ``lora_adapter_metadata`` says otherwise).
PEFT_SPELLINGS = tuple(k for k in (*_ALIASES, *_GLUED) if "lora" in k and "magnitude" not in k)

SUFFIXES: dict[str, str] = {s: s for cls in REGISTRY for s in cls.suffixes}
SUFFIXES.update(_ALIASES)
_BY_LENGTH = sorted(SUFFIXES, key=len, reverse=True)

BUNDLE_PREFIX = "bundle_emb."


def split_key(key: str) -> tuple[str, str | None, str]:
    """``(module_key, canonical_suffix or None, raw_suffix)`` of a file key."""
    for glued, canonical in _GLUED.items():
        if key.endswith(glued) and len(key) > len(glued):
            return key[: -len(glued)], canonical, glued.lstrip("_")
    for raw in _BY_LENGTH:
        if key.endswith("." + raw) and len(key) > len(raw) + 1:
            return key[: -len(raw) - 1], SUFFIXES[raw], raw
    if "." in key:
        module, rest = key.split(".", 1)
        return module, None, rest
    return key, None, ""


def is_peft_spelling(raw_key: str) -> bool:
    """Whether a key uses a diffusers/PEFT spelling of a LoRA tensor."""
    return raw_key.endswith(PEFT_SPELLINGS)


def split_bundle_key(key: str) -> tuple[str, str] | None:
    """``(embedding name, tensor name)`` for ``bundle_emb.NAME.REST`` keys."""
    if not key.startswith(BUNDLE_PREFIX):
        return None
    rest = key[len(BUNDLE_PREFIX):]
    name, _, tail = rest.partition(".")
    return name, tail
