"""Run by the WebUI at start. The extension needs only what the WebUI ships
(torch, safetensors, numpy), so this installs nothing; it stops with a clear
message when one of them is missing."""

import importlib.util

REQUIRED = ("torch", "safetensors", "numpy")

missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
if missing:
    raise RuntimeError(
        "lycoris-ext needs " + ", ".join(missing) + ", which the WebUI normally installs itself. "
        "Start the WebUI once without this extension so it can set up its environment, "
        "or install them into the WebUI's Python environment (pip install " + " ".join(missing) + ")."
    )
