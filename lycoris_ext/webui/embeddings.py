"""Bundled textual inversions (``bundle_emb.*``): registered with the WebUI's
embedding database while their network is active, as the built-in does.

Where the database lives differs per host:

- A1111 (and reForge): one ``sd_hijack.model_hijack.embedding_db``, whose
  ``register_embedding(embedding, model)`` and
  ``register_embedding_by_name(embedding, model, name)`` take the model.
- Forge: no ``embedding_db`` on the hijack; each text-processing engine of the
  loaded model has its own database (``sd_model.text_processing_engine`` for
  SD1/SD2, ``text_processing_engine_l``/``_g`` for SDXL, ``.embeddings``),
  whose ``register_embedding(embedding)`` and
  ``register_embedding_by_name(embedding, name)`` do not. An SDXL embedding
  goes into both (each engine picks its own ``clip_l``/``clip_g`` vector).

With no database found, bundled embeddings are skipped with a warning (once
per name) and the network itself still applies.
"""

from __future__ import annotations

import inspect
import logging

log = logging.getLogger(__name__)

#: Engines of a Forge diffusion engine that have an embedding database.
FORGE_ENGINES = ("text_processing_engine", "text_processing_engine_l", "text_processing_engine_g")

_warned: set[str] = set()


def _data(tensors: dict) -> dict:
    """``{tail: tensor}`` -> the dict ``create_embedding_from_data`` reads."""
    params = {k[len("string_to_param."):]: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    if params:
        return {"string_to_param": params}
    return dict(tensors)


def _takes_model(db) -> bool:
    """A1111's ``register_embedding_by_name(embedding, model, name)`` vs Forge's ``(embedding, name)``."""
    try:
        return len(inspect.signature(db.register_embedding_by_name).parameters) >= 3
    except (TypeError, ValueError):  # pragma: no cover - builtins or odd callables
        return True


class Database:
    """One host embedding database with the calls that differ per host hidden."""

    def __init__(self, db, model, create):
        self.db = db
        self.model = model
        self.create = create
        self.with_model = _takes_model(db)

    @property
    def names(self):
        return self.db.word_embeddings

    def fits(self, emb) -> bool:
        shape = getattr(self.db, "expected_shape", -1)
        return shape == -1 or shape == emb.shape

    def add(self, emb) -> None:
        if self.with_model:
            self.db.register_embedding(emb, self.model)
        else:
            self.db.register_embedding(emb)

    def remove(self, name: str) -> None:
        if name not in self.db.word_embeddings:
            return
        if self.with_model:
            self.db.register_embedding_by_name(None, self.model, name)
        else:
            self.db.register_embedding_by_name(None, name)

    def skip(self, name: str, emb) -> None:
        skipped = getattr(self.db, "skipped_embeddings", None)
        if isinstance(skipped, dict):
            skipped[name] = emb


def databases(model=None) -> list[Database]:
    """The host's embedding databases for ``model`` (default: the loaded one); [] if it has none."""
    try:
        from modules import sd_hijack, shared
    except ImportError:  # pragma: no cover - outside the WebUI
        return []
    model = shared.sd_model if model is None else model
    db = getattr(getattr(sd_hijack, "model_hijack", None), "embedding_db", None)
    if db is not None:
        from modules.textual_inversion import textual_inversion

        return [Database(db, model, textual_inversion.create_embedding_from_data)]
    found = []
    for attr in FORGE_ENGINES:
        db = getattr(getattr(model, attr, None), "embeddings", None)
        if db is not None and hasattr(db, "register_embedding") and hasattr(db, "word_embeddings"):
            if all(d.db is not db for d in found):
                found.append(Database(db, model, _forge_create()))
    return found


def _forge_create():
    try:
        from backend.text_processing.textual_inversion import create_embedding_from_data
    except ImportError:
        from modules.textual_inversion.textual_inversion import create_embedding_from_data
    return create_embedding_from_data


def _warn_once(name: str, msg: str, *args) -> None:
    if name not in _warned:
        _warned.add(name)
        log.warning(msg, *args)


def register(ext, networks) -> None:
    """Make exactly the embeddings of ``networks`` available to the text encoder."""
    wanted = {}
    for net in networks:
        for name, tensors in net.embeddings.items():
            wanted.setdefault(name, (net, tensors))
    if not wanted and not ext._embeddings:
        return  # the usual case: nothing bundled, nothing registered
    dbs = databases()
    for name, emb in list(ext._embeddings.items()):
        if name not in wanted or emb.lycoris_source != wanted[name][0].path:
            if getattr(emb, "loaded", False):
                for d in dbs:
                    if d.names.get(name) is emb:
                        d.remove(name)
            del ext._embeddings[name]
    if not wanted:
        return
    if not dbs:
        for name, (net, _) in wanted.items():
            _warn_once(name, 'Skip bundled embedding "%s" of %s: this WebUI has no textual inversion database '
                             "the extension knows (the network itself is applied)", name, net.path)
        return
    for name, (net, tensors) in wanted.items():
        emb = ext._embeddings.get(name)
        if emb is not None:
            if getattr(emb, "loaded", False):
                # a model reload may have given the host new, empty databases
                for d in dbs:
                    if d.fits(emb) and name not in d.names:
                        d.add(emb)
            continue
        if any(name in d.names for d in dbs):
            log.warning('Skip bundle embedding "%s": already loaded from the embeddings folder', name)
            continue
        try:
            emb = dbs[0].create(_data(tensors), name, filename=f"{net.path}/{name}")
        except Exception as e:  # noqa: BLE001 - a bad bundle must not stop the generation
            log.warning("bundled embedding %s in %s: %s", name, net.path, e)
            continue
        emb.lycoris_source = net.path
        emb.loaded = False
        for d in dbs:
            if d.fits(emb):
                emb.loaded = True
                d.add(emb)
            else:
                d.skip(name, emb)
        ext._embeddings[name] = emb
