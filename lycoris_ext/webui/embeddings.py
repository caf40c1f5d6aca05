"""Bundled textual inversions (``bundle_emb.*``): registered with the WebUI's
embedding database while their network is active, as the built-in does."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _data(tensors: dict) -> dict:
    """``{tail: tensor}`` -> the dict ``create_embedding_from_data`` reads."""
    params = {k[len("string_to_param."):]: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    if params:
        return {"string_to_param": params}
    return dict(tensors)


def register(ext, networks) -> None:
    """Make exactly the embeddings of ``networks`` available to the text encoder."""
    try:
        from modules import sd_hijack, shared
        from modules.textual_inversion import textual_inversion
    except ImportError:  # pragma: no cover - outside the WebUI
        return
    db = sd_hijack.model_hijack.embedding_db
    model = shared.sd_model
    wanted = {}
    for net in networks:
        for name, tensors in net.embeddings.items():
            wanted.setdefault(name, (net, tensors))
    for name, emb in list(ext._embeddings.items()):
        if name not in wanted or ext._embeddings[name].lycoris_source != wanted[name][0].path:
            if getattr(emb, "loaded", False):
                db.register_embedding_by_name(None, model, name)
            del ext._embeddings[name]
    for name, (net, tensors) in wanted.items():
        if name in ext._embeddings:
            continue
        if name in db.word_embeddings:
            log.warning('Skip bundle embedding "%s": already loaded from the embeddings folder', name)
            continue
        try:
            emb = textual_inversion.create_embedding_from_data(_data(tensors), name, filename=f"{net.path}/{name}")
        except Exception as e:  # noqa: BLE001 - a bad bundle must not stop the generation
            log.warning("bundled embedding %s in %s: %s", name, net.path, e)
            continue
        emb.lycoris_source = net.path
        emb.loaded = False
        if db.expected_shape == -1 or db.expected_shape == emb.shape:
            emb.loaded = True
            db.register_embedding(emb, model)
        else:
            db.skipped_embeddings[name] = emb
        ext._embeddings[name] = emb
