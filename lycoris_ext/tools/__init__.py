"""Network tools: bake networks into a checkpoint, convert any network (or a
weighted sum) into one kohya LoRA/LoCon, extract a LoRA from two checkpoints.

Pure core (no WebUI import); the CLI (``python -m lycoris_ext bake|convert|extract``)
and the WebUI's API routes call these functions. Every output is written to a
temporary file and renamed into place when complete.
"""

from .bake import bake
from .checkpoint import Checkpoint, Layout, SafetensorsWriter
from .convert import convert
from .extract import extract
from .specs import NetSpec, parse_spec

__all__ = ["Checkpoint", "Layout", "NetSpec", "SafetensorsWriter", "bake", "convert", "extract", "parse_spec"]
