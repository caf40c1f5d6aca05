"""lycoris_ext: every LoRA/LyCORIS network file, exactly, on any torch model.

The core needs only torch, safetensors and numpy; nothing here imports the
WebUI. Public API::

    net = lycoris_ext.load_network("file.safetensors")
    new_w, new_b = net.modules[key].apply(weight, bias, multiplier=0.8)
"""

from .algorithms import ALGORITHMS, Adapter
from .errors import NetworkApplyError, NetworkFileError
from .network import Network, UnknownKey, load_network

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "Adapter",
    "Network",
    "NetworkApplyError",
    "NetworkFileError",
    "UnknownKey",
    "load_network",
    "__version__",
]
