"""Stand-in for modules/textual_inversion/textual_inversion.py (A1111 v1.10.1).

``Embedding(vec, name, step=None)`` (fields ``vec, name, step, shape, vectors, cached_checksum,
sd_checkpoint, sd_checkpoint_name, optimizer_state_dict, filename, hash, shorthash``; ``set_hash``
keeps the first 12 chars as ``shorthash``; ``checksum``), ``create_embedding_from_data(data, name,
filename='unknown embedding file', filepath=None)`` (TI ``string_to_param`` dicts, SDXL
``clip_g``/``clip_l`` dicts, single-tensor diffusers concepts; else raises), ``EmbeddingDatabase``
(``ids_lookup``, ``word_embeddings``, ``skipped_embeddings``, ``expected_shape``, ``embedding_dirs``,
``register_embedding(embedding, model)``, ``register_embedding_by_name(embedding, model, name)``
which tokenizes ``name`` with ``model.cond_stage_model.tokenize`` and unregisters when embedding is
None, ``find_embedding_at_position``).
Simplified: ``load_textual_inversion_embeddings`` loads nothing from disk (it only sets
``expected_shape`` from ``model.cond_stage_model.expected_embedding_dim`` when there is one).
"""

import os

import torch

from modules import devices, hashes, shared


class Embedding:
    def __init__(self, vec, name, step=None):
        self.vec = vec
        self.name = name
        self.step = step
        self.shape = None
        self.vectors = 0
        self.cached_checksum = None
        self.sd_checkpoint = None
        self.sd_checkpoint_name = None
        self.optimizer_state_dict = None
        self.filename = None
        self.hash = None
        self.shorthash = None

    def checksum(self):
        if self.cached_checksum is not None:
            return self.cached_checksum
        r = 0
        flat = self.vec.reshape(-1) * 100 if isinstance(self.vec, torch.Tensor) else torch.cat([v.reshape(-1) for v in self.vec.values()]) * 100
        for v in flat:
            r = (r * 281 ^ int(v) * 997) & 0xFFFFFFFF
        self.cached_checksum = f'{r & 0xffff:04x}'
        return self.cached_checksum

    def set_hash(self, v):
        self.hash = v
        self.shorthash = self.hash[0:12]


class DirWithTextualInversionEmbeddings:
    def __init__(self, path):
        self.path = path
        self.mtime = None

    def has_changed(self):
        if not os.path.isdir(self.path):
            return False
        mt = os.path.getmtime(self.path)
        return self.mtime is None or mt > self.mtime

    def update(self):
        if os.path.isdir(self.path):
            self.mtime = os.path.getmtime(self.path)


class EmbeddingDatabase:
    def __init__(self):
        self.ids_lookup = {}
        self.word_embeddings = {}
        self.skipped_embeddings = {}
        self.expected_shape = -1
        self.embedding_dirs = {}
        self.previously_displayed_embeddings = ()

    def add_embedding_dir(self, path):
        self.embedding_dirs[path] = DirWithTextualInversionEmbeddings(path)

    def clear_embedding_dirs(self):
        self.embedding_dirs.clear()

    def register_embedding(self, embedding, model):
        return self.register_embedding_by_name(embedding, model, embedding.name)

    def register_embedding_by_name(self, embedding, model, name):
        ids = model.cond_stage_model.tokenize([name])[0]
        first_id = ids[0]
        self.ids_lookup.setdefault(first_id, [])
        if name in self.word_embeddings:
            lookup = [x for x in self.ids_lookup[first_id] if x[1].name != name]
        else:
            lookup = self.ids_lookup[first_id]
        if embedding is not None:
            lookup += [(ids, embedding)]
        self.ids_lookup[first_id] = sorted(lookup, key=lambda x: len(x[0]), reverse=True)
        if embedding is None:
            if name in self.word_embeddings:
                del self.word_embeddings[name]
            if len(self.ids_lookup[first_id]) == 0:
                del self.ids_lookup[first_id]
            return None
        self.word_embeddings[name] = embedding
        return embedding

    def get_expected_shape(self):
        model = shared.sd_model
        return getattr(getattr(model, "cond_stage_model", None), "expected_embedding_dim", -1)

    def load_textual_inversion_embeddings(self, force_reload=False):
        self.expected_shape = self.get_expected_shape()

    def find_embedding_at_position(self, tokens, offset):
        token = tokens[offset]
        possible_matches = self.ids_lookup.get(token, None)
        if possible_matches is None:
            return None, None
        for ids, embedding in possible_matches:
            if tokens[offset:offset + len(ids)] == ids:
                return embedding, len(ids)
        return None, None


def create_embedding_from_data(data, name, filename='unknown embedding file', filepath=None):
    if 'string_to_param' in data:
        param_dict = data['string_to_param']
        param_dict = getattr(param_dict, '_parameters', param_dict)
        assert len(param_dict) == 1, 'embedding file has multiple terms in it'
        emb = next(iter(param_dict.items()))[1]
        vec = emb.detach().to(devices.device, dtype=torch.float32)
        shape = vec.shape[-1]
        vectors = vec.shape[0]
    elif type(data) == dict and 'clip_g' in data and 'clip_l' in data:
        vec = {k: v.detach().to(devices.device, dtype=torch.float32) for k, v in data.items()}
        shape = data['clip_g'].shape[-1] + data['clip_l'].shape[-1]
        vectors = data['clip_g'].shape[0]
    elif type(data) == dict and type(next(iter(data.values()))) == torch.Tensor:
        assert len(data.keys()) == 1, 'embedding file has multiple terms in it'
        emb = next(iter(data.values()))
        if len(emb.shape) == 1:
            emb = emb.unsqueeze(0)
        vec = emb.detach().to(devices.device, dtype=torch.float32)
        shape = vec.shape[-1]
        vectors = vec.shape[0]
    else:
        raise Exception(f"Couldn't identify {filename} as neither textual inversion embedding nor diffuser concept.")

    embedding = Embedding(vec, name)
    embedding.step = data.get('step', None)
    embedding.sd_checkpoint = data.get('sd_checkpoint', None)
    embedding.sd_checkpoint_name = data.get('sd_checkpoint_name', None)
    embedding.vectors = vectors
    embedding.shape = shape

    if filepath:
        embedding.filename = filepath
        embedding.set_hash(hashes.sha256(filepath, "textual_inversion/" + name) or '')

    return embedding
