"""The front end in a real headless Chromium: card clicks insert and remove
tokens, the block panel writes lbw=, and nothing from a file name, metadata
or user metadata ever runs as script or appears as markup."""

from __future__ import annotations

import json
import os

import pytest

EVIL = [
    '<script>window.__pwned=1</script>',
    '"><img src=x onerror="window.__pwned=2">',
    "'><svg onload='window.__pwned=3'>",
    "`${window.__pwned=4}`",
    "</textarea><b id=injected>x</b>",
    "a&amp;b <i id=injected2>",
]
SAFE_FILE_CHARS = [e.replace("/", "_") for e in EVIL]  # file names cannot hold '/'


def card_html(webui, names, family="sd15", user_metadata=None, metadata=None):
    from modules import ui_extra_networks

    for i, n in enumerate(names):
        path = webui.write(n, seed=i, metadata=(metadata or {}).get(n))
        if user_metadata and n in user_metadata:
            with open(os.path.splitext(path)[0] + ".json", "w") as f:
                json.dump(user_metadata[n], f)
    webui.start(family)
    page = next(p for p in ui_extra_networks.extra_pages if p.name == "lora")
    page.items = {i["name"]: i for i in page.list_items()}
    cards = "".join(page.create_item_html("txt2img", item, page.card_tpl) for item in page.items.values())
    tree = page.create_tree_view_html("txt2img")
    return cards + tree


def prompt(pg):
    return pg.eval_on_selector("#txt2img_prompt textarea", "t => t.value")


def set_prompt(pg, text, negative=""):
    pg.eval_on_selector("#txt2img_prompt textarea", "(t, v) => t.value = v", text)
    pg.eval_on_selector("#txt2img_neg_prompt textarea", "(t, v) => t.value = v", negative)


def click_card(pg, name):
    """Click the card whose data-name is exactly ``name`` (a real click event)."""
    handle = pg.evaluate_handle("n => [...document.querySelectorAll('.card')].find(c => c.dataset.name === n)", name)
    handle.as_element().click()


def test_card_click_inserts_and_removes(webui, page):
    html = card_html(webui, ["style", "other"])
    pg = page(html, {"lycoris_default_multiplier": 0.8})
    set_prompt(pg, "a cat")
    click_card(pg, "style")
    assert prompt(pg) == "a cat <lora:style:0.8>"
    click_card(pg, "other")
    assert prompt(pg) == "a cat <lora:style:0.8> <lora:other:0.8>"
    click_card(pg, "style")
    assert prompt(pg) == "a cat <lora:other:0.8>"
    assert pg.evaluate("window.__events") >= 3
    assert page.errors == []


@pytest.mark.parametrize("edited", [
    "<lora:style:-0.5>",
    "<lora:style:0.5:0.2:8>",
    "<lora:style:te=0.3:unet=1.2:lbw=MIDD>",
    "<lyco:style:1:start=3>",
    '<lora:"style":1>',
])
def test_click_removes_edited_tokens(webui, page, edited):
    pg = page(card_html(webui, ["style"]))
    set_prompt(pg, f"a cat, {edited}, fine")
    click_card(pg, "style")
    assert prompt(pg) == "a cat, fine"


def test_activation_and_negative_text(webui, page):
    html = card_html(webui, ["style"], user_metadata={"style": {"activation text": "trigger", "negative text": "blurry", "preferred weight": 0.6}})
    pg = page(html)
    set_prompt(pg, "a cat", "ugly")
    click_card(pg, "style")
    assert prompt(pg) == "a cat <lora:style:0.6> trigger"
    assert pg.eval_on_selector("#txt2img_neg_prompt textarea", "t => t.value") == "ugly (blurry:1)"
    click_card(pg, "style")
    assert prompt(pg) == "a cat"
    assert pg.eval_on_selector("#txt2img_neg_prompt textarea", "t => t.value") == "ugly"


def test_block_panel_writes_lbw(webui, page):
    pg = page(card_html(webui, ["style"]))
    spec = "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0"
    set_prompt(pg, "x <lora:style:0.7> y <lora:other:1>")
    pg.evaluate("([n, s]) => lycorisWriteLbw('txt2img', n, s)", ["style", spec])
    assert prompt(pg) == f"x <lora:style:0.7:lbw={spec}> y <lora:other:1>"
    pg.evaluate("([n, s]) => lycorisWriteLbw('txt2img', n, s)", ["style", "OUTS"])
    assert prompt(pg) == "x <lora:style:0.7:lbw=OUTS> y <lora:other:1>"
    set_prompt(pg, "x <lora:style:0.7:w=MIDD:dyn=4>")
    pg.evaluate("([n, s]) => lycorisWriteLbw('txt2img', n, s)", ["style", "INS"])
    assert prompt(pg) == "x <lora:style:0.7:dyn=4:lbw=INS>"
    set_prompt(pg, 'x <lora:"a:b":1>')
    pg.evaluate("([n, s]) => lycorisWriteLbw('txt2img', n, s)", ["a:b", "ALL"])
    assert prompt(pg) == 'x <lora:"a:b":1:lbw=ALL>'
    set_prompt(pg, "x")
    pg.evaluate("([n, s]) => lycorisWriteLbw('txt2img', n, s)", ["new", "NONE"])
    assert prompt(pg) == "x <lora:new:1:lbw=NONE>"


def test_hostile_names_metadata_and_user_metadata_stay_text(webui, page):
    names = SAFE_FILE_CHARS
    meta = {n: {"ss_output_name": EVIL[i], "modelspec.description": EVIL[(i + 1) % len(EVIL)],
                "ss_tag_frequency": json.dumps({"d": {EVIL[(i + 2) % len(EVIL)]: 3}})} for i, n in enumerate(names)}
    um = {n: {"description": EVIL[(i + 3) % len(EVIL)], "activation text": EVIL[(i + 4) % len(EVIL)],
              "negative text": EVIL[(i + 5) % len(EVIL)], "preferred block weights": ""} for i, n in enumerate(names)}
    html = card_html(webui, names, user_metadata=um, metadata=meta)
    # the metadata editor's HTML and the block panel's HTML for the same files
    from modules import ui_extra_networks

    from lycoris_ext.webui.panel import PanelLogic

    pagecls = next(p for p in ui_extra_networks.extra_pages if p.name == "lora")
    editor = pagecls.create_user_metadata_editor(None, "txt2img")
    extra = []
    for n in pagecls.items:
        values = editor.put_values_into_components(n)
        extra += [values[0], values[2], values[3], values[11], values[12]]
        extra.append(PanelLogic(webui.ext).select(n, "")[1])
    pg = page(html + "".join(str(x) for x in extra))
    pg.wait_for_timeout(200)
    assert pg.evaluate("window.__pwned") is None
    assert page.dialogs == []
    for marker in ("#injected", "#injected2", "img[src=x]", "svg"):
        assert pg.locator(marker).count() == 0, marker
    assert pg.locator("script").count() == 2  # only the shell's own scripts
    # shown as text, exactly
    shown = pg.eval_on_selector_all(".card .name", "els => els.map(e => e.textContent)")
    assert sorted(shown) == sorted(names)
    body_text = pg.inner_text("#content")
    assert EVIL[1] in body_text or EVIL[1].replace("/", "_") in body_text
    # clicking a hostile card writes its name as text into the prompt
    set_prompt(pg, "")
    for n in names:
        click_card(pg, n)
    assert pg.evaluate("window.__pwned") is None
    text = prompt(pg)
    from lycoris_ext.tokens import find_tokens, parse_token

    found = [webui.ext.library.find(parse_token(items).name) for _, items, _ in find_tokens(text)]
    # one usable token per card: the alias verbatim when a token can hold it, else "@<hash>"
    assert len(found) == len(names) and None not in found
    assert len({e.path for e in found}) == len(names)
    assert "<lora:'\"><img src=x onerror=\"window.__pwned=2\">'" not in text  # no '>' inside a token
    assert page.errors == []
