"""Stand-in for modules/script_loading.py (A1111 v1.10.1).

``load_module(path)``: imports the file under the module name ``os.path.basename(path)`` (e.g.
``"lora_script.py"``, extension included) without putting it in ``sys.modules``, and records it in
``loaded_scripts[path]``. ``preload_extensions(extensions_dir, parser, extension_list=None)`` runs each
``<dir>/preload.py``'s ``preload(parser)``, reporting (not raising) errors.
"""

import importlib.util
import os

from modules import errors

loaded_scripts = {}


def load_module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded_scripts[path] = module
    return module


def preload_extensions(extensions_dir, parser, extension_list=None):
    if not os.path.isdir(extensions_dir):
        return
    names = extension_list if extension_list is not None else os.listdir(extensions_dir)
    for dirname in sorted(names):
        preload_script = os.path.join(extensions_dir, dirname, "preload.py")
        if not os.path.isfile(preload_script):
            continue
        try:
            module = load_module(preload_script)
            if hasattr(module, 'preload'):
                module.preload(parser)
        except Exception:
            errors.report(f"Error running preload() for {preload_script}", exc_info=True)
