"""Stand-in for modules/ui_extra_networks.py (A1111 v1.10.1).

Kept: ``extra_pages``, ``allowed_dirs`` (recomputed from every page's
``allowed_directories_for_previews()`` on each ``register_page``), ``initialize``,
``register_default_pages`` (registers nothing here, see below), ``quote_js`` (escapes ``\\`` and ``"``
only), ``get_tree``, ``ExtraNetworksItem``, ``ExtraNetworksPage`` (same ``__init__`` fields, the same
templates read through ``shared.html``, and the same methods: ``refresh``, ``read_user_metadata``,
``link_preview``, ``search_terms_from_path``, ``create_item_html`` (same args dict, escaping, hidden-dir
``search_only`` handling and onclick strings), ``create_tree_dir_item_html``,
``create_tree_file_item_html`` (reads ``item["shorthash"]`` directly), ``create_tree_view_html``,
``create_dirs_view_html``, ``create_card_view_html``, ``create_html(tabname, *, empty=False)``,
``create_item``/``list_items`` (NotImplementedError), ``allowed_directories_for_previews``,
``get_sort_keys`` (with the real swap: date_created = mtime, date_modified = ctime), ``find_preview``,
``find_embedded_preview``, ``find_description``, ``create_user_metadata_editor``), the four GET route
handlers ``fetch_file`` (thumb: 404 if missing, ValueError unless under an allowed dir and of an
allowed extension), ``fetch_cover_images``, ``get_metadata`` (``{"metadata": json string}`` without
``ssmd_cover_images``; ``{}`` when page or item is unknown), ``get_single_card`` (``create_item(name,
enable_filter=False)``, falls back to ``page.items`` on error, re-reads user metadata uncached), and
``add_pages_to_demo(app)``; ``pages_in_preferred_order``, ``create_ui``, ``setup_ui``, ``path_is_parent``.

Simplified: the default pages (Textual Inversion, Hypernetworks, Checkpoints) are not registered, since
their modules are not part of the stand-in; ``setup_ui``'s legacy save-preview button handler only
checks the target path (no image saving).
"""

import functools
import html
import json
import os.path
import urllib.parse
from base64 import b64decode
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Optional, Union

import gradio as gr
from fastapi.exceptions import HTTPException

from modules import shared, ui_extra_networks_user_metadata, errors, extra_networks, util

extra_pages = []
allowed_dirs = set()
default_allowed_preview_extensions = ["png", "jpg", "jpeg", "webp", "gif"]


@functools.cache
def allowed_preview_extensions_with_extra(extra_extensions=None):
    return set(default_allowed_preview_extensions) | set(extra_extensions or [])


def allowed_preview_extensions():
    return allowed_preview_extensions_with_extra((shared.opts.samples_format, ))


@dataclass
class ExtraNetworksItem:
    """Wrapper for dictionaries representing ExtraNetworks items."""
    item: dict


def get_tree(paths: Union[str, list], items: dict) -> dict:
    """Nested dict of the directories under each root; files are keyed by path relative to the root's
    parent and only kept when present in ``items`` (keyed by absolute path); empty dirs dropped."""
    if isinstance(paths, str):
        paths = [paths]

    def walk(candidates, root):
        out = {}
        for path in candidates:
            rel = os.path.relpath(path, root)
            if os.path.isdir(path):
                entries = os.listdir(path)
                if not entries:
                    continue
                sub = walk([os.path.join(path, x) for x in entries], root)
                if sub:
                    out[rel] = sub
            elif path in items:
                out[rel] = items[path]
        return out

    res = {}
    for path in paths:
        root = os.path.dirname(path)
        rel = os.path.relpath(path, root)
        res[rel] = walk([path], root)
        if res[rel]:
            res[rel] = res[rel][rel]
    return res


def register_page(page):
    """registers extra networks page for the UI; recommend doing it in on_before_ui() callback for extensions"""
    extra_pages.append(page)
    allowed_dirs.clear()
    allowed_dirs.update(set(sum([x.allowed_directories_for_previews() for x in extra_pages], [])))


def fetch_file(filename: str = ""):
    from starlette.responses import FileResponse

    if not os.path.isfile(filename):
        raise HTTPException(status_code=404, detail="File not found")

    if not any(Path(x).absolute() in Path(filename).absolute().parents for x in allowed_dirs):
        raise ValueError(f"File cannot be fetched: {filename}. Must be in one of directories registered by extra pages.")

    ext = os.path.splitext(filename)[1].lower()[1:]
    if ext not in allowed_preview_extensions():
        raise ValueError(f"File cannot be fetched: {filename}. Extensions allowed: {allowed_preview_extensions()}.")

    return FileResponse(filename, headers={"Accept-Ranges": "bytes"})


def _page_named(name):
    return next(iter([x for x in extra_pages if x.name == name]), None)


def fetch_cover_images(page: str = "", item: str = "", index: int = 0):
    from starlette.responses import Response
    from PIL import Image

    page = _page_named(page)
    if page is None:
        raise HTTPException(status_code=404, detail="File not found")

    metadata = page.metadata.get(item)
    if metadata is None:
        raise HTTPException(status_code=404, detail="File not found")

    cover_images = json.loads(metadata.get('ssmd_cover_images', {}))
    image = cover_images[index] if index < len(cover_images) else None
    if not image:
        raise HTTPException(status_code=404, detail="File not found")

    try:
        image = Image.open(BytesIO(b64decode(image)))
        buffer = BytesIO()
        image.save(buffer, format=image.format)
        return Response(content=buffer.getvalue(), media_type=image.get_format_mimetype())
    except Exception as err:
        raise ValueError(f"File cannot be fetched: {item}. Failed to load cover image.") from err


def get_metadata(page: str = "", item: str = ""):
    from starlette.responses import JSONResponse

    page = _page_named(page)
    if page is None:
        return JSONResponse({})

    metadata = page.metadata.get(item)
    if metadata is None:
        return JSONResponse({})

    metadata = {k: metadata[k] for k in metadata if k != 'ssmd_cover_images'}
    return JSONResponse({"metadata": json.dumps(metadata, indent=4, ensure_ascii=False)})


def get_single_card(page: str = "", tabname: str = "", name: str = ""):
    from starlette.responses import JSONResponse

    page = _page_named(page)

    try:
        item = page.create_item(name, enable_filter=False)
        page.items[name] = item
    except Exception as e:
        errors.display(e, "creating item for extra network")
        item = page.items.get(name)

    page.read_user_metadata(item, use_cache=False)
    item_html = page.create_item_html(tabname, item, shared.html("extra-networks-card.html"))
    return JSONResponse({"html": item_html})


def add_pages_to_demo(app):
    app.add_api_route("/sd_extra_networks/thumb", fetch_file, methods=["GET"])
    app.add_api_route("/sd_extra_networks/cover-images", fetch_cover_images, methods=["GET"])
    app.add_api_route("/sd_extra_networks/metadata", get_metadata, methods=["GET"])
    app.add_api_route("/sd_extra_networks/get-single-card", get_single_card, methods=["GET"])


def quote_js(s):
    s = s.replace('\\', '\\\\').replace('"', '\\"')
    return f'"{s}"'


class ExtraNetworksPage:
    def __init__(self, title):
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")
        self.allow_prompt = True
        self.allow_negative_prompt = False
        self.metadata = {}
        self.items = {}
        self.lister = util.MassFileLister()
        self.pane_tpl = shared.html("extra-networks-pane.html")
        self.pane_content_tree_tpl = shared.html("extra-networks-pane-tree.html")
        self.pane_content_dirs_tpl = shared.html("extra-networks-pane-dirs.html")
        self.card_tpl = shared.html("extra-networks-card.html")
        self.btn_tree_tpl = shared.html("extra-networks-tree-button.html")
        self.btn_copy_path_tpl = shared.html("extra-networks-copy-path-button.html")
        self.btn_metadata_tpl = shared.html("extra-networks-metadata-button.html")
        self.btn_edit_item_tpl = shared.html("extra-networks-edit-item-button.html")

    def refresh(self):
        pass

    def read_user_metadata(self, item, use_cache=True):
        filename = item.get("filename", None)
        metadata = extra_networks.get_user_metadata(filename, lister=self.lister if use_cache else None)

        desc = metadata.get("description", None)
        if desc is not None:
            item["description"] = desc

        item["user_metadata"] = metadata

    def link_preview(self, filename):
        quoted = urllib.parse.quote(filename.replace('\\', '/'))
        mtime, _ = self.lister.mctime(filename)
        return f"./sd_extra_networks/thumb?filename={quoted}&mtime={mtime}"

    def search_terms_from_path(self, filename, possible_directories=None):
        abspath = os.path.abspath(filename)
        dirs = possible_directories if possible_directories is not None else self.allowed_directories_for_previews()
        for parentdir in dirs:
            parentdir = os.path.dirname(os.path.abspath(parentdir))
            if abspath.startswith(parentdir):
                return os.path.relpath(abspath, parentdir)
        return ""

    def create_item_html(self, tabname: str, item: dict, template: Optional[str] = None) -> Union[str, dict]:
        """HTML of one card (``template`` given), or the dict of template arguments (no template).
        Returns "" for a card in a hidden directory when ``extra_networks_hidden_models == "Never"``."""
        opts = shared.opts
        preview = item.get("preview", None)
        height = f"height: {opts.extra_networks_card_height}px;" if opts.extra_networks_card_height else ''
        width = f"width: {opts.extra_networks_card_width}px;" if opts.extra_networks_card_width else ''
        font_size = f"font-size: {opts.extra_networks_card_text_scale*100}%;"
        card_style = height + width + font_size
        background_image = f'<img src="{html.escape(preview)}" class="preview" loading="lazy">' if preview else ''

        onclick = item.get("onclick", None)
        if onclick is None:
            # prompt / negative_prompt are JS expressions already: not quoted here
            onclick = "cardClicked('{tabname}', {prompt}, {neg_prompt}, {allow_neg});".format(
                tabname=tabname,
                prompt=item["prompt"],
                neg_prompt=item.get("negative_prompt", "''"),
                allow_neg=str(self.allow_negative_prompt).lower(),
            )
            onclick = html.escape(onclick)

        btn_copy_path = self.btn_copy_path_tpl.format(filename=item["filename"])
        btn_metadata = ""
        if item.get("metadata"):
            btn_metadata = self.btn_metadata_tpl.format(extra_networks_tabname=self.extra_networks_tabname)
        btn_edit_item = self.btn_edit_item_tpl.format(tabname=tabname, extra_networks_tabname=self.extra_networks_tabname)

        local_path = ""
        filename = item.get("filename", "")
        for reldir in self.allowed_directories_for_previews():
            absdir = os.path.abspath(reldir)
            if filename.startswith(absdir):
                local_path = filename[len(absdir):]

        if opts.extra_networks_hidden_models == "Always":
            search_only = False
        else:
            search_only = "/." in local_path or "\\." in local_path

        if search_only and opts.extra_networks_hidden_models == "Never":
            return ""

        sort_keys = " ".join(f'data-sort-{k}="{html.escape(str(v))}"' for k, v in item.get("sort_keys", {}).items()).strip()

        css_class = f"search_terms{' search_only' if search_only else ''}"
        search_terms_html = "".join(f"<span class='hidden {css_class}'>{term}</span>" for term in item.get("search_terms", []))

        description = (item.get("description", "") or "" if opts.extra_networks_card_show_desc else "")
        if not opts.extra_networks_card_description_is_html:
            description = html.escape(description)

        args = {
            "background_image": background_image,
            "card_clicked": onclick,
            "copy_path_button": btn_copy_path,
            "description": description,
            "edit_button": btn_edit_item,
            "local_preview": quote_js(item["local_preview"]),
            "metadata_button": btn_metadata,
            "name": html.escape(item["name"]),
            "prompt": item.get("prompt", None),
            "save_card_preview": html.escape(f"return saveCardPreview(event, '{tabname}', '{item['local_preview']}');"),
            "search_only": " search_only" if search_only else "",
            "search_terms": search_terms_html,
            "sort_keys": sort_keys,
            "style": card_style,
            "tabname": tabname,
            "extra_networks_tabname": self.extra_networks_tabname,
        }

        if template:
            return template.format(**args)
        return args

    def _tree_button(self, tabname, subclass, onclick_extra, data_path, data_hash, visual, label, trailing):
        return self.btn_tree_tpl.format(
            search_terms="",
            subclass=subclass,
            tabname=tabname,
            extra_networks_tabname=self.extra_networks_tabname,
            onclick_extra=onclick_extra,
            data_path=data_path,
            data_hash=data_hash,
            action_list_item_action_leading="<i class='tree-list-item-action-chevron'></i>",
            action_list_item_visual_leading=visual,
            action_list_item_label=label,
            action_list_item_visual_trailing="",
            action_list_item_action_trailing=trailing,
        )

    def create_tree_dir_item_html(self, tabname: str, dir_path: str, content: Optional[str] = None) -> Optional[str]:
        if not content:
            return None
        btn = self._tree_button(tabname, "tree-list-content-dir", "", dir_path, "", "🗀", os.path.basename(dir_path), "")
        ul = f"<ul class='tree-list tree-list--subgroup' hidden>{content}</ul>"
        return f"<li class='tree-list-item tree-list-item--has-subitem' data-tree-entry-type='dir'>{btn}{ul}</li>"

    def create_tree_file_item_html(self, tabname: str, file_path: str, item: dict) -> str:
        args = self.create_item_html(tabname, item)
        buttons = f"<div class=\"button-row\">{args['copy_path_button']}{args['metadata_button']}{args['edit_button']}</div>"
        btn = self._tree_button(tabname, "tree-list-content-file", args["card_clicked"], file_path, item["shorthash"], "🗎", item["name"], buttons)
        return f"<li class='tree-list-item tree-list-item--subitem' data-tree-entry-type='file'>{btn}</li>"

    def create_tree_view_html(self, tabname: str) -> str:
        roots = self.allowed_directories_for_previews()
        tree_items = {v["filename"]: ExtraNetworksItem(v) for v in self.items.values()}
        tree = get_tree([os.path.abspath(x) for x in roots], items=tree_items)
        if not tree:
            return ""

        def build(data):
            if not data:
                return None
            dirs, files = [], []
            for k, v in sorted(data.items(), key=lambda x: shared.natural_sort_key(x[0])):
                if isinstance(v, ExtraNetworksItem):
                    files.append(self.create_tree_file_item_html(tabname, k, v.item))
                else:
                    dirs.append(self.create_tree_dir_item_html(tabname, k, build(v)))
            return "".join(x for x in dirs if x) + "".join(files)

        res = ""
        for k, v in sorted(tree.items(), key=lambda x: shared.natural_sort_key(x[0])):
            item_html = self.create_tree_dir_item_html(tabname, k, build(v))
            if item_html is not None:
                res += item_html
        return f"<ul class='tree-list tree-list--tree'>{res}</ul>"

    def create_dirs_view_html(self, tabname: str) -> str:
        opts = shared.opts
        subdirs = {}
        for parentdir in [os.path.abspath(x) for x in self.allowed_directories_for_previews()]:
            for root, dirs, _ in sorted(os.walk(parentdir, followlinks=True), key=lambda x: shared.natural_sort_key(x[0])):
                for dirname in sorted(dirs, key=shared.natural_sort_key):
                    x = os.path.join(root, dirname)
                    if not os.path.isdir(x):
                        continue
                    subdir = os.path.abspath(x)[len(parentdir):]
                    if opts.extra_networks_dir_button_function:
                        if not subdir.startswith(os.path.sep):
                            subdir = os.path.sep + subdir
                    else:
                        subdir = subdir.lstrip(os.path.sep)
                    if len(os.listdir(x)) != 0 and not subdir.endswith(os.path.sep):
                        subdir = subdir + os.path.sep
                    if (os.path.sep + "." in subdir or subdir.startswith(".")) and not opts.extra_networks_show_hidden_directories:
                        continue
                    subdirs[subdir] = 1

        if subdirs:
            subdirs = {"": 1, **subdirs}

        return "".join(
            f"<button class='lg secondary gradio-button custom-button{' search-all' if subdir == '' else ''}' "
            f"onclick='extraNetworksSearchButton(\"{tabname}\", \"{self.extra_networks_tabname}\", event)'>"
            f"{html.escape(subdir if subdir != '' else 'all')}</button>"
            for subdir in subdirs
        )

    def create_card_view_html(self, tabname: str, *, none_message) -> str:
        res = [self.create_item_html(tabname, item, self.card_tpl) for item in self.items.values()]
        if not res:
            dirs = "".join(f"<li>{x}</li>" for x in self.allowed_directories_for_previews())
            res = [none_message or shared.html("extra-networks-no-cards.html").format(dirs=dirs)]
        return "".join(res)

    def create_html(self, tabname, *, empty=False):
        opts = shared.opts
        self.lister.reset()
        self.metadata = {}

        items_list = [] if empty else self.list_items()
        self.items = {x["name"]: x for x in items_list}

        for item in self.items.values():
            metadata = item.get("metadata")
            if metadata:
                self.metadata[item["name"]] = metadata
            if "user_metadata" not in item:
                self.read_user_metadata(item)

        show_tree = opts.extra_networks_tree_view_default_enabled
        order_field = opts.extra_networks_card_order_field
        active = ' extra-network-control--enabled'
        page_params = {
            "tabname": tabname,
            "extra_networks_tabname": self.extra_networks_tabname,
            "data_sortdir": opts.extra_networks_card_order,
            "sort_path_active": active if order_field == 'Path' else '',
            "sort_name_active": active if order_field == 'Name' else '',
            "sort_date_created_active": active if order_field == 'Date Created' else '',
            "sort_date_modified_active": active if order_field == 'Date Modified' else '',
            "tree_view_btn_extra_class": "extra-network-control--enabled" if show_tree else "",
            "items_html": self.create_card_view_html(tabname, none_message="Loading..." if empty else None),
            "extra_networks_tree_view_default_width": opts.extra_networks_tree_view_default_width,
            "tree_view_div_default_display_class": "" if show_tree else "extra-network-dirs-hidden",
        }

        if opts.extra_networks_tree_view_style == "Tree":
            pane_content = self.pane_content_tree_tpl.format(**page_params, tree_html=self.create_tree_view_html(tabname))
        else:
            pane_content = self.pane_content_dirs_tpl.format(**page_params, dirs_html=self.create_dirs_view_html(tabname))

        return self.pane_tpl.format(**page_params, pane_content=pane_content)

    def create_item(self, name, index=None):
        raise NotImplementedError()

    def list_items(self):
        raise NotImplementedError()

    def allowed_directories_for_previews(self):
        return []

    def get_sort_keys(self, path):
        pth = Path(path)
        mtime, ctime = self.lister.mctime(path)
        return {
            "date_created": int(mtime),
            "date_modified": int(ctime),
            "name": pth.name.lower(),
            "path": str(pth).lower(),
        }

    def find_preview(self, path):
        """path without extension; tries path.ext then path.preview.ext for each allowed ext"""
        candidates = sum([[f"{path}.{ext}", f"{path}.preview.{ext}"] for ext in allowed_preview_extensions()], [])
        for file in candidates:
            if self.lister.exists(file):
                return self.link_preview(file)
        return None

    def find_embedded_preview(self, path, name, metadata):
        file = f"{path}.safetensors"
        if self.lister.exists(file) and 'ssmd_cover_images' in metadata and len(list(filter(None, json.loads(metadata['ssmd_cover_images'])))) > 0:
            return f"./sd_extra_networks/cover-images?page={self.extra_networks_tabname}&item={name}"
        return None

    def find_description(self, path):
        for file in [f"{path}.txt", f"{path}.description.txt"]:
            if not self.lister.exists(file):
                continue
            try:
                with open(file, "r", encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                pass
        return None

    def create_user_metadata_editor(self, ui, tabname):
        return ui_extra_networks_user_metadata.UserMetadataEditor(ui, tabname, self)


def initialize():
    extra_pages.clear()


def register_default_pages():
    """The real one registers the Textual Inversion, Hypernetworks and Checkpoints pages; the stand-in
    has none of them, so nothing is registered (the registry is still cleared by initialize())."""


class ExtraNetworksUi:
    def __init__(self):
        self.pages = None
        self.page_contents = None
        self.stored_extra_pages = None
        self.button_save_preview = None
        self.preview_target_filename = None
        self.tabname = None


def pages_in_preferred_order(pages):
    tab_order = [x.lower().strip() for x in shared.opts.ui_extra_networks_tab_reorder.split(",")]

    def score(name):
        name = name.lower()
        for i, possible_match in enumerate(tab_order):
            if possible_match in name:
                return i
        return len(pages)

    scores = {page.name: (score(page.name), index) for index, page in enumerate(pages)}
    return sorted(pages, key=lambda x: scores[x.name])


def create_ui(interface, unrelated_tabs, tabname):
    ui = ExtraNetworksUi()
    ui.pages = []
    ui.pages_contents = []
    ui.user_metadata_editors = []
    ui.stored_extra_pages = pages_in_preferred_order(extra_pages.copy())
    ui.tabname = tabname

    related_tabs = []
    for page in ui.stored_extra_pages:
        with gr.Tab(page.title, elem_id=f"{tabname}_{page.extra_networks_tabname}", elem_classes=["extra-page"]) as tab:
            with gr.Column(elem_id=f"{tabname}_{page.extra_networks_tabname}_prompts", elem_classes=["extra-page-prompts"]):
                pass
            page_elem = gr.HTML(page.create_html(tabname, empty=True), elem_id=f"{tabname}_{page.extra_networks_tabname}_cards_html")
            ui.pages.append(page_elem)
            editor = page.create_user_metadata_editor(ui, tabname)
            editor.create_ui()
            ui.user_metadata_editors.append(editor)
            related_tabs.append(tab)

    ui.button_save_preview = gr.Button('Save preview', elem_id=f"{tabname}_save_preview", visible=False)
    ui.preview_target_filename = gr.Textbox('Preview save filename', elem_id=f"{tabname}_preview_filename", visible=False)

    for tab in unrelated_tabs:
        tab.select(fn=None, _js=f"function(){{extraNetworksUnrelatedTabSelected('{tabname}');}}", inputs=[], outputs=[], show_progress=False)

    def create_html():
        ui.pages_contents = [pg.create_html(ui.tabname) for pg in ui.stored_extra_pages]

    def pages_html():
        if not ui.pages_contents:
            create_html()
        return ui.pages_contents

    def refresh():
        for pg in ui.stored_extra_pages:
            pg.refresh()
        create_html()
        return ui.pages_contents

    for page, tab in zip(ui.stored_extra_pages, related_tabs):
        full = f"{tabname}_{page.extra_networks_tabname}"
        jscode = (
            "function(){"
            f"extraNetworksTabSelected('{tabname}', '{full}_prompts', {str(page.allow_prompt).lower()}, {str(page.allow_negative_prompt).lower()}, '{full}');"
            f"applyExtraNetworkFilter('{full}');"
            "}"
        )
        tab.select(fn=None, _js=jscode, inputs=[], outputs=[], show_progress=False)

        button_refresh = gr.Button("Refresh", elem_id=f"{full}_extra_refresh_internal", visible=False)
        button_refresh.click(fn=refresh, inputs=[], outputs=ui.pages).then(fn=lambda: None, _js="function(){ " + f"applyExtraNetworkFilter('{full}');" + " }").then(fn=lambda: None, _js='setupAllResizeHandles')

    ui.refresh = refresh
    ui.pages_html = pages_html
    interface.load(fn=pages_html, inputs=[], outputs=ui.pages).then(fn=lambda: None, _js='setupAllResizeHandles')
    return ui


def path_is_parent(parent_path, child_path):
    return os.path.abspath(child_path).startswith(os.path.abspath(parent_path))


def setup_ui(ui, gallery):
    def save_preview(index, images, filename):
        is_allowed = any(path_is_parent(x, filename) for page in ui.stored_extra_pages for x in page.allowed_directories_for_previews())
        assert is_allowed, f'writing to {filename} is not allowed'
        return [page.create_html(ui.tabname) for page in ui.stored_extra_pages]

    ui.button_save_preview.click(
        fn=save_preview,
        _js="function(x, y, z){return [selected_gallery_index(), y, z]}",
        inputs=[ui.preview_target_filename, gallery, ui.preview_target_filename],
        outputs=[*ui.pages],
    )

    for editor in ui.user_metadata_editors:
        editor.setup_ui(gallery)
