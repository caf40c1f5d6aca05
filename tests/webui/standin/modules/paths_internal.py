"""Stand-in for modules/paths_internal.py (A1111 v1.10.1).

``script_path`` is the stand-in root (tests/webui/standin), so ``html/`` templates resolve like the
real ``<webui>/html``. ``data_path`` (models/, extensions/, embeddings/, config) is a fresh temporary
directory per process unless ``A1111_STANDIN_DATA`` names one, so nothing is written into the repo.
Simplified: no ``--data-dir``/``--models-dir`` pre-parsing of sys.argv, no COMMANDLINE_ARGS.
"""

import os
import tempfile
from pathlib import Path


def normalized_filepath(filepath):
    return str(Path(filepath).absolute())


cwd = os.getcwd()
modules_path = os.path.dirname(os.path.realpath(__file__))
script_path = os.path.dirname(modules_path)

data_path = os.environ.get("A1111_STANDIN_DATA") or tempfile.mkdtemp(prefix="a1111-standin-")
models_path = os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
config_states_dir = os.path.join(script_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")

sd_configs_path = os.path.join(script_path, "configs")
sd_default_config = os.path.join(sd_configs_path, "v1-inference.yaml")
sd_model_file = os.path.join(script_path, "model.ckpt")
default_sd_model_file = sd_model_file
