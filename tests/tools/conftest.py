"""Fixtures: small SD1.5 and SDXL checkpoints with sample networks."""

from __future__ import annotations

import pytest

from support.models import small_model
from tools_helpers import make_nets, save_checkpoint


@pytest.fixture(scope="session")
def sd15(tmp_path_factory):
    """``(parts, tree, checkpoint path, {algorithm: network path})`` for a small SD1.5."""
    d = tmp_path_factory.mktemp("sd15")
    parts, tree = small_model("sd15", shrink=16)
    ck = save_checkpoint(d / "base.safetensors", parts, "sd1", {"note": "test"})
    return parts, tree, ck, make_nets(tree, d)


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    d = tmp_path_factory.mktemp("sdxl")
    parts, tree = small_model("sdxl", shrink=32)
    ck = save_checkpoint(d / "base.safetensors", parts, "sdxl")
    return parts, tree, ck, make_nets(tree, d, ["lora", "lokr", "oft"])
