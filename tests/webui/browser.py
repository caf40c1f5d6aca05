"""A real headless Chromium (Debian's package) driven by Playwright.

The page mimics the WebUI's DOM where the extension's JavaScript reads and
writes (prompt boxes, ``gradioApp()``, ``opts``, ``updateInput``) and holds
HTML rendered by the extension's Python code, so both sides are tested
together. Without Chromium the tests skip, unless ``REQUIRE_BROWSER=1`` (set
by CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/webui -> repo
JS = os.path.join(REPO, "javascript", "lycoris_ext.js")
CSS = os.path.join(REPO, "style.css")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (REQUIRE_BROWSER=1) but was not found")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


SHELL = """<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head><body>
<div id="txt2img_prompt"><label><textarea></textarea></label></div>
<div id="txt2img_neg_prompt"><label><textarea></textarea></label></div>
<div id="content">{body}</div>
<script>
window.__events = 0;
window.opts = {opts};
function gradioApp() {{ return document; }}
function updateInput(t) {{ window.__events++; t.dispatchEvent(new Event("input", {{bubbles: true}})); }}
</script>
<script>{js}</script>
</body></html>"""


@pytest.fixture
def page(browser):
    """``open(body_html, opts=None)`` loads the shell with that body and returns the Playwright page."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))

    def open_(body, opts=None):
        o = {"extra_networks_add_text_separator": " ", "lycoris_default_multiplier": 1}
        o.update(opts or {})
        html = SHELL.format(css=open(CSS).read(), body=body, opts=json.dumps(o), js=open(JS).read())
        pg.set_content(html)
        return pg

    open_.dialogs = dialogs
    open_.errors = errors
    open_.page = pg
    yield open_
    ctx.close()
