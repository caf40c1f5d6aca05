"""Fixtures that run the extension inside the A1111 v1.10.1 stand-in."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import a1111  # noqa: F401  (puts the stand-in first on sys.path)
from lycoris_ext.resolve.tree import A1111, ModelTree
from lycoris_ext.samples import default_targets, sample_network

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def webui(tmp_path):
    """A fresh WebUI with network folders under tmp_path; yields a small namespace."""
    from modules import shared

    a1111.reset()
    lora_dir = tmp_path / "models" / "Lora"
    lyco_dir = tmp_path / "models" / "LyCORIS"
    lora_dir.mkdir(parents=True)
    lyco_dir.mkdir(parents=True)
    shared.cmd_opts.lora_dir = str(lora_dir)
    shared.cmd_opts.lyco_dir_backcompat = str(lyco_dir)

    class W:
        pass

    w = W()
    w.lora_dir, w.lyco_dir = lora_dir, lyco_dir
    w.a1111 = a1111

    def write(name, algorithm="lora", family="sd15", rank=4, seed=0, metadata=None, folder=None, targets=None, **kw):
        tree = w.tree_for(family)
        path = (folder or lora_dir) / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = sample_network(tree, algorithm, rank=rank, seed=seed, targets=targets, **kw)
        save_file(sd, str(path), metadata or {})
        return str(path)

    def tree_for(family):
        from lycoris_ext.synthetic import build_model

        key = {"sd15": "sd15", "sd1": "sd15"}.get(family, family)
        if key not in trees:
            parts = build_model(key, shrink=16)
            trees[key] = ModelTree(parts, A1111, {"sd15": "sd1"}.get(key, key))
        return trees[key]

    trees = {}
    w.write = write
    w.tree_for = tree_for

    def start(family="sd15", builtin=False, builtin_enabled=True):
        if builtin:
            a1111.load_builtin_lora(enabled=builtin_enabled)
        w.extension = a1111.load_extension(REPO, name="lycoris-ext")
        w.model = a1111.make_sd_model(family, shrink=16)
        w.ui = a1111.start_ui()
        w.ext = w.extension.modules["lycoris_ext_main.py"]._ext
        # Files the extension writes beside itself (presets) go to tmp, not the checkout.
        w.ext.ext_dir = str(tmp_path / "extensions" / "lycoris-ext")
        os.makedirs(w.ext.ext_dir, exist_ok=True)
        return w

    w.start = start
    yield w
    a1111.reset()


def params_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model, snap) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), snap[n])}





from browser import browser, page  # noqa: E402,F401  (fixtures: a real headless Chromium)
