"""Stand-in for modules/shared_cmd_options.py + modules/cmd_args.py (A1111 v1.10.1).

``cmd_opts`` is an ``argparse.Namespace`` parsed from no arguments by a parser holding the subset of
the real options an extension reads, with the real defaults, plus the two options the builtin Lora
extension's preload.py always adds (``--lora-dir`` = models/Lora, ``--lyco-dir-backcompat`` =
models/LyCORIS; the builtin preload runs even when that extension is disabled).
Tests change values by assignment (``cmd_opts.lowvram = True``); ``reset()`` restores defaults
in place (the object identity is kept, so ``from modules.shared import cmd_opts`` stays valid).
Simplified: sys.argv is not parsed; no preload of extensions.
"""

import argparse
import os

from modules.paths_internal import data_path, models_path, script_path, normalized_filepath

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", type=str, default=data_path)
parser.add_argument("--models-dir", type=str, default=None)
parser.add_argument("--ckpt-dir", type=normalized_filepath, default=None)
parser.add_argument("--vae-dir", type=normalized_filepath, default=None)
parser.add_argument("--embeddings-dir", type=normalized_filepath, default=os.path.join(data_path, "embeddings"))
parser.add_argument("--textual-inversion-templates-dir", type=normalized_filepath, default=os.path.join(script_path, "textual_inversion_templates"))
parser.add_argument("--hypernetwork-dir", type=normalized_filepath, default=os.path.join(models_path, "hypernetworks"))
parser.add_argument("--no-half", action="store_true")
parser.add_argument("--no-half-vae", action="store_true")
parser.add_argument("--medvram", action="store_true")
parser.add_argument("--medvram-sdxl", action="store_true")
parser.add_argument("--lowvram", action="store_true")
parser.add_argument("--precision", type=str, choices=["full", "half", "autocast"], default="autocast")
parser.add_argument("--upcast-sampling", action="store_true")
parser.add_argument("--share", action="store_true")
parser.add_argument("--listen", action="store_true")
parser.add_argument("--port", type=int, default=None)
parser.add_argument("--use-cpu", nargs="+", default=[], type=str.lower)
parser.add_argument("--device-id", type=str, default=None)
parser.add_argument("--hide-ui-dir-config", action="store_true", default=False)
parser.add_argument("--freeze-settings", action="store_true", default=False)
parser.add_argument("--freeze-settings-in-sections", type=str, default=None)
parser.add_argument("--freeze-specific-settings", type=str, default=None)
parser.add_argument("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))
parser.add_argument("--ui-config-file", type=str, default=os.path.join(data_path, "ui-config.json"))
parser.add_argument("--styles-file", type=str, action="append", default=[])
parser.add_argument("--enable-console-prompts", action="store_true", default=False)
parser.add_argument("--disable-safe-unpickle", action="store_true", default=False)
parser.add_argument("--api", action="store_true")
parser.add_argument("--api-auth", type=str, default=None)
parser.add_argument("--api-log", action="store_true")
parser.add_argument("--nowebui", action="store_true")
parser.add_argument("--no-hashing", action="store_true", default=False)
parser.add_argument("--disable-all-extensions", action="store_true", default=False)
parser.add_argument("--disable-extra-extensions", action="store_true", default=False)
parser.add_argument("--skip-load-model-at-start", action="store_true")
parser.add_argument("--no-prompt-history", action="store_true", default=False)
parser.add_argument("--no-gradio-queue", action="store_true")
# added by extensions-builtin/Lora/preload.py (always, even if that extension is disabled)
parser.add_argument("--lora-dir", type=normalized_filepath, default=os.path.join(models_path, "Lora"))
parser.add_argument("--lyco-dir-backcompat", type=normalized_filepath, default=os.path.join(models_path, "LyCORIS"))

cmd_opts = parser.parse_args([])


def reset():
    fresh = vars(parser.parse_args([]))
    vars(cmd_opts).clear()
    vars(cmd_opts).update(fresh)
