"""WebUI entry point: everything lives in lycoris_ext.webui."""

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _root not in sys.path:
    sys.path.insert(0, _root)

from lycoris_ext.webui import setup  # noqa: E402

_ext = setup(_root)

# The per-block weight panel in txt2img and img2img (a Script the WebUI finds here).
LycorisBlockWeights = _ext.panel_script
