"""Stand-in for modules/paths.py (A1111 v1.10.1): re-exports the internal paths.

Simplified: does not put the stable-diffusion repositories on sys.path (there are none).
"""

from modules.paths_internal import models_path, script_path, data_path, extensions_dir, extensions_builtin_dir, cwd  # noqa: F401

sd_path = None
paths = {}
