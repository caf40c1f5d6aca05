"""The card tab: one card per network file under the network folders."""

from __future__ import annotations

import json
import os
import urllib.parse

from modules import shared, ui_extra_networks

from ..resolve.family import FAMILY_LABELS, FORGE_SD_VERSIONS, LABEL_FAMILIES
from ..summary import decoded_metadata
from ..tokens import quote_name
from . import host
from .html import js, text


def token_for(name: str, weight=None, lbw: str | None = None) -> str:
    """``<lora:name:weight>`` text for a card (JavaScript fills a missing weight)."""
    quoted = quote_name(name)
    tail = f":lbw={lbw}" if lbw else ""
    return f"<lora:{quoted}:{weight:g}{tail}>" if weight is not None else f"<lora:{quoted}:{{w}}{tail}>"


class LycorisPage(ui_extra_networks.ExtraNetworksPage):
    """Title "Lora" (so the tab and its element ids are where users expect them)."""

    def __init__(self, ext):
        super().__init__("Lora")
        self.ext = ext

    def refresh(self):
        self.ext.refresh()

    def allowed_directories_for_previews(self):
        return host.network_dirs()

    def list_items(self):
        for index, entry in enumerate(list(self.ext.library)):
            item = self.create_item(entry.name, index)
            if item is not None:
                yield item

    # ----------------------------------------------------------------- items
    def _visible(self, family: str, enable_filter: bool) -> bool:
        return not enable_filter or self.ext.shown_for_model(family)

    def _embedded_preview(self, entry) -> str | None:
        raw = entry.metadata.get("ssmd_cover_images")
        if not raw or not entry.is_safetensors:
            return None
        try:
            images = [x for x in json.loads(raw) if x]
        except (ValueError, TypeError):
            return None
        if not images:
            return None
        q = urllib.parse.urlencode({"page": self.extra_networks_tabname, "item": entry.name})
        return f"./sd_extra_networks/cover-images?{q}"

    def create_item(self, name, index=None, enable_filter=True):
        entry = self.ext.library.entries.get(name)
        if entry is None:
            return None
        path = os.path.splitext(entry.path)[0]
        item = {
            "name": entry.name,
            "filename": entry.path,
            "shorthash": entry.shorthash,
            "preview": self.find_preview(path) or self._embedded_preview(entry),
            "description": self.find_description(path) or entry.metadata.get("modelspec.description"),
            "local_preview": f"{path}.{host.opt('samples_format', 'png')}",
            "metadata": decoded_metadata(entry.metadata),
            "sort_keys": {"default": index if index is not None else 0, **self.get_sort_keys(entry.path)},
            "sd_version": FAMILY_LABELS.get(entry.family, "Unknown"),
        }
        self.read_user_metadata(item)
        um = item.get("user_metadata") or {}
        version = um.get("sd version")
        family = LABEL_FAMILIES.get(version, entry.family)
        item["sd_version"] = FAMILY_LABELS.get(family, "Unknown")
        # Forge's sd/xl radio filters cards by this attribute (its own cards carry it)
        item["sort_keys"]["sdversion"] = FORGE_SD_VERSIONS.get(family, "SdVersion.Unknown")
        if not self._visible(family, enable_filter):
            return None
        terms = [self.search_terms_from_path(entry.path), entry.alias]
        if entry.hash:
            terms.append(entry.hash)
        item["search_terms"] = [t for t in terms if t]
        display = self.ext.library.display_name(entry, self.ext.prefer_alias())
        try:
            weight = float(um.get("preferred weight") or 0) or None
        except (TypeError, ValueError):
            weight = None
        lbw = str(um.get("preferred block weights") or "").strip() or None
        activation = str(um.get("activation text") or "")
        negative = str(um.get("negative text") or "")
        token = token_for(display, weight, lbw)
        # The built-in's fields, for code that reads them; clicks use onclick.
        item["prompt"] = js(token.replace("{w}", "1") + (" " + activation if activation else ""))
        item["negative_prompt"] = js(f"({negative}:1)" if negative else "")
        item["onclick"] = (
            f"return lycorisCardClicked(event, {js('__TAB__')}, {js(display)}, {js(token)}, "
            f"{js(activation)}, {js(f'({negative}:1)' if negative else '')});"
        )
        return item

    # ------------------------------------------------------------------ html
    def create_item_html(self, tabname, item, template=None):
        """Like the WebUI's, with every value escaped (names and paths come from strangers)."""
        opts = shared.opts
        preview = item.get("preview")
        style = ""
        if getattr(opts, "extra_networks_card_height", 0):
            style += f"height: {int(opts.extra_networks_card_height)}px;"
        if getattr(opts, "extra_networks_card_width", 0):
            style += f"width: {int(opts.extra_networks_card_width)}px;"
        style += f"font-size: {float(getattr(opts, 'extra_networks_card_text_scale', 1.0)) * 100}%;"
        onclick = item.get("onclick") or ""
        onclick = text(onclick.replace(js("__TAB__"), js(tabname)))
        filename = item.get("filename", "")
        local_path = ""
        for d in self.allowed_directories_for_previews():
            absdir = os.path.abspath(d)
            if filename.startswith(absdir):
                local_path = filename[len(absdir):]
        hidden_mode = host.opt("extra_networks_hidden_models", "When searched")
        search_only = hidden_mode != "Always" and ("/." in local_path or "\\." in local_path)
        if search_only and hidden_mode == "Never":
            return ""
        description = item.get("description") or "" if host.opt("extra_networks_card_show_desc", True) else ""
        terms = "".join(
            f"<span class='hidden search_terms{' search_only' if search_only else ''}'>{text(t)}</span>"
            for t in item.get("search_terms", [])
        )
        sort_keys = " ".join(f'data-sort-{text(k)}="{text(v)}"' for k, v in item.get("sort_keys", {}).items())
        tab = self.extra_networks_tabname
        args = {
            "background_image": f'<img src="{text(preview)}" class="preview" loading="lazy">' if preview else "",
            "card_clicked": onclick,
            "copy_path_button": self.btn_copy_path_tpl.format(filename=text(filename)),
            "description": text(description),
            "edit_button": self.btn_edit_item_tpl.format(tabname=text(tabname), extra_networks_tabname=text(tab)),
            "local_preview": text(js(item.get("local_preview", ""))),
            "metadata_button": self.btn_metadata_tpl.format(extra_networks_tabname=text(tab)) if item.get("metadata") else "",
            "name": text(item["name"]),
            "prompt": item.get("prompt"),
            "save_card_preview": text(f"return saveCardPreview(event, {js(tabname)}, {js(item.get('local_preview', ''))});"),
            "search_only": " search_only" if search_only else "",
            "search_terms": terms,
            "sort_keys": sort_keys,
            "style": style,
            "tabname": text(tabname),
            "extra_networks_tabname": text(tab),
        }
        return template.format(**args) if template else args

    def create_tree_dir_item_html(self, tabname, dir_path, content=None):
        if not content:
            return None
        return super().create_tree_dir_item_html(tabname, text(dir_path), content)

    def create_tree_file_item_html(self, tabname, file_path, item):
        safe = dict(item)
        safe["name"] = text(item["name"])
        safe["shorthash"] = text(item.get("shorthash", ""))
        return super().create_tree_file_item_html(tabname, text(file_path), safe)

    def create_user_metadata_editor(self, ui, tabname):
        from .editor import LycorisMetadataEditor

        return LycorisMetadataEditor(ui, tabname, self)
