"""Bundled embeddings (``bundle_emb.*``) across hosts, in the A1111 v1.10.1 stand-in:

- A1111: registered in ``sd_hijack.model_hijack.embedding_db`` while the network is active;
- Forge: no ``embedding_db`` on the hijack (``AttributeError`` before), a database per
  text-processing engine of the model (``register_embedding(embedding)``, no model argument);
- neither: the bundled embedding is skipped with a warning, the network still applies.
"""

from __future__ import annotations

import logging

import torch
from safetensors.torch import load_file, save_file

from conftest import changed, params_snapshot


def run(w, prompt, **kw):
    from modules import processing

    p = w.a1111.make_txt2img(prompt=prompt, **kw)
    return p, processing.process_images(p)


def run_forge(w, prompt, **kw):
    """Forge's process_images does not reload the embedding folders (modules/processing.py:901-904)."""
    return run(w, prompt, do_not_reload_embeddings=True, **kw)


def write_bundle(webui, name="bund", token="bundtok", dim=48):
    path = webui.write(name, seed=3)
    sd = load_file(path)
    sd[f"bundle_emb.{token}.string_to_param.*"] = torch.randn(2, dim)
    save_file(sd, path)
    return path


class ForgeDatabase:
    """Forge's ``backend.text_processing.textual_inversion.EmbeddingDatabase``: the calls the extension uses."""

    def __init__(self, expected_shape=-1):
        self.word_embeddings = {}
        self.skipped_embeddings = {}
        self.expected_shape = expected_shape
        self.calls = []

    def register_embedding(self, embedding):
        return self.register_embedding_by_name(embedding, embedding.name)

    def register_embedding_by_name(self, embedding, name):
        self.calls.append((name, embedding is not None))
        if embedding is None:
            self.word_embeddings.pop(name, None)
            return None
        self.word_embeddings[name] = embedding
        return embedding


class Engine:
    def __init__(self, db):
        self.embeddings = db


def test_a1111_database(webui):
    from modules import sd_hijack

    write_bundle(webui)
    w = webui.start()
    db = sd_hijack.model_hijack.embedding_db
    run(w, "a <lora:bund:1> bundtok")
    assert "bundtok" in db.word_embeddings
    assert db.word_embeddings["bundtok"].lycoris_source.endswith("bund.safetensors")
    run(w, "a plain prompt")
    assert "bundtok" not in db.word_embeddings


def test_missing_embedding_db_skips_with_warning(webui, monkeypatch, caplog):
    from modules import sd_hijack

    from lycoris_ext.webui import embeddings

    write_bundle(webui)
    w = webui.start()
    monkeypatch.delattr(sd_hijack.model_hijack, "embedding_db")
    monkeypatch.setattr(embeddings, "_warned", set())
    snap = params_snapshot(w.model)
    with caplog.at_level(logging.WARNING, logger="lycoris_ext.webui.embeddings"):
        run_forge(w, "a <lora:bund:1> bundtok")  # raised AttributeError: ... no attribute 'embedding_db'
        run_forge(w, "a <lora:bund:1> bundtok")
    assert changed(w.model, snap), "the network is applied without its embedding"
    assert len(w.ext.runtime().uses) == 1
    warnings = [r for r in caplog.records if "bundtok" in r.getMessage()]
    assert len(warnings) == 1 and "no textual inversion database" in warnings[0].getMessage()
    assert w.ext._embeddings == {}
    run_forge(w, "a plain prompt")
    assert not changed(w.model, snap)


def test_forge_engine_databases(webui, monkeypatch):
    from modules import sd_hijack, shared

    write_bundle(webui)
    w = webui.start()
    monkeypatch.delattr(sd_hijack.model_hijack, "embedding_db")
    # SDXL in Forge: two engines, both databases expect clip_l + clip_g widths; SD1: one engine.
    l_db, g_db, other = ForgeDatabase(), ForgeDatabase(), ForgeDatabase(expected_shape=7)
    monkeypatch.setattr(shared.sd_model, "text_processing_engine_l", Engine(l_db), raising=False)
    monkeypatch.setattr(shared.sd_model, "text_processing_engine_g", Engine(g_db), raising=False)
    monkeypatch.setattr(shared.sd_model, "text_processing_engine", Engine(other), raising=False)
    run_forge(w, "a <lora:bund:1> bundtok")
    assert l_db.word_embeddings["bundtok"] is g_db.word_embeddings["bundtok"]
    assert "bundtok" not in other.word_embeddings and "bundtok" in other.skipped_embeddings
    emb = l_db.word_embeddings["bundtok"]
    assert emb.vectors == 2 and emb.shape == 48

    run_forge(w, "a <lora:bund:0.5> bundtok")  # same network: nothing registered again
    assert l_db.calls == [("bundtok", True)]

    # a model reload gives the host new, empty databases: registered again while still wanted
    fresh = ForgeDatabase()
    monkeypatch.setattr(shared.sd_model, "text_processing_engine_l", Engine(fresh), raising=False)
    run_forge(w, "a <lora:bund:1> bundtok")
    assert fresh.word_embeddings.get("bundtok") is emb

    run_forge(w, "a plain prompt")
    assert "bundtok" not in fresh.word_embeddings and "bundtok" not in g_db.word_embeddings
    assert w.ext._embeddings == {}


def test_folder_embedding_of_the_same_name_wins(webui, monkeypatch, caplog):
    from modules import sd_hijack, shared

    write_bundle(webui)
    w = webui.start()
    monkeypatch.delattr(sd_hijack.model_hijack, "embedding_db")
    db = ForgeDatabase()
    mine = object()
    db.word_embeddings["bundtok"] = mine
    monkeypatch.setattr(shared.sd_model, "text_processing_engine", Engine(db), raising=False)
    with caplog.at_level(logging.WARNING, logger="lycoris_ext.webui.embeddings"):
        run_forge(w, "a <lora:bund:1> bundtok")
    assert db.word_embeddings["bundtok"] is mine
    assert any("already loaded" in r.getMessage() for r in caplog.records)
    run_forge(w, "a plain prompt")
    assert db.word_embeddings["bundtok"] is mine
