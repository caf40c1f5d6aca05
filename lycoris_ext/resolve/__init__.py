"""Resolution: file keys -> the model's own layers; block IDs; block weights; the report."""

from .family import FAMILY_NAMES, detect_family
from .resolution import FITS, NO_FIT, OTHER_MODEL, PARTLY, Match, Miss, Resolution, resolve
from .styles import STYLES, Style, part_hint, split_prefix
from .tree import A1111, DIFFUSERS, SD_BLOCKS, SDXL_BLOCKS, ModelTree, Target

__all__ = [
    "A1111", "DIFFUSERS", "FAMILY_NAMES", "FITS", "NO_FIT", "OTHER_MODEL", "PARTLY", "SD_BLOCKS", "SDXL_BLOCKS",
    "STYLES", "Match", "Miss", "ModelTree", "Resolution", "Style", "Target",
    "detect_family", "part_hint", "resolve", "split_prefix",
]
