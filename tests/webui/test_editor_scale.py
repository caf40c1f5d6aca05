"""The metadata editor says where each module's scale came from (issue 13)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def _peft_file(path, metadata=None):
    g = torch.Generator().manual_seed(0)
    sd = {f"{Q}.lora_A.weight": torch.randn(4, 20, generator=g) * 0.1, f"{Q}.lora_B.weight": torch.randn(20, 4, generator=g) * 0.1}
    save_file(sd, str(path), {"format": "pt", **({"lora_adapter_metadata": json.dumps(metadata)} if metadata else {})})


def _rows(webui, name):
    from modules import ui_extra_networks

    page = next(p for p in ui_extra_networks.extra_pages if p.name == "lora")
    page.items = {i["name"]: i for i in page.list_items()}
    editor = page.create_user_metadata_editor(None, "txt2img")
    return dict(editor.get_metadata_table(name))


def test_editor_shows_scale_sources_and_metadata(webui):
    _peft_file(webui.lora_dir / "meta.safetensors", {"unet.r": 4, "unet.lora_alpha": 8, "unet.use_rslora": False,
                                                      "<b>x.r": 2, "<b>x.lora_alpha": 1})
    _peft_file(webui.lora_dir / "bare.safetensors")
    webui.write("kohya", seed=1)
    webui.start()
    rows = _rows(webui, "meta")
    assert rows["Scale from:"] == "adapter metadata (1, scale 2)"
    assert rows["Adapter metadata:"] in ("unet: r 4, lora_alpha 8", "&lt;b&gt;x: r 2, lora_alpha 1")
    assert "<b>" not in "".join(rows.values())
    rows = _rows(webui, "bare")
    assert rows["Scale from:"] == "default (1, scale 1)"
    assert "lora_adapter_metadata" in rows["Warning:"]
    rows = _rows(webui, "kohya")
    assert rows["Scale from:"].startswith("alpha tensor (") and "Warning:" not in rows
