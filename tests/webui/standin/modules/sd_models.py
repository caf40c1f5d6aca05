"""Stand-in for modules/sd_models.py (A1111 v1.10.1).

Kept: ``read_metadata_from_safetensors(filename)`` (8-byte little-endian header length, must be > 2 and
start with ``{"`` or ``{'``, ``__metadata__`` values starting with '{' JSON-decoded when possible,
errors reported), ``read_state_dict`` (safetensors or weights-only torch.load), ``model_data``
(``SdModelData``: ``sd_model``, ``loaded_sd_models``, ``get_sd_model``, ``set_sd_model``),
``CheckpointInfo`` (``filename``, ``name``, ``name_for_extra``, ``model_name``, ``hash``, ``sha256``,
``shorthash``, ``title``, ``short_title``, ``ids``, ``metadata``, ``register()``), ``checkpoints_list``,
``checkpoint_aliases``, ``select_checkpoint``, ``get_closet_checkpoint_match``, and the callback timing
of model (re)loads: ``reload_model_weights(sd_model=None, info=None, forced_reload=False)`` returns at
once when the checkpoint is already the current one; otherwise ``model_loaded`` callbacks fire BEFORE
``model_data.set_sd_model`` (weights reloaded into the same object), and ``load_model`` fires them
after it.

Simplified: nothing is read from disk. A checkpoint is "loaded" either by a builder registered in
``checkpoint_builders[filename] = fn(checkpoint_info) -> model`` (a new model object, as when the
config differs) or, when there is none, by re-labelling the current model object with the new
checkpoint info (as when only the weights change); either way ``opts.sd_model_checkpoint`` is set to
the new title unless inside ``SkipWritingToConfig`` (as the real load_model_weights does).
``select_checkpoint`` returns the checkpoint named by ``opts.sd_model_checkpoint`` if registered, else
the current model's. Token merging and alpha
schedule overrides are no-ops.
"""

import json
import os
import threading

import torch

from modules import shared, errors, script_callbacks, lowvram, cache, hashes
from modules.paths_internal import models_path

model_dir = "Stable-diffusion"
model_path = os.path.abspath(os.path.join(models_path, model_dir))

checkpoints_list = {}
checkpoint_aliases = {}
checkpoint_alisases = checkpoint_aliases  # the real module keeps this misspelt alias too
checkpoints_loaded = {}
checkpoint_builders = {}


def model_hash(filename):
    """the old 8-hex hash of bytes 0x100000..0x110000 of the file ('NOFILE' if missing)"""
    import hashlib
    try:
        with open(filename, "rb") as file:
            m = hashlib.sha256()
            file.seek(0x100000)
            m.update(file.read(0x10000))
            return m.hexdigest()[0:8]
    except FileNotFoundError:
        return 'NOFILE'


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        if abspath.startswith(model_path):
            name = abspath.replace(model_path, '')
        else:
            name = os.path.basename(filename)
        name = name.lstrip("\\/")

        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        self.metadata = {}
        if self.is_safetensors and os.path.exists(filename):
            try:
                self.metadata = cache.cached_data_for_file('safetensors-metadata', "checkpoint/" + name, filename, lambda: read_metadata_from_safetensors(filename))
            except Exception as e:
                errors.display(e, f"reading metadata for {filename}")

        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = model_hash(filename)
        self.sha256 = hashes.sha256_from_cache(self.filename, f"checkpoint/{name}")
        self.shorthash = self.sha256[0:10] if self.sha256 else None
        self.title = name if self.shorthash is None else f'{name} [{self.shorthash}]'
        self.short_title = self.name_for_extra if self.shorthash is None else f'{self.name_for_extra} [{self.shorthash}]'
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f'{name} [{self.hash}]']
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f'{self.name} [{self.shorthash}]', f'{self.name_for_extra} [{self.shorthash}]']

    def register(self):
        checkpoints_list[self.title] = self
        for id in self.ids:
            checkpoint_aliases[id] = self

    def calculate_shorthash(self):
        self.sha256 = hashes.sha256(self.filename, f"checkpoint/{self.name}")
        if self.sha256 is None:
            return None
        self.shorthash = self.sha256[0:10]
        return self.shorthash


def reset():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    checkpoints_loaded.clear()
    checkpoint_builders.clear()
    model_data.__init__()


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    info = checkpoint_aliases.get(search_string)
    if info is not None:
        return info
    found = sorted([x for x in checkpoints_list.values() if search_string in x.title], key=lambda x: len(x.title))
    return found[0] if found else None


def select_checkpoint():
    info = checkpoint_aliases.get(shared.opts.sd_model_checkpoint)
    if info is not None:
        return info
    model = model_data.sd_model
    return getattr(model, "sd_checkpoint_info", None)


def read_metadata_from_safetensors(filename):
    with open(filename, mode="rb") as file:
        metadata_len = int.from_bytes(file.read(8), "little")
        json_start = file.read(2)

        assert metadata_len > 2 and json_start in (b'{"', b"{'"), f"{filename} is not a safetensors file"

        res = {}
        try:
            json_obj = json.loads(json_start + file.read(metadata_len - 2))
            for k, v in json_obj.get("__metadata__", {}).items():
                res[k] = v
                if isinstance(v, str) and v[0:1] == '{':
                    try:
                        res[k] = json.loads(v)
                    except Exception:
                        pass
        except Exception:
            errors.report(f"Error reading metadata from file: {filename}", exc_info=True)

        return res


def read_state_dict(checkpoint_file, print_global_state=False, map_location=None):
    _, extension = os.path.splitext(checkpoint_file)
    if extension.lower() == ".safetensors":
        import safetensors.torch
        return safetensors.torch.load_file(checkpoint_file, device=map_location or shared.weight_load_location or "cpu")
    sd = torch.load(checkpoint_file, map_location=map_location or shared.weight_load_location or "cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


class SdModelData:
    def __init__(self):
        self.sd_model = None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        self.lock = threading.Lock()

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v, already_loaded=False):
        self.sd_model = v
        if v is not None:
            self.was_loaded_at_least_once = True
        try:
            self.loaded_sd_models.remove(v)
        except ValueError:
            pass
        if v is not None:
            self.loaded_sd_models.insert(0, v)


model_data = SdModelData()


def _label(model, checkpoint_info):
    # what load_model_weights records on the model (and in the settings unless SkipWritingToConfig)
    model.sd_checkpoint_info = checkpoint_info
    model.sd_model_checkpoint = checkpoint_info.filename
    model.sd_model_hash = checkpoint_info.shorthash
    if not SkipWritingToConfig.skip:
        shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    checkpoint_info = checkpoint_info or select_checkpoint()
    builder = checkpoint_builders.get(checkpoint_info.filename)
    if builder is None:
        raise RuntimeError(f"stand-in sd_models: no builder registered for {checkpoint_info.filename}")
    sd_model = builder(checkpoint_info)
    _label(sd_model, checkpoint_info)
    lowvram.apply(sd_model)
    model_data.set_sd_model(sd_model)
    model_data.was_loaded_at_least_once = True
    script_callbacks.model_loaded_callback(sd_model)
    return sd_model


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    checkpoint_info = info or select_checkpoint()
    if not sd_model:
        sd_model = model_data.sd_model
    if checkpoint_info is None:
        return sd_model

    if sd_model is not None and sd_model.sd_model_checkpoint == checkpoint_info.filename and not forced_reload:
        return sd_model

    if sd_model is None or checkpoint_info.filename in checkpoint_builders:
        return load_model(checkpoint_info)

    try:
        _label(sd_model, checkpoint_info)
    finally:
        script_callbacks.model_loaded_callback(sd_model)

    model_data.set_sd_model(sd_model)
    return sd_model


def unload_model_weights(sd_model=None, info=None):
    return sd_model


def send_model_to_cpu(m):
    pass


def apply_token_merging(sd_model, token_merging_ratio):
    pass


def apply_alpha_schedule_override(sd_model, p=None):
    pass


class SkipWritingToConfig:
    skip = False

    def __enter__(self):
        self.previous = SkipWritingToConfig.skip
        SkipWritingToConfig.skip = True
        return self

    def __exit__(self, exc_type, exc_value, exc_traceback):
        SkipWritingToConfig.skip = self.previous
